// Whole-or-nothing file replacement: write a temporary file in the target's folder, flush it,
// rename it over the target. Readers see the old file or the new one, never half of one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace tapedeck::detail {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();  // an uncommitted file is removed: a failed write leaves no trace
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view bytes);
  // fsync (when durable), rename over the target, fsync the folder (when durable).
  void commit(bool durable = true);
  // Renames without the file's fsync: for callers that flushed a batch with one syncfs().
  void close_unsynced();
  void rename_into_place();
  // Places the written file at the target only if nothing is there yet (a hard link, so a
  // concurrent creator is never overwritten); false when the target already existed.
  bool link_into_place();

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }
  int fd() const { return fd_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool placed_ = false;
  uint64_t written_ = 0;
  uint64_t writeback_started_ = 0;  // bytes already handed to the kernel's writeback
};

// Reads a whole file into `out`; false with errno set when it cannot be opened or read.
bool read_file(const std::filesystem::path& path, std::string& out);
// The same, nullopt when it cannot.
std::optional<std::string> read_file(const std::filesystem::path& path);

// mkdir -p, as a TapeError naming the folder on failure.
void make_directories(const std::filesystem::path& dir);
// Makes a rename in `dir` durable.
void fsync_directory(const std::filesystem::path& dir);
[[noreturn]] void throw_errno(const std::filesystem::path& path, std::string_view what);

}  // namespace tapedeck::detail
