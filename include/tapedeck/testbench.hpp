// The testbench: one builder that composes the axes a host opts into, records what they consume
// on a tape, and replays it. A Session restores everything when it goes out of scope.
//
//   auto session = tapedeck::Testbench::recording("run.tape")
//                      .paused_clock(1'700'000'000'000)
//                      .subprocesses(std::chrono::seconds(30))
//                      .network(tapedeck::NetworkPolicy::deny_all().allow("api.openai.com"))
//                      .start();
//   session->clock().sleep_ms(10'000);              // virtual: returns at once
//   auto result = session->processes().run("git", {"status"}, "/repo");
//   session->finalize();                            // persists run.tape
//
// Replaying the same host against Testbench::replaying("run.tape") serves every recorded input
// back (clock values, subprocess results) without the outside world, and writes its own tape
// for `tapedeck fidelity`. An input the tape does not hold throws ReplayMiss naming what it
// expected.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "tapedeck/clock.hpp"
#include "tapedeck/recorder.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck {

// Replay met an input the tape does not hold (or not in that order).
class ReplayMiss : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A connection the network policy does not allow.
class NetworkDenied : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A subprocess that outlived its timeout (it was killed).
class ProcessTimeout : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Deny by default; allow rules are "host", "*.domain" (the domain's subdomains, not the domain
// itself) or "host:port" (that port only). A rule without a port allows every port.
class NetworkPolicy {
 public:
  static NetworkPolicy deny_all() { return NetworkPolicy(); }
  // Throws std::invalid_argument for a malformed rule.
  NetworkPolicy& allow(const std::string& rule);
  // The rule that allows host:port, if any.
  std::optional<std::string> allowing_rule(const std::string& host, uint16_t port) const;
  // Parses scheme://host[:port]/… and throws NetworkDenied unless a rule allows it; the message
  // names the host, the port and the rules in force.
  void require(const std::string& url) const;
  const std::vector<std::string>& rules() const { return rules_; }

 private:
  std::vector<std::string> rules_;
};

struct ProcessResult {
  int32_t exit_code = 0;  // a signal's death is reported as 128 + the signal, like a shell does
  std::string stdout_bytes;
  std::string stderr_bytes;
  uint64_t duration_ms = 0;
};

class Session;

// The clock axis: reads and sleeps go through here; both are recorded, and replay serves the
// recorded values (sleeps then cost no wall time).
class TestClock {
 public:
  int64_t now_ms();
  int64_t monotonic_ms();
  void sleep_ms(uint64_t duration_ms);

 private:
  friend class Session;
  explicit TestClock(Session& session) : session_(session) {}
  Session& session_;
};

// The subprocess axis: record spawns for real (posix_spawn, pipes, no shell, a timeout); replay
// serves the recorded result of the same (program, args, cwd) without spawning, the same tuple's
// recordings in order.
class ProcessTape {
 public:
  ProcessResult run(const std::string& program, const std::vector<std::string>& args,
                    const std::optional<std::string>& cwd = std::nullopt);

 private:
  friend class Session;
  ProcessTape(Session& session, std::chrono::milliseconds timeout)
      : session_(session), timeout_(timeout) {}
  Session& session_;
  std::chrono::milliseconds timeout_;
};

// The filesystem axis: copy-on-write over a worktree. Reads pass through (or see the layer),
// writes and deletes stay in the layer; each is recorded (file_read, file_write, file_delete).
// At the end, diff() shows the layer against the worktree, and apply() or discard() settles it.
// Paths are relative to the worktree; one that would leave it is refused.
class Overlay {
 public:
  // The file's bytes as the run sees them; throws std::runtime_error when it does not exist.
  std::string read(const std::string& path);
  bool exists(const std::string& path) const;
  void write(const std::string& path, std::string bytes);
  void remove(const std::string& path);

  // Paths the layer changed, sorted.
  std::vector<std::string> changed_paths() const;
  // A unified diff (--- a/PATH, +++ b/PATH, hunks from dtl) of every changed path.
  std::string diff() const;
  // Writes the layer into the worktree (deletes included), then empties it.
  void apply();
  void discard() { layer_.clear(); }

 private:
  friend class Session;
  Overlay(Session& session, std::filesystem::path worktree)
      : session_(session), worktree_(std::move(worktree)) {}
  std::filesystem::path resolve(const std::string& path) const;
  std::optional<std::string> read_worktree(const std::string& path) const;

  Session& session_;
  std::filesystem::path worktree_;
  std::map<std::string, std::optional<std::string>> layer_;  // nullopt: deleted in the layer
};

class Testbench {
 public:
  enum class Mode { record, replay };

  // Records a run onto `tape` (written at finalize).
  static Testbench recording(std::filesystem::path tape);
  // Replays `recorded`; the replay's own tape goes to `emit` when given.
  static Testbench replaying(std::filesystem::path recorded,
                             std::optional<std::filesystem::path> emit = std::nullopt);

  // A clock paused at `wall_ms` (replay: at the recording's start, whatever is given here).
  Testbench& paused_clock(int64_t wall_ms);
  Testbench& subprocesses(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Testbench& network(NetworkPolicy policy);
  Testbench& overlay(std::filesystem::path worktree);
  // The header's script path and argv.
  Testbench& describe(std::string script_path, std::vector<std::string> argv);

  // Starts the session: its recorder becomes this thread's active one. Throws TapeError when a
  // replay's tape cannot be read.
  std::unique_ptr<Session> start();

 private:
  Testbench(Mode mode, std::filesystem::path tape, std::optional<std::filesystem::path> emit)
      : mode_(mode), tape_(std::move(tape)), emit_(std::move(emit)) {}
  friend class Session;
  Mode mode_;
  std::filesystem::path tape_;
  std::optional<std::filesystem::path> emit_;
  std::optional<int64_t> paused_at_;
  std::optional<std::chrono::milliseconds> process_timeout_;
  std::optional<std::filesystem::path> worktree_;
  NetworkPolicy network_ = NetworkPolicy::deny_all();
  std::optional<std::string> script_path_;
  std::vector<std::string> argv_;
};

class Session {
 public:
  ~Session();  // finalizes if the host did not, and restores the previous active recorder
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Testbench::Mode mode() const { return mode_; }
  TestClock& clock() { return test_clock_; }
  // Throws std::logic_error when the subprocess axis was not enabled.
  ProcessTape& processes();
  // Throws std::logic_error when the filesystem axis was not enabled.
  Overlay& files();
  const NetworkPolicy& network() const { return network_; }
  Recorder& recorder() { return *recorder_; }

  // Persists this session's tape (record: the recording; replay: the emitted tape, if any) and
  // returns it. Replay also checks that every recorded input was consumed: ReplayMiss otherwise.
  Tape finalize();

 private:
  friend class Testbench;
  friend class TestClock;
  friend class ProcessTape;
  friend class Overlay;
  explicit Session(const Testbench& bench);

  // Replay: the next unconsumed recorded record of kind K (in tape order), or ReplayMiss.
  template <typename K>
  const K& next_recorded(const char* what);

  Testbench::Mode mode_;
  std::optional<std::filesystem::path> output_;
  Header header_;
  std::shared_ptr<Clock> clock_;
  std::shared_ptr<Recorder> recorder_;
  std::optional<RecorderGuard> active_;
  TestClock test_clock_{*this};
  std::optional<ProcessTape> process_tape_;
  std::optional<Overlay> overlay_;
  NetworkPolicy network_;
  bool finalized_ = false;

  // Replay state: the recorded tape, a cursor per kind, and subprocess results by tuple.
  std::optional<Tape> recorded_;
  std::map<size_t, size_t> cursors_;  // RecordKind index -> next record position to look at
  std::map<std::string, std::deque<const kind::ProcessSpawn*>> spawns_;
};

}  // namespace tapedeck
