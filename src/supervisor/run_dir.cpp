#include "supervisor/run_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {

constexpr const char* kOwnerFile = "owner";

// A process's start time (clock ticks since boot, /proc/PID/stat's 22nd field): with its pid, it
// names the process for good, as a pid alone does not once it is reused.
std::optional<std::string> start_time_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');
  if (name_end == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  for (int i = 3; i <= 22 && (fields >> field); ++i) {
    if (i == 22) return field;
  }
  return std::nullopt;
}

// Whether a run folder's run is over: its owner (pid and start time) is gone. A folder without
// an owner (made by a tapedeck from before owners, or just made) counts as over after two days.
bool run_is_over(const fs::path& folder) {
  std::ifstream owner(folder / kOwnerFile);
  pid_t pid = 0;
  std::string started;
  if (owner >> pid >> started) return start_time_of(pid) != started;
  std::error_code error;
  const auto changed = fs::last_write_time(folder, error);
  return !error && fs::file_time_type::clock::now() - changed > std::chrono::hours(48);
}

// Removes a run's folder whole. An overlayfs mounted in a user namespace leaves its work folder's
// inner folder with no permission bits (the kernel makes it so); its owner gives them back first,
// or nothing beneath could be listed and removed.
void remove_run_folder(const fs::path& folder) {
  for (const char* layer : {"view", "temp", "home"})
    ::chmod((folder / layer / "work" / "work").c_str(), 0700);
  std::error_code ignored;
  fs::remove_all(folder, ignored);
}

// The folders of this user's runs that ended without removing them (tapedeck killed, a crash):
// removed by the next run, so that killed runs leave nothing behind for long.
void sweep_ended_runs(const fs::path& base) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(base, error)) {
    const std::string name = entry.path().filename().string();
    struct stat status {};
    if (!name.starts_with("tapedeck-run-") || ::lstat(entry.path().c_str(), &status) != 0 ||
        !S_ISDIR(status.st_mode) || status.st_uid != ::geteuid() || !run_is_over(entry.path())) {
      continue;
    }
    remove_run_folder(entry.path());
  }
}

}  // namespace

bool inside(const fs::path& path, const fs::path& folder) {
  const auto [end, _] = std::mismatch(folder.begin(), folder.end(), path.begin(), path.end());
  return end == folder.end();
}

RunDir::RunDir(const fs::path& workspace) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base;
  for (const char* candidate : {tmp, "/tmp", "/dev/shm", "/var/tmp"}) {
    std::error_code error;
    if (candidate == nullptr || *candidate == '\0') continue;
    const fs::path folder = fs::weakly_canonical(candidate, error);
    if (!error && fs::is_directory(folder, error) && !inside(folder, workspace)) {
      base = folder.string();
      break;
    }
  }
  if (base.empty()) {
    throw std::runtime_error("no folder for the run outside the workspace " + workspace.string() +
                             ": set TMPDIR to one");
  }
  sweep_ended_runs(base);
  std::string pattern = base + "/tapedeck-run-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot make a run folder " + pattern + ": " + std::strerror(errno));
  }
  path_ = pattern;
  // Who owns it, for a later run's sweep should this one be killed before it removes it.
  if (const auto started = start_time_of(::getpid())) {
    std::ofstream(path_ / kOwnerFile) << ::getpid() << ' ' << *started << '\n';
  }
}

RunDir::~RunDir() {
  remove_run_folder(path_);
}

}  // namespace tapedeck::supervisor
