// Appends whole records to a tape file that other processes may be appending to as well.
// Internal to the tape room; the recorder's streaming mode drives it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "tape/compressed_tape.hpp"

#include "tapedeck/codec.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::detail {

// A compressed tape (named *.zst, see compressed_tape.hpp) gets each append as complete zstd
// blocks of one open frame, which the appender closes when it is destroyed. A tape it did not
// write last (another writer appended, or it is opened anew) is first made whole: a frame left
// open is closed by rewriting the tape (every whole line kept), and the appender then closes a
// frame after every append, so that writers sharing the tape never continue each other's frame.
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
  // Closes a compressed tape's open frame (the destructor does too); nothing for a plain tape.
  void finish();

  const std::filesystem::path& path() const { return path_; }

 private:
  void lock();
  void unlock();
  // Writes all of `bytes` at the end; on failure cuts the file back to known_end_ and throws.
  void write_all(std::string_view bytes, uint64_t first_seq);
  // Compressed: with the lock held, what catch_up does (see the class comment).
  void catch_up_compressed(const Header* header, uint64_t size);
  // Compressed: the last seq in the whole frames from `offset` to the end (none: no record
  // there); nullopt when they are not whole frames of whole lines.
  std::optional<std::optional<uint64_t>> last_seq_after(uint64_t offset);
  // Compressed: closes our open frame, if the tape still ends with it.
  void close_frame() noexcept;
  // With the lock held: learns where the file ends and which seq comes next, unless nothing
  // changed since our last append; cuts a torn last line; writes the header into an empty file.
  void catch_up(const Header* header);
  [[noreturn]] void fail(const char* what);

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t known_end_ = 0;  // the file's size after our last append (or catch-up)
  uint64_t next_seq_ = 0;
  LineBuffer buffer_;
  std::unique_ptr<ZstdWriter> zstd_;  // compressed tapes only
  std::string compressed_;
  bool frame_open_ = false;        // our frame is open at known_end_
  bool close_each_frame_ = false;  // another writer shares the tape
  bool appended_ = false;
};

}  // namespace tapedeck::detail
