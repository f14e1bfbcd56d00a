// The decoder's canonical fast path against the full decoder. Whatever line the fast path
// accepts, the full decoder must read as the same record, and that record must encode back to the
// very same bytes; whatever it refuses goes to the full decoder, which reads it or names the error.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "tape/decode.hpp"
#include "tapedeck/codec.hpp"

namespace tapedeck {
namespace {

using detail::decode_canonical_record;

// Records of every kind and extension, with strings that need every escape the encoder writes,
// multibyte UTF-8 and integer extremes.
std::vector<Record> varied_records() {
  const std::string awkward = std::string("q\"b\\s/\b\f\n\r\t\x01\x1f\x7f") + "\0z" + "é€😀";
  std::vector<Record> records;
  auto add = [&](RecordKind kind) {
    Record record;
    record.seq = records.size() * 7919;
    record.virtual_time_ms = -static_cast<int64_t>(records.size()) * 1000;
    record.monotonic_ms = static_cast<int64_t>(records.size());
    record.phase = records.size() % 3 == 0 ? Phase::runtime_finalize : Phase::user_script;
    record.kind = std::move(kind);
    records.push_back(std::move(record));
  };
  add(kind::ClockRead{ClockSource::wall, 1700000000000});
  add(kind::ClockRead{ClockSource::monotonic, -5});
  add(kind::ClockRead{ClockSource::monotonic, 6, awkward});
  add(kind::ClockSleep{0});
  add(kind::ClockSleep{250, true});
  add(kind::LlmCall{std::string(64, 'd'), Payload{Payload::Storage::inline_text, "h", awkward, 0}});
  add(kind::LlmCall{"", Payload{Payload::Storage::cas, std::string(64, 'c'), "", 123456789}});
  add(kind::FileRead{"/work/" + awkward, std::string(64, 'a'), 42});
  kind::FileWrite write{"out.txt", std::string(64, 'b'), 0};
  add(write);
  write.by_subprocess = true;
  write.mode = 0;
  add(write);
  write.by_subprocess = false;
  write.mode = 07777;
  add(write);
  write.thread = "t3@9c3e01f2";
  add(write);
  add(kind::FileDelete{"gone"});
  add(kind::FileDelete{awkward, true});
  add(kind::FileDelete{"gone", false, false, "t1"});
  kind::FileRead coded{"main.py", std::string(64, 'e'), 7, true, false, "t2"};
  add(coded);
  coded.code = false;
  add(coded);
  coded.found = true;  // tapedeck's extension: the file as the run found it
  add(coded);
  coded.code = true;
  add(coded);
  add(kind::FileDelete{"made.txt", false, true});
  add(kind::FileDelete{"made.txt", false, true, "t5"});
  add(kind::ClockSleep{5, true, "t4"});
  kind::ProcessSpawn spawn{"/bin/sh",
                           {},
                           std::nullopt,
                           std::numeric_limits<int32_t>::min(),
                           0,
                           Payload{Payload::Storage::inline_text, "x", "", 0},
                           Payload{Payload::Storage::cas, "y", "", 9}};
  add(spawn);
  spawn.args = {"-c", awkward, ""};
  spawn.cwd = "/w";
  spawn.exit_code = std::numeric_limits<int32_t>::max();
  spawn.pids = 3;
  spawn.started = 12;
  add(spawn);
  spawn.pids = 0;
  add(spawn);
  Record extreme;
  extreme.seq = 999'999'999'999'999'999ULL;
  extreme.virtual_time_ms = -999'999'999'999'999'999LL;
  extreme.monotonic_ms = 999'999'999'999'999'999LL;
  extreme.kind = kind::ClockSleep{9'999'999'999'999'999'999ULL};
  records.push_back(extreme);
  return records;
}

std::string line_of(const Record& record) {
  std::string line = encode_record_line(record);
  line.pop_back();  // the newline
  return line;
}

// The full decoder's reading of `line`, or nullopt when it refuses it.
std::optional<Record> full_decode(const std::string& line) {
  detail::LineDecoder decoder;
  std::string padded = line + std::string(detail::decoder_padding(), '\0');
  Header header;
  Record record;
  try {
    if (decoder.decode(std::string_view(padded.data(), line.size()), header, record) !=
        detail::LineDecoder::LineType::record) {
      return std::nullopt;
    }
  } catch (const detail::LineError&) {
    return std::nullopt;
  }
  return record;
}

TEST(CanonicalDecode, AcceptsEveryLineTheEncoderWritesAsTheSameRecord) {
  for (const Record& expected : varied_records()) {
    const std::string line = line_of(expected);
    Record got;
    ASSERT_TRUE(decode_canonical_record(line, got)) << line;
    EXPECT_EQ(got, expected) << line;
  }
}

TEST(CanonicalDecode, ReusedRecordsTakeEveryFieldFromTheLine) {
  // One record decoded into over and over, in every order of kinds: nothing of an earlier line
  // may survive into a later one.
  const std::vector<Record> records = varied_records();
  Record reused;
  for (size_t step = 0; step < records.size() * records.size(); ++step) {
    const Record& expected = records[(step * 7 + step / records.size()) % records.size()];
    ASSERT_TRUE(decode_canonical_record(line_of(expected), reused));
    ASSERT_EQ(reused, expected) << line_of(expected);
  }
}

TEST(CanonicalDecode, OtherFormsOfTheSameRecordGoToTheFullDecoder) {
  // Valid JSON the full decoder reads, but not the encoder's bytes: the fast path must refuse,
  // or fmt would copy them unchanged.
  const std::string base =
      R"({"type":"record","seq":1,"phase":"user_script","virtual_time_ms":2,"monotonic_ms":3,"kind":)";
  const std::vector<std::string> other_forms = {
      base + R"({"kind":"clock_sleep","duration_ms":5,"waited":false}})",
      base + R"({"kind":"clock_sleep", "duration_ms":5}})",
      base + R"({"duration_ms":5,"kind":"clock_sleep"}})",
      base + R"({"kind":"clock_read","source":"wall","value_ms":-0}})",
      base + R"({"kind":"clock_read","source":"wall","value_ms":1,"lane":""}})",
      base + R"({"kind":"file_delete","path":"\u0041"}})",
      base + R"({"kind":"file_delete","path":"\/"}})",
      base + R"({"kind":"file_delete","path":"\u001F"}})",
      base + R"({"kind":"file_delete","path":"\u000a"}})",
      base + R"({"kind":"file_delete","path":"x","by_subprocess":false}})",
      base + R"({"kind":"file_delete","path":"x","extra":1}})",
      base + R"({"kind":"file_delete","path":"x","thread":""}})",
      base +
          R"({"kind":"llm_call","request_digest":"d","response":{"text":"t","content_hash":"h"}}})",
      base +
          R"({"kind":"process_spawn","program":"p","args":[],"cwd":null,"exit_code":0,"duration_ms":0,"stdout_payload":{"content_hash":"h","text":""},"stderr_payload":{"content_hash":"h","text":""},"pids":0}})",
      base +
          R"({"kind":"process_spawn","program":"p","args":[],"exit_code":0,"duration_ms":0,"stdout_payload":{"content_hash":"h","text":""},"stderr_payload":{"content_hash":"h","text":""}}})",
      R"({"type":"record","seq":1,"virtual_time_ms":2,"monotonic_ms":3,"kind":{"kind":"clock_sleep","duration_ms":5}})",
      base + R"({"kind":"clock_sleep","duration_ms":5}} )",
  };
  for (const std::string& line : other_forms) {
    Record fast;
    EXPECT_FALSE(decode_canonical_record(line, fast)) << line;
    const std::optional<Record> full = full_decode(line);
    ASSERT_TRUE(full.has_value()) << "the full decoder should read " << line;
    EXPECT_NE(line_of(*full), line) << "not a canonical form after all: " << line;
  }
}

TEST(CanonicalDecode, RareCanonicalFormsAreLeftToTheFullDecoder) {
  // 20-digit numbers and kinds this version does not know: canonical, read by the full decoder.
  const std::string base =
      R"({"type":"record","seq":1,"phase":"user_script","virtual_time_ms":2,"monotonic_ms":3,"kind":)";
  for (const std::string& line : {
           base + R"({"kind":"clock_sleep","duration_ms":18446744073709551615}})",
           base + R"({"kind":"something_new","x":1}})",
       }) {
    Record record;
    EXPECT_FALSE(decode_canonical_record(line, record)) << line;
    const std::optional<Record> full = full_decode(line);
    ASSERT_TRUE(full.has_value()) << line;
    EXPECT_EQ(line_of(*full), line);
  }
}

TEST(CanonicalDecode, LinesNeitherDecoderReadsAreRefusedByBoth) {
  const std::string base =
      R"({"type":"record","seq":1,"phase":"user_script","virtual_time_ms":2,"monotonic_ms":3,"kind":)";
  for (const std::string& line : {
           base + R"({"kind":"clock_sleep","duration_ms":05}})",
           base + R"({"kind":"clock_sleep","duration_ms":5.0}})",
           base + R"({"kind":"clock_sleep","duration_ms":-5}})",
           base + R"({"kind":"clock_sleep"}})",
           base +
               R"({"kind":"file_write","path":"x","content_hash":"h","len_bytes":1,"mode":4096}})",
           base + R"({"kind":"file_delete","path":"a)" + std::string(1, '\x01') + R"("}})",
           base + R"({"kind":"clock_sleep","duration_ms":5}}})",
       }) {
    Record record;
    EXPECT_FALSE(decode_canonical_record(line, record)) << line;
    EXPECT_FALSE(full_decode(line).has_value()) << line;
  }
}

TEST(CanonicalDecode, WhatItAcceptsOutOfMutatedLinesIsExactlyCanonical) {
  // Single-byte changes, insertions and deletions of canonical lines: wherever the fast path
  // still accepts, the full decoder agrees on the record and the record encodes to the line.
  std::mt19937_64 random(20261126);
  const std::string alphabet = "\"\\{}[]:,0123456789-abcdefnrtu \x01\x7f\xc3\xa9";
  size_t accepted = 0, tried = 0;
  for (const Record& record : varied_records()) {
    const std::string canonical = line_of(record);
    for (int trial = 0; trial < 3000; ++trial) {
      std::string line = canonical;
      const size_t at = random() % line.size();
      const char byte = alphabet[random() % alphabet.size()];
      switch (random() % 3) {
        case 0:
          line[at] = byte;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), byte);
          break;
        default:
          line.erase(at, 1);
      }
      ++tried;
      Record fast;
      if (!decode_canonical_record(line, fast)) continue;
      ++accepted;
      ASSERT_EQ(line_of(fast), line) << "accepted a line that is not the encoding of its record";
      const std::optional<Record> full = full_decode(line);
      ASSERT_TRUE(full.has_value()) << "the full decoder refuses what the fast path took: " << line;
      ASSERT_EQ(*full, fast) << line;
    }
  }
  // Some mutations keep a line canonical (a digit for a digit, a letter inside a string): the
  // comparison above must have had work to do.
  EXPECT_GT(accepted, tried / 20);
}

TEST(CanonicalDecode, InvalidUtf8IsLeftToTheFullDecoderWhichRefusesIt) {
  for (std::string bad : {std::string("\xff"), std::string("\xc3"), std::string("\xed\xa0\x80")}) {
    const std::string line =
        R"({"type":"record","seq":1,"phase":"user_script","virtual_time_ms":2,"monotonic_ms":3,"kind":{"kind":"file_delete","path":")" +
        bad + R"("}})";
    Record record;
    EXPECT_FALSE(decode_canonical_record(line, record));
    EXPECT_FALSE(full_decode(line).has_value());
  }
}

}  // namespace
}  // namespace tapedeck
