// Line splitting: blank lines, CRLF, line numbers, lines that cross read boundaries, huge lines.
#include <gtest/gtest.h>

#include <cstring>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::kHeaderLine;

const std::string kSleep =
    R"({"type":"record","seq":0,"phase":"user_script","virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"clock_sleep","duration_ms":5}})";

size_t count_records(TapeReader& reader) {
  Record record;
  size_t count = 0;
  while (reader.next(record)) ++count;
  return count;
}

TEST(Reader, SkipsBlankLinesAndCarriageReturns) {
  std::string tape = "\n  \n" + kHeaderLine.substr(0, kHeaderLine.size() - 1) + "\r\n\n" + kSleep +
                     "\r\n \t \n\r\n" + kSleep;  // no final newline
  auto reader = TapeReader::from_memory(tape, "blank.tape");
  EXPECT_EQ(count_records(*reader), 2u);
}

TEST(Reader, ErrorsNameTheRightLineAfterBlankLines) {
  std::string tape = kHeaderLine + "\n\n" + kSleep + "\n\n{\"type\":\"record\"}\n";
  try {
    auto reader = TapeReader::from_memory(tape, "lines.tape");
    count_records(*reader);
    FAIL() << "accepted";
  } catch (const TapeError& error) {
    EXPECT_EQ(error.line(), 6u);
    EXPECT_EQ(std::string(error.what()).rfind("lines.tape:6: ", 0), 0u) << error.what();
  }
}

TEST(Reader, LinesThatCrossEveryReadBoundary) {
  // The source hands out 1..7 bytes per read, so every line is split at every offset.
  std::string tape = kHeaderLine;
  for (int i = 0; i < 50; ++i) tape += kSleep + "\n";
  size_t offset = 0, call = 0;
  TapeReader reader("drip.tape", [&](char* dst, size_t capacity) -> size_t {
    size_t n = std::min({capacity, tape.size() - offset, call++ % 7 + 1});
    std::memcpy(dst, tape.data() + offset, n);
    offset += n;
    return n;
  });
  EXPECT_EQ(count_records(reader), 50u);
}

TEST(Reader, LineLongerThanTheInitialBuffer) {
  // 5 MiB of inline text forces the buffer to grow several times mid-line.
  std::string text(5 << 20, 'q');
  std::string tape =
      kHeaderLine +
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"llm_call","request_digest":"d","response":{"content_hash":"h","text":")" +
      text + "\"}}}\n" + kSleep + "\n";
  auto reader = TapeReader::from_memory(tape, "long.tape");
  Record record;
  ASSERT_TRUE(reader->next(record));
  EXPECT_EQ(std::get<kind::LlmCall>(record.kind).response.text.size(), text.size());
  ASSERT_TRUE(reader->next(record));
  EXPECT_TRUE(std::holds_alternative<kind::ClockSleep>(record.kind));
}

TEST(Reader, AMillionBlankLines) {
  std::string tape = kHeaderLine + std::string(1'000'000, '\n') + kSleep + "\n";
  auto reader = TapeReader::from_memory(tape, "blanks.tape");
  EXPECT_EQ(count_records(*reader), 1u);
  EXPECT_EQ(reader->line_number(), 1'000'002u);
}

TEST(Reader, EmptyAndWhitespaceOnlyInputHasNoHeader) {
  for (std::string input : {std::string(), std::string("\n\n  \n")}) {
    try {
      TapeReader::from_memory(input, "empty.tape");
      FAIL() << "accepted an empty tape";
    } catch (const TapeError& error) {
      EXPECT_NE(error.detail().find("no header"), std::string::npos);
    }
  }
}

TEST(Reader, OpenNamesAMissingFile) {
  try {
    TapeReader::open("/nonexistent/dir/x.tape");
    FAIL();
  } catch (const TapeError& error) {
    EXPECT_EQ(error.file(), "/nonexistent/dir/x.tape");
    EXPECT_NE(error.detail().find("No such file"), std::string::npos);
  }
}

TEST(Reader, RecordStorageIsReusedAcrossKinds) {
  // next() reuses the record it is given; switching kinds must not leak old fields.
  std::string tape =
      kHeaderLine +
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"p","args":["a","b"],"cwd":"/c","exit_code":1,"duration_ms":2,"stdout_payload":{"content_hash":"h","len_bytes":3},"stderr_payload":{"content_hash":"h","text":"e"}}})"
      "\n" +
      R"({"type":"record","seq":1,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"q","args":["z"],"exit_code":0,"duration_ms":2,"stdout_payload":{"content_hash":"h","text":"o"},"stderr_payload":{"content_hash":"h","text":""}}})"
      "\n";
  auto reader = TapeReader::from_memory(tape, "reuse.tape");
  Record record;
  ASSERT_TRUE(reader->next(record));
  ASSERT_TRUE(reader->next(record));
  const auto& spawn = std::get<kind::ProcessSpawn>(record.kind);
  EXPECT_EQ(spawn.program, "q");
  EXPECT_EQ(spawn.args, std::vector<std::string>{"z"});
  EXPECT_FALSE(spawn.cwd.has_value());
  EXPECT_FALSE(spawn.stdout_payload.in_cas());
  EXPECT_EQ(spawn.stdout_payload.text, "o");
}

}  // namespace
}  // namespace tapedeck
