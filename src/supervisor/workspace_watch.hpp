// What changed in the workspace behind the preload's back: what a subprocess run as a tool (its
// records dropped, or a black box without the preload) made, wrote, linked, chmod'ed, moved or
// removed, so that a replay, which does not run it, makes the same changes in its view.
//
// Contract. start() takes a snapshot of the workspace (every entry's type, mode, size, times,
// inode, link target) and watches every folder with inotify. An event only marks its folder to
// be looked at again: take_changes() compares those folders with the snapshot, and a folder new
// since is read whole. So nothing a tool did is missed for having happened before a new folder's
// watch was set (`mkdir -p a/b/c` makes b and c before a is watched); an overflowed event queue
// makes every folder looked at again. The supervisor tells it of every change a process of the
// tree reported itself (forget()), so that a change still as reported is not taken as a tool's.
// Paths are relative to the workspace; links are not followed. Not thread-safe: the supervisor's
// serving thread owns it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
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
  // `root` is an overlay's upper layer over `lower`: a whiteout in it (a character device 0/0,
  // what the overlay leaves where a file or folder of the lower layer was removed) is taken as
  // that removal, a folder's when `lower` has a folder there.
  void see_whiteouts_over(const std::filesystem::path& lower) { lower_ = lower; }
  // The descriptor to poll (readable when events wait), or -1.
  int fd() const { return fd_; }
  // Reads every event the kernel holds.
  void drain();
  // A path whose change a process reported itself, with the content it left (none: deleted).
  // Remembered until the next take_changes(), since its events may be read later; a tool
  // changing it after the report is told apart by the content.
  void forget(const std::string& path, std::optional<std::string> content_hash) {
    reported_[path] = std::move(content_hash);
  }

  // What the snapshot knows of one entry.
  struct Entry {
    enum class Type : uint8_t { file, folder, symlink, whiteout, other } type = Type::other;
    uint32_t mode = 0;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    ino_t inode = 0;
    nlink_t links = 0;
    std::string target;  // a symlink's
  };

  // One change, in an order that makes them again: removals, folders made (parents first),
  // files written and links made, hard links, then modes of what was there before.
  struct Change {
    enum class Kind { removed, folder_made, file_written, symlink_made, hard_link_made, mode_set };
    Kind kind;
    std::string path;
    bool folder = false;    // removed: a folder, and everything in it
    uint32_t mode = 0;      // folder_made, file_written, mode_set: the permission bits
    std::string other;      // symlink_made: the target; hard_link_made: the path linked to
    bool reported = false;  // file_written, removed: a process of the tree reported this path
    std::optional<std::string> reported_hash;  // what it reported it left (none: deleted)
  };
  // What was before the changes taken: give_back() puts it back.
  struct Taken {
    std::vector<Change> changes;
    std::map<std::string, std::optional<std::map<std::string, Entry>>> before;
    std::map<std::string, std::optional<std::string>> reported;
  };
  // The changes since the last call (reports are forgotten).
  Taken take_changes();
  // Changes taken for a subprocess whose record was then dropped (it ran inside a tool, whose
  // records are dropped): they are the tool's, to be taken again when it ends.
  void give_back(const Taken& taken);

 private:
  using Listing = std::map<std::string, Entry>;  // a folder's entries by name
  std::optional<Listing> list(const std::string& folder) const;
  void watch(const std::string& folder);
  void watch_tree(const std::string& folder);
  void snapshot_tree(const std::string& folder, Taken& taken);
  std::optional<std::string> other_name(ino_t inode, const std::string& path) const;
  Change as_reported(Change change) const;
  std::filesystem::path absolute(const std::string& relative) const;
  void compare(const std::string& folder, Taken& taken, std::vector<Change>* phases);
  Change removal_of(const std::string& path, const Entry& was) const;
  void take_new(const std::string& path, const Entry& entry, Taken& taken,
                std::vector<Change>* phases);
  void forget_tree(const std::string& folder, Taken& taken);
  void remember(const std::string& folder, Taken& taken);

  int fd_ = -1;
  std::filesystem::path root_;
  std::filesystem::path lower_;                     // (empty: root_ is no overlay's upper layer)
  std::unordered_map<int, std::string> folders_;    // watch descriptor -> folder ("" the root)
  std::unordered_map<std::string, Listing> known_;  // the snapshot: folder -> its entries
  std::set<std::string> dirty_;                     // folders to compare again
  std::unordered_map<ino_t, std::string> linked_;   // files with more than one name: one of them
  std::map<std::string, std::optional<std::string>> reported_;
  bool full_ = false;  // a folder could not be watched
};

}  // namespace tapedeck::supervisor
