// What changed in the workspace behind the preload's back: the files a subprocess (a black box,
// run without the preload library) wrote or deleted, so that a replay, which does not run it,
// can make the same changes in its view of the workspace.
//
// Contract. start() watches every folder under the workspace with inotify (new folders as they
// appear). The supervisor tells it of every change a process of the tree reported itself
// (forget()), right after draining the kernel's queue, so that what remains when a subprocess
// ends (take_changes()) is what no report explains: the subprocess's changes, plus anything the
// tree did past the preload while the subprocess ran. Paths are relative to the workspace;
// folders themselves, links and metadata are not followed, only regular files' bytes and
// deletions. Not thread-safe: the supervisor's serving thread owns it.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tapedeck::supervisor {

class WorkspaceWatch {
 public:
  WorkspaceWatch() = default;
  ~WorkspaceWatch();
  WorkspaceWatch(const WorkspaceWatch&) = delete;
  WorkspaceWatch& operator=(const WorkspaceWatch&) = delete;

  // Watches `root` and every folder under it. False (and `why`) when inotify is not to be had
  // or a folder could not be watched (the kernel's limit on watches).
  bool start(const std::filesystem::path& root, std::string& why);
  // The descriptor to poll (readable when events wait), or -1.
  int fd() const { return fd_; }
  // Reads every event the kernel holds.
  void drain();
  // A path whose change a process reported itself, with the content it left (none: deleted).
  // Remembered until the next take_changes(), since its events may be read later, or its folder
  // watched later; a subprocess changing it after the report is told apart by the content.
  void forget(const std::string& path, std::optional<std::string> content_hash) {
    reported_[path] = std::move(content_hash);
  }
  struct Change {
    std::string path;
    bool reported = false;                    // a process of the tree reported a change to it
    std::optional<std::string> content_hash;  // what it reported it left (none: deleted)
  };
  // The paths changed since the last call, sorted; both sets are emptied.
  std::vector<Change> take_changes();
  // The folders made since the last call (parents first); emptied.
  std::vector<std::string> take_made_folders();
  // Changes taken for a subprocess whose record was then dropped (it ran inside a tool, whose
  // records are dropped): they are the tool's, to be taken again when it ends.
  void give_back(const std::vector<std::string>& paths, const std::vector<std::string>& folders) {
    changed_.insert(paths.begin(), paths.end());
    made_folders_.insert(folders.begin(), folders.end());
  }

 private:
  void watch_tree(const std::filesystem::path& folder, bool mark_files);
  std::string relative(const std::filesystem::path& path) const;

  int fd_ = -1;
  std::filesystem::path root_;
  std::map<int, std::filesystem::path> folders_;  // watch descriptor -> folder
  std::set<std::string> changed_;
  std::map<std::string, std::optional<std::string>> reported_;
  std::set<std::string> made_folders_;
  bool full_ = false;  // a folder could not be watched
};

}  // namespace tapedeck::supervisor
