#include "tapedeck/clock.hpp"

#include <time.h>

#include <thread>

namespace tapedeck {

namespace {
int64_t read_ms(clockid_t id) {
  timespec now{};
  ::clock_gettime(id, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}
}  // namespace

Clock::Clock(bool paused, int64_t wall_ms) : paused_(paused), paused_wall_origin_ms_(wall_ms) {}

std::shared_ptr<Clock> Clock::real() {
  return std::make_shared<Clock>(false, 0);
}

std::shared_ptr<Clock> Clock::paused_at(int64_t wall_ms) {
  return std::make_shared<Clock>(true, wall_ms);
}

int64_t Clock::now_ms() const {
  if (paused_) return paused_wall_origin_ms_ + advanced_ms_.load(std::memory_order_relaxed);
  return read_ms(CLOCK_REALTIME);
}

int64_t Clock::monotonic_ms() const {
  if (paused_) return advanced_ms_.load(std::memory_order_relaxed);
  return read_ms(CLOCK_MONOTONIC);
}

void Clock::advance_ms(uint64_t duration_ms) {
  if (paused_) advanced_ms_.fetch_add(static_cast<int64_t>(duration_ms), std::memory_order_relaxed);
}

void Clock::sleep_ms(uint64_t duration_ms) {
  if (paused_) {
    advance_ms(duration_ms);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(duration_ms));
  }
}

std::shared_ptr<Clock> default_clock() {
  static const std::shared_ptr<Clock> clock = Clock::real();
  return clock;
}

}  // namespace tapedeck
