// The mock clock: either real time, or paused at a wall time where only sleep/advance move it.
// A paused clock makes recordings deterministic and makes sleeps cost no wall time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace tapedeck {

class Clock {
 public:
  // Follows the system's wall and monotonic clocks; sleep really sleeps.
  static std::shared_ptr<Clock> real();
  // Frozen at `wall_ms`; monotonic time starts at 0. Only sleep() and advance() move it.
  static std::shared_ptr<Clock> paused_at(int64_t wall_ms);

  bool paused() const { return paused_; }
  // Wall time in milliseconds since the Unix epoch.
  int64_t now_ms() const;
  // Milliseconds on a clock that never goes back; its origin is arbitrary but fixed.
  int64_t monotonic_ms() const;
  // Paused: advances virtual time and returns at once. Real: sleeps.
  void sleep_ms(uint64_t duration_ms);
  // Paused only: moves virtual time forward (a no-op on a real clock, which moves by itself).
  void advance_ms(uint64_t duration_ms);

  explicit Clock(bool paused, int64_t wall_ms);

 private:
  bool paused_;
  int64_t paused_wall_origin_ms_;
  std::atomic<int64_t> advanced_ms_{0};
};

// The clock recorders use when none is given: real time.
std::shared_ptr<Clock> default_clock();

}  // namespace tapedeck
