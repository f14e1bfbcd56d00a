// Recorder throughput into memory: one thread, and two threads sharing one recorder.
// bench/run.sh turns the two into the scaling ratio the acceptance asks for.
#include <benchmark/benchmark.h>

#include "tapedeck/recorder.hpp"

namespace {

using tapedeck::Clock;
using tapedeck::Recorder;
namespace kind = tapedeck::kind;

std::shared_ptr<Recorder> shared_recorder;

void BM_RecordSmall(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  }
  // Threads start their timed loops together, after thread 0 has made the recorder.
  uint64_t i = 0;
  for (auto _ : state) {
    if (i % 2 == 0) {
      shared_recorder->record(kind::ClockRead{tapedeck::ClockSource::wall, int64_t(i)});
    } else {
      shared_recorder->record(kind::ClockSleep{i});
    }
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  if (state.thread_index() == 0) {
    state.counters["records"] = static_cast<double>(shared_recorder->record_count());
  }
}
// A fixed count per thread, repeated: after the first repetition the recorder's chunk pool is
// warm, so the median measures recording, not the kernel clearing fresh pages (bench/run.sh
// reports the cold first run beside it).
BENCHMARK(BM_RecordSmall)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Iterations(1'000'000)
    ->Repetitions(7)
    ->ReportAggregatesOnly(true);

void BM_RecordRealClock(benchmark::State& state) {
  auto recorder = std::make_shared<Recorder>(Clock::real());
  uint64_t i = 0;
  for (auto _ : state) recorder->record(kind::ClockSleep{i++});
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecordRealClock);

void BM_RecordFileRead(benchmark::State& state) {
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  const std::string path = "/work/src/module_3/file_42.py";
  const std::string hash(64, 'a');
  uint64_t i = 0;
  for (auto _ : state) recorder->record(kind::FileRead{path, hash, i++});
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecordFileRead);

}  // namespace

BENCHMARK_MAIN();
