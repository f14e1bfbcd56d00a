// Replay's clock, shared by every process of the tree: the supervisor writes the recorded clock
// reads of each source into a file that every process maps, and a read takes the next value
// with one atomic increment (no round trip, no lock). Past the recorded values, time moves on
// from the last one served, by the sleeps taken and a millisecond a read, so that a loop
// waiting for time to pass still ends.
#pragma once

#include <atomic>
#include <cstdint>

namespace tapedeck::preload {

struct ClockMap {
  static constexpr uint64_t kMagic = 0x7461706564636c6bull;  // "tapedclk"
  uint64_t magic;
  std::atomic<int64_t> virtual_ms[2];  // wall, monotonic
  std::atomic<uint64_t> next[2];
  uint64_t count[2];
  uint64_t offset[2];  // where each source's values start in values()
  int64_t* values() { return reinterpret_cast<int64_t*>(this + 1); }
};
static_assert(std::atomic<int64_t>::is_always_lock_free, "the map is shared between processes");

inline int64_t take(ClockMap& map, int source) {
  const uint64_t index = map.next[source].fetch_add(1, std::memory_order_relaxed);
  if (index < map.count[source]) {
    const int64_t value = map.values()[map.offset[source] + index];
    int64_t current = map.virtual_ms[source].load(std::memory_order_relaxed);
    while (current < value && !map.virtual_ms[source].compare_exchange_weak(
                                  current, value, std::memory_order_relaxed)) {
    }
    return value;
  }
  return map.virtual_ms[source].fetch_add(1, std::memory_order_relaxed) + 1;
}

inline void advance(ClockMap& map, uint64_t duration_ms) {
  for (auto& clock : map.virtual_ms) {
    clock.fetch_add(static_cast<int64_t>(duration_ms), std::memory_order_relaxed);
  }
}

}  // namespace tapedeck::preload
