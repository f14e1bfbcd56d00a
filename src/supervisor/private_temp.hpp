// The run's own /tmp, in recording and replay alike.
//
// Temporary files belong to the run. A recording's leftovers must not stand in a replay's way: a
// replay draws the recorded names, and with the recording's `mkdtemp` folder still in the host's
// /tmp it takes the next name and stops on the first command that names it. A replay must leave
// nothing behind either. So in the program's mount namespace /tmp is an overlayfs: its lower is
// the host's /tmp, read as it is (a program, a socket or a file put there before stays
// reachable), its upper a folder of the run's, which goes with the run. TMPDIR names /tmp
// (unless it lies in the workspace, where temporary files are taped as the workspace's).
// What must stay live beneath /tmp, the workspace (or its view) and the run's own folder (the
// supervisor's socket, the clock map), is mounted back over the overlay as it is.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tapedeck::supervisor {

inline constexpr const char* kTempRoot = "/tmp";

// The overlay's upper folder in the run's folder: what the tree wrote in its /tmp, and only that.
std::filesystem::path temp_upper(const std::filesystem::path& run_dir);

struct TempLayer {
  std::string overlay_options;  // lowerdir=/tmp, the upper and work folders in the run's folder
  // Canonical paths beneath /tmp, mounted back over the overlay as the host has them (the
  // workspace as the namespace has it: its view in a replay), at most kMostKept.
  std::vector<std::string> kept;
  static constexpr size_t kMostKept = 4;
};

// The layer for a run whose folder is `run_dir`, of `workspace`, keeping `also_kept` (paths the
// tree writes for the host: a trace's folder) live too. Nullopt, and why, when /tmp cannot be
// private: the workspace is /tmp or holds it, /tmp is no folder, the upper cannot be made.
std::optional<TempLayer> private_temp_layer(const std::filesystem::path& run_dir,
                                            const std::filesystem::path& workspace,
                                            const std::vector<std::filesystem::path>& also_kept,
                                            std::string& why);

// The program's environment with TMPDIR naming /tmp, whatever the host's said (the recording's
// machine and the replay's may have different ones), unless it names a folder inside `workspace`.
void point_temp_at_private(std::vector<std::string>& env, const std::filesystem::path& workspace);

}  // namespace tapedeck::supervisor
