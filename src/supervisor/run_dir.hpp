// A private folder for one run: the supervisor's socket, replay's clock map and the replay's
// view of the workspace. In $TMPDIR, unless that lies in the workspace (a program's temporary
// files taped as workspace files): the view's scratch cannot live inside what it overlays, nor
// the run inside what it tapes. Removed, whole, when the run ends; a run killed before that
// (SIGKILL, a crash) leaves it, with its owner's pid and start time in it, and the next run of
// the same user removes it.
#pragma once

#include <filesystem>

namespace tapedeck::supervisor {

// Whether `path` is `folder` or lies under it (both canonical).
bool inside(const std::filesystem::path& path, const std::filesystem::path& folder);

class RunDir {
 public:
  explicit RunDir(const std::filesystem::path& workspace);  // throws when no folder will do
  ~RunDir();
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace tapedeck::supervisor
