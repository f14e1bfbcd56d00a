#include "tape/compressed_tape.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"

namespace tapedeck::detail {

namespace {

constexpr unsigned char kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};

[[noreturn]] void zstd_failed(const std::string& name, uint64_t offset, size_t code) {
  throw TapeError(name, 0,
                  "not a readable zstd stream at compressed byte " + std::to_string(offset) + ": " +
                      ZSTD_getErrorName(code));
}

}  // namespace

bool has_zstd_magic(std::string_view head) {
  return head.size() >= sizeof kZstdMagic && std::memcmp(head.data(), kZstdMagic, 4) == 0;
}

bool is_compressed_tape(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char head[4];
  const ssize_t got = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  return got == static_cast<ssize_t>(sizeof head) && has_zstd_magic({head, sizeof head});
}

bool names_compressed_tape(const std::filesystem::path& path) {
  return path.extension() == ".zst";
}

ZstdReader::ZstdReader(std::string source_name, ReadFn read_compressed)
    : name_(std::move(source_name)),
      read_compressed_(std::move(read_compressed)),
      context_(ZSTD_createDCtx()),
      input_(ZSTD_DStreamInSize()) {
  if (context_ == nullptr) throw TapeError(name_, 0, "out of memory for a zstd decoder");
}

ZstdReader::~ZstdReader() {
  ZSTD_freeDCtx(context_);
}

size_t ZstdReader::read(char* dst, size_t capacity) {
  ZSTD_outBuffer out{dst, capacity, 0};
  for (;;) {
    if (in_.pos == in_.size && !input_done_) {
      consumed_ += in_.size;
      const size_t got = read_compressed_(input_.data(), input_.size());
      in_ = ZSTD_inBuffer{input_.data(), got, 0};
      input_done_ = got == 0;
    }
    // Past a frame's end with nothing more to read (asked again, a decoder would wait for the
    // next frame's header).
    if (input_done_ && in_.pos == in_.size && frame_left_ == 0) return 0;
    const size_t answer = ZSTD_decompressStream(context_, &out, &in_);
    if (ZSTD_isError(answer)) zstd_failed(name_, consumed_ + in_.pos, answer);
    frame_left_ = answer;
    if (out.pos > 0) return out.pos;
    // Nothing came out and nothing more will go in: the end. Inside a frame when the decoder
    // still wants bytes (0 is its answer once a frame is decoded and flushed whole).
    if (input_done_ && in_.pos == in_.size) {
      ended_inside_frame_ = true;
      return 0;
    }
  }
}

ZstdWriter::ZstdWriter(int level) : context_(ZSTD_createCCtx()) {
  if (context_ == nullptr) throw TapeError("<zstd>", 0, "out of memory for a zstd encoder");
  ZSTD_CCtx_setParameter(context_, ZSTD_c_compressionLevel, level);
  // A closed frame carries its content's checksum, which the decoder checks.
  ZSTD_CCtx_setParameter(context_, ZSTD_c_checksumFlag, 1);
}

ZstdWriter::~ZstdWriter() {
  ZSTD_freeCCtx(context_);
}

void ZstdWriter::compress(std::string_view bytes, Mode mode, std::string& out) {
  ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
  const ZSTD_EndDirective directive = mode == Mode::more    ? ZSTD_e_continue
                                      : mode == Mode::flush ? ZSTD_e_flush
                                                            : ZSTD_e_end;
  const size_t room = ZSTD_CStreamOutSize();
  for (;;) {
    const size_t before = out.size();
    out.resize(before + room);
    ZSTD_outBuffer buffer{out.data() + before, room, 0};
    const size_t left = ZSTD_compressStream2(context_, &buffer, &in, directive);
    out.resize(before + buffer.pos);
    if (ZSTD_isError(left)) {
      throw TapeError("<zstd>", 0, std::string("compression failed: ") + ZSTD_getErrorName(left));
    }
    // `more` is done once its input is taken; the others once nothing is left to write out.
    if (directive == ZSTD_e_continue ? in.pos == in.size : left == 0) return;
  }
}

void ZstdWriter::restart_frame() {
  ZSTD_CCtx_reset(context_, ZSTD_reset_session_only);
}

TapeOutput::TapeOutput(const std::filesystem::path& target) : file_(target) {
  if (names_compressed_tape(target)) writer_ = std::make_unique<ZstdWriter>();
}

void TapeOutput::write(std::string_view bytes) {
  if (!writer_) return file_.write(bytes);
  scratch_.clear();
  writer_->compress(bytes, ZstdWriter::Mode::more, scratch_);
  file_.write(scratch_);
}

void TapeOutput::commit(bool durable) {
  if (writer_) {
    scratch_.clear();
    writer_->compress({}, ZstdWriter::Mode::end_frame, scratch_);
    file_.write(scratch_);
  }
  file_.commit(durable);
}

void rewrite_compressed_prefix(const std::filesystem::path& path, uint64_t keep) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno(path, "cannot open");
  ZstdReader reader(path.string(), [&](char* dst, size_t capacity) -> size_t {
    for (;;) {
      const ssize_t got = ::read(fd, dst, capacity);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) throw_errno(path, "read failed");
    }
  });
  try {
    AtomicFile file(path);
    ZstdWriter writer;
    std::vector<char> plain(1 << 20);
    std::string compressed;
    while (keep > 0) {
      const size_t got = reader.read(plain.data(), std::min<uint64_t>(keep, plain.size()));
      if (got == 0) break;
      keep -= got;
      compressed.clear();
      writer.compress({plain.data(), got}, ZstdWriter::Mode::more, compressed);
      file.write(compressed);
    }
    compressed.clear();
    writer.compress({}, ZstdWriter::Mode::end_frame, compressed);
    file.write(compressed);
    file.commit();
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

}  // namespace tapedeck::detail

namespace tapedeck {

void repair_torn_tail(const std::filesystem::path& path, const TornTail& torn) {
  if (torn.compressed) return detail::rewrite_compressed_prefix(path, torn.offset);
  if (::truncate(path.c_str(), static_cast<off_t>(torn.offset)) != 0) {
    throw TapeError(path.string(), torn.line,
                    std::string("cannot truncate the torn last line: ") + std::strerror(errno));
  }
}

}  // namespace tapedeck
