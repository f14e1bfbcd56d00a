#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <vector>

#include "tapedeck/codec.hpp"

namespace tapedeck {
namespace {

// serde_json's escaping written out one byte at a time, independently of the encoder's tables.
std::string reference_escape(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case 0x08:
        out += "\\b";
        break;
      case 0x0C:
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string escaped(std::string_view text) {
  LineBuffer buffer;
  buffer.put_json_string(text);
  return std::string(buffer.view());
}

TEST(Encode, EveryAsciiByteEscapesLikeSerdeJson) {
  for (int c = 0; c < 0x80; ++c) {
    std::string one(1, static_cast<char>(c));
    EXPECT_EQ(escaped(one), reference_escape(one)) << "byte " << c;
  }
  EXPECT_EQ(escaped("\x7f"), "\"\x7f\"");     // DEL stays raw
  EXPECT_EQ(escaped("a/b"), "\"a/b\"");       // slash is not escaped
  EXPECT_EQ(escaped("\x1f"), "\"\\u001f\"");  // lowercase hex
  EXPECT_EQ(escaped("é 中文 🎉 \u2028"), "\"é 中文 🎉 \u2028\"");
}

TEST(Encode, RandomStringsMatchTheReferenceAcrossWordBoundaries) {
  // Escapable bytes at every offset, in runs longer and shorter than the 8-byte fast path, and a
  // two-byte character across word boundaries (whole: the reference's strings are UTF-8).
  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a",    "b",    "c",    "d",  "e",  "f",
                                             "g",    "h",    "\"",   "\\", "\n", "\t",
                                             "\x01", "\x1f", "\x7f", "/",  " ",  "\xc3\xa9"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    for (size_t length = rng() % 70; text.size() < length;)
      text += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(escaped(text), reference_escape(text)) << "round " << round;
  }
}

TEST(Encode, IntegersAtTheirExtremes) {
  LineBuffer buffer;
  buffer.put_int(std::numeric_limits<int64_t>::min());
  buffer.put_char(' ');
  buffer.put_int(std::numeric_limits<int64_t>::max());
  buffer.put_char(' ');
  buffer.put_uint(std::numeric_limits<uint64_t>::max());
  buffer.put_char(' ');
  buffer.put_int(0);
  EXPECT_EQ(buffer.view(), "-9223372036854775808 9223372036854775807 18446744073709551615 0");
}

TEST(Encode, HeaderWithAndWithoutOptionals) {
  Header header;
  header.harn_version = "0.1.0";
  EXPECT_EQ(
      encode_header_line(header),
      R"({"type":"header","version":1,"harn_version":"0.1.0","started_at_unix_ms":null,"script_path":null,"argv":[]})"
      "\n");
  header.started_at_unix_ms = -5;
  header.script_path = "a \"b\"";
  header.argv = {"x", ""};
  EXPECT_EQ(
      encode_header_line(header),
      R"({"type":"header","version":1,"harn_version":"0.1.0","started_at_unix_ms":-5,"script_path":"a \"b\"","argv":["x",""]})"
      "\n");
}

Record make(RecordKind kind, Phase phase = Phase::user_script) {
  Record record;
  record.seq = 7;
  record.phase = phase;
  record.virtual_time_ms = 1700000000000;
  record.monotonic_ms = 12;
  record.kind = std::move(kind);
  return record;
}

constexpr std::string_view kPrefix =
    R"({"type":"record","seq":7,"phase":"user_script","virtual_time_ms":1700000000000,"monotonic_ms":12,"kind":)";

std::string line(std::string_view kind_json) {
  return std::string(kPrefix) + std::string(kind_json) + "}\n";
}

TEST(Encode, EveryKindInFieldOrder) {
  EXPECT_EQ(encode_record_line(make(kind::ClockRead{ClockSource::monotonic, -5})),
            line(R"({"kind":"clock_read","source":"monotonic","value_ms":-5})"));
  EXPECT_EQ(encode_record_line(make(kind::ClockSleep{250})),
            line(R"({"kind":"clock_sleep","duration_ms":250})"));
  Payload inline_payload{Payload::Storage::inline_text, "h1", "hi\n", 0};
  Payload cas_payload{Payload::Storage::cas, "h2", "", 9000};
  EXPECT_EQ(
      encode_record_line(make(kind::LlmCall{"d", inline_payload})),
      line(
          R"({"kind":"llm_call","request_digest":"d","response":{"content_hash":"h1","text":"hi\n"}})"));
  EXPECT_EQ(encode_record_line(make(kind::FileRead{"p", "h", 3})),
            line(R"({"kind":"file_read","path":"p","content_hash":"h","len_bytes":3})"));
  EXPECT_EQ(encode_record_line(make(kind::FileWrite{"p", "h", 3})),
            line(R"({"kind":"file_write","path":"p","content_hash":"h","len_bytes":3})"));
  EXPECT_EQ(encode_record_line(make(kind::FileDelete{"p"})),
            line(R"({"kind":"file_delete","path":"p"})"));
  EXPECT_EQ(
      encode_record_line(make(
          kind::ProcessSpawn{"git", {"a", "b"}, std::nullopt, -1, 4, inline_payload, cas_payload})),
      line(
          R"({"kind":"process_spawn","program":"git","args":["a","b"],"cwd":null,"exit_code":-1,"duration_ms":4,"stdout_payload":{"content_hash":"h1","text":"hi\n"},"stderr_payload":{"content_hash":"h2","len_bytes":9000}})"));
  EXPECT_EQ(encode_record_line(make(kind::Unknown{"x", R"({"kind":"x","a":[1]})"})),
            line(R"({"kind":"x","a":[1]})"));
}

TEST(Encode, PhaseIsSpelledOut) {
  std::string encoded = encode_record_line(make(kind::ClockSleep{1}, Phase::runtime_finalize));
  EXPECT_NE(encoded.find(R"("phase":"runtime_finalize")"), std::string::npos);
}

}  // namespace
}  // namespace tapedeck
