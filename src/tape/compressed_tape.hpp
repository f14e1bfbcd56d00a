// Compressed tapes: the tape's NDJSON in zstd frames (libzstd's streaming API), read wherever a
// plain tape is read. Internal to the tape room.
//
// A compressed tape is told by its first bytes (the zstd frame magic), never by its name; a tape
// is written compressed when its name ends in ".zst". A streaming writer flushes each batch of
// whole lines as complete zstd blocks of one open frame (ZSTD_e_flush), so that a kill leaves
// every flushed record decodable, and ends the frame when it finishes. A frame left open (a
// writer killed) is a torn tail: the reader hands out every whole line and reports it, and
// `verify --repair` rewrites the tape with its frame closed.
#pragma once

#include <zstd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tape/atomic_file.hpp"

namespace tapedeck::detail {

// Whether `head` (a file's first bytes) starts a zstd frame.
bool has_zstd_magic(std::string_view head);
// Whether the file at `path` starts a zstd frame (false when it cannot be read).
bool is_compressed_tape(const std::filesystem::path& path);
// Whether a tape written at `path` is to be compressed: its name ends in ".zst".
bool names_compressed_tape(const std::filesystem::path& path);

// Decompresses what `read_compressed` gives (concatenated frames, skippable ones passed over).
class ZstdReader {
 public:
  using ReadFn = std::function<size_t(char* dst, size_t capacity)>;
  ZstdReader(std::string source_name, ReadFn read_compressed);
  ~ZstdReader();
  ZstdReader(const ZstdReader&) = delete;
  ZstdReader& operator=(const ZstdReader&) = delete;

  // Up to `capacity` decompressed bytes; 0 at the end of the input. Throws TapeError on bytes
  // that are not zstd (naming the compressed offset).
  size_t read(char* dst, size_t capacity);
  // At the end: whether the input stopped inside a frame (a writer killed before closing it).
  bool ended_inside_frame() const { return ended_inside_frame_; }

 private:
  std::string name_;
  ReadFn read_compressed_;
  ZSTD_DCtx* context_;
  std::vector<char> input_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  uint64_t consumed_ = 0;  // compressed bytes before in_
  size_t frame_left_ = 0;  // the last decompressStream answer: 0 when a frame just ended
  bool input_done_ = false;
  bool ended_inside_frame_ = false;
};

// Compresses a stream of bytes into frames.
class ZstdWriter {
 public:
  explicit ZstdWriter(int level = 3);
  ~ZstdWriter();
  ZstdWriter(const ZstdWriter&) = delete;
  ZstdWriter& operator=(const ZstdWriter&) = delete;

  enum class Mode { more, flush, end_frame };
  // Appends to `out` what compressing `bytes` gives: `more` may hold bytes back, `flush` makes
  // everything so far decodable (complete blocks of the open frame), `end_frame` closes the frame.
  void compress(std::string_view bytes, Mode mode, std::string& out);
  // Drops the open frame: the next bytes start a new one (nothing of the old one is written).
  void restart_frame();

 private:
  ZSTD_CCtx* context_;
};

// A tape file written whole and replaced atomically (see AtomicFile), compressed in one frame when
// its name says so (names_compressed_tape).
class TapeOutput {
 public:
  explicit TapeOutput(const std::filesystem::path& target);
  void write(std::string_view bytes);
  // Closes the frame, then AtomicFile::commit.
  void commit(bool durable = true);
  bool compressed() const { return writer_ != nullptr; }

 private:
  AtomicFile file_;
  std::unique_ptr<ZstdWriter> writer_;
  std::string scratch_;
};

// Rewrites the compressed tape at `path` (atomically) to hold the first `keep` bytes of what it
// decompresses to, in one closed frame: how a torn or unclosed compressed tape is repaired.
void rewrite_compressed_prefix(const std::filesystem::path& path, uint64_t keep);

}  // namespace tapedeck::detail
