#include "tape/tape_appender.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tape/atomic_file.hpp"
#include "tape/decode.hpp"
#include "tapedeck/error.hpp"

namespace tapedeck::detail {

namespace {

// Reads exactly `size` bytes at `offset`.
bool read_at(int fd, uint64_t offset, char* out, size_t size) {
  while (size > 0) {
    ssize_t got = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    offset += static_cast<uint64_t>(got);
    size -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

TapeAppender::TapeAppender(std::filesystem::path path, const Header& header)
    : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (fd_ < 0 && errno == ENOENT) {
    // A new tape appears with its header already in it: a writer killed right after creating
    // it never leaves an empty file behind.
    AtomicFile fresh(path_);
    LineBuffer header_line;
    header_line.append_header(header);
    fresh.write(header_line.view());
    fresh.link_into_place();  // false: another writer created it first, which is as good
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  if (fd_ < 0) fail("cannot open the tape for appending");
  lock();
  try {
    catch_up(&header);
  } catch (...) {
    unlock();
    throw;
  }
  unlock();
}

TapeAppender::~TapeAppender() {
  if (fd_ >= 0) ::close(fd_);
}

void TapeAppender::fail(const char* what) {
  throw_errno(path_, what);
}

void TapeAppender::lock() {
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) fail("cannot lock the tape");
  }
}

void TapeAppender::unlock() {
  ::flock(fd_, LOCK_UN);
}

void TapeAppender::catch_up(const Header* header) {
  struct stat info {};
  if (::fstat(fd_, &info) != 0) fail("cannot stat the tape");
  uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size == known_end_ && size > 0) return;  // nobody else appended since our last write

  // Read backwards in growing windows until the window holds the whole last line.
  std::vector<char> tail;
  uint64_t window = 1 << 16;
  uint64_t start = 0;
  size_t last_newline = std::string::npos;  // within `tail`
  size_t line_start = 0;
  size_t line_end = 0;  // the last line with content (readers pass blank lines over)
  for (;;) {
    start = size > window ? size - window : 0;
    tail.assign(size - start + decoder_padding(), '\0');
    if (size > start && !read_at(fd_, start, tail.data(), size - start)) {
      fail("cannot read the tape's end");
    }
    const size_t length = size - start;
    // A last line without '\n' was cut short by a killed writer: it is not a record.
    last_newline = std::string::npos;
    for (size_t i = length; i > 0; --i) {
      if (tail[i - 1] == '\n') {
        last_newline = i - 1;
        break;
      }
    }
    size_t content_end = last_newline == std::string::npos ? 0 : last_newline;
    while (content_end > 0 &&
           std::string_view(" \t\r\n").find(tail[content_end - 1]) != std::string_view::npos) {
      --content_end;
    }
    size_t previous = std::string::npos;
    for (size_t i = content_end; i > 0; --i) {
      if (tail[i - 1] == '\n') {
        previous = i - 1;
        break;
      }
    }
    if ((content_end > 0 && previous != std::string::npos) || start == 0) {
      line_start = previous == std::string::npos ? 0 : previous + 1;
      line_end = content_end;
      break;
    }
    window *= 4;
  }

  const uint64_t whole_end = last_newline == std::string::npos ? 0 : start + last_newline + 1;
  if (whole_end < size) {
    if (::ftruncate(fd_, static_cast<off_t>(whole_end)) != 0) fail("cannot cut a torn last line");
    size = whole_end;
  }
  if (size == 0) {
    if (header == nullptr) throw TapeError(path_.string(), 1, "the tape lost its header");
    buffer_.clear();
    buffer_.append_header(*header);
    ssize_t wrote = ::write(fd_, buffer_.view().data(), buffer_.size());
    if (wrote != static_cast<ssize_t>(buffer_.size())) {
      if (::ftruncate(fd_, 0) != 0) {
        // the tape was empty; an empty file is the best left behind
      }
      fail("cannot write the tape's header");
    }
    known_end_ = buffer_.size();
    next_seq_ = 0;
    return;
  }

  // The last whole line tells the next seq: a header means none yet.
  std::string_view line(tail.data() + line_start, line_end - line_start);
  trim_line(line);
  LineDecoder decoder;
  Header seen_header;
  Record seen_record;
  try {
    const auto type = decoder.decode(line, seen_header, seen_record);
    next_seq_ = type == LineDecoder::LineType::header ? 0 : seen_record.seq + 1;
  } catch (const LineError& error) {
    throw TapeError(
        path_.string(), 0,
        std::string("cannot append: the tape's last line is not a record (") + error.what() + ")");
  }
  known_end_ = size;
}

void TapeAppender::append(uint64_t count, const Encode& encode) {
  if (count == 0) return;
  lock();
  try {
    catch_up(nullptr);
    buffer_.clear();
    encode(next_seq_, buffer_);
    std::string_view bytes = buffer_.view();
    while (!bytes.empty()) {
      ssize_t wrote = ::write(fd_, bytes.data(), bytes.size());
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) {
        const int saved = wrote < 0 ? errno : ENOSPC;
        // Cut the partial batch back off: the tape stays whole up to its last record.
        if (::ftruncate(fd_, static_cast<off_t>(known_end_)) != 0) {
          // nothing more can be done; the torn tail is repaired by the next reader or writer
        }
        errno = saved;
        throw_errno(path_, ("cannot append records from seq " + std::to_string(next_seq_) +
                            "; the tape holds every record before them")
                               .c_str());
      }
      bytes.remove_prefix(static_cast<size_t>(wrote));
    }
    known_end_ += buffer_.size();
    next_seq_ += count;
  } catch (...) {
    unlock();
    throw;
  }
  unlock();
}

void TapeAppender::sync() {
  if (::fdatasync(fd_) != 0) fail("fsync failed");
}

}  // namespace tapedeck::detail
