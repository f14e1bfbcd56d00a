// A suite of recordings replayed and judged in one go: what `tapedeck check` runs in CI.
//
// The manifest. `tapedeck run --emit-tape T` writes T.manifest beside the tape: one JSON object
// saying how to replay it without being told again,
//   {"tapedeck_manifest":1,"command":["python3","agent.py"],"cwd":"ws","workspace":"ws"}
// plus an optional "fidelity" ("semantic", "outcome", …) a person may add to judge that tape
// another way. cwd and workspace are relative to the manifest's folder, so a folder of tapes
// committed beside the code it recorded replays from any checkout of it. The header's argv is
// the same command; the manifest adds where it ran, which the tape format has no field for (and
// the reference reader would drop).
//
// The runner. Each tape is replayed by its own `tapedeck replay` process (so a crash, a hang or
// a leak stays with its tape, and a CI matrix can shard a suite by tape just as well), with its
// replay's tape written beside its stdout and stderr, then judged by the fidelity oracle against
// the recording. A case passes when the replay ran to its end and nothing diverged.
// What a caller may assume: results come back in the order the tapes were given whatever -j
// is; a replay that outlives its timeout is killed with its whole process group and reported,
// never waited on; nothing is written outside `replays_dir`.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tapedeck/fidelity.hpp"

namespace tapedeck::suite {

struct Manifest {
  std::vector<std::string> command;    // the program and its arguments
  std::filesystem::path cwd;           // where it was started (absolute once read)
  std::filesystem::path workspace;     // the --workspace of the recording (absolute once read)
  std::optional<fidelity::Mode> mode;  // how this tape is judged, when not the suite's default
  // The recording's --code and --data globs (`"code":[…]`, `"data":[…]`, written when given):
  // a replay classifies the workspace's files alike.
  std::vector<std::string> code_globs = {};
  std::vector<std::string> data_globs = {};
};

// T.manifest for the tape T (a pack's: the one packed in it, where this process unpacked it;
// its paths are relative to the pack's folder).
std::filesystem::path manifest_path_for(const std::filesystem::path& tape);
// Written whole or not at all; cwd and workspace stored relative to the manifest's folder.
void write_manifest(const std::filesystem::path& tape, const Manifest& manifest);
// The manifest's text for a tape in `folder` (cwd and workspace relative to it).
std::string manifest_json(const Manifest& manifest, const std::filesystem::path& folder);
// Throws TapeError naming the manifest (missing, not JSON, a field of the wrong type).
Manifest read_manifest(const std::filesystem::path& tape);

// The tapes named, and every *.tape and *.tape.zst under the folders named (recursively, sorted
// by path; sidecars and shared stores skipped). Throws TapeError for a path that is neither.
std::vector<std::filesystem::path> find_tapes(const std::vector<std::filesystem::path>& paths);

// A folder's shared content store (DIR/.tapedeck-cas, see cas_dir_for) cleared of the blobs no
// tape of the folder names: what `tapedeck gc` does.
struct StoreCollection {
  std::filesystem::path store;
  uint64_t tapes = 0;    // tapes of the folder that keep their entries in the store
  uint64_t named = 0;    // distinct blobs they name that the store holds
  uint64_t removed = 0;  // blobs no tape names (removed unless a dry run)
  uint64_t removed_bytes = 0;
};
// Every tape of `folder` (not its subfolders: each folder has its own store) is read first; one
// that cannot be read stops it before anything is removed (TapeError naming the tape), since the
// blobs it names are unknown. Throws TapeError when the folder has no store.
StoreCollection collect_store_garbage(const std::filesystem::path& folder, bool dry_run);

struct CaseResult {
  enum class Status {
    passed,     // replayed to its end, no divergence
    diverged,   // the fidelity oracle found a divergence
    stopped,    // the replay stopped: an input the tape does not hold, or tapedeck failed
    timed_out,  // killed after the timeout
    error,      // no manifest, an unreadable tape: never replayed
    // The replay re-ran nothing that consumed the tape: every input was a subprocess's
    // played-back result (an agent started through a wrapper), so it tested nothing. Not a pass.
    untested,
  };
  std::filesystem::path tape;
  Status status = Status::error;
  std::string mode;     // the fidelity mode it was judged by
  std::string message;  // for anything but passed: what went wrong, the first divergence first
  uint64_t divergences = 0;
  int replay_exit = -1;  // tapedeck replay's exit code
  double seconds = 0;
  std::filesystem::path replay_tape;  // kept in replays_dir
  std::string replay_stdout;          // the program's output on replay (tail, for reports)
  std::string replay_stderr;
  // What is no divergence but worth knowing: the program's code changed since the recording
  // (fidelity's notes), a data file changed since and was served as recorded (the replay's).
  std::vector<std::string> notes;

  bool passed() const { return status == Status::passed; }
};
std::string_view to_string(CaseResult::Status status);

struct CheckOptions {
  std::filesystem::path tapedeck;                  // the `tapedeck` binary the replays run
  unsigned jobs = 1;                               // replays at once
  fidelity::Mode mode = fidelity::Mode::semantic;  // unless the manifest says otherwise
  bool mode_overrides_manifest = false;
  std::filesystem::path replays_dir;  // each case's replay tape, stdout and stderr
  std::chrono::seconds timeout{600};  // per tape
  // Called from the runner's threads, one call at a time: a case began, or ended.
  std::function<void(const std::filesystem::path& tape)> on_start;
  std::function<void(const CaseResult& result)> on_done;
};

std::vector<CaseResult> check(const std::vector<std::filesystem::path>& tapes,
                              const CheckOptions& options);

// JUnit XML as CI systems read it: one <testsuite> named `suite_name`, one <testcase> per tape
// (classname its folder, name its file), a <failure> whose message is the first divergence, the
// replay's output in <system-out>/<system-err> for cases that did not pass.
std::string junit_xml(const std::vector<CaseResult>& results, const std::string& suite_name,
                      double total_seconds);

}  // namespace tapedeck::suite
