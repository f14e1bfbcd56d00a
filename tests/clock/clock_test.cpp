#include "tapedeck/clock.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace tapedeck {
namespace {

TEST(Clock, PausedClockOnlyMovesWhenToldTo) {
  auto clock = Clock::paused_at(1'700'000'000'000);
  EXPECT_TRUE(clock->paused());
  EXPECT_EQ(clock->now_ms(), 1'700'000'000'000);
  EXPECT_EQ(clock->monotonic_ms(), 0);
  const auto wall_before = std::chrono::steady_clock::now();
  clock->sleep_ms(10'000);  // ten virtual seconds
  EXPECT_EQ(clock->now_ms(), 1'700'000'010'000);
  EXPECT_EQ(clock->monotonic_ms(), 10'000);
  clock->advance_ms(5);
  EXPECT_EQ(clock->now_ms(), 1'700'000'010'005);
  // The virtual sleep returned without sleeping: far less than the 10 s it stood for.
  EXPECT_LT(std::chrono::steady_clock::now() - wall_before, std::chrono::seconds(5));
}

TEST(Clock, RealClockFollowsTheSystem) {
  auto clock = Clock::real();
  EXPECT_FALSE(clock->paused());
  const int64_t system_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  EXPECT_LE(std::abs(clock->now_ms() - system_ms), 1000);
  const int64_t before = clock->monotonic_ms();
  clock->sleep_ms(20);
  EXPECT_GE(clock->monotonic_ms() - before, 20);
  clock->advance_ms(1'000'000);  // a no-op on a real clock
  EXPECT_LT(clock->monotonic_ms() - before, 1'000'000);
}

}  // namespace
}  // namespace tapedeck
