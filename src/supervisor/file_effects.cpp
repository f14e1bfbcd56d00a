// Workspace files: what record tapes when a process reports a read, a closed write, a delete or
// a rename, and what replay serves (the recorded bytes, put in the view before the program
// opens the file).
#include <sys/stat.h>

#include <cerrno>
#include <fstream>

#include "supervisor/tree_effects.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/tape_paths.hpp"

namespace tapedeck::supervisor {

namespace fs = std::filesystem;
using wire::Reply;

void TreeEffects::handle_file(const Connection& connection, wire::Op op, wire::Cursor& cursor) {
  const std::string_view absolute = cursor.take_bytes();
  const uint8_t flags = op == wire::Op::open_write ? cursor.take_int<uint8_t>() : 0;
  const auto thread = cursor.take_int<uint64_t>();
  if (!cursor.ok()) throw std::runtime_error("a malformed file report");
  const std::optional<std::string> path = relative(absolute);
  if (!path) return server_.answer(connection, Reply::ok);
  const FileOwnerScope owner(*this, file_owner(thread));
  file_effect(connection, op, *path, flags);
}

void TreeEffects::file_effect(const Connection& connection, wire::Op op, const std::string& path,
                              uint8_t flags) {
  if (options_.mode == RunOptions::Mode::record) return record_file(connection, op, path);
  replay_file(connection, op, path, flags);
}

// The bytes of a workspace path as the run sees it now (record: the workspace; replay: the
// view), when it is a regular file.
std::optional<std::string> TreeEffects::current_bytes(const std::string& path) const {
  const fs::path where = view_.path(path);
  if (!is_regular(where)) return std::nullopt;
  return detail::read_file(where);
}

// A rename with one side or both in the workspace (absolute paths), reported once done: the
// new path's bytes become a file_write, the old path a file_delete, in both modes.
void TreeEffects::handle_rename(const Connection& connection, wire::Cursor& cursor) {
  const std::string from(cursor.take_bytes());
  const std::string to(cursor.take_bytes());
  const auto thread = cursor.take_int<uint64_t>();
  if (!cursor.ok()) throw std::runtime_error("a malformed rename report");
  const FileOwnerScope owner(*this, file_owner(thread));
  const std::optional<std::string> from_path = relative(from);
  const std::optional<std::string> to_path = relative(to);
  if (from_path) reported(*from_path, std::nullopt);
  if (to_path) {
    const std::optional<std::string> bytes = current_bytes(*to_path);
    reported(*to_path, bytes ? std::optional(content_hash(*bytes)) : std::nullopt);
    if (bytes) record_write(*to_path, *bytes);
    written_.insert(*to_path);
  }
  if (from_path) {
    add_file_record(kind::FileDelete{*from_path});
    written_.erase(*from_path);
  }
  if (options_.mode == RunOptions::Mode::replay) ++served_inputs_;  // the tree's own effect
  server_.answer(connection, Reply::ok);
}

// A change a process of the tree reported itself is not a subprocess's.
void TreeEffects::reported(const std::string& path, std::optional<std::string> content_hash) {
  if (Held* held = held_here()) {
    // Held: the change stays the subprocess's (inotify's) unless it proves part of the agent.
    held->steps.push_back([this, path, content_hash] { reported(path, content_hash); });
    return;
  }
  watch_.drain();
  watch_.forget(path, std::move(content_hash));
}

void TreeEffects::record_file(const Connection& connection, wire::Op op, const std::string& path) {
  if (op == wire::Op::deleted) {
    reported(path, std::nullopt);
    add_file_record(kind::FileDelete{path});
    return server_.answer(connection, Reply::ok);
  }
  // The bytes are taken before the process goes on (it may change the file next); hashing
  // and keeping them overlap with its next steps.
  const std::optional<std::string> bytes = current_bytes(path);
  server_.answer(connection, Reply::ok);
  if (op == wire::Op::closed_write) {
    reported(path, bytes ? std::optional(content_hash(*bytes)) : std::nullopt);
  }
  if (!bytes) return;
  if (op == wire::Op::open_read) record_read(path, *bytes, code_rule_.is_code(path));
  if (op == wire::Op::closed_write) record_write(path, *bytes);
}

// The bytes a recorded read saw: from the recording's sidecar, else from the workspace if
// they still hash the same.
std::optional<std::string> TreeEffects::recorded_bytes(const std::string& path,
                                                       const std::string& hash) {
  try {
    return cas::read_entry(recorded_cas_dir_, hash);
  } catch (const std::exception&) {
  }
  if (path.starts_with(kPrivateTempPrefix))
    return std::nullopt;  // the host's /tmp is not the run's
  auto bytes = detail::read_file(fs::path(workspace_) / path);
  if (bytes && content_hash(*bytes) == hash) return bytes;
  return std::nullopt;
}

// Replay: the program is about to read `path`. The program's code (the recording marked the
// read `code`, or a --code glob says so, and no --data glob) is read as it is now: an edited
// agent is what runs. Data the recording read here, unless the replay has written it since, is
// made to hold the recorded bytes first (a workspace file changed since, or one made by a
// subprocess the replay does not run, reads as recorded; a change since is noted); otherwise
// the view answers as it is. Either way the read is taped.
// False when the tape's bytes are gone (the program is stopped).
bool TreeEffects::serve_read(const Connection& connection, const std::string& path) {
  // A file the recording read only after writing it itself, not there yet: it is not made from
  // the tape before the replay writes it (Gemini CLI's write tool looks for the file first, and
  // told the model it "overwrote" a file the recording had created).
  if (const kind::FileRead* next = index_->next_read(path);
      next != nullptr && index_->reads_own_write(next) && !written_.contains(path) &&
      !is_regular(view_.path(path))) {
    return true;
  }
  const kind::FileRead* recorded = index_->take_read(path);
  const bool code =
      recorded != nullptr ? code_rule_.is_code(path, recorded->code) : code_rule_.is_code(path);
  if (recorded != nullptr && !code && !written_.contains(path)) {
    auto bytes = recorded_bytes(path, recorded->content_hash);
    if (!bytes) {
      server_.answer_miss(connection, "the tape's bytes for file_read " + path + " (" +
                                          recorded->content_hash +
                                          ") are in neither its sidecar nor the workspace");
      return false;
    }
    // A link, a folder or an unwritable file there is left as the view has it.
    if (const auto now = current_bytes(path); now != bytes) {
      note_data_change(path, recorded->content_hash, now);
      view_.write_file(path, *bytes);
    }
    // The replay's own tape keeps the bytes it names too: it replays as the recording does.
    write_entry(recorded->content_hash, *bytes);
    add_file_record(kind::FileRead{path, recorded->content_hash, bytes->size()});
    ++served_inputs_;
    return true;
  }
  // The program's code, a file not on the tape, or the replay's own bytes: the view answers,
  // and the read is taped so that fidelity shows it.
  if (auto bytes = current_bytes(path)) record_read(path, *bytes, code);
  return true;
}

// A data file the workspace holds other bytes of than the recording read (and the replay did
// not change): the workspace changed since the recording. Served as recorded, and said once.
void TreeEffects::note_data_change(const std::string& path, const std::string& recorded_hash,
                                   const std::optional<std::string>& now) {
  if (!now || noted_.contains(path)) return;
  const auto in_workspace = detail::read_file(fs::path(workspace_) / path);
  if (in_workspace != now) return;  // the replay's tree changed it, not the workspace
  noted_.insert(path);
  notes_.push_back("data changed since the recording: " + path + " (recorded " +
                   recorded_hash.substr(0, 12) + ", now " + content_hash(*now).substr(0, 12) +
                   "), served as recorded; --code '" + path + "' reads it as it is now");
}

int TreeEffects::file_fault(const std::string& path) {
  const std::optional<Fault> fault =
      options_.faults.empty() ? std::nullopt : file_fault_for(options_.faults, path);
  if (!fault) return 0;
  record_fault("file_fault", *fault, "path", path);
  return fault->effect == Fault::Effect::enoent   ? ENOENT
         : fault->effect == Fault::Effect::eacces ? EACCES
                                                  : EIO;
}

void TreeEffects::replay_file(const Connection& connection, wire::Op op, const std::string& path,
                              uint8_t flags) {
  const bool reads = op == wire::Op::open_read || (op == wire::Op::open_write && (flags & 2) != 0);
  if (const int error = reads ? file_fault(path) : 0; error != 0) {
    std::string body;
    wire::put_int(body, static_cast<int32_t>(error));
    return server_.answer(connection, Reply::fail, body);
  }
  switch (op) {
    case wire::Op::open_read:
      if (!serve_read(connection, path)) return;
      break;
    case wire::Op::open_write: {
      const bool reads_too = (flags & 2) != 0;
      if (reads_too && !serve_read(connection, path)) return;
      written_.insert(path);
      break;
    }
    case wire::Op::closed_write:
      if (auto bytes = current_bytes(path)) record_write(path, *bytes);
      written_.insert(path);
      ++served_inputs_;  // the tree's own effect, which fidelity judges
      break;
    case wire::Op::deleted:
      add_file_record(kind::FileDelete{path});
      written_.erase(path);
      ++served_inputs_;
      break;
    default:
      break;
  }
  server_.answer(connection, Reply::ok);
}

// Files as the run found them, before it changed them.
void TreeEffects::use_home(const fs::path& home) {
  std::error_code error;
  const fs::path canonical = fs::weakly_canonical(home, error);
  if (error || canonical.empty() || canonical == canonical.root_path()) return;
  // (A home beneath /tmp is the run's own already, and in a recording too.)
  if (canonical.string().starts_with(std::string(kTempRoot) + "/")) return;
  home_ = canonical.string();
}

namespace {

// A home file larger (a history, a database) is not kept as found: its replay reads it as it is.
constexpr off_t kLargestHomeFileFound = off_t{64} << 20;

const std::string* found_path(const RecordKind& kind) {
  if (const auto* read = std::get_if<kind::FileRead>(&kind); read != nullptr && read->found) {
    return &read->path;
  }
  if (const auto* gone = std::get_if<kind::FileDelete>(&kind); gone != nullptr && gone->found) {
    return &gone->path;
  }
  return nullptr;
}

}  // namespace

void TreeEffects::index_found() {
  if (found_indexed_ || session_ == nullptr || session_->recorded_tape() == nullptr) return;
  found_indexed_ = true;  // (once: a tape with none is not read through again at each change)
  for (const Record& record : session_->recorded_tape()->records) {
    if (const std::string* path = found_path(record.kind)) {
      found_recorded_.try_emplace(*path, record.kind);
    }
  }
}

std::vector<HomeFileFound> TreeEffects::home_seeds() {
  index_found();
  std::vector<HomeFileFound> seeds;
  for (const auto& [path, found] : found_recorded_) {
    if (!path.starts_with(kHomePrefix)) continue;
    const std::string inside = path.substr(kHomePrefix.size());
    if (const auto* read = std::get_if<kind::FileRead>(&found)) {
      try {
        seeds.push_back({inside, cas::read_entry(recorded_cas_dir_, read->content_hash)});
      } catch (const std::exception&) {
      }
    } else {
      seeds.push_back({inside, std::nullopt});
    }
  }
  return seeds;
}

void TreeEffects::seed_workspace() {
  index_found();
  for (const auto& [path, found] : found_recorded_) {
    if (path.starts_with(kHomePrefix) || path.starts_with(kPrivateTempPrefix)) continue;
    if (const auto* read = std::get_if<kind::FileRead>(&found)) {
      if (code_rule_.is_code(path, read->code)) continue;  // code is read as it is now
      const std::optional<std::string> bytes = recorded_bytes(path, read->content_hash);
      if (bytes && current_bytes(path) != bytes) view_.write_file(path, *bytes);
    } else if (is_regular(view_.path(path))) {
      view_.remove_file(path);
    }
  }
}

// A process is about to change a file of the workspace or the home folder (absolute, lexically
// normal) for the first time: record tapes it as found, before the process goes on; replay tapes
// the recording's record of it again (its view was made to hold it at the start).
void TreeEffects::handle_about_to_change(const Connection& connection, wire::Cursor& cursor) {
  const std::string absolute(cursor.take_bytes());
  const bool made = cursor.take_int<uint8_t>() != 0;
  const auto thread = cursor.take_int<uint64_t>();
  if (!cursor.ok()) throw std::runtime_error("a malformed report of a change to come");
  std::string path;  // as the tape names it
  fs::path where;    // record: where it is
  bool in_home = false;
  const std::string home_slash = home_ + "/";
  if (const std::optional<std::string> inside = relative(absolute)) {
    path = *inside;
    where = view_.path(path);
  } else if (!home_.empty() && absolute.starts_with(home_slash)) {
    path = std::string(kHomePrefix) + absolute.substr(home_slash.size());
    where = absolute;
    in_home = true;
  }
  // A path the run has a record of already (read, written, a subprocess's change) is no longer
  // as found: only a file's first record can say how the run found it.
  if (path.empty() || workspace_path_problem(path) || !found_.insert(path).second ||
      touched_.contains(path)) {
    return server_.answer(connection, Reply::ok);
  }
  const FileOwnerScope owner(*this, file_owner(thread));
  if (options_.mode == RunOptions::Mode::replay) {
    index_found();
    if (const auto found = found_recorded_.find(path); found != found_recorded_.end()) {
      add_file_record(RecordKind(found->second));
    }
    return server_.answer(connection, Reply::ok);
  }
  struct stat status {};
  if (made || ::lstat(where.c_str(), &status) != 0) {
    if (made || errno == ENOENT) add_file_record(kind::FileDelete{path, false, true});
  } else if (S_ISREG(status.st_mode) && (!in_home || status.st_size <= kLargestHomeFileFound)) {
    if (const std::optional<std::string> bytes = detail::read_file(where)) {
      const auto [hash, size] = keep(*bytes);
      const bool code = !in_home && code_rule_.is_code(path);
      add_file_record(kind::FileRead{path, hash, size, code, true});
    }
  }
  server_.answer(connection, Reply::ok);
}

}  // namespace tapedeck::supervisor
