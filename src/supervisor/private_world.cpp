#include "supervisor/private_world.hpp"

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
  return private_layer(root, run_dir / "home", {workspace, run_dir}, why);
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
