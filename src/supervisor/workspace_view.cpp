#include "supervisor/workspace_view.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "supervisor/run_dir.hpp"

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

std::optional<Isolation> parse_isolation(std::string_view text) {
  if (text == "auto") return Isolation::automatic;
  if (text == "namespace") return Isolation::kernel_overlay;
  if (text == "copy") return Isolation::copy;
  return std::nullopt;
}

const char* isolation_name(Isolation isolation) {
  switch (isolation) {
    case Isolation::kernel_overlay:
      return "namespace";
    case Isolation::copy:
      return "copy";
    default:
      return "auto";
  }
}

namespace {

// A path as an overlayfs option holds it: the options split at commas and lowerdir at colons,
// and a backslash escapes both.
std::string overlay_escaped(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::optional<OverlayOptions> overlay_over(const fs::path& lower, const fs::path& scratch,
                                           std::string& why) {
  const fs::path upper = scratch / "upper";
  const fs::path work = scratch / "work";
  std::error_code error;
  fs::create_directories(upper, error);
  if (!error) fs::create_directories(work, error);
  if (error) {
    why = "cannot make " + scratch.string() + ": " + error.message();
    return std::nullopt;
  }
  OverlayOptions made;
  made.fallback = "lowerdir=" + overlay_escaped(lower.string()) +
                  ",upperdir=" + overlay_escaped(upper.string()) +
                  ",workdir=" + overlay_escaped(work.string());
  made.options = made.fallback + ",redirect_dir=on";
  return made;
}

WorkspaceView::WorkspaceView(fs::path workspace, fs::path scratch)
    : workspace_(std::move(workspace)), scratch_(std::move(scratch)) {}

WorkspaceView::~WorkspaceView() {
  if (view_fd_ >= 0) ::close(view_fd_);
}

std::optional<WorkspaceView::Layer> WorkspaceView::namespace_layer(std::string& why) {
  Layer layer;
  if (::geteuid() != 0) {
    // Unprivileged overlayfs cannot rename a folder (redirect_dir needs trusted xattrs): the
    // namespace holds a private copy instead, bind-mounted over the workspace.
    try {
      copy_files();
    } catch (const std::exception& error) {
      why = error.what();
      return std::nullopt;
    }
    layer.bind_source = copy_.string();
    return layer;
  }
  const std::optional<OverlayOptions> overlay = overlay_over(workspace_, scratch_, why);
  if (!overlay) return std::nullopt;
  layer.overlay_options = overlay->options;
  layer.overlay_fallback = overlay->fallback;
  return layer;
}

void WorkspaceView::adopt_namespace(int view_fd, double setup_ms) {
  view_fd_ = view_fd;
  fd_root_ = "/proc/self/fd/" + std::to_string(view_fd_);
  kind_ = Isolation::kernel_overlay;
  setup_ms_ = setup_ms;
}

void WorkspaceView::copy_files() {
  copy_ = scratch_ / "copy";
  const fs::path workspace = fs::weakly_canonical(workspace_);
  const fs::path scratch = fs::weakly_canonical(scratch_);
  if (inside(scratch, workspace)) {
    throw std::runtime_error("the run folder " + scratch.string() + " is inside the workspace " +
                             workspace.string() + ": set TMPDIR to a folder outside it");
  }
  fs::create_directories(copy_);
  // cp -a keeps modes, links, hard links and times: the copy answers as the workspace would.
  const std::string from = workspace_.string() + "/.";
  const std::string to = copy_.string();
  const char* argv[] = {"cp", "-a", "--reflink=auto", from.c_str(), to.c_str(), nullptr};
  pid_t pid = 0;
  int status = 0;
  if (::posix_spawnp(&pid, "cp", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0 ||
      ::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("cannot copy the workspace " + workspace_.string() + " to " + to);
  }
}

void WorkspaceView::make_copy() {
  if (copy_.empty()) copy_files();
  view_fd_ = ::open(copy_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (view_fd_ < 0) throw std::runtime_error("cannot open the workspace's copy " + copy_.string());
  kind_ = Isolation::copy;
}

std::string WorkspaceView::layer() const {
  switch (kind_) {
    case Isolation::kernel_overlay:
      return copy_.empty() ? "overlayfs" : "bind-mounted copy";
    case Isolation::copy:
      return "copy";
    default:
      return "";
  }
}

void WorkspaceView::keep_to_one_file_system() {
  struct stat status {};
  if (view_fd_ >= 0 && ::fstat(view_fd_, &status) == 0) root_device_ = status.st_dev;
}

bool WorkspaceView::may_enter(int folder) const {
  if (!root_device_) return true;
  struct stat status {};
  return ::fstat(folder, &status) == 0 && status.st_dev == *root_device_;
}

int WorkspaceView::parent_of(const std::string& relative, std::string& name, bool make) const {
  if (view_fd_ < 0 || relative.empty() || relative.front() == '/') return -1;
  int folder = ::fcntl(view_fd_, F_DUPFD_CLOEXEC, 0);
  size_t start = 0;
  for (size_t slash; folder >= 0 && (slash = relative.find('/', start)) != std::string::npos;
       start = slash + 1) {
    const std::string part = relative.substr(start, slash - start);
    // The walk stays beneath the view: no `..` (nor `.` or an empty name, never in a path the
    // gate let through), and each folder opened without following a link.
    if (part.empty() || part == "." || part == "..") {
      ::close(folder);
      return -1;
    }
    int next = ::openat(folder, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && make && ::mkdirat(folder, part.c_str(), 0755) == 0) {
      next = ::openat(folder, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    ::close(folder);
    if (next >= 0 && !may_enter(next)) {
      ::close(next);
      next = -1;
    }
    folder = next;
  }
  name = relative.substr(start);
  if (folder >= 0 && (name.empty() || name == "..")) {  // ("." names the folder: make_folder's)
    ::close(folder);
    return -1;
  }
  return folder;
}

bool WorkspaceView::write_file(const std::string& relative, std::string_view bytes,
                               std::optional<uint32_t> mode) const {
  std::string name;
  const int folder = parent_of(relative, name, /*make=*/true);
  if (folder < 0) return false;
  const int fd =
      ::openat(folder, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  ::close(folder);
  if (fd < 0) return false;
  bool ok = true;
  for (size_t at = 0; ok && at < bytes.size();) {
    const ssize_t wrote = ::write(fd, bytes.data() + at, bytes.size() - at);
    ok = wrote > 0 || (wrote < 0 && errno == EINTR);
    if (wrote > 0) at += static_cast<size_t>(wrote);
  }
  if (ok && mode) ::fchmod(fd, static_cast<mode_t>(*mode));
  ::close(fd);
  return ok;
}

bool WorkspaceView::make_folder(const std::string& relative) const {
  std::string name;
  const int folder = parent_of(relative + "/.", name, /*make=*/true);
  if (folder < 0) return false;
  ::close(folder);
  return true;
}

bool WorkspaceView::remove_file(const std::string& relative) const {
  std::string name;
  const int folder = parent_of(relative, name, /*make=*/false);
  if (folder < 0) return false;
  const bool removed = ::unlinkat(folder, name.c_str(), 0) == 0;
  ::close(folder);
  return removed;
}

namespace {
// Removes `name` in `folder`, and all in it if it is a folder, following no link and, given a
// `device`, entering no folder of another file system (a mount point).
bool remove_at(int folder, const char* name, std::optional<dev_t> device) {
  if (::unlinkat(folder, name, 0) == 0 || errno == ENOENT) return true;
  if (errno != EISDIR && errno != EPERM) return false;
  const int inner = ::openat(folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (inner < 0) return false;
  struct stat status {};
  if (device && (::fstat(inner, &status) != 0 || status.st_dev != *device)) {
    ::close(inner);
    return false;
  }
  ::fchmod(inner, 0700);  // a read-only folder still gives up what it holds
  DIR* listing = ::fdopendir(inner);
  if (listing == nullptr) {
    ::close(inner);
    return false;
  }
  bool ok = true;
  while (const dirent* item = ::readdir(listing)) {
    const std::string_view entry(item->d_name);
    if (entry == "." || entry == "..") continue;
    ok = remove_at(::dirfd(listing), item->d_name, device) && ok;
  }
  ::closedir(listing);
  return ::unlinkat(folder, name, AT_REMOVEDIR) == 0 && ok;
}
}  // namespace

bool WorkspaceView::remove_tree(const std::string& relative) const {
  std::string name;
  const int folder = parent_of(relative, name, /*make=*/false);
  if (folder < 0) return false;
  const bool removed = name != "." && remove_at(folder, name.c_str(), root_device_);
  ::close(folder);
  return removed;
}

bool WorkspaceView::make_symlink(const std::string& relative, const std::string& target) const {
  std::string name;
  const int folder = parent_of(relative, name, /*make=*/true);
  if (folder < 0) return false;
  ::unlinkat(folder, name.c_str(), 0);  // a file or link there is replaced; a folder is not
  const bool made = name != "." && ::symlinkat(target.c_str(), folder, name.c_str()) == 0;
  ::close(folder);
  return made;
}

bool WorkspaceView::make_hard_link(const std::string& relative, const std::string& existing) const {
  std::string name, existing_name;
  const int existing_folder = parent_of(existing, existing_name, /*make=*/false);
  if (existing_folder < 0) return false;
  const int folder = parent_of(relative, name, /*make=*/true);
  bool made = false;
  if (folder >= 0 && name != "." && existing_name != ".") {
    ::unlinkat(folder, name.c_str(), 0);
    // Without AT_SYMLINK_FOLLOW: a link names the link itself, never where it points.
    made = ::linkat(existing_folder, existing_name.c_str(), folder, name.c_str(), 0) == 0;
  }
  if (folder >= 0) ::close(folder);
  ::close(existing_folder);
  return made;
}

bool WorkspaceView::set_mode(const std::string& relative, uint32_t mode) const {
  std::string name;
  const int folder = parent_of(relative, name, /*make=*/false);
  if (folder < 0) return false;
  const int target = ::openat(folder, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  ::close(folder);
  if (target < 0) return false;
  struct stat status {};
  bool set = false;
  if (::fstat(target, &status) == 0 && !S_ISLNK(status.st_mode) &&
      (!root_device_ || status.st_dev == *root_device_)) {
    // chmod through the descriptor's /proc name: the very file opened, with no link followed.
    const std::string by_fd = "/proc/self/fd/" + std::to_string(target);
    set = ::chmod(by_fd.c_str(), static_cast<mode_t>(mode & 07777)) == 0;
  }
  ::close(target);
  return set;
}

fs::path WorkspaceView::path(const std::string& relative) const {
  switch (kind_) {
    case Isolation::kernel_overlay:
      return relative.empty() ? fs::path(fd_root_) : fs::path(fd_root_) / relative;
    case Isolation::copy:
      return relative.empty() ? copy_ : copy_ / relative;
    default:
      return relative.empty() ? workspace_ : workspace_ / relative;
  }
}

namespace {
// `path` with the folder `from` at its start replaced by `to`; nullopt when it is not under it.
std::optional<std::string> moved(const std::string& path, const std::string& from,
                                 const std::string& to) {
  if (!path.starts_with(from) || (path.size() > from.size() && path[from.size()] != '/')) {
    return std::nullopt;
  }
  return to + path.substr(from.size());
}
}  // namespace

fs::path WorkspaceView::translate(const fs::path& path) const {
  if (kind_ != Isolation::copy) return path;
  return moved(path.string(), workspace_.string(), copy_.string()).value_or(path.string());
}

std::string WorkspaceView::untranslate(const std::string& path) const {
  if (kind_ != Isolation::copy) return path;
  return moved(path, copy_.string(), workspace_.string()).value_or(path);
}

}  // namespace tapedeck::supervisor
