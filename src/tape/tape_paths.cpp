#include "tapedeck/tape_paths.hpp"

#include <fmt/core.h>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"

namespace tapedeck {

std::optional<std::string> workspace_path_problem(std::string_view path, PathRule rule) {
  if (path.empty()) return "is empty";
  if (path.size() > kLongestTapePath) {
    return fmt::format("is {} bytes long (at most {})", path.size(), kLongestTapePath);
  }
  if (path.find('\0') != std::string_view::npos) return "holds a NUL byte";
  size_t start = 0;
  if (path.starts_with(kPrivateTempPrefix) && path.size() > kPrivateTempPrefix.size()) {
    start = kPrivateTempPrefix.size();  // the run's private /tmp: what follows is checked alike
  } else if (path.starts_with(kHomePrefix) && path.size() > kHomePrefix.size()) {
    start = kHomePrefix.size();  // the home folder: likewise
  } else if (path.front() == '/') {
    if (rule == PathRule::workspace) {
      return "is absolute (a tape names workspace files relative to it, temporary ones beneath "
             "/tmp/ and home ones beneath /~/)";
    }
    if (path.size() == 1) return std::nullopt;
    start = 1;
  }
  for (;;) {
    const size_t slash = path.find('/', start);
    const std::string_view part = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part == "..") return "climbs out with `..`";
    if (part.empty() || part == ".") return "is not in normal form (an empty or `.` component)";
    if (part.size() > kLongestPathComponent) {
      return fmt::format("has a component of {} bytes (at most {})", part.size(),
                         kLongestPathComponent);
    }
    if (slash == std::string_view::npos) return std::nullopt;
    start = slash + 1;
  }
}

namespace {

std::optional<std::string> named(std::string_view what, std::string_view path, PathRule rule) {
  if (auto problem = workspace_path_problem(path, rule)) {
    return fmt::format("{} {} {}", what, json_string(path.substr(0, 120)), *problem);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> record_path_problem(const RecordKind& kind, PathRule rule) {
  if (const auto* read = std::get_if<kind::FileRead>(&kind))
    return named("file_read path", read->path, rule);
  if (const auto* write = std::get_if<kind::FileWrite>(&kind)) {
    return named("file_write path", write->path, rule);
  }
  if (const auto* gone = std::get_if<kind::FileDelete>(&kind)) {
    return named("file_delete path", gone->path, rule);
  }
  if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&kind)) {
    if (!spawn->cwd || *spawn->cwd == "." || spawn->cwd->starts_with('/')) {
      if (spawn->cwd && spawn->cwd->find('\0') != std::string::npos) {
        return "process_spawn cwd holds a NUL byte";
      }
      return std::nullopt;
    }
    return named("process_spawn cwd", *spawn->cwd, rule);
  }
  if (const auto* unknown = std::get_if<kind::Unknown>(&kind)) {
    const std::optional<extension::TreeChange> change = extension::tree_change(*unknown);
    if (!change) {
      if (extension::is_tree_change_kind(unknown->name))
        return unknown->name + " is malformed (a field missing or out of range)";
      return std::nullopt;
    }
    if (auto problem = named(unknown->name + " path", change->path, rule)) return problem;
    if (change->kind == extension::TreeChange::Kind::hard_link_made) {
      return named("hard_link_made existing", change->other, rule);
    }
    if (change->kind == extension::TreeChange::Kind::symlink_made) {
      // The link is made inside the view; where it points is the program's business, and no
      // write of the replay's own follows a link.
      if (change->other.empty() || change->other.find('\0') != std::string::npos ||
          change->other.size() > kLongestTapePath) {
        return "symlink_made target " + json_string(change->other.substr(0, 120)) +
               " is empty, too long or holds a NUL byte";
      }
    }
  }
  return std::nullopt;
}

void refuse_unsafe_paths(const std::string& path) {
  auto reader = TapeReader::open(path);
  while (const Record* record = reader->read()) {
    if (auto why = record_path_problem(record->kind)) {
      throw TapeError(path, reader->line_number(),
                      fmt::format("seq {}: {}: refused (a replay applies a tape's paths inside "
                                  "its view of the workspace; `tapedeck verify` lists them all)",
                                  record->seq, *why));
    }
  }
}

}  // namespace tapedeck
