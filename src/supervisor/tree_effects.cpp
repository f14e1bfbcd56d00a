#include "supervisor/tree_effects.hpp"

#include <thread>
#include <utility>

#include "floor/process_access.hpp"
#include "supervisor/private_world.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/extensions.hpp"

namespace tapedeck::supervisor {

namespace fs = std::filesystem;
using wire::Reply;

bool is_regular(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

TreeEffects::TreeEffects(const RunOptions& options, Session* session, TreeServer& server,
                         const WorkspaceView& view, const fs::path& run_dir)
    : options_(options), session_(session), server_(server), view_(view), run_dir_(run_dir) {
  workspace_ = fs::weakly_canonical(options.workspace).string();
  code_rule_ = CodeRule(options.command, workspace_, fs::current_path(), options.code_globs,
                        options.data_globs);
  if (options.mode == RunOptions::Mode::record) cas_dir_ = cas_dir_for(options.tape);
  if (options.mode == RunOptions::Mode::replay && options.emit) {
    cas_dir_ = cas_dir_for(*options.emit);
  }
  if (options.mode == RunOptions::Mode::replay) {
    process_faults_ = ProcessFaults(options.faults);
    recorded_cas_dir_ = cas_dir_for(options.tape);  // found once: a pack's is unpacked
  }
  if (session != nullptr && session->recorded_tape() != nullptr) {
    index_ = std::make_unique<RecordingIndex>(*session->recorded_tape(), run_dir / "clock");
  }
  if (options.mode == RunOptions::Mode::record) {
    std::string why;
    if (!watch_.start(workspace_, why)) {
      watch_warning_ = "what subprocesses change in the workspace is not fully taped (" + why +
                       "): a replay will not make those changes";
    }
  }
}

void TreeEffects::use_private_temp(int root_fd) {
  const fs::path upper = temp_upper(run_dir_);
  if (options_.mode == RunOptions::Mode::replay) {
    temp_view_.emplace(kTempRoot, upper.parent_path());
    temp_view_->adopt_namespace(root_fd, 0);
    temp_view_->keep_to_one_file_system();
    return;
  }
  ::close(root_fd);
  std::string why;
  temp_watch_.see_whiteouts_over(kTempRoot);  // (the host's /tmp, the overlay's lower layer)
  if (!temp_watch_.start(upper, why)) {
    temp_warning_ =
        "what subprocesses leave in /tmp is not taped (" + why + "): a replay will not make it";
    return;
  }
  server_.also_poll(temp_watch_.fd(), [this] { temp_watch_.drain(); });
}

void TreeEffects::record_fault(std::string_view kind, const Fault& fault, std::string_view field,
                               std::string_view value) {
  recorder().record(fault_record(kind, fault, field, value));
  fault_injected();
}

std::string TreeEffects::clock_map_path() const {
  return index_ ? index_->clock_map_path().string() : (run_dir_ / "clock").string();
}

std::pair<uint64_t, std::string> TreeEffects::unused_inputs() const {
  return index_ ? index_->unused_inputs() : std::pair<uint64_t, std::string>{0, ""};
}

void TreeEffects::record_entropy_seed(const std::string& seed_hex, bool per_thread) {
  // Every tape the tree writes keeps its files' bytes and what was printed (see kKeptByRun).
  recorder().record(extension::entropy_record(seed_hex, per_thread, /*keeps=*/true));
  step_clock();
}

void TreeEffects::record_outcome(int exit_code, const CapturedOutput& out,
                                 const CapturedOutput& err) {
  // What was printed (up to a megabyte) is in the sidecar, redacted; the tape names those bytes.
  auto kept = [this](const CapturedOutput& output) {
    if (output.complete && output.size > 0) return keep(output.head);
    return std::pair<std::string, uint64_t>{output.content_hash, output.size};
  };
  extension::ProgramOutcome outcome;
  outcome.exit_code = exit_code;
  std::tie(outcome.stdout_hash, outcome.stdout_size) = kept(out);
  std::tie(outcome.stderr_hash, outcome.stderr_size) = kept(err);
  outcome.stdout_kept = out.complete;
  outcome.stderr_kept = err.complete;
  const Phase previous = recorder().swap_phase(Phase::runtime_finalize);
  recorder().record(extension::outcome_record(outcome));
  recorder().swap_phase(previous);
}

void TreeEffects::step_clock(const RecordKind* replayed, std::optional<uint64_t> owner) {
  if (index_) index_->step_clock(replayed, owner);
}

std::optional<std::string> TreeEffects::relative(std::string_view absolute) const {
  if (absolute.size() <= workspace_.size() + 1 || !absolute.starts_with(workspace_) ||
      absolute[workspace_.size()] != '/') {
    return std::nullopt;
  }
  return std::string(absolute.substr(workspace_.size() + 1));
}

bool TreeEffects::holding(uint64_t spawn) const {
  if (spawn == 0 || options_.mode != RunOptions::Mode::record) return false;
  const auto found = spawns_.find(spawn);
  return found != spawns_.end() && !found->second.on_path;
}

void TreeEffects::put_on_path(uint64_t spawn) {
  std::vector<uint64_t> chain;
  for (uint64_t at = spawn; at != 0;) {
    const auto found = spawns_.find(at);
    if (found == spawns_.end() || found->second.on_path) break;
    chain.push_back(at);
    at = found->second.parent;
  }
  // The outermost first: a wrapper's records came before those of what it started.
  for (auto at = chain.rbegin(); at != chain.rend(); ++at) {
    SpawnState& state = spawns_[*at];
    state.on_path = true;
    const Held held = std::exchange(state.held, {});
    for (const auto& [hash, bytes] : held.bytes) write_entry(hash, bytes);
    for (const auto& step : held.steps) step();
  }
}

std::pair<std::string, uint64_t> TreeEffects::keep(std::string bytes) {
  if (recorder().redact(bytes) > 0) ++withheld_;
  const std::string hash = content_hash(bytes);
  if (Held* held = held_here()) {
    const uint64_t size = bytes.size();
    held->bytes.emplace(hash, std::move(bytes));
    return {hash, size};
  }
  write_entry(hash, bytes);
  return {hash, bytes.size()};
}

void TreeEffects::write_entry(const std::string& hash, const std::string& bytes) {
  if (!cas_dir_.empty() && kept_.insert(hash).second) {
    cas::write_entries(cas_dir_, {{hash, bytes}}, /*durable=*/false);
  }
}

// Every file record, in both modes; in replay each is also a step of the clock. With threads
// keyed, the record names the thread whose call made it, so that a replay's step moves that
// thread's lanes alone (as a sleep's does) and the others read on in their own sequences: Bun's
// pool threads open and stat files while its main thread reads the clock, and each of their
// records cut the main thread's reads short, so `Date.now()` came out a few milliseconds off.
void TreeEffects::add_file_record(RecordKind kind) {
  add_file_record(std::move(kind), file_owner_here());
}

void TreeEffects::add_file_record(RecordKind kind, std::optional<uint64_t> owner) {
  if (Held* held = held_here()) {
    held->steps.push_back([this, kind = std::move(kind), owner] { add_file_record(kind, owner); });
    return;
  }
  if (owner) {
    char name[preload::kLaneNameBytes];
    preload::thread_lane_name(name, preload::ThreadKey::unpack(*owner));  // "t0": the root's main
    std::visit(
        [&](auto& file) {
          if constexpr (requires { file.thread; }) file.thread = name;
        },
        kind);
  }
  std::visit(
      [&](const auto& file) {
        if constexpr (requires { file.path; }) touched_.insert(file.path);
      },
      kind);
  if (const auto* unknown = std::get_if<kind::Unknown>(&kind)) {
    if (const auto change = extension::tree_change(*unknown)) touched_.insert(change->path);
  }
  const RecordKind replayed = kind;
  recorder().record(std::move(kind));
  // A replay of a tape whose file records do not name their threads cuts every lane, as recorded.
  step_clock(&replayed, index_ && index_->file_records_owned() ? owner : std::nullopt);
}

// A file report's thread, as the preload sent it (wire::kUnkeyedThread: the run does not key
// threads, and the record names none).
std::optional<uint64_t> TreeEffects::file_owner(uint64_t thread) {
  return thread == wire::kUnkeyedThread ? std::nullopt : std::optional<uint64_t>(thread);
}

void TreeEffects::record_read(const std::string& path, const std::string& bytes, bool code) {
  const auto [hash, size] = keep(bytes);
  add_file_record(kind::FileRead{path, hash, size, code});
}

void TreeEffects::record_write(const std::string& path, const std::string& bytes) {
  const auto [hash, size] = keep(bytes);
  add_file_record(kind::FileWrite{path, hash, size});
}

void TreeEffects::handle(const Connection& connection, wire::Op op, std::string_view body) {
  wire::Cursor cursor(body);
  if (op == wire::Op::hello) {
    connection.spawn = cursor.take_int<uint64_t>();
    if (!cursor.ok()) connection.spawn = 0;
    return;
  }
  // A subprocess's process announcing an LLM request is the agent: what it and the
  // subprocesses above it held goes on the tape before the call. Until then its records wait.
  Held* held = nullptr;
  Held dropped;
  if (options_.mode == RunOptions::Mode::record && ended_tools_.contains(connection.spawn)) {
    held = &dropped;
  } else if (holding(connection.spawn)) {
    if (op == wire::Op::llm_request) {
      put_on_path(connection.spawn);
    } else {
      held = &spawns_[connection.spawn].held;
    }
  }
  const HoldScope scope(*this, held);  // where this frame's records go
  try {
    switch (op) {
      case wire::Op::events:
        return handle_events(cursor);
      case wire::Op::sync:
        return server_.answer(connection, Reply::ok);
      case wire::Op::llm_request: {
        const auto thread = cursor.take_int<uint64_t>();
        llm_request_announced(cursor.ok() ? std::optional<uint64_t>(thread) : std::nullopt);
        return server_.answer(connection, Reply::ok);
      }
      case wire::Op::timed_wait: {
        const auto ms = cursor.take_int<uint64_t>();
        const auto tid = cursor.take_int<int32_t>();
        const auto deadline_ms = cursor.take_int<int64_t>();
        const bool sleep = cursor.take_int<uint8_t>() != 0;
        const auto thread = cursor.take_int<uint64_t>();
        return server_.answer(
            connection, cursor.ok() ? timed_wait(connection, ms, tid, deadline_ms, sleep, thread)
                                    : Reply::wait);
      }
      case wire::Op::spawn_done:
      case wire::Op::spawn_replay:
      case wire::Op::spawn_claim:
        return handle_spawn(connection, op, cursor);
      case wire::Op::renamed:
        return handle_rename(connection, cursor);
      case wire::Op::exec_in_place: {
        const std::string_view program = cursor.take_bytes();
        std::string follow;
        wire::put_int(follow, static_cast<uint8_t>(cursor.ok() ? exec_in_place(connection, program)
                                                               : wire::FloorFollow::none));
        return server_.answer(connection, Reply::ok, follow);
      }
      case wire::Op::exec_followed:
        return handle_exec_followed(connection, cursor);
      case wire::Op::about_to_change:
        return handle_about_to_change(connection, cursor);
      default:
        return handle_file(connection, op, cursor);
    }
  } catch (const std::exception& error) {
    server_.answer_miss(connection,
                        std::string("tapedeck could not serve a request: ") + error.what());
  }
}

// The floor's reach is chosen for the root's program at its start, and a filter stays as
// installed. A preloaded root's filter holds the whole reach for calls a program makes from its
// own code, served for the processes the warden follows: so a static program exec'd in place of
// a process of the root's own tree (`sh -c 'exec ./static'`, `env`) goes through tapedeck-exec,
// which has the floor follow it, and is served as a static root is. Not yet followed: a Go
// program (its runtime's clock is another warden's work), and one exec'd in a subprocess (the
// floor's records would not be held with the subprocess's). Those run unserved, and never
// silently: each is named, with what escapes and how to have it served.
wire::FloorFollow TreeEffects::exec_in_place(const Connection& connection,
                                             std::string_view program) {
  const Linkage linkage = linkage_of(std::filesystem::path(program));
  if (linkage == Linkage::glibc_dynamic) return wire::FloorFollow::none;
  if (follow_exec_ && connection.spawn == 0 && linkage == Linkage::static_binary) {
    return wire::FloorFollow::plain;
  }
  name_unserved_exec(program, linkage,
                     !follow_exec_            ? std::string()
                     : linkage == Linkage::go ? " (the floor does not follow a Go program yet)"
                                              : " (the floor does not follow an exec inside a "
                                                "subprocess yet)");
  return wire::FloorFollow::none;
}

void TreeEffects::name_unserved_exec(std::string_view program, Linkage linkage,
                                     const std::string& why) {
  if (!exec_in_place_seen_.emplace(program).second) return;
  std::string line =
      *interposition_warning(std::filesystem::path(program), linkage, false, false) +
      ". It was exec'd in place of a process the preload served, after the system-call floor's "
      "reach was chosen for " +
      options_.command[0] + "; run it as the root (tapedeck " +
      (options_.mode == RunOptions::Mode::replay ? "replay TAPE" : "run") + " -- " +
      std::string(program) + " …) to have the floor serve it" + why;
  unserved_execs_.push_back(std::move(line));
}

// tapedeck-exec, about to exec a static program in place: the floor follows it from that exec.
// Answered once it does (the exec would go unserved otherwise); where no floor follows (a run
// without one), the program runs unserved, and named.
void TreeEffects::handle_exec_followed(const Connection& connection, wire::Cursor& cursor) {
  const std::string program(cursor.take_bytes());
  const std::string key(cursor.take_bytes());
  if (cursor.ok() && follow_exec_) {
    follow_exec_(connection.pid, program, key);
  } else if (cursor.ok()) {
    name_unserved_exec(program, Linkage::static_binary, " (no floor follows it)");
  }
  server_.answer(connection, Reply::ok);
}

// Replay: a wait found nothing ready, or a sleep begins (`sleep`). One the recording has at this
// point is skipped at once: for a sleep, the recording's next record is a sleep of about its
// length; for a wait, a waited sleep (a recording tapes a wait that timed out as one; the replay
// computes its timeout from the served clock reads, which may fall a few milliseconds apart from
// the recording's, or run ahead of them). The program looks once more and tells of a wait's skip
// as a timeout (record_wait), taped as the recording has it. While an LLM call is announced or
// under way, a wait is asked again a slice later (the answer may be what ends it); one the
// recording did not time out here is held (Reply::hold): it must not time out for real either,
// since the answer's next event ended it in the recording. Under load, a replay's stream paced
// slower than the program's 21 ms timer let that wait time out; matched to the recording's
// 489 ms wait after the answer, it moved the clock ahead and a 500 ms timer printed 144 ms late.
// Any other sleep or wait (the recording's was ended by something: another thread's post, a
// subprocess's output; or a fault has moved the run off the recording) is skipped, as in a
// simulation, only while the whole tree is idle and it is the soonest to end (may_pass); until
// then the answer is busy, and the caller waits a slice for real and asks again, so what ends it
// still can. Skipped while another thread or process works, it would let the program run ahead
// of what it waits for: a loop polling for a child's exit spun through its backoff before the
// child was done (test_tempfile's clock moved by 30 to 100 s), a runtime's housekeeping thread
// waiting 60 s moved the clock of a program still reading its answer (Node's platform thread,
// by 120 s), and a thread napping 10 ms at a time while another waited for real ran the clock
// seconds past that wait's deadline (test_threading: 12 tests failed, its clock ran to 734 s).
Reply TreeEffects::timed_wait(const Connection& asking, uint64_t ms, pid_t tid, int64_t deadline_ms,
                              bool sleep, uint64_t thread) {
  if (options_.mode != RunOptions::Mode::replay || !index_) return Reply::wait;
  note_asking(tid, deadline_ms);
  // A wait stands for the recording's next one at once; for one further on (past waits the
  // replay did not make) only once it is the tree's next to end (may_pass): a long housekeeping
  // wait asked early otherwise stood for the recording's at the end, and moved the clock by it.
  const auto match = sleep ? std::nullopt : index_->next_wait_near(ms);
  const bool recorded =
      sleep ? index_->next_sleep_near(ms) : !faulted_.load() && match && match->ahead == 0;
  if (!sleep && llm_under_way()) return recorded || faulted_.load() ? Reply::busy : Reply::hold;
  if (!recorded && !may_pass(asking, tid, deadline_ms)) return Reply::busy;
  asking_waits_.erase(tid);
  if (sleep) record_sleep(ms, /*waited=*/false, 0, thread);  // the program skips it on this answer
  return Reply::ok;
}

// Every wait asked about is known, with its deadline, until it is answered ok or no longer asked
// about: whatever the answer (busy while an LLM call is under way, too), a later deadline must
// not pass before it.
void TreeEffects::note_asking(pid_t tid, int64_t deadline_ms) {
  constexpr auto kForgottenAfter = std::chrono::milliseconds(100);  // five slices unasked
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(asking_waits_, [&](const auto& entry) {
    return entry.first != tid && now - entry.second.asked > kForgottenAfter;
  });
  asking_waits_[tid] = {deadline_ms, now};
}

// Idle: no LLM call under way, every other thread of the tree asleep, no TCP connection being
// made (a connect's wait for its socket to open is not over while the loopback finishes the
// handshake), and no wait asked about that ends sooner. A thread with a wait asking counts as
// asleep even when /proc finds it runnable: it is between two slices of its wait, not working
// (two threads slicing side by side otherwise find each other runnable, each just woken by its
// answer). A wait not asked about for a while has ended (its thread woke) and no longer counts.
// A thread that has sent the supervisor what it has not handled yet (a batch of clock reads, a
// file's open) sleeps on its answer, yet works: skipped then, a housekeeping thread's 5 s wait
// moved the clock of Node's main thread as it told of its reads after a subprocess.
bool TreeEffects::may_pass(const Connection& asking, pid_t tid, int64_t deadline_ms) {
  std::vector<pid_t> waiting;
  for (const auto& [other, wait] : asking_waits_) {
    if (other != tid && wait.deadline_ms < deadline_ms) return false;
    waiting.push_back(other);
  }
  // The tree's threads are looked at before the connections: one woken in between has either
  // sent its frame by then or runs.
  return !llm_under_way() && tree_idle(waiting) && !server_.someone_waiting(asking);
}

bool TreeEffects::tree_idle(const std::vector<pid_t>& waiting) {
  const pid_t root = server_.root();
  if (root <= 0) return true;  // not started yet
  const std::vector<pid_t> tree = floor::tree_of(root);
  for (const pid_t process : tree) {
    if (!floor::threads_asleep(process, waiting, floor::Numbering::own_namespace)) return false;
  }
  return !floor::connecting(tree);
}

// A wait with a timeout that timed out (Event::waited). Record: stamped now, where it ended.
// Replay: the recording's sleep when it timed out there too (skipped, or slept for real), taped
// as the recording has it and the clock past it. A wait the recording did not time out there is
// left off the tape: a step would move the clock to reads the recording made elsewhere, and a
// program counting down to a deadline on them would never reach it.
void TreeEffects::record_wait(uint64_t ms, std::optional<uint64_t> owner) {
  uint64_t looked_past = 0;
  if (options_.mode == RunOptions::Mode::replay) {
    const auto recorded = index_ ? index_->next_wait_near(ms) : std::nullopt;
    if (!recorded && !faulted_.load()) return;
    if (recorded) std::tie(looked_past, ms) = std::pair{recorded->ahead, recorded->ms};
  }
  record_sleep(ms, /*waited=*/true, looked_past, owner);
}

void TreeEffects::llm_call_served() {
  // A call no preload announced (a program under the floor) is cut at its record, which the
  // recording made as the upstream's last event passed: the program's reads on that event fell
  // before it or after it, by a race. The replay's cut waits for the reads before it to be used.
  if (options_.mode == RunOptions::Mode::replay) ++served_inputs_;
  const bool unannounced = take_one(llm_unannounced_);
  served_unannounced_ = unannounced;
  if (unannounced && index_) index_->defer_step();
}

void TreeEffects::wait_for_idle() {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  while (!tree_idle({}) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void TreeEffects::before_stream_end() {
  // A preloaded program's call is cut at its announcement, and its stream ends as it came: an
  // end held back would cost its HTTP library another read (and clock reads with it).
  if (served_unannounced_) wait_for_idle();
}

// The gap passes while the program waits for the next event: once it has taken the last one and
// gone idle (for a quarter of a second at most), so that every replay reads the same times around
// each event rather than whatever the race between its reading and this step gave.
void TreeEffects::pass_time(uint64_t ms) {
  if (options_.mode != RunOptions::Mode::replay || !index_) return;
  wait_for_idle();
  preload::advance(index_->clock_map(), ms);
  session_->clock().advance_ms(ms);
}

// A sleep is taped as it begins (the program says so before it sleeps) and stamped where it
// ends, as every span is; a wait that timed out (`waited`) is taped once it has ended, so
// stamped now. A replay's stamps are the recording's (Session).
void TreeEffects::record_sleep(uint64_t ms, bool waited, uint64_t looked_past,
                               std::optional<uint64_t> owner) {
  if (Held* held = held_here()) {
    held->steps.push_back(
        [this, ms, waited, looked_past, owner] { record_sleep(ms, waited, looked_past, owner); });
    return;
  }
  if (index_ && looked_past > 0) index_->skip_steps(looked_past, owner);
  kind::ClockSleep sleep{ms, waited};
  if (owner && *owner != 0) {  // whose it is, so that a replay lets the other threads read on
    char name[preload::kLaneNameBytes];
    preload::thread_lane_name(name, preload::ThreadKey::unpack(*owner));
    sleep.thread = name;
  }
  if (options_.mode == RunOptions::Mode::replay) {
    ++served_inputs_;
    session_->clock().advance_ms(ms);
    recorder().record(sleep);
  } else if (waited) {
    recorder().record(sleep);
  } else {
    recorder().record_ending_in(sleep, ms);
  }
  const RecordKind replayed = sleep;
  step_clock(&replayed, owner);
}

void TreeEffects::handle_events(wire::Cursor& cursor) {
  uint64_t thread = 0;  // whose reads these are (wire::Event::thread; 0: the main thread's)
  while (!cursor.done()) {
    const auto event = static_cast<wire::Event>(cursor.take_int<uint8_t>());
    const auto value = cursor.take_int<int64_t>();
    if (!cursor.ok()) return;
    switch (event) {
      case wire::Event::wall_read:
      case wire::Event::monotonic_read:
      case wire::Event::wall_read_after_wait:
      case wire::Event::monotonic_read_after_wait: {
        const bool wall =
            event == wire::Event::wall_read || event == wire::Event::wall_read_after_wait;
        const bool after_wait = event == wire::Event::wall_read_after_wait ||
                                event == wire::Event::monotonic_read_after_wait;
        char name[preload::kLaneNameBytes] = "";
        if (after_wait) {
          preload::after_wait_lane_name(name, preload::ThreadKey::unpack(thread));
        } else if (thread != 0) {
          preload::thread_lane_name(name, preload::ThreadKey::unpack(thread));
        }
        const kind::ClockRead read{wall ? ClockSource::wall : ClockSource::monotonic, value, name};
        if (Held* held = held_here()) {
          held->steps.push_back([this, read] { recorder().record(read); });
        } else {
          recorder().record(read);
        }
        break;
      }
      case wire::Event::sleep:
        record_sleep(static_cast<uint64_t>(value), /*waited=*/false, 0, thread);
        break;
      case wire::Event::waited:
        record_wait(static_cast<uint64_t>(value), thread);
        break;
      case wire::Event::thread:
        thread = static_cast<uint64_t>(value);
        break;
      case wire::Event::wait_over:
        asking_waits_.erase(static_cast<pid_t>(value));
        break;
    }
  }
}

}  // namespace tapedeck::supervisor
