#include "supervisor/workspace_watch.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {
// Every way a file's bytes come to change or go: written and closed, made (a link, mknod, an
// empty file), moved in or out, deleted. Links are not followed out of the workspace.
constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                             IN_DONT_FOLLOW | IN_ONLYDIR | IN_EXCL_UNLINK;
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
  watch_tree(root, /*mark_files=*/false);
  if (full_) {
    why = "the kernel's limit on inotify watches (fs.inotify.max_user_watches) was reached";
    return false;
  }
  return true;
}

std::string WorkspaceWatch::relative(const fs::path& path) const {
  return path.lexically_relative(root_).string();
}

// A folder that appears while the run goes on may already hold files and folders (made before
// its watch was added, as `mkdir -p a/b/c` makes b and c): those count as changed and made.
void WorkspaceWatch::watch_tree(const fs::path& folder, bool mark_files) {
  const int watch = ::inotify_add_watch(fd_, folder.c_str(), kEvents);
  if (watch < 0) {
    if (errno == ENOSPC) full_ = true;
    return;  // gone already, or not a folder: nothing to watch
  }
  folders_[watch] = folder;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const fs::file_status status = entry.symlink_status(error);
    if (fs::is_directory(status)) {
      if (mark_files) made_folders_.insert(relative(entry.path()));
      watch_tree(entry.path(), mark_files);
    } else if (mark_files && fs::is_regular_file(status)) {
      changed_.insert(relative(entry.path()));
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
        full_ = true;
        continue;
      }
      const auto folder = folders_.find(event->wd);
      if (folder == folders_.end()) continue;
      if ((event->mask & IN_IGNORED) != 0) {
        folders_.erase(folder);
        continue;
      }
      if (event->len == 0) continue;
      const fs::path path = folder->second / event->name;
      if ((event->mask & IN_ISDIR) != 0) {
        if ((event->mask & (IN_CREATE | IN_MOVED_TO)) != 0) {
          made_folders_.insert(relative(path));
          watch_tree(path, /*mark_files=*/true);
        }
        continue;
      }
      changed_.insert(relative(path));
    }
  }
}

std::vector<std::string> WorkspaceWatch::take_made_folders() {
  drain();
  std::vector<std::string> folders(made_folders_.begin(), made_folders_.end());  // sorted
  made_folders_.clear();
  return folders;
}

std::vector<WorkspaceWatch::Change> WorkspaceWatch::take_changes() {
  drain();
  std::vector<Change> changes;
  for (const std::string& path : changed_) {
    const auto found = reported_.find(path);
    if (found == reported_.end()) {
      changes.push_back({path, false, std::nullopt});
    } else {
      changes.push_back({path, true, found->second});
    }
  }
  changed_.clear();
  reported_.clear();
  return changes;
}

}  // namespace tapedeck::supervisor
