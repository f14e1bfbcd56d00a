// Recorder throughput into memory: one thread, and two threads sharing one recorder.
// bench/run.sh turns the two into the scaling ratio the acceptance asks for.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <thread>

#include "tapedeck/recorder.hpp"
#include "tapedeck/secrets.hpp"

namespace {

// glibc and libstdc++ skip atomic operations (shared_ptr counts, some lock paths) while a process
// has never started a thread, and take them for good once it has. Streaming starts a thread, so
// without this every benchmark after the first streaming one would run slower than those before
// it. Real hosts have threads; so does this process, from the start.
const bool started_a_thread = [] {
  std::thread([] {}).join();
  return true;
}();

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

// One thread recording into memory, and the same recording streamed to a tape (the flusher
// encodes and writes on another thread). Both are timed alike: what the recording program pays,
// the record() calls; the final flush (finalize) and the teardown fall outside the timed loop.
// bench/run.sh reports streaming's cost as the ratio of the two.
void record_clock_mix(benchmark::State& state, Recorder& recorder) {
  uint64_t i = 0;
  for (auto _ : state) {
    if (i % 2 == 0) {
      recorder.record(kind::ClockRead{tapedeck::ClockSource::wall, int64_t(i)});
    } else {
      recorder.record(kind::ClockSleep{i});
    }
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_RecordMemory(benchmark::State& state) {
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  record_clock_mix(state, *recorder);
}
BENCHMARK(BM_RecordMemory)
    ->UseRealTime()
    ->Iterations(1'000'000)
    ->Repetitions(7)
    ->ReportAggregatesOnly(true);

void BM_RecordStreaming(benchmark::State& state) {
  const std::filesystem::path tape =
      std::filesystem::temp_directory_path() / ("tapedeck-bench-" + std::to_string(::getpid()));
  std::filesystem::remove(tape);
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  // Flushing every 10 ms (the default is 100 ms) so that several flushes run during the timed
  // loop, concurrently with recording.
  tapedeck::StreamOptions options;
  options.flush_interval = std::chrono::milliseconds(10);
  recorder->stream_to(tape, tapedeck::Header::current(), options);
  record_clock_mix(state, *recorder);
  recorder->finalize();  // after the timed loop: not measured
  std::filesystem::remove(tape);
}
BENCHMARK(BM_RecordStreaming)
    ->UseRealTime()
    ->Iterations(1'000'000)
    ->Repetitions(7)
    ->ReportAggregatesOnly(true);

// Small records that carry text: every payload passes the credential scan (and the exact-value
// redaction of a secret the run was given) before it is kept. bench/run.sh holds this to the same
// 10 M records/s as the clock mix.
void BM_RecordSmallScanned(benchmark::State& state) {
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  recorder->add_secret("a-value-the-run-was-given");
  const std::string answers[] = {"ok", "The answer is 42.", "{\"choices\":[]}", "done\n"};
  uint64_t i = 0;
  for (auto _ : state) {
    recorder->record(kind::LlmCall{"digest", recorder->payload_from_bytes(answers[i % 4])});
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecordSmallScanned)
    ->UseRealTime()
    ->Iterations(1'000'000)
    ->Repetitions(7)
    ->ReportAggregatesOnly(true);

// The scan alone on the same small texts: its share of BM_RecordSmallScanned (the rest is the
// payload's BLAKE3 hash, which every payload carries, and the record's allocation).
void BM_ScanSmall(benchmark::State& state) {
  const std::string answers[] = {"ok", "The answer is 42.", "{\"choices\":[]}", "done\n"};
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(tapedeck::secrets::find(answers[i++ % 4]));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ScanSmall)->UseRealTime()->Repetitions(7)->ReportAggregatesOnly(true);

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
