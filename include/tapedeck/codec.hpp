// The canonical encoder and the streaming reader.
//
// Canonical = what the reference serializer writes: compact JSON, fields in declaration order,
// strings escaped like serde_json, integers in plain decimal, one line per header/record.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tapedeck/tape.hpp"

namespace tapedeck {

// A growable byte buffer the encoder appends canonical lines to. It avoids std::string's
// zero-filling and per-append bookkeeping, which dominate when encoding millions of small lines.
class LineBuffer {
 public:
  LineBuffer() = default;
  LineBuffer(const LineBuffer&) = delete;
  LineBuffer& operator=(const LineBuffer&) = delete;
  ~LineBuffer();

  void append_header(const Header& header);  // with its trailing '\n'
  void append_record(const Record& record);  // with its trailing '\n'

  std::string_view view() const { return {data_, size_}; }
  size_t size() const { return size_; }
  void clear() { size_ = 0; }

  // Low-level pieces, public for tests and for callers that build their own lines.
  void put(std::string_view bytes);
  void put_char(char c);
  void put_json_string(std::string_view text);  // quoted and escaped exactly like serde_json
  void put_int(int64_t value);
  void put_uint(uint64_t value);

 private:
  void reserve_more(size_t extra);
  void put_payload(const Payload& payload);

  char* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

std::string encode_header_line(const Header& header);
// A JSON string literal, quoted and escaped exactly as the tape escapes strings.
std::string json_string(std::string_view text);
std::string encode_record_line(const Record& record);

// A last line cut short (no '\n', not a whole record): what a recording killed mid-write leaves.
// Readers stop before it instead of failing; `tapedeck verify` reports it, `--repair` cuts it.
// In a compressed tape the last frame left open counts too (`bytes` may then be 0).
struct TornTail {
  uint64_t line = 0;    // its 1-based line number
  uint64_t offset = 0;  // where it starts in the file: truncating there repairs the tape
  uint64_t bytes = 0;
  // The tape is compressed: `offset` counts decompressed bytes, and a repair rewrites the tape
  // with what comes before it.
  bool compressed = false;
};

// Cuts a torn tail off the tape at `path`, keeping every whole line before it: a plain tape is
// truncated, a compressed one rewritten (atomically) with its frame closed. Throws TapeError.
void repair_torn_tail(const std::filesystem::path& path, const TornTail& torn);

struct ReaderOptions {
  // Decoding threads for inputs larger than the first read; 0 = one per core (at most 8),
  // 1 = decode on the caller's thread only.
  unsigned threads = 0;
  // How much input each decoding thread takes at a time.
  size_t block_bytes = 2 << 20;
  // Also encode each record canonically on the decoding threads (see canonical_line()).
  bool canonical_lines = false;
};

// Reads a tape line by line without holding the whole file: the header when opened, then one
// record per next(), in order. Blank lines and a trailing '\r' are skipped. Every error is a
// TapeError that names the source and the 1-based line; records before a bad line are all
// handed out before it is reported.
class TapeReader {
 public:
  // Fills dst with up to `capacity` bytes and returns how many; 0 at end of input. Called from
  // one thread at a time, not necessarily the constructing one.
  using ReadFn = std::function<size_t(char* dst, size_t capacity)>;
  // Asked once the input has ended: where it was cut short (the bytes it gave), when it was.
  using CutCheck = std::function<std::optional<uint64_t>()>;

  // Plain or zstd-compressed (told by its first bytes).
  static std::unique_ptr<TapeReader> open(const std::filesystem::path& path,
                                          ReaderOptions options = {});
  static std::unique_ptr<TapeReader> from_memory(std::string_view bytes, std::string source_name,
                                                 ReaderOptions options = {});

  // `cut`: for a source that knows it ended mid-way (a compressed tape's last frame left open);
  // such an end is a torn tail after the last whole line.
  TapeReader(std::string source_name, ReadFn read, ReaderOptions options = {}, CutCheck cut = {});
  ~TapeReader();
  TapeReader(const TapeReader&) = delete;
  TapeReader& operator=(const TapeReader&) = delete;

  const Header& header() const;
  // Decodes the next record into `record`, reusing its storage. False at the end of the tape.
  bool next(Record& record);
  // The next record without a copy: owned by the reader and valid until the next call to
  // read() or next(). Null at the end of the tape.
  const Record* read();
  // The canonical line (with its '\n') of the record read() returned last; valid until the next
  // call. With ReaderOptions::canonical_lines it was encoded by the decoding threads.
  std::string_view canonical_line();
  // Set once the reader met a torn last line (next()/read() then answered the end).
  const std::optional<TornTail>& torn_tail() const;
  // The line of the record next() returned last (of the header before the first record).
  uint64_t line_number() const;
  const std::string& source_name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tapedeck

namespace tapedeck {

// What `tapedeck fmt` did besides re-encoding.
struct FormatReport {
  uint64_t records = 0;
  uint64_t cas_linked = 0;
  uint64_t cas_copied = 0;
  uint64_t cas_already_present = 0;
  std::vector<std::string> cas_missing;        // named by a record, absent from the input sidecar
  std::vector<std::string> cas_invalid_names;  // refused: not 64 lowercase hex
  std::optional<TornTail> torn_tail;           // left out of the output
};

// Re-encodes `in` canonically into `out`, streaming (memory stays flat whatever the tape's
// size), replacing `out` atomically, and carrying every sidecar entry the records name (see
// Reference: payloads, file bytes, kept LLM requests, printed output) into out's sidecar (hard
// links where possible). `out` may be `in`.
FormatReport format_tape(const std::filesystem::path& in, const std::filesystem::path& out);
// The same encoding written to a file descriptor (stdout, say); CAS entries stay where they are.
FormatReport format_tape_to_fd(const std::filesystem::path& in, int fd);

}  // namespace tapedeck
