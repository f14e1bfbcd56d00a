// Subprocesses: record keeps what tapedeck-exec reports (the command, its output and exit code)
// and what the subprocess changed in the workspace; replay serves the recorded result without
// running anything, and makes those changes in its view. A replay with --on-miss record has one
// the tape does not hold run for real, and keeps its report as a recording does.
#include <fnmatch.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "supervisor/private_world.hpp"
#include "supervisor/tree_effects.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/tape_paths.hpp"

namespace tapedeck::supervisor {

namespace fs = std::filesystem;
using wire::Reply;

namespace {

bool matches(const std::string& glob, const std::string& text) {
  return ::fnmatch(glob.c_str(), text.c_str(), 0) == 0;
}

bool ends_within(pid_t pid, std::chrono::milliseconds grace) {
  const int process = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (process < 0) return errno == ESRCH;
  pollfd ended{process, POLLIN, 0};
  const bool gone = ::poll(&ended, 1, static_cast<int>(grace.count())) == 1;
  ::close(process);
  return gone;
}

}  // namespace

bool TreeEffects::named_black_box(const std::string& program) const {
  const std::string name = fs::path(program).filename().string();
  for (const std::string& glob : options_.black_box_globs) {
    if (matches(glob, name) || matches(glob, program)) return true;
  }
  return false;
}

void TreeEffects::handle_spawn(const Connection& connection, wire::Op op, wire::Cursor& cursor) {
  const std::string program(cursor.take_bytes());
  std::vector<std::string> args(cursor.take_int<uint32_t>());
  for (std::string& arg : args) {
    if (!cursor.ok()) break;
    arg = std::string(cursor.take_bytes());
  }
  const std::string cwd_absolute = view_.untranslate(std::string(cursor.take_bytes()));
  if (!cursor.ok()) throw std::runtime_error("a malformed subprocess report");
  // Inside the workspace the cwd is kept relative, so a tape replays in a copy elsewhere.
  std::optional<std::string> cwd = cwd_absolute;
  if (cwd_absolute == workspace_) {
    cwd = ".";
  } else if (auto inside = relative(cwd_absolute)) {
    cwd = *inside;
  }
  if (op == wire::Op::spawn_done) {
    ProcessResult result;
    result.exit_code = cursor.take_int<int32_t>();
    result.duration_ms = cursor.take_int<uint64_t>();
    result.stdout_bytes = std::string(cursor.take_bytes());
    result.stderr_bytes = std::string(cursor.take_bytes());
    const auto pids = cursor.take_int<uint64_t>();
    result.started = cursor.take_int<uint64_t>();
    if (!cursor.ok()) throw std::runtime_error("a malformed subprocess report");
    if (pid_namespace_) result.pids = pids;
    // What its processes sent before they ended is handled first: held with it (or taped, if it
    // was the agent) in the order it happened, never left to land after its end on the root's
    // tape, as it did when this frame was read first.
    const uint64_t started = result.started;
    server_.drain([started](const Connection& other) { return other.spawn == started; });
    if (options_.mode == RunOptions::Mode::replay) {
      result.descended = live_spawns_.erase(result.started) > 0;
      session_->processes().record_unheld(program, args, cwd, result);
      if (result.descended) {
        step_clock();  // a descended subprocess, run again: taped at its end, as recorded
      } else {
        record_subprocess_changes();
      }
      return server_.answer(connection, Reply::ok);
    }
    // Record. Part of the agent: its own records are on the tape, and a replay runs it again.
    if (subprocesses_running_ > 0) --subprocesses_running_;
    // A tool: what it held is dropped, and its spawn stands for it, with the changes inotify
    // saw, on the tape or held by the subprocess that started it.
    uint64_t parent = 0;
    if (const auto state = spawns_.find(result.started); state != spawns_.end()) {
      result.descended = state->second.on_path;
      parent = state->second.parent;
      // Its subprocesses' changes went with its dropped records: they are its own (given back
      // latest first, so that the snapshot is as it was before the first of them).
      if (!result.descended) {
        const auto& taken = state->second.taken;
        for (auto at = taken.rbegin(); at != taken.rend(); ++at) give_back(*at);
        ended_tools_.insert(result.started);
      }
      spawns_.erase(state);
    }
    const bool held = holding(parent);
    Held orphaned;  // started by what a tool left running: dropped with that tool
    const HoldScope scope(*this, held                            ? &spawns_[parent].held
                                 : ended_tools_.contains(parent) ? &orphaned
                                                                 : nullptr);
    record_spawn(program, args, cwd, result);
    if (!result.descended) {
      SubprocessChanges taken = record_subprocess_changes();
      if (held) spawns_[parent].taken.push_back(std::move(taken));
    }
    return server_.answer(connection, Reply::ok);
  }
  if (op == wire::Op::spawn_claim && options_.mode == RunOptions::Mode::record) {
    // What the tree wrote in /tmp while no subprocess ran is its own, made again by a replay
    // that runs it: only what changes there while one runs is taken for a tool's.
    if (subprocesses_running_++ == 0 && temp_watch_.fd() >= 0) temp_watch_.take_changes();
    std::string order;
    wire::put_int(order, ++spawns_started_);
    const bool black_box = named_black_box(program);
    // Its script is code, should it prove part of the agent.
    std::vector<std::string> command{program};
    command.insert(command.end(), args.begin(), args.end());
    code_rule_.add_command(command, cwd_absolute);
    wire::put_int(order, static_cast<uint8_t>(black_box ? 0 : 1));
    if (!black_box) spawns_[spawns_started_].parent = connection.spawn;
    return server_.answer(connection, Reply::ok, order);
  }
  ProcessResult result;
  if (const auto claimed = claimed_spawns_.find(connection.pid); claimed != claimed_spawns_.end()) {
    result = std::move(claimed->second);
    claimed_spawns_.erase(claimed);
    if (result.recorded != nullptr && result.recorded->descended) {
      return answer_live(connection, result);
    }
    return answer_spawn(connection, result);
  }
  try {
    result = session_->processes().run(program, args, cwd);
  } catch (const ReplayMiss& miss) {
    // Not on the tape: the stand-in's own ask meets the miss.
    if (op == wire::Op::spawn_claim) return server_.answer(connection, Reply::ok);
    // --on-miss record: the stand-in runs it for real, as a recording does, and tells. Only in
    // the kernel overlay: in a copy the preload redirects, a subprocess runs without it and
    // would write to the real workspace.
    if (options_.record_misses && view_.kind() == Isolation::kernel_overlay) {
      return server_.answer(connection, Reply::ok);
    }
    if (options_.record_misses) {
      return server_.answer_miss(
          connection, std::string(miss.what()) +
                          "; --on-miss record runs a subprocess the tape does not hold only in "
                          "the kernel overlay (--isolation namespace): in a copy it would write "
                          "to the real workspace");
    }
    // A subprocess its parent kills at once (Popen.kill() right after the start) can be gone
    // before its recording tapes it, leaving nothing on the tape. Its stand-in here gets the
    // same moment to be killed before the run is stopped as a miss.
    if (ends_within(connection.pid, std::chrono::milliseconds(100))) return;
    return server_.answer_miss(connection, std::string(miss.what()) + "; " + index_->next_spawn(),
                               miss.wanted, miss.recorded);
  }
  index_->spawn_served();
  if (result.recorded != nullptr && result.recorded->descended) {
    // Part of the agent: it runs again (its stand-in, claimed first, asks again for the answer).
    if (op == wire::Op::spawn_claim) {
      claimed_spawns_[connection.pid] = std::move(result);
      return server_.answer(connection, Reply::ok);
    }
    return answer_live(connection, result);
  }
  ++played_back_;
  static const RecordKind kSpawn = kind::ProcessSpawn{};
  step_clock(&kSpawn);
  if (const std::optional<Fault> fault = process_faults_.take(program)) {
    // The parent sees its subprocess fail: with the recorded output and another exit code, or
    // killed before it printed or changed anything.
    record_fault("process_fault", *fault, "program", program);
    result.injected = true;
    if (fault->effect == Fault::Effect::exit) {
      result.exit_code = static_cast<int32_t>(fault->value);
    } else {
      result.exit_code = 128 + static_cast<int32_t>(fault->value);
      result.stdout_bytes.clear();
      result.stderr_bytes.clear();
      result.recorded = nullptr;  // nothing of what it changed is made
    }
  }
  apply_subprocess_changes(result.recorded);
  if (op == wire::Op::spawn_claim) {
    claimed_spawns_[connection.pid] = std::move(result);
    return server_.answer(connection, Reply::ok);
  }
  answer_spawn(connection, result);
}

// Replay: the recorded subprocess was part of the agent; its stand-in runs it again, under the
// preload, with its recorded place in the start order (its randomness and records follow).
void TreeEffects::answer_live(const Connection& connection, const ProcessResult& result) {
  const uint64_t order = result.recorded->started;
  live_spawns_.insert(order);
  std::string body;
  wire::put_int(body, order);
  server_.answer(connection, Reply::live, body);
}

// Record: a subprocess ended; taped, or held with the records of the subprocess that started it.
void TreeEffects::record_spawn(const std::string& program, const std::vector<std::string>& args,
                               const std::optional<std::string>& cwd, const ProcessResult& result) {
  if (Held* held = held_here()) {
    held->steps.push_back(
        [this, program, args, cwd, result] { record_spawn(program, args, cwd, result); });
    return;
  }
  session_->processes().record_finished(program, args, cwd, result);
}

void TreeEffects::answer_spawn(const Connection& connection, const ProcessResult& result) {
  std::string body;
  wire::put_int(body, result.exit_code);
  wire::put_bytes(body, result.stdout_bytes);
  wire::put_bytes(body, result.stderr_bytes);
  wire::put_int(body, pid_namespace_ ? result.pids : uint64_t{0});
  wire::put_int(body, result.duration_ms);
  wire::put_int(body, static_cast<uint8_t>(result.injected ? 1 : 0));
  server_.answer(connection, Reply::spawned, body);
}

// Record: a subprocess ended; what changed in the workspace that no process reported itself,
// and in the private /tmp, is its doing, taped right after its spawn so that a replay can make
// the same changes.
TreeEffects::SubprocessChanges TreeEffects::record_subprocess_changes() {
  SubprocessChanges taken{watch_.take_changes(), {}};
  tape_changes(taken.workspace, workspace_, "");
  if (temp_watch_.fd() >= 0) {
    taken.temp = temp_watch_.take_changes();
    tape_changes(taken.temp, temp_upper(run_dir_), std::string(kPrivateTempPrefix));
  }
  return taken;
}

// The changes one watch took, as records: `root` holds their bytes, `prefix` makes their paths
// the tape's.
void TreeEffects::tape_changes(const WorkspaceWatch::Taken& taken, const fs::path& root,
                               const std::string& prefix) {
  using Change = WorkspaceWatch::Change;
  using TreeChange = extension::TreeChange;
  for (const Change& change : taken.changes) {
    const std::string path = prefix + change.path;
    const std::string other =
        change.kind == Change::Kind::hard_link_made ? prefix + change.other : change.other;
    switch (change.kind) {
      case Change::Kind::removed:
        if (change.folder) {
          add_file_record(extension::tree_change_record(
              {TreeChange::Kind::folder_removed, path, std::nullopt, {}}));
        } else if (!change.reported || change.reported_hash) {
          add_file_record(kind::FileDelete{path, true});
        }
        break;
      case Change::Kind::folder_made:
        add_file_record(
            extension::tree_change_record({TreeChange::Kind::folder_made, path, change.mode, {}}));
        break;
      case Change::Kind::file_written: {
        // A path a process of the tree reported is the subprocess's change only if it now
        // differs from what was reported (a parent writes a file, its subprocess rewrites it).
        auto bytes = detail::read_file(root / change.path);
        if (!bytes) break;
        if (change.reported && change.reported_hash == content_hash(*bytes)) break;
        const auto [hash, size] = keep(*bytes);
        add_file_record(kind::FileWrite{path, hash, size, true, change.mode});
        break;
      }
      case Change::Kind::symlink_made:
        add_file_record(extension::tree_change_record(
            {TreeChange::Kind::symlink_made, path, std::nullopt, other}));
        break;
      case Change::Kind::hard_link_made:
        add_file_record(extension::tree_change_record(
            {TreeChange::Kind::hard_link_made, path, std::nullopt, other}));
        break;
      case Change::Kind::mode_set:
        add_file_record(
            extension::tree_change_record({TreeChange::Kind::mode_set, path, change.mode, {}}));
        break;
    }
  }
}

void TreeEffects::give_back(const SubprocessChanges& changes) {
  watch_.give_back(changes.workspace);
  if (temp_watch_.fd() >= 0) temp_watch_.give_back(changes.temp);
}

std::pair<const WorkspaceView*, std::string> TreeEffects::view_of(const std::string& path) {
  if (!path.starts_with(kPrivateTempPrefix)) return {&view_, path};
  const std::string inside = path.substr(kPrivateTempPrefix.size());
  if (temp_view_) return {&*temp_view_, inside};
  if (temp_warning_.empty()) {
    temp_warning_ = "the replay's /tmp is the host's: what the recording's tools left in /tmp (" +
                    path + " first) is not made again";
  }
  return {nullptr, inside};
}

// Replay: the subprocess served from `recorded` is not run, so its recorded changes to the
// workspace are made in the view, and taped as the recording taped them. The modes of the
// folders it made come last: a folder made read-only first takes what goes in it.
void TreeEffects::apply_subprocess_changes(const kind::ProcessSpawn* recorded) {
  std::vector<std::pair<std::string, uint32_t>> folder_modes;
  for (const RecordKind* change : index_->changes_of(recorded)) {
    if (const auto* write = std::get_if<kind::FileWrite>(change)) {
      const std::optional<std::string> bytes = recorded_bytes(write->path, write->content_hash);
      if (!bytes) {
        throw std::runtime_error("the tape's bytes for " + write->path +
                                 ", written by a subprocess, are missing from its sidecar");
      }
      if (const auto [view, inside] = view_of(write->path); view != nullptr) {
        view->write_file(inside, *bytes, write->mode);
      }
      written_.erase(write->path);  // the view holds what the recording's file held
    } else if (const auto* gone = std::get_if<kind::FileDelete>(change)) {
      if (const auto [view, inside] = view_of(gone->path); view != nullptr) {
        view->remove_file(inside);
      }
      written_.erase(gone->path);
    } else if (const auto* unknown = std::get_if<kind::Unknown>(change)) {
      if (const auto tree = extension::tree_change(*unknown))
        apply_tree_change(*tree, folder_modes);
    }
    add_file_record(*change);
  }
  for (auto at = folder_modes.rbegin(); at != folder_modes.rend(); ++at) {
    if (const auto [view, inside] = view_of(at->first); view != nullptr) {
      view->set_mode(inside, at->second);
    }
  }
}

void TreeEffects::apply_tree_change(const extension::TreeChange& change,
                                    std::vector<std::pair<std::string, uint32_t>>& folder_modes) {
  using Kind = extension::TreeChange::Kind;
  const auto [view, path] = view_of(change.path);
  if (view == nullptr) return;
  switch (change.kind) {
    case Kind::folder_made:
      view->make_folder(path);
      if (change.mode) folder_modes.emplace_back(change.path, *change.mode);
      break;
    case Kind::folder_removed:
      view->remove_tree(path);
      std::erase_if(written_, [&](const std::string& written) {
        return written.starts_with(change.path) && written.size() > change.path.size() &&
               written[change.path.size()] == '/';
      });
      break;
    case Kind::symlink_made:
      view->make_symlink(path, change.other);
      written_.erase(change.path);
      break;
    case Kind::hard_link_made: {
      // Both names in the same view: a link across the two is none the kernel makes either.
      const auto [existing_view, existing] = view_of(change.other);
      if (existing_view == view) view->make_hard_link(path, existing);
      written_.erase(change.path);
      break;
    }
    case Kind::mode_set:
      if (change.mode) view->set_mode(path, *change.mode);
      break;
  }
}

}  // namespace tapedeck::supervisor
