// The canonical encoder. Byte-exact with serde_json's compact writer for the tape's types:
// fields in declaration order, no whitespace, integers in plain decimal, and strings escaped as
// \" \\ \b \f \n \r \t, other bytes below 0x20 as \u00xx (lowercase), everything else raw.
#include <array>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "tape/json_escape.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck {

using detail::kEscape;
using detail::plain_prefix;

LineBuffer::~LineBuffer() {
  std::free(data_);
}

void LineBuffer::reserve_more(size_t extra) {
  if (capacity_ - size_ >= extra) return;
  size_t wanted = size_ + extra;
  size_t grown = capacity_ < 4096 ? 4096 : capacity_ * 2;
  if (grown < wanted) grown = wanted;
  void* bigger = std::realloc(data_, grown);
  if (bigger == nullptr) throw std::bad_alloc();
  data_ = static_cast<char*>(bigger);
  capacity_ = grown;
}

void LineBuffer::put(std::string_view bytes) {
  reserve_more(bytes.size());
  std::memcpy(data_ + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

void LineBuffer::put_char(char c) {
  reserve_more(1);
  data_[size_++] = c;
}

void LineBuffer::put_int(int64_t value) {
  reserve_more(20);
  size_ = std::to_chars(data_ + size_, data_ + capacity_, value).ptr - data_;
}

void LineBuffer::put_uint(uint64_t value) {
  reserve_more(20);
  size_ = std::to_chars(data_ + size_, data_ + capacity_, value).ptr - data_;
}

void LineBuffer::put_json_string(std::string_view text) {
  // A tape is JSON, and JSON is UTF-8: a string that is not (a file name of any bytes, a
  // program's argument) is written with U+FFFD for each byte that does not fit, never as bytes
  // no reader takes (the whole tape would be lost to a name CPython's test_os makes).
  if (!is_valid_utf8(text)) {
    const std::string lossy = utf8_lossy(text);
    put_json_string(lossy);
    return;
  }
  // Optimistic reservation: one output byte per input byte plus the quotes. An escape reserves
  // again for its own worst case, so huge clean strings never reserve six times their size.
  reserve_more(text.size() + 2);
  const auto* in = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = in + text.size();
  char* out = data_ + size_;
  *out++ = '"';
  while (in < end) {
    const unsigned char* run = in;
    while (end - in >= 8) {
      uint64_t word;
      std::memcpy(&word, in, 8);
      const size_t plain = plain_prefix(word);
      in += plain;
      if (plain < 8) break;
    }
    while (in < end && kEscape[*in] == 0) ++in;
    std::memcpy(out, run, static_cast<size_t>(in - run));
    out += in - run;
    if (in == end) break;

    size_ = static_cast<size_t>(out - data_);
    reserve_more(6 + static_cast<size_t>(end - in) + 1);
    out = data_ + size_;
    const char letter = kEscape[*in];
    *out++ = '\\';
    *out++ = letter;
    if (letter == 'u') {
      static constexpr char kHex[] = "0123456789abcdef";
      *out++ = '0';
      *out++ = '0';
      *out++ = kHex[*in >> 4];
      *out++ = kHex[*in & 0x0F];
    }
    ++in;
  }
  *out++ = '"';
  size_ = static_cast<size_t>(out - data_);
}

void LineBuffer::put_payload(const Payload& payload) {
  put(R"({"content_hash":)");
  put_json_string(payload.content_hash);
  if (payload.in_cas()) {
    put(R"(,"len_bytes":)");
    put_uint(payload.cas_len_bytes);
  } else {
    put(R"(,"text":)");
    put_json_string(payload.text);
  }
  put_char('}');
}

void LineBuffer::append_header(const Header& header) {
  put(R"({"type":"header","version":)");
  put_uint(header.version);
  put(R"(,"harn_version":)");
  put_json_string(header.harn_version);
  put(R"(,"started_at_unix_ms":)");
  if (header.started_at_unix_ms) {
    put_int(*header.started_at_unix_ms);
  } else {
    put("null");
  }
  put(R"(,"script_path":)");
  if (header.script_path) {
    put_json_string(*header.script_path);
  } else {
    put("null");
  }
  put(R"(,"argv":[)");
  for (size_t i = 0; i < header.argv.size(); ++i) {
    if (i) put_char(',');
    put_json_string(header.argv[i]);
  }
  put("]}\n");
}

void LineBuffer::append_record(const Record& record) {
  put(R"({"type":"record","seq":)");
  put_uint(record.seq);
  put(record.phase == Phase::runtime_finalize ? R"(,"phase":"runtime_finalize","virtual_time_ms":)"
                                              : R"(,"phase":"user_script","virtual_time_ms":)");
  put_int(record.virtual_time_ms);
  put(R"(,"monotonic_ms":)");
  put_int(record.monotonic_ms);
  put(R"(,"kind":)");
  std::visit(
      [this](const auto& k) {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, kind::ClockRead>) {
          put(k.source == ClockSource::monotonic
                  ? R"({"kind":"clock_read","source":"monotonic","value_ms":)"
                  : R"({"kind":"clock_read","source":"wall","value_ms":)");
          put_int(k.value_ms);
          if (!k.lane.empty()) {
            put(R"(,"lane":)");
            put_json_string(k.lane);
          }
        } else if constexpr (std::is_same_v<K, kind::ClockSleep>) {
          put(R"({"kind":"clock_sleep","duration_ms":)");
          put_uint(k.duration_ms);
          if (k.waited) put(R"(,"waited":true)");
          if (!k.thread.empty()) {
            put(R"(,"thread":)");
            put_json_string(k.thread);
          }
        } else if constexpr (std::is_same_v<K, kind::LlmCall>) {
          put(R"({"kind":"llm_call","request_digest":)");
          put_json_string(k.request_digest);
          put(R"(,"response":)");
          put_payload(k.response);
        } else if constexpr (std::is_same_v<K, kind::FileRead> ||
                             std::is_same_v<K, kind::FileWrite>) {
          put(std::is_same_v<K, kind::FileRead> ? R"({"kind":"file_read","path":)"
                                                : R"({"kind":"file_write","path":)");
          put_json_string(k.path);
          put(R"(,"content_hash":)");
          put_json_string(k.content_hash);
          put(R"(,"len_bytes":)");
          put_uint(k.len_bytes);
          if constexpr (std::is_same_v<K, kind::FileRead>) {
            if (k.code) put(R"(,"code":true)");
            if (k.found) put(R"(,"found":true)");
          }
          if constexpr (std::is_same_v<K, kind::FileWrite>) {
            if (k.by_subprocess) put(R"(,"by_subprocess":true)");
            if (k.mode) {
              put(R"(,"mode":)");
              put_uint(*k.mode);
            }
          }
          if (!k.thread.empty()) {
            put(R"(,"thread":)");
            put_json_string(k.thread);
          }
        } else if constexpr (std::is_same_v<K, kind::FileDelete>) {
          put(R"({"kind":"file_delete","path":)");
          put_json_string(k.path);
          if (k.by_subprocess) put(R"(,"by_subprocess":true)");
          if (k.found) put(R"(,"found":true)");
          if (!k.thread.empty()) {
            put(R"(,"thread":)");
            put_json_string(k.thread);
          }
        } else if constexpr (std::is_same_v<K, kind::ProcessSpawn>) {
          put(R"({"kind":"process_spawn","program":)");
          put_json_string(k.program);
          put(R"(,"args":[)");
          for (size_t i = 0; i < k.args.size(); ++i) {
            if (i) put_char(',');
            put_json_string(k.args[i]);
          }
          put(R"(],"cwd":)");
          if (k.cwd) {
            put_json_string(*k.cwd);
          } else {
            put("null");
          }
          put(R"(,"exit_code":)");
          put_int(k.exit_code);
          put(R"(,"duration_ms":)");
          put_uint(k.duration_ms);
          put(R"(,"stdout_payload":)");
          put_payload(k.stdout_payload);
          put(R"(,"stderr_payload":)");
          put_payload(k.stderr_payload);
          if (k.pids != 0) {
            put(R"(,"pids":)");
            put_uint(k.pids);
          }
          if (k.started != 0) {
            put(R"(,"started":)");
            put_uint(k.started);
          }
          if (k.descended) put(R"(,"descended":true)");
        } else if constexpr (std::is_same_v<K, kind::Unknown>) {
          put(k.raw_json);
          return;  // the kept object carries its own closing brace
        }
        put_char('}');
      },
      record.kind);
  put("}\n");
}

std::string json_string(std::string_view text) {
  LineBuffer buffer;
  buffer.put_json_string(text);
  return std::string(buffer.view());
}

std::string encode_header_line(const Header& header) {
  LineBuffer buffer;
  buffer.append_header(header);
  return std::string(buffer.view());
}

std::string encode_record_line(const Record& record) {
  LineBuffer buffer;
  buffer.append_record(record);
  return std::string(buffer.view());
}

}  // namespace tapedeck
