// The one gate every path a tape names passes before tapedeck uses it.
//
// A tape is untrusted input: it travels in pull requests and bug reports and is replayed in CI,
// often as root. The paths its records name (files read, written and deleted, folders made, a
// subprocess's working folder) are applied inside a replay's private view of the workspace, so
// each must name a place beneath that view and nothing else: relative, in normal form (no empty,
// `.` or `..` component, so no climbing out however the components combine), without NUL and of
// bounded length. The absolute forms allowed name the run's private /tmp (`/tmp/` then such a
// relative path: what a tool wrote there), applied beneath the replay's own /tmp, never the
// host's, and the home folder (`/~/` then such a path: a home file as the run found it before it
// changed it), applied beneath the replay's private home. `verify` reports a record that fails it;
// `replay` and `check` refuse the tape before anything runs. (The view's own writes also refuse
// `..` and follow no link: two walls.)
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "tapedeck/tape.hpp"

namespace tapedeck {

inline constexpr size_t kLongestTapePath = 4096;      // bytes of a whole path (PATH_MAX)
inline constexpr size_t kLongestPathComponent = 255;  // bytes of one component (NAME_MAX)
// How a tape names a file of the run's private /tmp: this, then the path beneath it.
inline constexpr std::string_view kPrivateTempPrefix = "/tmp/";
// How a tape names a file of the home folder ($HOME, whichever it is where the tape is replayed):
// this, then the path beneath it. (Absolute in form, so that no workspace path can read as one.)
inline constexpr std::string_view kHomePrefix = "/~/";

// Which paths a tape may name. A tape that `tapedeck run` or `replay` wrote (its first record is
// an `entropy` one) names workspace files relative to the workspace; the reference's runtime
// names them absolute (`/work/src/main.rs`), which is its format too, and which no replay applies.
enum class PathRule {
  workspace,  // relative: what replay and check require of every tape
  any_writer  // absolute allowed too; still normal, no NUL, bounded (verify, on other tapes)
};

// Why `path`, a file or folder of the workspace as a tape names it, could lead outside the run's
// view; nullopt when it cannot.
std::optional<std::string> workspace_path_problem(std::string_view path,
                                                  PathRule rule = PathRule::workspace);

// The same for every path `kind` names: file reads, writes and deletes, folders made, and a
// subprocess's working folder when relative (an absolute one, outside the workspace, is only a
// key a replay matches on, never a place it writes). The first problem, naming the field.
std::optional<std::string> record_path_problem(const RecordKind& kind,
                                               PathRule rule = PathRule::workspace);

// Reads the tape at `path` through and throws a TapeError naming the line and record of the
// first path that fails the gate: `replay` and `check` call it before anything runs.
void refuse_unsafe_paths(const std::string& path);

}  // namespace tapedeck
