// A host program that embeds tapedeck: it plays a small "agent" run (reads the clock, sleeps,
// calls a pretend LLM, reads and writes files, runs a subprocess) under a paused clock, records
// every input on a tape, and persists it. Usage: record_host OUT.tape
#include <cstdio>
#include <string>

#include "tapedeck/error.hpp"
#include "tapedeck/recorder.hpp"

using namespace tapedeck;

namespace {

// What a testbench axis would do for each effect; here the host records by hand.
void agent_step(Recorder& recorder, Clock& clock, int step) {
  with_active_recorder([&](Recorder&) -> std::optional<RecordKind> {
    return kind::ClockRead{ClockSource::wall, clock.now_ms()};
  });

  const std::string prompt = "step " + std::to_string(step) + ": what next?";
  // A long answer on the last step, so the tape shows both payload paths (inline and CAS).
  const std::string answer =
      step == 2 ? std::string(6000, 'x') : R"({"choices":[{"text":"run the tests"}]})";
  with_active_recorder([&](Recorder& active) -> std::optional<RecordKind> {
    return kind::LlmCall{content_hash(prompt), active.payload_from_bytes(answer)};
  });

  clock.sleep_ms(1500);  // a paused clock: costs no wall time, moves virtual time
  with_active_recorder(
      [&](Recorder&) -> std::optional<RecordKind> { return kind::ClockSleep{1500}; });

  const std::string source = "int main() { return " + std::to_string(step) + "; }\n";
  recorder.record(kind::FileRead{"src/main.c", content_hash(source), source.size()});
  recorder.record(kind::ProcessSpawn{"make",
                                     {"test"},
                                     std::string("/work/project"),
                                     step == 2 ? 0 : 1,
                                     320,
                                     recorder.payload_from_bytes("ran 12 tests\n"),
                                     recorder.payload_from_bytes(step == 2 ? "" : "1 failed\n")});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: record_host OUT.tape\n");
    return 2;
  }
  try {
    auto clock = Clock::paused_at(1'700'000'000'000);
    auto recorder = std::make_shared<Recorder>(clock);
    RecorderGuard active = install_recorder(recorder);

    for (int step = 0; step < 3; ++step) agent_step(*recorder, *clock, step);
    {
      auto finalize = enter_phase(Phase::runtime_finalize);
      const std::string report = "# report\nall tests pass\n";
      recorder->record(kind::FileWrite{"out/report.md", content_hash(report), report.size()});
      recorder->record(kind::FileDelete{"tmp/scratch.txt"});
    }

    Tape tape = recorder->snapshot(
        Header::current(clock->now_ms(), "examples/record_host.cpp", {argv[0], argv[1]}));
    tape.persist(argv[1]);
    std::printf("recorded %zu records to %s\n", tape.records.size(), argv[1]);
  } catch (const TapeError& error) {
    std::fprintf(stderr, "record_host: %s\n", error.what());
    return 2;
  }
  return 0;
}
