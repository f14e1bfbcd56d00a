// Replaying a run that slept 10 s of virtual time: the sleeps are served on a paused clock, so a
// replay should take a sliver of a second of wall time. bench/run.sh prints the ratio.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "tapedeck/testbench.hpp"

namespace {

void sleepy_host(tapedeck::Session& session) {
  for (int i = 0; i < 10; ++i) {
    session.clock().now_ms();
    session.clock().sleep_ms(1000);  // 10 x 1 s
  }
}

void BM_ReplayTenSecondsOfSleep(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("tapedeck-sleep-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    auto session =
        tapedeck::Testbench::recording(dir / "sleepy.tape").paused_clock(1'700'000'000'000).start();
    sleepy_host(*session);
  }
  for (auto _ : state) {
    auto session = tapedeck::Testbench::replaying(dir / "sleepy.tape").start();
    sleepy_host(*session);
    benchmark::DoNotOptimize(session->finalize());
  }
  state.counters["virtual_seconds_slept"] = 10;
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ReplayTenSecondsOfSleep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
