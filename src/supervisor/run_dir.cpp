#include "supervisor/run_dir.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

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
  std::string pattern = base + "/tapedeck-run-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot make a run folder " + pattern + ": " + std::strerror(errno));
  }
  path_ = pattern;
}

RunDir::~RunDir() {
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

}  // namespace tapedeck::supervisor
