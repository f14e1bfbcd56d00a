#include "supervisor/private_world.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <system_error>

#include "supervisor/run_dir.hpp"
#include "supervisor/workspace_view.hpp"

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {

// The layer over `root` (canonical) with its upper and work folders in `scratch`, keeping live
// whatever of `keep` lies strictly beneath it.
std::optional<PrivateLayer> private_layer(const fs::path& root, const fs::path& scratch,
                                          const std::vector<fs::path>& keep, std::string& why) {
  std::error_code error;
  PrivateLayer layer;
  layer.root = root.string();
  for (const fs::path& wanted : keep) {
    const fs::path path = fs::weakly_canonical(wanted, error);
    // Only what lies strictly beneath is hidden by the overlay; the root itself kept would undo it.
    if (error || path == root || !inside(path, root) || !fs::is_directory(path, error)) continue;
    const bool beneath_kept =
        std::any_of(layer.kept.begin(), layer.kept.end(),
                    [&](const std::string& kept) { return inside(path, fs::path(kept)); });
    if (beneath_kept) continue;
    if (layer.kept.size() == PrivateLayer::kMostKept) {
      why = "too many folders beneath " + root.string() + " to keep";
      return std::nullopt;
    }
    layer.kept.push_back(path.string());
  }
  // The host's folder is read as it is, whatever another process adds to it meanwhile; writes
  // go to the upper. Without redirect_dir (a user namespace's) a folder of the host's cannot be
  // renamed (EXDEV), as on any such overlayfs, and tools fall back to a copy.
  const std::optional<OverlayOptions> overlay = overlay_over(root, scratch, why);
  if (!overlay) return std::nullopt;
  layer.overlay_options = overlay->options;
  layer.overlay_fallback = overlay->fallback;
  return layer;
}

}  // namespace

fs::path temp_upper(const fs::path& run_dir) {
  return run_dir / "temp" / "upper";
}

fs::path home_upper(const fs::path& run_dir) {
  return run_dir / "home" / "upper";
}

std::optional<PrivateLayer> temp_layer(const fs::path& run_dir, const fs::path& workspace,
                                       const std::vector<fs::path>& also_kept, std::string& why) {
  std::error_code error;
  const fs::path temp = fs::canonical(kTempRoot, error);
  if (error || !fs::is_directory(temp, error)) {
    why = std::string(kTempRoot) + " is no folder";
    return std::nullopt;
  }
  const fs::path canonical_workspace = fs::weakly_canonical(workspace, error);
  if (inside(temp, canonical_workspace)) {
    why = "the workspace " + canonical_workspace.string() + " holds " + temp.string();
    return std::nullopt;
  }
  std::vector<fs::path> keep = {canonical_workspace, run_dir};
  keep.insert(keep.end(), also_kept.begin(), also_kept.end());
  return private_layer(temp, temp_upper(run_dir).parent_path(), keep, why);
}

std::optional<PrivateLayer> home_layer(const fs::path& home, const fs::path& run_dir,
                                       const fs::path& workspace, std::string& why) {
  std::error_code error;
  const fs::path root = fs::weakly_canonical(home, error);
  if (error || root.empty() || root == root.root_path() || !fs::is_directory(root, error)) {
    return std::nullopt;
  }
  const fs::path temp = fs::weakly_canonical(kTempRoot, error);
  if (inside(root, fs::weakly_canonical(workspace, error)) || inside(root, temp)) {
    return std::nullopt;
  }
  if (inside(temp, root)) {
    why = "it holds " + temp.string();
    return std::nullopt;
  }
  return private_layer(root, home_upper(run_dir).parent_path(), {workspace, run_dir}, why);
}

void seed_home(const PrivateLayer& home, const fs::path& run_dir,
               const std::vector<HomeFileFound>& found, std::string& why) {
  const fs::path upper = home_upper(run_dir);
  const fs::path live = home.root;
  struct stat home_status {};
  if (::stat(live.c_str(), &home_status) != 0) return;
  std::vector<std::string> not_hidden;
  for (const HomeFileFound& file : found) {
    // Each folder on the way as the live home has it (mode and owner), so that the overlay shows
    // it unchanged; one the live home lacks, private to the home's owner.
    const fs::path relative(file.path);
    fs::path made = upper;
    fs::path seen = live;
    bool placed = true;
    for (auto part = relative.begin(); placed && std::next(part) != relative.end(); ++part) {
      made /= *part;
      seen /= *part;
      struct stat status {};
      const bool there = ::stat(seen.c_str(), &status) == 0 && S_ISDIR(status.st_mode);
      if (::mkdir(made.c_str(), there ? status.st_mode & 07777 : 0700) == 0) {
        const struct stat& owner = there ? status : home_status;
        if (::chown(made.c_str(), owner.st_uid, owner.st_gid) != 0) {
        }  // (a user's own replay: already theirs)
      } else if (errno != EEXIST) {
        placed = false;
      }
    }
    if (!placed) continue;
    const fs::path target = upper / relative;
    const fs::path now = live / relative;
    struct stat status {};
    const bool live_file = ::lstat(now.c_str(), &status) == 0;
    if (!file.bytes) {
      if (!live_file) continue;  // not there then, not there now
      if (::mknod(target.c_str(), S_IFCHR, ::makedev(0, 0)) != 0) not_hidden.push_back(file.path);
      continue;
    }
    const bool regular = live_file && S_ISREG(status.st_mode);
    const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                          regular ? status.st_mode & 07777 : 0600);
    if (fd < 0) continue;
    const bool written = ::write(fd, file.bytes->data(), file.bytes->size()) ==
                         static_cast<ssize_t>(file.bytes->size());
    const struct stat& owner = regular ? status : home_status;
    if (::fchown(fd, owner.st_uid, owner.st_gid) != 0) {
    }  // (as above)
    ::close(fd);
    if (!written) ::unlink(target.c_str());
  }
  if (!not_hidden.empty()) {
    why = "~/" + not_hidden.front() + (not_hidden.size() > 1 ? " and others" : "") +
          ", not there when the recording began, is there in the replay's home (hiding it needs "
          "root)";
  }
}

void point_temp_at_private(std::vector<std::string>& env, const fs::path& workspace) {
  const std::string ours = std::string("TMPDIR=") + kTempRoot;
  for (std::string& entry : env) {
    if (!entry.starts_with("TMPDIR=")) continue;
    std::error_code error;
    const fs::path named = fs::weakly_canonical(entry.substr(7), error);
    if (error || !inside(named, fs::weakly_canonical(workspace, error))) entry = ours;
    return;
  }
  env.push_back(ours);
}

}  // namespace tapedeck::supervisor
