#include "tape/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tapedeck/error.hpp"

namespace tapedeck::detail {

void throw_errno(const std::filesystem::path& path, std::string_view what) {
  const int saved = errno;
  std::string detail(what);
  detail += ": ";
  detail += std::strerror(saved);
  if (saved == ENOSPC || saved == EDQUOT) detail += " (the disk is full)";
  throw TapeError(path.string(), 0, detail);
}

bool read_file(const std::filesystem::path& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && info.st_size > 0) out.reserve(static_cast<size_t>(info.st_size));
  char chunk[1 << 16];
  for (;;) {
    ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      return false;
    }
    out.append(chunk, static_cast<size_t>(got));
  }
  ::close(fd);
  return true;
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::string bytes;
  if (!read_file(path, bytes)) return std::nullopt;
  return bytes;
}

void make_directories(const std::filesystem::path& dir) {
  if (dir.empty()) return;
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw TapeError(dir.string(), 0, "cannot create folder: " + error.message());
}

void fsync_directory(const std::filesystem::path& dir) {
  const std::string name = dir.empty() ? std::string(".") : dir.string();
  int fd = ::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some file systems refuse directory handles
  ::fsync(fd);
  ::close(fd);
}

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  std::filesystem::path dir = target_.parent_path();
  make_directories(dir);
  // Built piecewise: GCC 12 reports a false -Wrestrict on "." + std::string.
  std::string hidden_name(1, '.');
  hidden_name += target_.filename().string();
  hidden_name += ".tmp-XXXXXX";
  std::string pattern = (dir / hidden_name).string();
  fd_ = ::mkstemp(pattern.data());
  if (fd_ < 0) throw_errno(target_, "cannot create a temporary file beside it");
  temp_ = pattern;
  ::fchmod(fd_, 0644);  // mkstemp makes 0600; a tape is as readable as any file we write
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!placed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t wrote = ::write(fd_, bytes.data(), bytes.size());
    if (wrote < 0) {
      if (errno == EINTR) continue;
      throw_errno(target_, "write failed");
    }
    bytes.remove_prefix(static_cast<size_t>(wrote));
    written_ += static_cast<uint64_t>(wrote);
  }
  // Start writeback of each full stretch as it is written (as LevelDB's bytes_per_sync does), so
  // the fsync at commit only waits for the tail instead of the whole file.
  constexpr uint64_t kWritebackStretch = 8 << 20;
  if (written_ - writeback_started_ >= kWritebackStretch) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_),
                      static_cast<off_t>(written_ - writeback_started_), SYNC_FILE_RANGE_WRITE);
    writeback_started_ = written_;
  }
}

void AtomicFile::close_unsynced() {
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw_errno(target_, "write failed");
  }
  fd_ = -1;
}

void AtomicFile::rename_into_place() {
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    throw_errno(target_, "cannot rename into place");
  placed_ = true;
}

bool AtomicFile::link_into_place() {
  if (::link(temp_.c_str(), target_.c_str()) == 0) return true;
  if (errno == EEXIST) return false;
  throw_errno(target_, "cannot create");
}

void AtomicFile::commit(bool durable) {
  if (durable && ::fsync(fd_) != 0) throw_errno(target_, "fsync failed");
  close_unsynced();
  rename_into_place();
  if (durable) fsync_directory(target_.parent_path());
}

}  // namespace tapedeck::detail
