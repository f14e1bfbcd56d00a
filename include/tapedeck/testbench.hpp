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
// expected. A Session and its axes are used from one thread at a time (the recorder underneath
// takes records from any thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "tapedeck/clock.hpp"
#include "tapedeck/recorder.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck {

// Replay met an input the tape does not hold (or not in that order).
// `wanted` and `recorded` (when known): the replay's input and the recorded one nearest to it,
// whole; the message shows only where they first differ (first_difference).
class ReplayMiss : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ReplayMiss(const std::string& message, std::string wanted_input, std::string recorded_input)
      : std::runtime_error(message),
        wanted(std::move(wanted_input)),
        recorded(std::move(recorded_input)) {}
  std::string wanted;
  std::string recorded;
};
// Where `replayed` first differs from `recorded`, for a person: the byte, and a little of each
// on either side of it ("at byte 1042:\n  recorded: …\n  replay:   …"), never whole long values.
std::string first_difference(std::string_view recorded, std::string_view replayed);
// `text` whole when short, else its start, an ellipsis and its length.
std::string abbreviated(std::string_view text, size_t most = 160);
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
  // A rule's parts: the host (lowercase), the port when one is given, and whether it stands for
  // the host's subdomains ("*.domain").
  struct Rule {
    std::string host;
    std::optional<uint16_t> port;
    bool subdomains = false;
  };
  // Throws std::invalid_argument for a malformed rule.
  static Rule parse(const std::string& rule);
  // The rule that allows exactly what `url` (scheme://host[:port]/…) reaches: host:port, the
  // scheme's port when none is written. Throws NetworkDenied when the URL names no host.
  static std::string rule_for(const std::string& url);

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

// Where the LLM axis sends requests when recording, and how.
struct LlmOptions {
  std::string endpoint;  // the full URL requests are POSTed to, e.g. …/v1/chat/completions
  std::string api_key;   // sent as a header; never part of the digest nor of the tape
  // "Authorization" sends "Bearer KEY" (OpenAI style); any other name sends the key as is
  // (e.g. "x-api-key", Anthropic style).
  std::string auth_header = "Authorization";
  std::vector<std::string> extra_headers;  // "Name: value", e.g. "anthropic-version: 2023-06-01"
  std::chrono::milliseconds timeout{120'000};
  // What replay does with a request the tape does not hold: fail loudly (the default), serve
  // the next recorded response not served yet and record the request as it was, so that
  // `tapedeck fidelity` shows the divergence (Temporal-style: run on, then compare), or make the
  // call for real, upstream, and record it on the replay's tape (VCR's new_episodes).
  enum class OnMiss { fail, serve_next_in_order, record } on_miss = OnMiss::fail;
};

// A request's own destination, for callers that relay requests (the loopback proxy): the full
// URL and the headers to send, credentials included, in place of LlmOptions' endpoint and key.
struct LlmRoute {
  std::string endpoint;
  std::vector<std::string> headers;  // "Name: value"
};

struct LlmResponse {
  long status = 0;
  std::string body;  // a streamed (SSE) response: the whole event stream
};

// The request digest: lowercase hex BLAKE3 of the request body's canonical form: the JSON with
// every object's keys sorted, no whitespace, strings escaped as tapes escape them, numbers as
// written; minus the top-level fields that carry credentials or change from run to run
// ("api_key", "user", "metadata", "stream_options"). The endpoint and the headers (where
// credentials live) never enter it. Throws std::invalid_argument when the body is not JSON.
std::string llm_request_digest(std::string_view request_json);
// The canonical form itself, as digested.
std::string llm_canonical_request(std::string_view request_json);
// Whether the request asks for a streamed (SSE) answer: a top-level "stream": true. False for
// anything else, a body that is not JSON included.
bool llm_request_streams(std::string_view request_json);

struct ProcessResult {
  int32_t exit_code = 0;  // a signal's death is reported as 128 + the signal, like a shell does
  std::string stdout_bytes;
  std::string stderr_bytes;
  uint64_t duration_ms = 0;
  // The process ids it took in the run's pid namespace (0: not counted); taped with the spawn.
  uint64_t pids = 0;
  // Its place in the order the run's subprocesses started (0: not known); taped with the spawn.
  uint64_t started = 0;
  // Replay: the recorded record this result was served from (in the session's recorded tape);
  // null when recording.
  const kind::ProcessSpawn* recorded = nullptr;
  // Replay: a --fault changed this result: a signal it dies of is its own, not awaited.
  bool injected = false;
  // It ran as part of the agent (kind::ProcessSpawn::descended); taped so.
  bool descended = false;
};

class Session;

// The clock axis: reads and sleeps go through here; both are recorded, and replay serves the
// recorded values (sleeps then cost no wall time).
class TestClock {
 public:
  int64_t now_ms();
  int64_t monotonic_ms();
  void sleep_ms(uint64_t duration_ms);
  // Moves a paused clock forward without a sleep (time that passed outside the program's own
  // waits); nothing is recorded, and a real clock ignores it.
  void advance_ms(uint64_t duration_ms);

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
  // Record only: records a subprocess someone else ran (the interposer's exec shim does).
  void record_finished(const std::string& program, const std::vector<std::string>& args,
                       const std::optional<std::string>& cwd, const ProcessResult& result);
  // Replay only: a subprocess that ran for real, onto the replay's own tape: one the tape does
  // not hold (--on-miss record), or one that was part of the agent, run again.
  void record_unheld(const std::string& program, const std::vector<std::string>& args,
                     const std::optional<std::string>& cwd, const ProcessResult& result);

 private:
  friend class Session;
  ProcessTape(Session& session, std::chrono::milliseconds timeout)
      : session_(session), timeout_(timeout) {}
  void record(const std::string& program, const std::vector<std::string>& args,
              const std::optional<std::string>& cwd, const ProcessResult& result);
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
  const std::filesystem::path& worktree() const { return worktree_; }

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

// The LLM axis. Record POSTs the request (over libcurl, after the network policy allows the
// endpoint) and records llm_call{digest, response}; replay serves the recorded responses for a
// digest in order, never touching the network. A streamed (SSE) response is recorded whole and
// handed back event by event, as it arrived. A miss throws ReplayMiss naming the digest and
// showing how the request differs from the nearest recorded one.
class LlmClient {
 public:
  using OnChunk = std::function<void(std::string_view event)>;
  LlmResponse call(const std::string& request_json, const OnChunk& on_chunk = {},
                   const LlmRoute* route = nullptr);

 private:
  friend class Session;
  LlmClient(Session& session, LlmOptions options)
      : session_(session), options_(std::move(options)) {}
  Session& session_;
  LlmOptions options_;
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
  Testbench& llm(LlmOptions options);
  // The header's script path and argv.
  Testbench& describe(std::string script_path, std::vector<std::string> argv);
  // Streams the session's tape (the recording, or the replay's emitted tape) as records are
  // made, so that a run that dies keeps everything flushed before (see Recorder::stream_to).
  Testbench& stream(StreamOptions options = {});

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
  std::optional<LlmOptions> llm_;
  NetworkPolicy network_ = NetworkPolicy::deny_all();
  std::optional<std::string> script_path_;
  std::vector<std::string> argv_;
  std::optional<StreamOptions> stream_;
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
  // Throws std::logic_error when the LLM axis was not enabled.
  LlmClient& llm();
  const NetworkPolicy& network() const { return network_; }
  Recorder& recorder() { return *recorder_; }
  // Replay: the tape being replayed (null when recording).
  const Tape* recorded_tape() const { return recorded_ ? &*recorded_ : nullptr; }

  // Persists this session's tape (record: the recording; replay: the emitted tape, if any) and
  // returns it. Throws what the stream met (disk full, …) when the session streams.
  Tape finalize();
  // The same without handing the tape back: a streaming session's tape is not read back.
  void finish();
  // Credentials the session learned once records were written (a header the LLM proxy saw
  // after the file holding it was read): when it ends, the written tape is scrubbed of them
  // (secrets::scrub_tape), and this says how many places were.
  uint64_t late_scrubbed() const { return late_scrubbed_; }

 private:
  friend class Testbench;
  friend class TestClock;
  friend class ProcessTape;
  friend class Overlay;
  friend class LlmClient;
  explicit Session(const Testbench& bench);

  // Replay: the next unconsumed recorded record of kind K (in tape order), or ReplayMiss.
  template <typename K>
  const K& next_recorded(const char* what);
  // Ends the session: persists its tape and returns it when it was kept in memory (a streamed
  // one is on disk already).
  std::optional<Tape> end();

  Testbench::Mode mode_;
  std::optional<std::filesystem::path> output_;
  Header header_;
  std::shared_ptr<Clock> clock_;
  std::shared_ptr<Recorder> recorder_;
  std::optional<RecorderGuard> active_;
  TestClock test_clock_{*this};
  std::optional<ProcessTape> process_tape_;
  std::optional<Overlay> overlay_;
  std::optional<LlmClient> llm_;
  // Canonical requests by digest: written into the tape's sidecar so that a replay miss can
  // show how a request differs from the recorded ones. Replay: responses by digest, in order.
  std::map<std::string, std::string> llm_requests_;
  std::map<std::string, std::deque<const kind::LlmCall*>> llm_calls_;
  std::vector<const kind::LlmCall*> llm_in_order_;  // every recorded call, in tape order
  std::set<const kind::LlmCall*> llm_served_;
  NetworkPolicy network_;
  bool finalized_ = false;
  uint64_t late_scrubbed_ = 0;

  // Replay state: the recorded tape, a cursor per kind, and subprocess results by tuple.
  std::optional<Tape> recorded_;
  std::map<size_t, size_t> cursors_;  // RecordKind index -> next record position to look at
  std::map<std::string, std::deque<const kind::ProcessSpawn*>> spawns_;
};

}  // namespace tapedeck
