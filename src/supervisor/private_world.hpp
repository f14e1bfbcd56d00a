// The world beyond the workspace that a run keeps to itself: its own /tmp (recording and replay
// alike) and, in a replay, its own home folder.
//
// Temporary files belong to the run. A recording's leftovers must not stand in a replay's way: a
// replay draws the recorded names, and with the recording's `mkdtemp` folder still in the host's
// /tmp it takes the next name and stops on the first command that names it. A replay must leave
// nothing behind either, and must never write the user's real files: an agent that keeps a
// counter in ~/.agentrc counted its replays there.
//
// So in the program's mount namespace each is an overlayfs over the host's folder (its lower,
// read as it is: a program, a socket or a file put there before stays reachable), its upper a
// folder of the run's, which goes with the run. What must stay live beneath it, the workspace (or
// its view), the run's own folder (the supervisor's socket, the clock map) and a layer mounted
// before it, is mounted back over the overlay as it is. TMPDIR names /tmp (unless it lies in the
// workspace, where temporary files are taped as the workspace's).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tapedeck::supervisor {

inline constexpr const char* kTempRoot = "/tmp";

struct PrivateLayer {
  std::string root;  // the host's folder it stands over (canonical)
  // lowerdir=root, the upper and work folders in the run's folder; with redirect_dir, and (the
  // fallback, where the kernel refuses that) without
  std::string overlay_options;
  std::string overlay_fallback;
  // Canonical paths beneath root, mounted back over the overlay as the namespace had them before
  // (the workspace's view in a replay), at most kMostKept.
  std::vector<std::string> kept;
  static constexpr size_t kMostKept = 4;
};

// The overlay's upper folder of the run's /tmp: what the tree wrote there, and only that.
std::filesystem::path temp_upper(const std::filesystem::path& run_dir);
// The same of a replay's home.
std::filesystem::path home_upper(const std::filesystem::path& run_dir);

// The run's /tmp, keeping `also_kept` (paths the tree writes for the host: a trace's folder)
// live too. Nullopt, and why, when it cannot be private: the workspace is /tmp or holds it, /tmp
// is no folder, the upper cannot be made.
std::optional<PrivateLayer> temp_layer(const std::filesystem::path& run_dir,
                                       const std::filesystem::path& workspace,
                                       const std::vector<std::filesystem::path>& also_kept,
                                       std::string& why);

// A replay's home folder `home`, mounted before the /tmp layer. Nullopt with `why` empty when
// the workspace's view already holds it (a home inside the workspace) or it is no place of its
// own (`/`, beneath /tmp, whose layer covers it); with `why` when it cannot be made private.
std::optional<PrivateLayer> home_layer(const std::filesystem::path& home,
                                       const std::filesystem::path& run_dir,
                                       const std::filesystem::path& workspace, std::string& why);

// A file of the home folder as a recording found it before it changed it: a replay's private
// home starts with it so.
struct HomeFileFound {
  std::string path;                  // beneath the home (passed the tape's path gate)
  std::optional<std::string> bytes;  // none: there was no file there
};
// Puts each of `found` in the home layer's upper folder (home_upper), before it is mounted:
// bytes as a file (the live file's mode and owner, else private to the user), no file as a
// whiteout where the live home has one (which only root can make: else a warning in `why`).
void seed_home(const PrivateLayer& home, const std::filesystem::path& run_dir,
               const std::vector<HomeFileFound>& found, std::string& why);

// The program's environment with TMPDIR naming /tmp, whatever the host's said (the recording's
// machine and the replay's may have different ones), unless it names a folder inside `workspace`.
void point_temp_at_private(std::vector<std::string>& env, const std::filesystem::path& workspace);

}  // namespace tapedeck::supervisor
