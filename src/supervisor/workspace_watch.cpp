#include "supervisor/workspace_watch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {
// Every way an entry comes to be, change or go: written and closed, made (a file, folder, link,
// hard link), moved in or out, deleted, its mode or times changed. An event only says which
// folder to look at again.
constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                             IN_ATTRIB | IN_DONT_FOLLOW | IN_ONLYDIR | IN_EXCL_UNLINK;

std::string joined(const std::string& folder, const std::string& name) {
  return folder.empty() ? name : folder + "/" + name;
}

using Entry = WorkspaceWatch::Entry;
using Change = WorkspaceWatch::Change;

Entry entry_of(const struct stat& status) {
  Entry entry;
  if (S_ISREG(status.st_mode)) {
    entry.type = Entry::Type::file;
  } else if (S_ISDIR(status.st_mode)) {
    entry.type = Entry::Type::folder;
  } else if (S_ISLNK(status.st_mode)) {
    entry.type = Entry::Type::symlink;
  } else if (S_ISCHR(status.st_mode) && status.st_rdev == 0) {
    entry.type = Entry::Type::whiteout;
  }
  entry.mode = status.st_mode & 07777;
  entry.size = static_cast<uint64_t>(status.st_size);
  entry.mtime_ns =
      static_cast<int64_t>(status.st_mtim.tv_sec) * 1000000000 + status.st_mtim.tv_nsec;
  entry.inode = status.st_ino;
  entry.links = status.st_nlink;
  return entry;
}

Change change_of(Change::Kind kind, const std::string& path, bool folder, uint32_t mode,
                 std::string other = {}) {
  return Change{kind, path, folder, mode, std::move(other), false, std::nullopt};
}

// The phases changes are made again in (see Change).
enum Phase { kRemovals, kFolders, kFiles, kHardLinks, kModes, kPhases };

}  // namespace

WorkspaceWatch::~WorkspaceWatch() {
  if (fd_ >= 0) ::close(fd_);
}

bool WorkspaceWatch::start(const fs::path& root, std::string& why) {
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) {
    why = std::string("inotify: ") + std::strerror(errno);
    return false;
  }
  root_ = root;
  Taken ignored;
  snapshot_tree("", ignored);
  if (full_) {
    why = "the kernel's limit on inotify watches (fs.inotify.max_user_watches) was reached";
    return false;
  }
  return true;
}

fs::path WorkspaceWatch::absolute(const std::string& relative) const {
  return relative.empty() ? root_ : root_ / relative;
}

// The folder's entries, reached without following a link on the way (a folder replaced by a link
// must not lead the snapshot out of the workspace); nullopt when it is gone or not a folder.
std::optional<WorkspaceWatch::Listing> WorkspaceWatch::list(const std::string& folder) const {
  int at = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (size_t start = 0; at >= 0 && start < folder.size();) {
    size_t slash = folder.find('/', start);
    if (slash == std::string::npos) slash = folder.size();
    const std::string part = folder.substr(start, slash - start);
    const int next = ::openat(at, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ::close(at);
    at = next;
    start = slash + 1;
  }
  if (at < 0) return std::nullopt;
  const int fd = ::openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ::close(at);
  DIR* dir = fd >= 0 ? ::fdopendir(fd) : nullptr;
  if (dir == nullptr) {
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  Listing listing;
  while (const dirent* item = ::readdir(dir)) {
    const std::string_view name(item->d_name);
    if (name == "." || name == "..") continue;
    struct stat status {};
    if (::fstatat(::dirfd(dir), item->d_name, &status, AT_SYMLINK_NOFOLLOW) != 0) continue;
    Entry entry = entry_of(status);
    if (entry.type == Entry::Type::symlink) {
      char target[PATH_MAX];
      const ssize_t size = ::readlinkat(::dirfd(dir), item->d_name, target, sizeof target);
      if (size < 0) continue;
      entry.target.assign(target, static_cast<size_t>(size));
    }
    listing.emplace(std::string(name), std::move(entry));
  }
  ::closedir(dir);
  return listing;
}

void WorkspaceWatch::watch(const std::string& folder) {
  const int watch = ::inotify_add_watch(fd_, absolute(folder).c_str(), kEvents);
  if (watch < 0) {
    if (errno == ENOSPC) full_ = true;
    return;  // gone already, or not a folder: nothing to watch
  }
  folders_[watch] = folder;  // a folder moved since keeps its descriptor: its new name
}

// A folder seen for the first time: watched first, then listed, so that nothing done to it after
// the listing goes unseen; its folders alike.
void WorkspaceWatch::snapshot_tree(const std::string& folder, Taken& taken) {
  watch(folder);
  std::optional<Listing> listing = list(folder);
  if (!listing) return;
  remember(folder, taken);
  for (const auto& [name, entry] : *listing) {
    if (entry.type == Entry::Type::folder) snapshot_tree(joined(folder, name), taken);
    if (entry.type == Entry::Type::file && entry.links > 1) {
      linked_.try_emplace(entry.inode, joined(folder, name));
    }
  }
  known_[folder] = std::move(*listing);
}

// A folder that appears is watched at once, with what it holds already (made before the watch):
// its events then mark it. take_changes() reads it whole either way.
void WorkspaceWatch::watch_tree(const std::string& folder) {
  watch(folder);
  if (const std::optional<Listing> listing = list(folder)) {
    for (const auto& [name, entry] : *listing) {
      if (entry.type == Entry::Type::folder) watch_tree(joined(folder, name));
    }
  }
}

void WorkspaceWatch::drain() {
  if (fd_ < 0) return;
  alignas(inotify_event) char buffer[1 << 16];
  while (true) {
    const ssize_t got = ::read(fd_, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return;
    for (ssize_t at = 0; at < got;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        // Events were lost: every folder is looked at again.
        for (const auto& [folder, listing] : known_) dirty_.insert(folder);
        continue;
      }
      const auto folder = folders_.find(event->wd);
      if (folder == folders_.end()) continue;
      if ((event->mask & IN_IGNORED) != 0) {
        folders_.erase(folder);
        continue;
      }
      if (event->len == 0) continue;  // the folder itself: its parent's watch names it too
      dirty_.insert(folder->second);
      if ((event->mask & IN_ISDIR) != 0 && (event->mask & (IN_CREATE | IN_MOVED_TO)) != 0) {
        watch_tree(joined(folder->second, event->name));
      }
    }
  }
}

void WorkspaceWatch::remember(const std::string& folder, Taken& taken) {
  if (taken.before.contains(folder)) return;
  const auto found = known_.find(folder);
  taken.before.emplace(
      folder, found == known_.end() ? std::nullopt : std::optional<Listing>(found->second));
}

// A folder gone with everything in it: out of the snapshot.
void WorkspaceWatch::forget_tree(const std::string& folder, Taken& taken) {
  const auto found = known_.find(folder);
  if (found == known_.end()) return;
  remember(folder, taken);
  for (const auto& [name, entry] : found->second) {
    if (entry.type == Entry::Type::folder) forget_tree(joined(folder, name), taken);
  }
  known_.erase(folder);
}

// An entry not in the snapshot: made, with everything in it.
void WorkspaceWatch::take_new(const std::string& path, const Entry& entry, Taken& taken,
                              std::vector<Change>* phases) {
  switch (entry.type) {
    case Entry::Type::folder: {
      phases[kFolders].push_back(change_of(Change::Kind::folder_made, path, true, entry.mode));
      watch(path);
      std::optional<Listing> listing = list(path);
      remember(path, taken);
      if (!listing) listing.emplace();
      for (const auto& [name, inner] : *listing) take_new(joined(path, name), inner, taken, phases);
      known_[path] = std::move(*listing);
      return;
    }
    case Entry::Type::file: {
      if (entry.links > 1) {
        // A second name of a file there before (or just taken): a hard link to it.
        if (const std::optional<std::string> other = other_name(entry.inode, path)) {
          phases[kHardLinks].push_back(
              change_of(Change::Kind::hard_link_made, path, false, 0, *other));
          return;
        }
        linked_[entry.inode] = path;
      }
      phases[kFiles].push_back(
          as_reported(change_of(Change::Kind::file_written, path, false, entry.mode)));
      return;
    }
    case Entry::Type::symlink:
      phases[kFiles].push_back(change_of(Change::Kind::symlink_made, path, false, 0, entry.target));
      return;
    case Entry::Type::whiteout:
      // What the lower layer had there is gone (what the upper had, compare() took).
      if (!lower_.empty()) phases[kRemovals].push_back(removal_of(path, entry));
      return;
    case Entry::Type::other:
      return;  // a fifo, a socket, a device: nothing a replay makes
  }
}

// The removal of `path`, which was `was`: a folder's (with everything in it) when it was one, or
// when it is a whiteout over the lower layer's folder.
WorkspaceWatch::Change WorkspaceWatch::removal_of(const std::string& path, const Entry& was) const {
  bool folder = was.type == Entry::Type::folder;
  if (was.type == Entry::Type::whiteout) {
    struct stat status {};
    folder = ::lstat((lower_ / path).c_str(), &status) == 0 && S_ISDIR(status.st_mode);
  }
  return as_reported(change_of(Change::Kind::removed, path, folder, 0));
}

// `change`, with what a process of the tree reported of its path, if it did.
WorkspaceWatch::Change WorkspaceWatch::as_reported(Change change) const {
  if (const auto said = reported_.find(change.path); said != reported_.end()) {
    change.reported = true;
    change.reported_hash = said->second;
  }
  return change;
}

// Another name the file `inode` has in the workspace, still its own; nullopt when none is known.
std::optional<std::string> WorkspaceWatch::other_name(ino_t inode, const std::string& path) const {
  const auto still = [&](const std::string& other) {
    struct stat status {};
    return other != path &&
           ::fstatat(AT_FDCWD, absolute(other).c_str(), &status, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISREG(status.st_mode) && status.st_ino == inode;
  };
  if (const auto found = linked_.find(inode); found != linked_.end() && still(found->second)) {
    return found->second;
  }
  // Linked to a file that had one name until now: the snapshot knows its inode.
  for (const auto& [folder, listing] : known_) {
    for (const auto& [name, entry] : listing) {
      if (entry.type == Entry::Type::file && entry.inode == inode && still(joined(folder, name))) {
        return joined(folder, name);
      }
    }
  }
  return std::nullopt;
}

// One folder as it is now against the snapshot's, and the snapshot brought up to date.
void WorkspaceWatch::compare(const std::string& folder, Taken& taken, std::vector<Change>* phases) {
  const auto known = known_.find(folder);
  if (known == known_.end()) return;  // not known (yet): its parent's look takes it
  std::optional<Listing> now = list(folder);
  if (!now) return;  // gone: its parent's look takes that
  remember(folder, taken);
  const Listing before = known->second;
  // Gone, or something else now (a folder made again is another folder: what was in it is not).
  const auto replaced = [](const Entry& was, const Entry& is) {
    return was.type != is.type || (is.type == Entry::Type::folder && was.inode != is.inode);
  };
  for (const auto& [name, was] : before) {
    const auto is = now->find(name);
    if (is != now->end() && !replaced(was, is->second)) continue;
    const std::string path = joined(folder, name);
    // A whiteout is no entry: what it hides stays removed, and one gone shows the lower layer's
    // entry again, which the next look takes as made.
    if (was.type != Entry::Type::whiteout || lower_.empty()) {
      phases[kRemovals].push_back(removal_of(path, was));
    }
    if (was.type == Entry::Type::folder) forget_tree(path, taken);
  }
  for (const auto& [name, is] : *now) {
    const std::string path = joined(folder, name);
    const auto was = before.find(name);
    if (was == before.end() || replaced(was->second, is)) {
      // (An entry of the upper layer removed leaves a whiteout: its removal is taken above.)
      if (was != before.end() && is.type == Entry::Type::whiteout) continue;
      take_new(path, is, taken, phases);
      continue;
    }
    const Entry& old = was->second;
    if (is.type == Entry::Type::file &&
        (old.inode != is.inode || old.size != is.size || old.mtime_ns != is.mtime_ns)) {
      // Another file now (`sed -i` writes a new one and renames it over): one that had other
      // names leaves them to the old file, so it is removed and made again, not written through.
      if (old.inode != is.inode && old.links > 1) {
        phases[kRemovals].push_back(change_of(Change::Kind::removed, path, false, 0));
      }
      phases[kFiles].push_back(
          as_reported(change_of(Change::Kind::file_written, path, false, is.mode)));
      if (is.links > 1) linked_.try_emplace(is.inode, path);
    } else if (is.type == Entry::Type::symlink && old.target != is.target) {
      phases[kFiles].push_back(change_of(Change::Kind::symlink_made, path, false, 0, is.target));
    } else if (is.type != Entry::Type::symlink && old.mode != is.mode) {
      phases[kModes].push_back(change_of(Change::Kind::mode_set, path, false, is.mode));
    }
  }
  // Only now: a hard link looks for its other name among what was there before.
  known_[folder] = std::move(*now);
}

WorkspaceWatch::Taken WorkspaceWatch::take_changes() {
  drain();
  Taken taken;
  std::vector<Change> phases[kPhases];
  // Parents first (a folder sorts before what is in it): a folder made is read whole once.
  while (!dirty_.empty()) {
    const std::string folder = *dirty_.begin();
    dirty_.erase(dirty_.begin());
    compare(folder, taken, phases);
  }
  for (std::vector<Change>& phase : phases) {
    for (Change& change : phase) taken.changes.push_back(std::move(change));
  }
  taken.reported = std::move(reported_);
  reported_.clear();
  return taken;
}

void WorkspaceWatch::give_back(const Taken& taken) {
  for (const auto& [folder, listing] : taken.before) {
    if (listing) {
      known_[folder] = *listing;
    } else {
      known_.erase(folder);
    }
    dirty_.insert(folder);
  }
  for (const auto& [path, hash] : taken.reported) reported_.try_emplace(path, hash);
}

}  // namespace tapedeck::supervisor
