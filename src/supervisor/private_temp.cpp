#include "supervisor/private_temp.hpp"

#include <algorithm>
#include <system_error>

#include "supervisor/run_dir.hpp"
#include "supervisor/workspace_view.hpp"

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

fs::path temp_upper(const fs::path& run_dir) {
  return run_dir / "temp" / "upper";
}

std::optional<TempLayer> private_temp_layer(const fs::path& run_dir, const fs::path& workspace,
                                            const std::vector<fs::path>& also_kept,
                                            std::string& why) {
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
  TempLayer layer;
  std::vector<fs::path> candidates = {canonical_workspace, fs::weakly_canonical(run_dir, error)};
  for (const fs::path& path : also_kept) candidates.push_back(fs::weakly_canonical(path, error));
  for (const fs::path& path : candidates) {
    // Only what lies strictly beneath /tmp is hidden by the overlay; /tmp itself kept would undo
    // it.
    if (path == temp || !inside(path, temp) || !fs::is_directory(path, error)) continue;
    const bool beneath_kept =
        std::any_of(layer.kept.begin(), layer.kept.end(),
                    [&](const std::string& kept) { return inside(path, kept); });
    if (beneath_kept) continue;
    if (layer.kept.size() == TempLayer::kMostKept) {
      why = "too many folders beneath " + temp.string() + " to keep";
      return std::nullopt;
    }
    layer.kept.push_back(path.string());
  }
  const fs::path upper = temp_upper(run_dir);
  const fs::path work = run_dir / "temp" / "work";
  fs::create_directories(upper, error);
  if (!error) fs::create_directories(work, error);
  if (error) {
    why = "cannot make " + (run_dir / "temp").string() + ": " + error.message();
    return std::nullopt;
  }
  // The host's /tmp is read as it is, whatever another process adds to it meanwhile; writes go
  // to the upper. A folder rename needs redirect_dir, which only the kernel's own trusted
  // namespace allows: without it a folder of the host's /tmp cannot be renamed (EXDEV), as on
  // any overlayfs, and tools fall back to a copy.
  layer.overlay_options = "lowerdir=" + overlay_escaped(temp.string()) +
                          ",upperdir=" + overlay_escaped(upper.string()) +
                          ",workdir=" + overlay_escaped(work.string());
  return layer;
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
