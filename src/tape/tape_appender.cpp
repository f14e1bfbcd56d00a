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
#include "tape/compressed_tape.hpp"
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
    // it never leaves an empty file behind. Compressed, the header is a frame of its own.
    AtomicFile fresh(path_);
    LineBuffer header_line;
    header_line.append_header(header);
    if (names_compressed_tape(path_)) {
      ZstdWriter writer;
      writer.compress(header_line.view(), ZstdWriter::Mode::end_frame, compressed_);
      fresh.write(compressed_);
    } else {
      fresh.write(header_line.view());
    }
    fresh.link_into_place();  // false: another writer created it first, which is as good
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  if (fd_ < 0) fail("cannot open the tape for appending");
  // What the file is decides, not its name: a tape is appended to as it was begun.
  if (is_compressed_tape(path_)) zstd_ = std::make_unique<ZstdWriter>();
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
  close_frame();
  if (fd_ >= 0) ::close(fd_);
}

void TapeAppender::finish() {
  close_frame();
}

void TapeAppender::close_frame() noexcept {
  if (!zstd_ || !frame_open_ || fd_ < 0) return;
  frame_open_ = false;
  try {
    lock();
    struct stat info {};
    // Another writer's bytes after our frame (it rewrote the tape to close it) leave nothing to do.
    if (::fstat(fd_, &info) == 0 && static_cast<uint64_t>(info.st_size) == known_end_) {
      compressed_.clear();
      zstd_->compress({}, ZstdWriter::Mode::end_frame, compressed_);
      write_all(compressed_, next_seq_);
    }
    unlock();
  } catch (...) {
    // The frame stays open: a torn tail that readers pass and `verify --repair` closes.
    unlock();
  }
}

void TapeAppender::fail(const char* what) {
  throw_errno(path_, what);
}

void TapeAppender::lock() {
  for (;;) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) fail("cannot lock the tape");
    }
    // A compressed tape is rewritten (renamed over) to close a frame a writer left open: the
    // name then holds another file, which is the tape from now on.
    struct stat held {
    }, named{};
    if (::fstat(fd_, &held) != 0 || ::stat(path_.c_str(), &named) != 0 ||
        (held.st_dev == named.st_dev && held.st_ino == named.st_ino)) {
      return;
    }
    ::close(fd_);
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd_ < 0) fail("cannot open the tape for appending");
    known_end_ = 0;
    frame_open_ = false;
    close_each_frame_ = true;  // another writer rewrote it: the tape is shared
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
  if (zstd_) return catch_up_compressed(header, size);

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

void TapeAppender::catch_up_compressed(const Header* header, uint64_t size) {
  if (size == 0) {
    if (header == nullptr) throw TapeError(path_.string(), 1, "the tape lost its header");
    buffer_.clear();
    buffer_.append_header(*header);
    compressed_.clear();
    zstd_->restart_frame();
    zstd_->compress(buffer_.view(), ZstdWriter::Mode::end_frame, compressed_);
    write_all(compressed_, 0);
    known_end_ = compressed_.size();
    next_seq_ = 0;
    frame_open_ = false;
    return;
  }
  // Another writer's frames after ours (a writer sharing the tape closes each one): only they
  // are decoded, to learn the last seq.
  if (known_end_ > 0 && size > known_end_ && !frame_open_) {
    if (const auto after = last_seq_after(known_end_)) {
      close_each_frame_ = true;
      known_end_ = size;
      if (*after) next_seq_ = **after + 1;
      return;
    }
  }
  // A tape opened anew, or moved on under us. Its last seq is learned by decoding it all (zstd
  // frames cannot be read from the end).
  std::optional<uint64_t> last_seq;
  std::optional<TornTail> torn;
  {
    auto reader = TapeReader::open(path_, ReaderOptions{.threads = 1});
    while (const Record* record = reader->read()) last_seq = record->seq;
    torn = reader->torn_tail();
  }
  if (torn) {
    // A frame left open (its writer killed, or still writing and about to find this out): the
    // tape is rewritten with its whole lines in a closed frame, and is a new file from now on.
    rewrite_compressed_prefix(path_, torn->offset);
    const int reopened = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (reopened < 0) fail("cannot open the tape for appending");
    while (::flock(reopened, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(reopened);
        fail("cannot lock the tape");
      }
    }
    ::close(fd_);  // drops the old file's lock: its waiters find the name moved on
    fd_ = reopened;
    struct stat info {};
    if (::fstat(fd_, &info) != 0) fail("cannot stat the tape");
    size = static_cast<uint64_t>(info.st_size);
  }
  // Once the tape is seen shared, our frames are closed one by one.
  close_each_frame_ = close_each_frame_ || appended_ || torn.has_value();
  frame_open_ = false;
  known_end_ = size;
  next_seq_ = last_seq ? *last_seq + 1 : 0;
}

std::optional<std::optional<uint64_t>> TapeAppender::last_seq_after(uint64_t offset) {
  ZstdReader frames(path_.string(), [this, offset, at = offset](char* dst, size_t room) mutable {
    for (;;) {
      const ssize_t got = ::pread(fd_, dst, room, static_cast<off_t>(at));
      if (got >= 0) {
        at += static_cast<uint64_t>(got);
        return static_cast<size_t>(got);
      }
      if (errno != EINTR) fail("cannot read the tape's end");
    }
  });
  std::vector<char> chunk(1 << 16);
  std::string pending;  // what follows the last newline so far
  std::string last;     // the last whole line with content
  while (const size_t got = frames.read(chunk.data(), chunk.size())) {
    pending.append(chunk.data(), got);
    const size_t end = pending.rfind('\n');
    if (end == std::string::npos) continue;
    size_t start = 0;
    while (start <= end) {
      const size_t stop = pending.find('\n', start);
      std::string_view line(pending.data() + start, stop - start);
      if (trim_line(line)) last.assign(line);
      start = stop + 1;
    }
    pending.erase(0, end + 1);
  }
  std::string_view rest(pending);
  if (frames.ended_inside_frame() || trim_line(rest)) return std::nullopt;  // not whole frames
  if (last.empty()) return std::optional<uint64_t>();
  const size_t length = last.size();
  last.resize(length + decoder_padding(), '\0');
  LineDecoder decoder;
  Header seen_header;
  Record seen_record;
  try {
    if (decoder.decode({last.data(), length}, seen_header, seen_record) ==
        LineDecoder::LineType::record) {
      return std::optional<uint64_t>(seen_record.seq);
    }
  } catch (const LineError&) {
  }
  return std::nullopt;
}

void TapeAppender::write_all(std::string_view bytes, uint64_t first_seq) {
  while (!bytes.empty()) {
    ssize_t wrote = ::write(fd_, bytes.data(), bytes.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) {
      const int saved = wrote < 0 ? errno : ENOSPC;
      // Cut the partial batch back off: the tape stays whole up to its last record.
      if (::ftruncate(fd_, static_cast<off_t>(known_end_)) != 0) {
        // nothing more can be done; the torn tail is repaired by the next reader or writer
      }
      // A compressed frame's history now holds what was lost: never continue it. The tape may
      // end in our frame left open, so the next append decodes it whole first (and closes it).
      if (zstd_) {
        zstd_->restart_frame();
        frame_open_ = false;
        known_end_ = 0;
      }
      errno = saved;
      throw_errno(path_, ("cannot append records from seq " + std::to_string(first_seq) +
                          "; the tape holds every record before them")
                             .c_str());
    }
    bytes.remove_prefix(static_cast<size_t>(wrote));
  }
}

void TapeAppender::append(uint64_t count, const Encode& encode) {
  if (count == 0) return;
  lock();
  try {
    catch_up(nullptr);
    buffer_.clear();
    encode(next_seq_, buffer_);
    std::string_view bytes = buffer_.view();
    if (zstd_) {
      // Complete blocks of our open frame (decodable as soon as written), or a closed frame of
      // its own when the tape is shared.
      if (!frame_open_) zstd_->restart_frame();
      compressed_.clear();
      zstd_->compress(bytes,
                      close_each_frame_ ? ZstdWriter::Mode::end_frame : ZstdWriter::Mode::flush,
                      compressed_);
      bytes = compressed_;
    }
    write_all(bytes, next_seq_);
    known_end_ += bytes.size();
    next_seq_ += count;
    appended_ = true;
    if (zstd_) frame_open_ = !close_each_frame_;
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
