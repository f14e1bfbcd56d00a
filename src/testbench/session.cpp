#include <algorithm>
#include <mutex>
#include <type_traits>

#include "tapedeck/cas.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/testbench.hpp"
#include "testbench/process_key.hpp"

namespace tapedeck {

// ---- builder -------------------------------------------------------------------------------

Testbench Testbench::recording(std::filesystem::path tape) {
  return Testbench(Mode::record, std::move(tape), std::nullopt);
}

Testbench Testbench::replaying(std::filesystem::path recorded,
                               std::optional<std::filesystem::path> emit) {
  return Testbench(Mode::replay, std::move(recorded), std::move(emit));
}

Testbench& Testbench::paused_clock(int64_t wall_ms) {
  paused_at_ = wall_ms;
  return *this;
}

Testbench& Testbench::subprocesses(std::chrono::milliseconds timeout) {
  process_timeout_ = timeout;
  return *this;
}

Testbench& Testbench::network(NetworkPolicy policy) {
  network_ = std::move(policy);
  return *this;
}

Testbench& Testbench::overlay(std::filesystem::path worktree) {
  worktree_ = std::move(worktree);
  return *this;
}

Testbench& Testbench::llm(LlmOptions options) {
  llm_ = std::move(options);
  return *this;
}

Testbench& Testbench::describe(std::string script_path, std::vector<std::string> argv) {
  script_path_ = std::move(script_path);
  argv_ = std::move(argv);
  return *this;
}

Testbench& Testbench::stream(StreamOptions options) {
  stream_ = std::move(options);
  return *this;
}

std::unique_ptr<Session> Testbench::start() {
  return std::unique_ptr<Session>(new Session(*this));
}

// ---- session -------------------------------------------------------------------------------

namespace {

// A replay's stamps, in the recording's time: its k-th record other than a clock read takes the
// stamps of the recording's k-th, so a replay that did what the recording did is stamped alike
// (and `view --against` draws the two alike). A clock read takes the latest stamp given. Past
// the recording's records, time moves on from its last stamp as the replay's own clock moves
// (its sleeps).
Recorder::Stamper stamps_of_recording(const Tape& recording) {
  struct State {
    std::mutex mutex;
    std::vector<Recorder::Stamps> recorded;
    size_t next = 0;
    Recorder::Stamps latest;
    Recorder::Stamps last_recorded;  // the last recorded stamps given
    Recorder::Stamps clock_then;     // and the replay's clock when they were
  };
  auto state = std::make_shared<State>();
  for (const Record& record : recording.records) {
    if (std::holds_alternative<kind::ClockRead>(record.kind)) continue;
    state->recorded.push_back({record.virtual_time_ms, record.monotonic_ms});
  }
  if (!recording.records.empty()) {
    state->latest = {recording.records.front().virtual_time_ms,
                     recording.records.front().monotonic_ms};
  }
  return [state](const RecordKind& kind, Recorder::Stamps clock) {
    std::lock_guard lock(state->mutex);
    Recorder::Stamps& latest = state->latest;
    if (std::holds_alternative<kind::ClockRead>(kind)) return latest;
    Recorder::Stamps stamps;
    if (state->next < state->recorded.size()) {
      stamps = state->recorded[state->next++];
      state->last_recorded = latest = {std::max(latest.virtual_time_ms, stamps.virtual_time_ms),
                                       std::max(latest.monotonic_ms, stamps.monotonic_ms)};
      state->clock_then = clock;
      return latest;
    }
    const Recorder::Stamps& last = state->last_recorded;
    const Recorder::Stamps& then = state->clock_then;
    latest = {
        std::max(latest.virtual_time_ms,
                 last.virtual_time_ms + clock.virtual_time_ms - then.virtual_time_ms),
        std::max(latest.monotonic_ms, last.monotonic_ms + clock.monotonic_ms - then.monotonic_ms)};
    return latest;
  };
}

}  // namespace

Session::Session(const Testbench& bench) : mode_(bench.mode_), network_(bench.network_) {
  if (mode_ == Testbench::Mode::record) {
    output_ = bench.tape_;
    clock_ = bench.paused_at_ ? Clock::paused_at(*bench.paused_at_) : Clock::real();
    // A command line can carry a key (--api-key sk-…): the header is on disk like any record.
    std::optional<std::string> script_path = bench.script_path_;
    if (script_path) secrets::redact(*script_path);
    std::vector<std::string> argv = bench.argv_;
    for (std::string& arg : argv) secrets::redact(arg);
    header_ = Header::current(clock_->now_ms(), std::move(script_path), std::move(argv));
  } else {
    output_ = bench.emit_;
    recorded_ = Tape::load(bench.tape_);
    // Replay runs on a paused clock from the recording's start: sleeps cost no wall time, and a
    // recording made on a paused clock is stamped identically.
    header_ = recorded_->header;
    clock_ = Clock::paused_at(header_.started_at_unix_ms.value_or(0));
    for (const Record& record : recorded_->records) {
      if (const auto* call = std::get_if<kind::LlmCall>(&record.kind)) {
        llm_calls_[call->request_digest].push_back(call);
        llm_in_order_.push_back(call);
      }
      if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&record.kind)) {
        spawns_[detail::process_tuple_key(spawn->program, spawn->args, spawn->cwd)].push_back(
            spawn);
      }
    }
    // Same-named subprocesses are handed out as they start: in the order they started in the
    // recording where it was taped for them all (records are made as they end), else in the
    // tape's order.
    for (auto& [key, queue] : spawns_) {
      const auto unknown = [](const kind::ProcessSpawn* spawn) { return spawn->started == 0; };
      if (std::any_of(queue.begin(), queue.end(), unknown)) continue;
      std::stable_sort(queue.begin(), queue.end(),
                       [](const kind::ProcessSpawn* a, const kind::ProcessSpawn* b) {
                         return a->started < b->started;
                       });
    }
  }
  recorder_ = std::make_shared<Recorder>(clock_);
  if (recorded_) recorder_->stamp_with(stamps_of_recording(*recorded_));
  if (bench.stream_ && output_) recorder_->stream_to(*output_, header_, *bench.stream_);
  active_.emplace(recorder_);
  if (bench.process_timeout_) process_tape_.emplace(ProcessTape(*this, *bench.process_timeout_));
  if (bench.worktree_) overlay_.emplace(Overlay(*this, *bench.worktree_));
  if (bench.llm_) llm_.emplace(LlmClient(*this, *bench.llm_));
}

Session::~Session() {
  if (!finalized_) {
    try {
      finish();
    } catch (...) {
      // A destructor cannot report it; hosts that care call finalize() themselves.
    }
  }
}

ProcessTape& Session::processes() {
  if (!process_tape_) throw std::logic_error("the subprocess axis is not enabled (subprocesses())");
  return *process_tape_;
}

Overlay& Session::files() {
  if (!overlay_) throw std::logic_error("the filesystem axis is not enabled (overlay())");
  return *overlay_;
}

LlmClient& Session::llm() {
  if (!llm_) throw std::logic_error("the LLM axis is not enabled (llm())");
  return *llm_;
}

Tape Session::finalize() {
  std::optional<Tape> tape = end();
  // A streamed tape is read back: its records are on disk, not in memory.
  return tape ? std::move(*tape) : recorder_->snapshot(header_);
}

void Session::finish() {
  end();
}

std::optional<Tape> Session::end() {
  finalized_ = true;
  std::optional<Tape> tape;
  if (recorder_->streaming()) {
    recorder_->finalize();
  } else {
    tape = recorder_->snapshot(header_);
    if (output_) tape->persist(*output_);
  }
  if (output_) {
    // Kept for the diff of a replay's miss, under their digest: one that holds a credential
    // cannot be redacted (it would no longer hash to its name), so it is not kept.
    std::map<std::string, std::string> requests;
    for (const auto& [digest, body] : llm_requests_) {
      std::string probe = body;
      if (recorder_->redact(probe) == 0) requests.emplace(digest, body);
    }
    cas::write_entries(cas_dir_for(*output_), requests);
    // What was written before a credential was known may hold it: scrubbed now, atomically.
    const std::vector<std::string> late = recorder_->late_secrets();
    if (!late.empty()) {
      late_scrubbed_ = secrets::scrub_tape(*output_, late).credentials;
      if (late_scrubbed_ > 0 && tape) tape = Tape::load(*output_);
    }
  }
  active_.reset();
  return tape;
}

namespace {
// K's position in RecordKind.
template <typename K, size_t I = 0>
constexpr size_t alternative_index() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, RecordKind>, K>) {
    return I;
  } else {
    return alternative_index<K, I + 1>();
  }
}
}  // namespace

template <typename K>
const K& Session::next_recorded(const char* what) {
  constexpr size_t index = alternative_index<K>();
  size_t& cursor = cursors_[index];
  const auto& records = recorded_->records;
  while (cursor < records.size() && records[cursor].kind.index() != index) ++cursor;
  if (cursor == records.size()) {
    throw ReplayMiss(std::string("replay needs a ") + what + ", but the tape holds no more (" +
                     std::to_string(records.size()) + " records)");
  }
  return std::get<K>(records[cursor++].kind);
}

// ---- the clock axis ------------------------------------------------------------------------

namespace {

int64_t read_clock(Recorder& recorder, Clock& clock, ClockSource source,
                   const kind::ClockRead* recorded) {
  int64_t value;
  if (recorded != nullptr) {
    if (recorded->source != source) {
      throw ReplayMiss(std::string("replay read the ") + std::string(to_string(source)) +
                       " clock where the tape holds a " + std::string(to_string(recorded->source)) +
                       " clock read (value " + std::to_string(recorded->value_ms) + ")");
    }
    value = recorded->value_ms;
  } else {
    value = source == ClockSource::wall ? clock.now_ms() : clock.monotonic_ms();
  }
  recorder.record(kind::ClockRead{source, value});
  return value;
}

}  // namespace

int64_t TestClock::now_ms() {
  const kind::ClockRead* recorded = session_.mode_ == Testbench::Mode::replay
                                        ? &session_.next_recorded<kind::ClockRead>("clock read")
                                        : nullptr;
  return read_clock(*session_.recorder_, *session_.clock_, ClockSource::wall, recorded);
}

int64_t TestClock::monotonic_ms() {
  const kind::ClockRead* recorded = session_.mode_ == Testbench::Mode::replay
                                        ? &session_.next_recorded<kind::ClockRead>("clock read")
                                        : nullptr;
  return read_clock(*session_.recorder_, *session_.clock_, ClockSource::monotonic, recorded);
}

void TestClock::advance_ms(uint64_t duration_ms) {
  session_.clock_->advance_ms(duration_ms);
}

void TestClock::sleep_ms(uint64_t duration_ms) {
  if (session_.mode_ == Testbench::Mode::replay) {
    // A sleep is not an input: the replay sleeps what it is asked (virtually) and fidelity
    // compares the durations. The recorded sleep is consumed to keep the kinds aligned.
    try {
      session_.next_recorded<kind::ClockSleep>("sleep");
    } catch (const ReplayMiss&) {
    }
  }
  session_.clock_->sleep_ms(duration_ms);
  session_.recorder_->record(kind::ClockSleep{duration_ms});
}

}  // namespace tapedeck
