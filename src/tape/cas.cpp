#include "tapedeck/cas.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "tape/atomic_file.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::cas {

namespace {

void require_valid_name(const std::filesystem::path& dir, std::string_view name) {
  if (!is_valid_cas_name(name)) {
    std::string shown(name.substr(0, 80));
    throw TapeError(dir.string(), 0,
                    "refusing CAS entry name `" + shown +
                        "`: a CAS name is 64 lowercase hex characters (a BLAKE3 hash)");
  }
}

// Reads the entry at `path` and checks that its bytes hash to `name`: none, missing, unreadable
// (with errno in `error`) or hash_mismatch. The one place entries are read and checked.
Problem load(const std::filesystem::path& path, std::string_view name, std::string& bytes,
             int& error) {
  if (!detail::read_file(path, bytes)) {
    error = errno;
    return error == ENOENT ? Problem::missing : Problem::unreadable;
  }
  return content_hash(bytes) == name ? Problem::none : Problem::hash_mismatch;
}

bool file_exists(const std::filesystem::path& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

}  // namespace

std::string_view to_string(Problem problem) {
  switch (problem) {
    case Problem::none:
      return "ok";
    case Problem::invalid_name:
      return "invalid_name";
    case Problem::missing:
      return "missing";
    case Problem::unreadable:
      return "unreadable";
    case Problem::hash_mismatch:
      return "hash_mismatch";
    case Problem::length_mismatch:
      return "length_mismatch";
  }
  return "unknown";
}

std::string read_entry(const std::filesystem::path& dir, std::string_view name) {
  require_valid_name(dir, name);
  const std::filesystem::path path = dir / std::string(name);
  std::string bytes;
  int error = 0;
  switch (load(path, name, bytes, error)) {
    case Problem::missing:
      throw TapeError(path.string(), 0, "CAS entry missing");
    case Problem::unreadable:
      errno = error;
      detail::throw_errno(path, "cannot read CAS entry");
    case Problem::hash_mismatch:
      throw TapeError(path.string(), 0, "CAS entry corrupt: its bytes do not hash to its name");
    default:
      return bytes;
  }
}

void write_entries(const std::filesystem::path& dir,
                   const std::map<std::string, std::string>& entries, bool durable) {
  if (entries.empty()) return;
  for (const auto& [name, bytes] : entries) require_valid_name(dir, name);
  detail::make_directories(dir);
  // All entries are written first and flushed with one syncfs(), then renamed: one flush for the
  // whole batch instead of one fsync per entry.
  std::vector<std::unique_ptr<detail::AtomicFile>> pending;
  for (const auto& [name, bytes] : entries) {
    const std::filesystem::path path = dir / name;
    if (file_exists(path)) continue;
    auto file = std::make_unique<detail::AtomicFile>(path);
    file->write(bytes);
    pending.push_back(std::move(file));
  }
  if (pending.empty()) return;
  if (durable && ::syncfs(pending.front()->fd()) != 0) detail::throw_errno(dir, "syncfs failed");
  for (auto& file : pending) file->close_unsynced();
  for (auto& file : pending) file->rename_into_place();
  if (durable) detail::fsync_directory(dir);
}

Carried carry_entry(const std::filesystem::path& from_dir, const std::filesystem::path& to_dir,
                    std::string_view name) {
  return Carrier(from_dir, to_dir).carry(name);
}

Carrier::Carrier(std::filesystem::path from_dir, std::filesystem::path to_dir)
    : from_dir_(std::move(from_dir)), to_dir_(std::move(to_dir)) {}

Carrier::~Carrier() {
  if (from_fd_ >= 0) ::close(from_fd_);
  if (to_fd_ >= 0) ::close(to_fd_);
}

Carried Carrier::carry(std::string_view name) {
  require_valid_name(from_dir_, name);
  // Each folder is opened until it opens: a failed first carry leaves no half-made state behind.
  if (from_fd_ < 0) {
    from_fd_ = ::open(from_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (from_fd_ < 0) {
      if (errno == ENOENT) {
        throw TapeError((from_dir_ / std::string(name)).string(), 0, "CAS entry missing");
      }
      detail::throw_errno(from_dir_, "cannot open the sidecar");
    }
  }
  if (to_fd_ < 0) {
    detail::make_directories(to_dir_);
    to_fd_ = ::open(to_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (to_fd_ < 0) detail::throw_errno(to_dir_, "cannot open the sidecar");
  }
  const std::string entry(name);
  if (::linkat(from_fd_, entry.c_str(), to_fd_, entry.c_str(), 0) == 0) return Carried::linked;
  // Same name, same bytes: an entry already there is the one we would carry.
  if (errno == EEXIST) return Carried::already_present;
  struct stat info {};
  if (errno == ENOENT && ::fstatat(from_fd_, entry.c_str(), &info, 0) != 0) {
    throw TapeError((from_dir_ / entry).string(), 0, "CAS entry missing");
  }
  // Another file system, or one without hard links: copy, still whole-or-nothing.
  const std::filesystem::path from = from_dir_ / entry;
  std::string bytes;
  if (!detail::read_file(from, bytes)) detail::throw_errno(from, "cannot read CAS entry");
  detail::AtomicFile file(to_dir_ / entry);
  file.write(bytes);
  file.commit(false);
  return Carried::copied;
}

Check check_entry(const std::filesystem::path& dir, std::string_view name,
                  std::optional<uint64_t> expected_len) {
  Check check;
  if (!is_valid_cas_name(name)) {
    check.problem = Problem::invalid_name;
    check.detail = "CAS name `" + std::string(name.substr(0, 80)) +
                   "` is not 64 lowercase hex characters; refusing to look it up";
    return check;
  }
  const std::filesystem::path path = dir / std::string(name);
  std::string bytes;
  int error = 0;
  check.problem = load(path, name, bytes, error);
  if (check.problem == Problem::missing) {
    check.detail = "CAS entry missing: " + path.string();
  } else if (check.problem == Problem::unreadable) {
    check.detail = "CAS entry unreadable: " + path.string() + ": " + std::strerror(error);
  } else if (check.problem == Problem::hash_mismatch) {
    check.detail = "CAS entry corrupt: " + path.string() + " does not hash to its name";
  } else if (expected_len && bytes.size() != *expected_len) {
    check.problem = Problem::length_mismatch;
    check.detail = "CAS entry " + path.string() + " holds " + std::to_string(bytes.size()) +
                   " bytes but the record says " + std::to_string(*expected_len);
  }
  return check;
}

}  // namespace tapedeck::cas
