// The decoder's fast path: a record line that is already in canonical form (what the encoder
// writes, as every tape tapedeck or the reference writes is) is read in one pass over its bytes,
// without a JSON parser. It accepts exactly the encoder's productions: fields in the encoder's
// order, integers in plain decimal, strings escaped as the encoder escapes them, extensions only
// where the encoder writes them. So a line it accepts re-encodes to itself, and anything else
// (spacing, field order, unknown fields or kinds, other escapes, errors) goes to the full
// decoder, which reads it or says what is wrong.
#include <simdjson.h>

#include <cstring>
#include <limits>

#include "tape/decode.hpp"
#include "tape/json_escape.hpp"

namespace tapedeck::detail {

namespace {

class CanonicalCursor {
 public:
  explicit CanonicalCursor(std::string_view line)
      : at_(line.data()), end_(line.data() + line.size()) {}

  bool at_end() const { return at_ == end_; }

  // Whether a string held a byte above 0x7f (only strings can): the line's UTF-8 is then checked.
  bool saw_high_bytes() const { return (seen_ & 0x8080808080808080ULL) != 0; }

  // Consumes `bytes` if the input continues with them.
  bool literal(std::string_view bytes) {
    if (static_cast<size_t>(end_ - at_) < bytes.size() ||
        std::memcmp(at_, bytes.data(), bytes.size()) != 0) {
      return false;
    }
    at_ += bytes.size();
    return true;
  }

  // Plain decimal without leading zeros. Up to 19 digits, all of which fit; a longer number
  // (still a valid u64 up to 20 digits) is left to the full decoder.
  bool unsigned_number(uint64_t& out) {
    const char* p = at_;
    if (p == end_ || !is_digit(*p)) return false;
    if (*p == '0') {
      ++p;
      if (p != end_ && is_digit(*p)) return false;
      out = 0;
      at_ = p;
      return true;
    }
    uint64_t value = 0;
    int digits = 0;
    for (; p != end_ && is_digit(*p); ++p) {
      if (++digits > 19) return false;
      value = value * 10 + static_cast<uint64_t>(*p - '0');
    }
    out = value;
    at_ = p;
    return true;
  }

  // An optional minus, then up to 18 digits; "-0" is not how the encoder writes zero.
  bool signed_number(int64_t& out) {
    const bool negative = at_ != end_ && *at_ == '-';
    const char* start = at_;
    if (negative) ++at_;
    uint64_t magnitude;
    if (!unsigned_number(magnitude) || magnitude > 999'999'999'999'999'999ULL ||
        (negative && magnitude == 0)) {
      at_ = start;
      return false;
    }
    out = negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
    return true;
  }

  // A quoted string, unescaped into `out`; only the escapes the encoder writes are accepted.
  bool string(std::string& out) {
    if (at_ == end_ || *at_ != '"') return false;
    ++at_;
    const char* run = at_;
    skip_plain();
    if (at_ == end_) return false;
    if (*at_ == '"') {  // the common case: nothing escaped
      out.assign(run, static_cast<size_t>(at_ - run));
      ++at_;
      return true;
    }
    out.assign(run, static_cast<size_t>(at_ - run));
    for (;;) {
      if (*at_ == '"') {
        ++at_;
        return true;
      }
      if (*at_ != '\\' || end_ - at_ < 2) return false;  // a raw control byte, or cut short
      const char letter = at_[1];
      unsigned char decoded;
      if (letter == 'u') {
        if (end_ - at_ < 6 || at_[2] != '0' || at_[3] != '0') return false;
        const int high = lower_hex(at_[4]);
        const int low = lower_hex(at_[5]);
        if (high < 0 || low < 0) return false;
        decoded = static_cast<unsigned char>(high * 16 + low);
        at_ += 6;
      } else {
        const int byte = unescaped(letter);
        if (byte < 0) return false;
        decoded = static_cast<unsigned char>(byte);
        at_ += 2;
      }
      if (kEscape[decoded] != letter) return false;  // valid JSON, but not the encoder's form
      out.push_back(static_cast<char>(decoded));
      run = at_;
      skip_plain();
      if (at_ == end_) return false;
      out.append(run, static_cast<size_t>(at_ - run));
    }
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  static int lower_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  static int unescaped(char letter) {
    switch (letter) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      default:
        return -1;
    }
  }

  // Moves past bytes the encoder copies raw.
  void skip_plain() {
    while (end_ - at_ >= 8) {
      uint64_t word;
      std::memcpy(&word, at_, 8);
      const size_t plain = plain_prefix(word);
      if (plain < 8) {
        seen_ |= plain == 0 ? 0 : word & (~0ULL >> (64 - 8 * plain));
        at_ += plain;
        return;
      }
      seen_ |= word;
      at_ += 8;
    }
    while (at_ != end_ && kEscape[static_cast<unsigned char>(*at_)] == 0) {
      seen_ |= static_cast<unsigned char>(*at_);
      ++at_;
    }
  }

  const char* at_;
  const char* end_;
  uint64_t seen_ = 0;  // every plain string byte OR-ed together, for saw_high_bytes()
};

bool read_payload(CanonicalCursor& in, Payload& out) {
  if (!in.literal(R"({"content_hash":)") || !in.string(out.content_hash)) return false;
  if (in.literal(R"(,"len_bytes":)")) {
    if (!in.unsigned_number(out.cas_len_bytes)) return false;
    out.storage = Payload::Storage::cas;
    out.text.clear();
  } else {
    if (!in.literal(R"(,"text":)") || !in.string(out.text)) return false;
    out.storage = Payload::Storage::inline_text;
    out.cas_len_bytes = 0;
  }
  return in.literal("}");
}

// The fields every file record starts with, after its tag.
template <typename FileMeta>
bool read_file_meta(CanonicalCursor& in, FileMeta& out) {
  return in.literal(R"(","path":)") && in.string(out.path) && in.literal(R"(,"content_hash":)") &&
         in.string(out.content_hash) && in.literal(R"(,"len_bytes":)") &&
         in.unsigned_number(out.len_bytes);
}

bool read_process_spawn(CanonicalCursor& in, kind::ProcessSpawn& out) {
  if (!in.literal(R"(","program":)") || !in.string(out.program) || !in.literal(R"(,"args":[)")) {
    return false;
  }
  size_t count = 0;
  if (!in.literal("]")) {
    do {
      if (count == out.args.size()) out.args.emplace_back();
      if (!in.string(out.args[count++])) return false;
    } while (in.literal(","));
    if (!in.literal("]")) return false;
  }
  out.args.resize(count);
  if (!in.literal(R"(,"cwd":)")) return false;
  if (in.literal("null")) {
    out.cwd.reset();
  } else {
    if (!out.cwd) out.cwd.emplace();
    if (!in.string(*out.cwd)) return false;
  }
  int64_t exit_code;
  if (!in.literal(R"(,"exit_code":)") || !in.signed_number(exit_code) ||
      exit_code < std::numeric_limits<int32_t>::min() ||
      exit_code > std::numeric_limits<int32_t>::max()) {
    return false;
  }
  out.exit_code = static_cast<int32_t>(exit_code);
  if (!in.literal(R"(,"duration_ms":)") || !in.unsigned_number(out.duration_ms) ||
      !in.literal(R"(,"stdout_payload":)") || !read_payload(in, out.stdout_payload) ||
      !in.literal(R"(,"stderr_payload":)") || !read_payload(in, out.stderr_payload)) {
    return false;
  }
  // Extensions the encoder writes only when nonzero.
  out.pids = 0;
  out.started = 0;
  if (in.literal(R"(,"pids":)") && (!in.unsigned_number(out.pids) || out.pids == 0)) return false;
  if (in.literal(R"(,"started":)") && (!in.unsigned_number(out.started) || out.started == 0)) {
    return false;
  }
  out.descended = in.literal(R"(,"descended":true)");
  return true;
}

// A clock read's lane, written only when not empty (an empty one is another form: refused).
bool read_lane(CanonicalCursor& in, kind::ClockRead& read) {
  read.lane.clear();
  return !in.literal(R"(,"lane":)") || (in.string(read.lane) && !read.lane.empty());
}

// A record's `"thread"` extension, when it comes next (never empty when written).
bool read_thread(CanonicalCursor& in, std::string& thread) {
  thread.clear();
  return !in.literal(R"(,"thread":)") || (in.string(thread) && !thread.empty());
}

// The kind object after `{"kind":"`, up to and including its closing brace.
bool read_kind(CanonicalCursor& in, RecordKind& kind) {
  if (in.literal(R"(clock_read","source":"wall","value_ms":)")) {
    auto& read = reuse_as<kind::ClockRead>(kind);
    read.source = ClockSource::wall;
    if (!in.signed_number(read.value_ms) || !read_lane(in, read)) return false;
  } else if (in.literal(R"(clock_read","source":"monotonic","value_ms":)")) {
    auto& read = reuse_as<kind::ClockRead>(kind);
    read.source = ClockSource::monotonic;
    if (!in.signed_number(read.value_ms) || !read_lane(in, read)) return false;
  } else if (in.literal(R"(clock_sleep","duration_ms":)")) {
    auto& sleep = reuse_as<kind::ClockSleep>(kind);
    if (!in.unsigned_number(sleep.duration_ms)) return false;
    sleep.waited = in.literal(R"(,"waited":true)");
    if (!read_thread(in, sleep.thread)) return false;
  } else if (in.literal(R"(llm_call","request_digest":)")) {
    auto& call = reuse_as<kind::LlmCall>(kind);
    if (!in.string(call.request_digest) || !in.literal(R"(,"response":)") ||
        !read_payload(in, call.response)) {
      return false;
    }
  } else if (in.literal("file_read")) {
    auto& read = reuse_as<kind::FileRead>(kind);
    if (!read_file_meta(in, read)) return false;
    read.code = in.literal(R"(,"code":true)");
    read.found = in.literal(R"(,"found":true)");
    if (!read_thread(in, read.thread)) return false;
  } else if (in.literal("file_write")) {
    auto& write = reuse_as<kind::FileWrite>(kind);
    if (!read_file_meta(in, write)) return false;
    write.by_subprocess = in.literal(R"(,"by_subprocess":true)");
    write.mode.reset();
    if (in.literal(R"(,"mode":)")) {
      uint64_t mode;
      if (!in.unsigned_number(mode) || mode > 07777) return false;
      write.mode = static_cast<uint32_t>(mode);
    }
    if (!read_thread(in, write.thread)) return false;
  } else if (in.literal(R"(file_delete","path":)")) {
    auto& removal = reuse_as<kind::FileDelete>(kind);
    if (!in.string(removal.path)) return false;
    removal.by_subprocess = in.literal(R"(,"by_subprocess":true)");
    removal.found = in.literal(R"(,"found":true)");
    if (!read_thread(in, removal.thread)) return false;
  } else if (in.literal("process_spawn")) {
    if (!read_process_spawn(in, reuse_as<kind::ProcessSpawn>(kind))) return false;
  } else {
    return false;  // an unknown kind: kept verbatim by the full decoder
  }
  return in.literal("}");
}

}  // namespace

bool decode_canonical_record(std::string_view line, Record& record) {
  CanonicalCursor in(line);
  if (!in.literal(R"({"type":"record","seq":)") || !in.unsigned_number(record.seq)) return false;
  if (in.literal(R"(,"phase":"user_script","virtual_time_ms":)")) {
    record.phase = Phase::user_script;
  } else if (in.literal(R"(,"phase":"runtime_finalize","virtual_time_ms":)")) {
    record.phase = Phase::runtime_finalize;
  } else {
    return false;
  }
  if (!in.signed_number(record.virtual_time_ms) || !in.literal(R"(,"monotonic_ms":)") ||
      !in.signed_number(record.monotonic_ms) || !in.literal(R"(,"kind":{"kind":")") ||
      !read_kind(in, record.kind) || !in.literal("}") || !in.at_end()) {
    return false;
  }
  // Last, once the shape matched: the JSON parser refuses a line that is not UTF-8, so must we.
  return !in.saw_high_bytes() || simdjson::validate_utf8(line.data(), line.size());
}

}  // namespace tapedeck::detail
