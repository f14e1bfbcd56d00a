// Appends whole records to a tape file that other processes may be appending to as well.
// Internal to the tape room; the recorder's streaming mode drives it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>

#include "tapedeck/codec.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::detail {

class TapeAppender {
 public:
  // Opens the tape for appending, or creates it with `header`. A torn last line left by a writer
  // that was killed mid-write is cut away first. Throws TapeError.
  TapeAppender(std::filesystem::path path, const Header& header);
  ~TapeAppender();
  TapeAppender(const TapeAppender&) = delete;
  TapeAppender& operator=(const TapeAppender&) = delete;

  // Appends `count` records under an exclusive lock on the file (flock, so other processes
  // appending to the same tape wait their turn): `encode(first_seq, out)` must append exactly
  // `count` canonical lines numbered from first_seq, the seq that follows the tape's last record.
  // A failed write (disk full, I/O error) is cut back off the file, which stays a valid tape up
  // to its last whole record; then TapeError is thrown.
  using Encode = std::function<void(uint64_t first_seq, LineBuffer& out)>;
  void append(uint64_t count, const Encode& encode);
  // Flushes what was appended to the disk.
  void sync();

  const std::filesystem::path& path() const { return path_; }

 private:
  void lock();
  void unlock();
  // With the lock held: learns where the file ends and which seq comes next, unless nothing
  // changed since our last append; cuts a torn last line; writes the header into an empty file.
  void catch_up(const Header* header);
  [[noreturn]] void fail(const char* what);

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t known_end_ = 0;  // the file's size after our last append (or catch-up)
  uint64_t next_seq_ = 0;
  LineBuffer buffer_;
};

}  // namespace tapedeck::detail
