// The streaming reader: splits input into lines in a growable buffer that always keeps simdjson's
// padding readable past the data, so lines are parsed in place, never copied.
//
// Linear time whatever the shape: the newline scan resumes where it stopped when the buffer
// grows (a 200 MB line costs one pass), and blank lines cost one memchr each.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tape/decode.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"

namespace tapedeck {

namespace {

constexpr size_t kInitialBuffer = 1 << 20;

bool is_blank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
  }
  return true;
}

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

}  // namespace

struct TapeReader::Impl {
  std::string name;
  ReadFn read;
  detail::LineDecoder decoder;
  Header header;
  Record scratch_record;  // target for a stray record when a header is expected, and vice versa
  Header scratch_header;

  char* buffer = nullptr;
  size_t capacity = 0;  // usable bytes; `padding` more are allocated behind them
  size_t padding = detail::decoder_padding();
  size_t begin = 0;  // start of the unconsumed data
  size_t end = 0;    // end of the data read so far
  size_t scan = 0;   // where the newline search resumes
  bool eof = false;
  uint64_t lines_seen = 0;  // lines handed out so far (1-based number of the last one)
  uint64_t current_line = 0;

  ~Impl() { std::free(buffer); }

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

  // The next line without its '\n' (and without a trailing '\r'); false at end of input.
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
        begin = scan = end;
        break;
      }
      fill();
    }
    ++lines_seen;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return true;
  }

  // The next line that is not blank; false at end of input.
  bool next_content_line(std::string_view& line) {
    while (next_line(line)) {
      if (!line.empty() && line.front() == '{') return true;  // the common case, no scan
      if (!is_blank(line)) return true;
    }
    return false;
  }

  detail::LineDecoder::LineType decode(std::string_view line, Record& record) {
    current_line = lines_seen;
    try {
      return decoder.decode(line, scratch_header, record);
    } catch (const detail::LineError& error) {
      fail(current_line, error.what());
    }
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

  bool next(Record& record) {
    std::string_view line;
    if (!next_content_line(line)) return false;
    if (decode(line, record) == detail::LineDecoder::LineType::header) {
      fail(current_line, "a second header (a tape has exactly one, on its first line)");
    }
    return true;
  }
};

TapeReader::TapeReader(std::string source_name, ReadFn read) : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(source_name);
  impl_->read = std::move(read);
  impl_->read_header();
}

TapeReader::~TapeReader() = default;

const Header& TapeReader::header() const {
  return impl_->header;
}
bool TapeReader::next(Record& record) {
  return impl_->next(record);
}
uint64_t TapeReader::line_number() const {
  return impl_->current_line;
}
const std::string& TapeReader::source_name() const {
  return impl_->name;
}

std::unique_ptr<TapeReader> TapeReader::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  auto fd = std::make_shared<FileDescriptor>(::open(name.c_str(), O_RDONLY | O_CLOEXEC));
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
  return std::make_unique<TapeReader>(name, std::move(read));
}

std::unique_ptr<TapeReader> TapeReader::from_memory(std::string_view bytes,
                                                    std::string source_name) {
  auto read = [bytes, offset = size_t{0}](char* dst, size_t capacity) mutable -> size_t {
    size_t n = std::min(capacity, bytes.size() - offset);
    std::memcpy(dst, bytes.data() + offset, n);
    offset += n;
    return n;
  };
  return std::make_unique<TapeReader>(std::move(source_name), std::move(read));
}

}  // namespace tapedeck
