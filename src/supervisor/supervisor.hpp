// The supervisor behind `tapedeck run` and `tapedeck replay`: it owns the session (and so the
// one recorder of the run), starts the program with the preload library, and serves every
// process of the tree over a Unix socket, so that seq is global and gap-free across the tree.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/workspace_view.hpp"
#include "tapedeck/faults.hpp"
#include "tapedeck/recorder.hpp"

namespace tapedeck::supervisor {

struct RunOptions {
  enum class Mode { untaped, record, replay } mode = Mode::untaped;
  std::filesystem::path tape;                  // record: written; replay: read
  std::optional<std::filesystem::path> emit;   // replay: the replay's own tape
  std::filesystem::path workspace;             // file effects are taped under here only
  Isolation isolation = Isolation::automatic;  // replay: how the workspace is kept unchanged
  std::string llm_upstream;                    // record: where the LLM proxy relays
  std::vector<std::string> allow;              // HOST[:PORT] the program may connect to
  FsyncPolicy fsync = FsyncPolicy::at_phase_and_finish;
  std::filesystem::path preload_library;  // libtapedeck_preload.so
  std::filesystem::path exec_shim;        // tapedeck-exec
  std::vector<std::string> command;       // PROGRAM ARGS…
  std::vector<Fault> faults;              // replay: injected where the recording had none
  // replay: an LLM call the tape does not hold goes to llm_upstream and is recorded on `emit`
  // (--on-miss record), instead of stopping the run.
  bool record_misses = false;
  // Which workspace files are code (read as they are now on replay) and which are data (served
  // as recorded), past the default rule (supervisor/code_rule.hpp): --code and --data globs.
  std::vector<std::string> code_globs;
  std::vector<std::string> data_globs;
  // record: programs kept black boxes even when they call the LLM (--black-box GLOB, matched
  // against the program's name and its path): no preload, their LLM calls straight upstream.
  std::vector<std::string> black_box_globs;
  // record: each thread's clock reads in a lane of its own (TAPEDECK_THREAD_LANES; a replay
  // follows its tape).
  bool thread_lanes = false;
  // After SIGTERM (or SIGHUP) reaches tapedeck, and is passed on, how long the program has to
  // end before its whole tree is killed (--kill-after).
  std::chrono::milliseconds kill_after{5000};
};

struct RunOutcome {
  int exit_code = 0;                // the program's (128 + signal when a signal ended it)
  std::optional<std::string> miss;  // replay met an input the tape does not hold
  std::string miss_wanted;          // that input, whole (a command, a request), when known
  std::string miss_recorded;        // and the recorded one nearest to it
  uint64_t records = 0;             // on the tape written (record, or replay's emitted tape)
  uint64_t unused_inputs = 0;       // replay: recorded inputs the replay never asked for
  std::string unused_example;       // the first of them
  std::chrono::milliseconds wall{0};
  std::vector<std::string> warnings;           // e.g. a static binary the preload cannot reach
  Isolation isolation = Isolation::automatic;  // replay: the view it ran in
  double isolation_setup_ms = 0;               // replay: the private view's set-up time
  std::string view_layer;                      // replay: "overlayfs", "bind-mounted copy" or "copy"
  bool floor = false;  // the system-call floor held beneath the tree (see floor/floor.hpp)
  // replay: the tree re-ran nothing that consumed the tape (no LLM answer, no data file, no
  // sleep was served) and changed no workspace file itself: every input was a subprocess's
  // played-back result, so the program's own code was not tested (a wrapper such as `timeout`
  // or `sh run.sh` around the agent). Clock reads and randomness do not count: a runtime
  // takes them as it starts.
  bool hollow = false;
  // Where the wall time went: tapedeck's set-up until the program started, the program's run
  // until its root exited, and tapedeck's wind-down after it (the tape finished, the view gone).
  double setup_ms = 0;
  double program_ms = 0;
  double finish_ms = 0;
};

// Runs the program to its end. Throws std::runtime_error (or TapeError) when the run cannot be
// set up: the tape does not load, the program does not exist, the socket cannot be made.
RunOutcome run(const RunOptions& options);

// What `program` is linked with, as far as the preload library is concerned (a script is its
// interpreter): the preload serves a program dynamically linked to glibc; the others are served
// by the system-call floor's whole reach.
enum class Linkage { glibc_dynamic, static_binary, go };
Linkage linkage_of(const std::filesystem::path& program);

// What escapes the tape for `program` (of `linkage`) when the preload library cannot reach it
// (statically linked, Go), or nullopt; `floor_serves`: the floor's whole reach holds beneath it;
// `go_durations_taped`: its runtime.nanotime can be patched (GoClockSites::patchable).
std::optional<std::string> interposition_warning(const std::filesystem::path& program,
                                                 Linkage linkage, bool floor_serves,
                                                 bool go_durations_taped);

}  // namespace tapedeck::supervisor
