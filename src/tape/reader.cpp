// The streaming reader. Lines are parsed in place (never copied) from buffers that keep
// simdjson's padding readable past the data.
//
// Small inputs are read on the caller's thread. A larger input is cut into blocks at line
// boundaries by a producer thread and decoded by worker threads, while next() hands the records
// out in order; the first error (in line order) is thrown once every record before it was
// handed out, exactly as the serial path would.
//
// Linear time whatever the shape: newline scans resume where they stopped when a buffer grows
// (a 200 MB line costs one pass), and blank lines cost one memchr each.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "tape/compressed_tape.hpp"
#include "tape/decode.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/pack.hpp"

namespace tapedeck {

namespace {

constexpr size_t kInitialBuffer = 1 << 20;

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A run of whole lines, decoded by a worker. Line numbers are relative to the block: only the
// consumer, taking blocks in order, knows where a block starts (counting newlines ahead of the
// workers would be a serial pass over the whole input).
struct Block {
  std::vector<char> bytes;  // the lines, then decoder_padding() zero bytes
  size_t size = 0;
  uint64_t line_count = 0;      // lines in the block, blank ones included
  std::vector<Record> records;  // reused across blocks: records keep their string capacity
  std::vector<uint64_t> lines;  // each record's line, 0-based within the block
  size_t count = 0;
  LineBuffer encoded;             // with canonical_lines: the records' canonical lines
  std::vector<size_t> line_ends;  // where each record's line ends in `encoded`
  // The block's first bad line, relative like `lines`; or `error`, an exception to rethrow as
  // is (a read error).
  std::optional<std::pair<uint64_t, std::string>> bad_line;
  std::exception_ptr error;
  bool decoded = false;
  uint64_t offset = 0;             // of byte 0 in the input
  bool unterminated_tail = false;  // the input's last line, without its '\n', ends the block
  std::optional<TornTail> torn;    // that line did not decode: relative line, block offset
};

// Producer -> workers -> consumer, with a bounded number of blocks in flight.
class BlockPipeline {
 public:
  BlockPipeline(std::string name, TapeReader::ReadFn& read, std::string_view leftover,
                uint64_t leftover_offset, unsigned workers, size_t block_bytes, bool encode)
      : name_(std::move(name)),
        read_(read),
        block_bytes_(block_bytes),
        encode_(encode),
        max_in_flight_(2 * workers + 2),
        carry_(leftover),
        next_offset_(leftover_offset) {
    producer_ = std::thread([this] { produce(); });
    for (unsigned i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
  }

  ~BlockPipeline() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    producer_.join();
    for (auto& worker : workers_) worker.join();
  }

  // The next block in input order once decoded; null at the end of input. The previous block is
  // recycled. A block with an error still hands out the records before the error.
  Block* next_block() {
    std::unique_lock lock(mutex_);
    if (current_ != nullptr) {
      ordered_.pop_front();
      free_.push_back(std::move(current_owner_));
      current_ = nullptr;
      changed_.notify_all();
    }
    changed_.wait(lock, [&] {
      return (!ordered_.empty() && ordered_.front()->decoded) ||
             (produced_all_ && ordered_.empty());
    });
    if (ordered_.empty()) return nullptr;
    current_ = ordered_.front();
    for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it) {
      if (it->get() == current_) {
        current_owner_ = std::move(*it);
        in_flight_.erase(it);
        break;
      }
    }
    return current_;
  }

 private:
  std::unique_ptr<Block> take_free_block(std::unique_lock<std::mutex>& lock) {
    changed_.wait(
        lock, [&] { return stopping_ || in_flight_.size() + (current_ ? 1 : 0) < max_in_flight_; });
    if (stopping_) return nullptr;
    if (!free_.empty()) {
      auto block = std::move(free_.back());
      free_.pop_back();
      return block;
    }
    return std::make_unique<Block>();
  }

  // Fills `block` with whole lines: the carried partial line, then reads until the block is big
  // enough and holds a newline (or the input ends). The bytes after the last newline carry over.
  void fill(Block& block) {
    const size_t padding = detail::decoder_padding();
    block.bytes.resize(std::max(block_bytes_, carry_.size()) + padding);
    std::memcpy(block.bytes.data(), carry_.data(), carry_.size());
    size_t size = carry_.size();
    carry_.clear();
    size_t scanned = 0;
    size_t cut = std::string::npos;  // one past the last newline
    for (;;) {
      const void* last =
          size > scanned ? ::memrchr(block.bytes.data() + scanned, '\n', size - scanned) : nullptr;
      if (last != nullptr)
        cut = static_cast<size_t>(static_cast<const char*>(last) - block.bytes.data()) + 1;
      scanned = size;
      if (eof_ || (cut != std::string::npos && size >= block_bytes_)) break;
      if (size + padding >= block.bytes.size()) block.bytes.resize(2 * (size + padding));
      size_t got = read_(block.bytes.data() + size, block.bytes.size() - padding - size);
      if (got == 0) eof_ = true;
      size += got;
    }
    block.unterminated_tail = eof_ && size > 0 && block.bytes[size - 1] != '\n';
    if (eof_ && (cut == std::string::npos || cut < size)) cut = size;  // a last line without '\n'
    carry_.assign(block.bytes.data() + cut, size - cut);
    block.size = cut;
    std::memset(block.bytes.data() + cut, 0, padding);
    block.offset = next_offset_;
    next_offset_ += cut;
    block.torn.reset();
    block.count = 0;
    block.encoded.clear();
    block.line_count = 0;
    block.bad_line.reset();
    block.error = nullptr;
    block.decoded = false;
  }

  void produce() {
    for (;;) {
      std::unique_ptr<Block> block;
      {
        std::unique_lock lock(mutex_);
        block = take_free_block(lock);
        if (!block) return;
      }
      bool last = false;
      try {
        fill(*block);
        last = eof_ && carry_.empty();
      } catch (...) {
        // A read error: the consumer meets it after the records read before it.
        block->size = 0;
        block->count = 0;
        block->error = std::current_exception();
        block->decoded = true;
        last = true;
      }
      {
        std::lock_guard lock(mutex_);
        ordered_.push_back(block.get());
        if (!block->decoded) work_.push_back(block.get());
        in_flight_.push_back(std::move(block));
        produced_all_ = last;
      }
      changed_.notify_all();
      if (last) return;
    }
  }

  void work() {
    detail::LineDecoder decoder;
    for (;;) {
      Block* block;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || !work_.empty(); });
        if (stopping_) return;
        block = work_.front();
        work_.pop_front();
      }
      decode(*block, decoder);
      {
        std::lock_guard lock(mutex_);
        block->decoded = true;
      }
      changed_.notify_all();
    }
  }

  void decode(Block& block, detail::LineDecoder& decoder) {
    const char* data = block.bytes.data();
    size_t begin = 0;
    uint64_t line = 0;  // relative to the block
    try {
      while (begin < block.size) {
        const void* newline = std::memchr(data + begin, '\n', block.size - begin);
        size_t end =
            newline ? static_cast<size_t>(static_cast<const char*>(newline) - data) : block.size;
        std::string_view text(data + begin, end - begin);
        if (detail::trim_line(text)) {
          if (block.count == block.records.size()) {
            block.records.emplace_back();
            block.lines.emplace_back();
            block.line_ends.emplace_back();
          }
          Record& record = block.records[block.count];
          const bool canonical = detail::decode_record_line(decoder, text, name_, line, record);
          block.lines[block.count] = line;
          if (encode_) {
            if (canonical) {  // its bytes are its encoding
              block.encoded.put(text);
              block.encoded.put_char('\n');
            } else {
              block.encoded.append_record(record);
            }
            block.line_ends[block.count] = block.encoded.size();
          }
          ++block.count;
        }
        begin = end + 1;
        ++line;
      }
    } catch (const TapeError& error) {
      if (block.unterminated_tail &&
          std::memchr(data + begin, '\n', block.size - begin) == nullptr) {
        // The input's last line, cut short: a recording killed mid-write. Not an error.
        block.torn = TornTail{line, begin, block.size - begin};
      } else {
        block.bad_line.emplace(line, error.detail());
      }
    } catch (...) {
      block.error = std::current_exception();
    }
    block.line_count = line;
  }

  const std::string name_;
  TapeReader::ReadFn& read_;
  const size_t block_bytes_;
  const bool encode_;
  const size_t max_in_flight_;
  std::string carry_;     // producer only
  bool eof_ = false;      // producer only
  uint64_t next_offset_;  // producer only: input offset of the next block

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  bool produced_all_ = false;
  std::deque<Block*> work_;                        // produced, not yet picked by a worker
  std::deque<Block*> ordered_;                     // produced, not yet consumed, input order
  std::vector<std::unique_ptr<Block>> in_flight_;  // owns every produced block not consumed
  std::vector<std::unique_ptr<Block>> free_;
  Block* current_ = nullptr;  // the block next() is handing out
  std::unique_ptr<Block> current_owner_;

  std::thread producer_;
  std::vector<std::thread> workers_;
};

}  // namespace

struct TapeReader::Impl {
  std::string name;
  ReadFn read;
  ReaderOptions options;
  CutCheck cut;
  detail::LineDecoder decoder;
  Header header;
  Record scratch_record;  // where a record lands when the header is expected

  char* buffer = nullptr;
  size_t capacity = 0;  // usable bytes; `padding` more are allocated behind them
  size_t padding = detail::decoder_padding();
  size_t begin = 0;  // start of the unconsumed data
  size_t end = 0;    // end of the data read so far
  size_t scan = 0;   // where the newline search resumes
  bool eof = false;
  uint64_t buffer_offset = 0;  // input offset of buffer[0]
  bool line_unterminated =
      false;  // the line next_line() returned last ended the input without '\n'
  std::optional<TornTail> torn;
  uint64_t lines_seen = 0;  // lines split off so far (the 1-based number of the last one)
  uint64_t current_line = 0;

  std::unique_ptr<BlockPipeline> pipeline;
  Block* block = nullptr;
  size_t block_index = 0;
  uint64_t block_first_line = 0;      // absolute number of the current block's first line
  Record serial_record;               // what read() hands out on the serial path
  LineBuffer serial_line;             // canonical_line() on the serial path
  std::string_view serial_canonical;  // the last serial line, when it was already canonical

  ~Impl() {
    pipeline.reset();  // joins its threads before the buffer and the read function go
    std::free(buffer);
  }

  [[noreturn]] void fail(uint64_t line, std::string detail) const {
    throw TapeError(name, line, std::move(detail));
  }

  void grow() {
    size_t bigger = capacity == 0 ? kInitialBuffer : capacity * 2;
    void* grown = std::realloc(buffer, bigger + padding);
    if (grown == nullptr) fail(lines_seen + 1, "out of memory reading a line");
    buffer = static_cast<char*>(grown);
    capacity = bigger;
  }

  void fill() {
    if (begin > 0) {  // slide the partial line to the front before reading more
      buffer_offset += begin;
      std::memmove(buffer, buffer + begin, end - begin);
      end -= begin;
      scan -= begin;
      begin = 0;
    }
    if (end == capacity) grow();
    size_t got = read(buffer + end, capacity - end);
    if (got == 0) eof = true;
    end += got;
    // simdjson may look past the last line; keep what it sees there defined.
    std::memset(buffer + end, 0, padding);
  }

  // The next raw line without its '\n'; false at end of input.
  bool next_line(std::string_view& line) {
    for (;;) {
      if (scan < end) {
        const void* newline = std::memchr(buffer + scan, '\n', end - scan);
        if (newline != nullptr) {
          size_t at = static_cast<size_t>(static_cast<const char*>(newline) - buffer);
          line = std::string_view(buffer + begin, at - begin);
          begin = scan = at + 1;
          break;
        }
        scan = end;
      }
      if (eof) {
        if (begin == end) return false;
        line = std::string_view(buffer + begin, end - begin);
        line_unterminated = true;
        begin = scan = end;
        break;
      }
      fill();
    }
    ++lines_seen;
    return true;
  }

  // The next line that is not blank; false at end of input.
  bool next_content_line(std::string_view& line) {
    while (next_line(line)) {
      if (detail::trim_line(line)) return true;
    }
    return false;
  }

  void read_header() {
    std::string_view line;
    if (!next_content_line(line)) {
      fail(lines_seen == 0 ? 1 : lines_seen, "empty tape: no header line");
    }
    current_line = lines_seen;
    detail::LineDecoder::LineType type;
    try {
      type = decoder.decode(line, header, scratch_record);
    } catch (const detail::LineError& error) {
      fail(current_line, std::string("bad header: ") + error.what());
    }
    if (type != detail::LineDecoder::LineType::header) {
      fail(current_line, "the tape has no header: its first line is a record");
    }
    if (header.version > kTapeFormatVersion) {
      fail(current_line, "tape declares format version " + std::to_string(header.version) +
                             " but this tapedeck reads up to version " +
                             std::to_string(kTapeFormatVersion));
    }
  }

  // Hands the rest of the input to worker threads when it is larger than what was read so far.
  void maybe_start_pipeline() {
    unsigned threads = options.threads;
    if (threads == 0) threads = std::min(8u, std::max(1u, std::thread::hardware_concurrency()));
    if (threads < 2 || eof) return;
    pipeline = std::make_unique<BlockPipeline>(
        name, read, std::string_view(buffer + begin, end - begin), buffer_offset + begin, threads,
        options.block_bytes, options.canonical_lines);
    block_first_line = lines_seen + 1;
    begin = scan = end;
  }

  // At the end of the input: a source cut short past its last whole line is a torn tail too.
  void note_end(uint64_t next_line) {
    if (torn || !cut) return;
    if (const auto at = cut()) torn = TornTail{next_line, *at, 0, true};
  }

  // The serial path: the next record into `record`; false at the end (or at a torn last line).
  bool decode_serial(Record& record) {
    std::string_view line;
    if (torn) return false;
    if (!next_content_line(line)) {
      note_end(lines_seen + 1);
      return false;
    }
    current_line = lines_seen;
    try {
      const bool canonical = detail::decode_record_line(decoder, line, name, current_line, record);
      serial_canonical = canonical ? line : std::string_view();
    } catch (const TapeError&) {
      if (!line_unterminated) throw;
      // The input's last line, cut short: a recording killed mid-write. Not an error.
      const uint64_t offset = buffer_offset + static_cast<uint64_t>(line.data() - buffer);
      torn = TornTail{current_line, offset, buffer_offset + end - offset, cut != nullptr};
      return false;
    }
    return true;
  }

  const Record* read_next() {
    if (pipeline) return read_from_pipeline();
    return decode_serial(serial_record) ? &serial_record : nullptr;
  }

  Record* read_from_pipeline() {
    while (block == nullptr || block_index == block->count) {
      if (block != nullptr) {
        if (block->bad_line) {
          fail(block_first_line + block->bad_line->first, block->bad_line->second);
        }
        if (block->error) std::rethrow_exception(block->error);
        if (block->torn) {
          torn = TornTail{block_first_line + block->torn->line, block->offset + block->torn->offset,
                          block->torn->bytes, cut != nullptr};
        }
        block_first_line += block->line_count;
      }
      block = pipeline->next_block();
      block_index = 0;
      if (block == nullptr) {
        note_end(block_first_line);
        return nullptr;
      }
    }
    current_line = block_first_line + block->lines[block_index];
    return &block->records[block_index++];
  }

  std::string_view canonical_line() {
    if (pipeline && block != nullptr && options.canonical_lines) {
      const size_t index = block_index - 1;
      const size_t start = index == 0 ? 0 : block->line_ends[index - 1];
      return block->encoded.view().substr(start, block->line_ends[index] - start);
    }
    serial_line.clear();
    if (!pipeline && !serial_canonical.empty()) {
      serial_line.put(serial_canonical);
      serial_line.put_char('\n');
    } else {
      serial_line.append_record(pipeline ? block->records[block_index - 1] : serial_record);
    }
    return serial_line.view();
  }

  bool next(Record& record) {
    if (pipeline) {
      Record* decoded = read_from_pipeline();
      if (decoded == nullptr) return false;
      // Swap rather than move: the caller's old record goes back into the block, so string
      // capacity keeps circulating.
      std::swap(record, *decoded);
      return true;
    }
    return decode_serial(record);
  }
};

TapeReader::TapeReader(std::string source_name, ReadFn read, ReaderOptions options, CutCheck cut)
    : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(source_name);
  impl_->read = std::move(read);
  impl_->options = options;
  impl_->cut = std::move(cut);
  impl_->read_header();
  impl_->maybe_start_pipeline();
}

TapeReader::~TapeReader() = default;

const Header& TapeReader::header() const {
  return impl_->header;
}
bool TapeReader::next(Record& record) {
  return impl_->next(record);
}
const Record* TapeReader::read() {
  return impl_->read_next();
}
std::string_view TapeReader::canonical_line() {
  return impl_->canonical_line();
}
const std::optional<TornTail>& TapeReader::torn_tail() const {
  return impl_->torn;
}
uint64_t TapeReader::line_number() const {
  return impl_->current_line;
}
const std::string& TapeReader::source_name() const {
  return impl_->name;
}

namespace {

// Opens the tape file at `path`, named `name` in what it reports.
std::unique_ptr<TapeReader> open_file(const std::filesystem::path& path, const std::string& name,
                                      ReaderOptions options);

}  // namespace

std::unique_ptr<TapeReader> TapeReader::open(const std::filesystem::path& path,
                                             ReaderOptions options) {
  // A pack is read from the folder this process unpacked it into, named as the pack's member.
  if (pack::is_packed_tape(path)) {
    const pack::ReadView& view = pack::read_view(path);
    return open_file(view.tape, path.string() + ":" + view.tape.filename().string(), options);
  }
  return open_file(path, path.string(), options);
}

namespace {

std::unique_ptr<TapeReader> open_file(const std::filesystem::path& path, const std::string& name,
                                      ReaderOptions options) {
  auto fd = std::make_shared<FileDescriptor>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd->get() < 0) throw TapeError(name, 0, std::string("cannot open: ") + std::strerror(errno));
  ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  auto read = [fd, name](char* dst, size_t capacity) -> size_t {
    for (;;) {
      ssize_t got = ::read(fd->get(), dst, capacity);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno == EINTR) continue;
      if (errno == EISDIR) throw TapeError(name, 0, "is a directory, not a tape");
      throw TapeError(name, 0, std::string("read failed: ") + std::strerror(errno));
    }
  };
  char head[4];
  if (::pread(fd->get(), head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
      !detail::has_zstd_magic({head, sizeof head})) {
    return std::make_unique<TapeReader>(name, std::move(read), options);
  }
  // Compressed: the reader decodes what the decompressor gives and is told where it was cut.
  struct Decompressed {
    Decompressed(const std::string& source_name, TapeReader::ReadFn compressed)
        : zstd(source_name, std::move(compressed)) {}
    detail::ZstdReader zstd;
    uint64_t produced = 0;
  };
  auto source = std::make_shared<Decompressed>(name, std::move(read));
  auto decompressed = [source](char* dst, size_t capacity) -> size_t {
    const size_t got = source->zstd.read(dst, capacity);
    source->produced += got;
    return got;
  };
  auto cut = [source]() -> std::optional<uint64_t> {
    if (!source->zstd.ended_inside_frame()) return std::nullopt;
    return source->produced;
  };
  return std::make_unique<TapeReader>(name, std::move(decompressed), options, std::move(cut));
}

}  // namespace

std::unique_ptr<TapeReader> TapeReader::from_memory(std::string_view bytes, std::string source_name,
                                                    ReaderOptions options) {
  auto read = [bytes, offset = size_t{0}](char* dst, size_t capacity) mutable -> size_t {
    size_t n = std::min(capacity, bytes.size() - offset);
    std::memcpy(dst, bytes.data() + offset, n);
    offset += n;
    return n;
  };
  return std::make_unique<TapeReader>(std::move(source_name), std::move(read), options);
}

}  // namespace tapedeck
