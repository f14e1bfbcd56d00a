// The clock as the tape keeps it, shared by the preload's clock hooks and the system-call
// floor's served clock calls: which clocks are taped (as which source), and milliseconds.
// Header-only, no allocation: it runs inside the preload's hooks.
#pragma once

#include <time.h>

#include <cstdint>

namespace tapedeck::clock_units {

enum class Source { none, wall, monotonic };

inline Source source_of(clockid_t id) {
  switch (id) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_TAI:
      return Source::wall;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
      return Source::monotonic;
    default:
      return Source::none;  // CPU-time clocks are the process's own business
  }
}

// Every clock source_of names a source for (what the system-call floor's filter notifies).
inline constexpr clockid_t kTapedClocks[] = {
    CLOCK_REALTIME,      CLOCK_REALTIME_COARSE,  CLOCK_TAI,     CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE, CLOCK_BOOTTIME};

// 0 wall, 1 monotonic: the index of per-source arrays (the clock map's, the last values seen).
inline int index_of(Source source) {
  return source == Source::wall ? 0 : 1;
}

// A reading cut to the millisecond the tape keeps.
inline int64_t floor_ms(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

inline int64_t ns_of(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// A span of nanoseconds (none below zero) as a timespec.
inline timespec from_ns(int64_t ns) {
  if (ns < 0) ns = 0;
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

// A duration rounded up to the millisecond (a sleep never taped shorter than asked).
inline uint64_t ceil_ms(const timespec& ts) {
  const int64_t ns = ns_of(ts);
  return ns <= 0 ? 0 : static_cast<uint64_t>((ns + 999'999) / 1'000'000);
}

inline timespec from_ms(int64_t ms) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
  return ts;
}

}  // namespace tapedeck::clock_units
