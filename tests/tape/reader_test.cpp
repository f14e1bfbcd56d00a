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

namespace tapedeck {
namespace {

// A tape with every shape of line: kinds, blanks, CRLF, a long line, no final newline.
std::string mixed_tape(int records) {
  std::string tape = testing::kHeaderLine;
  for (int i = 0; i < records; ++i) {
    Record record;
    record.seq = static_cast<uint64_t>(i);
    switch (i % 4) {
      case 0:
        record.kind = kind::ClockSleep{static_cast<uint64_t>(i)};
        break;
      case 1:
        record.kind = kind::FileRead{"p" + std::to_string(i), "h", 1};
        break;
      case 2:
        record.kind =
            kind::LlmCall{"d", Payload{Payload::Storage::inline_text, "h",
                                       std::string(static_cast<size_t>(i % 97) * 50, 'x'), 0}};
        break;
      default:
        record.kind = kind::Unknown{"k", R"({"kind":"k","i":)" + std::to_string(i) + "}"};
    }
    std::string line = encode_record_line(record);
    if (i % 5 == 0) line.insert(line.size() - 1, "\r");
    if (i % 7 == 0) line += "\n  \n";
    tape += line;
  }
  tape.pop_back();  // no final newline
  return tape;
}

// A reader over `tape` whose source hands out 4 KiB per read: the header read leaves most of the
// input unread, so the decoding threads take over.
std::unique_ptr<TapeReader> chunked_reader(const std::string& tape, ReaderOptions options) {
  auto offset = std::make_shared<size_t>(0);
  return std::make_unique<TapeReader>(
      "mixed.tape",
      [&tape, offset](char* dst, size_t capacity) -> size_t {
        size_t n = std::min({capacity, tape.size() - *offset, size_t{4096}});
        std::memcpy(dst, tape.data() + *offset, n);
        *offset += n;
        return n;
      },
      options);
}

std::vector<std::pair<Record, uint64_t>> read_all(const std::string& tape, ReaderOptions options) {
  auto reader = chunked_reader(tape, options);
  std::vector<std::pair<Record, uint64_t>> out;
  Record record;
  while (reader->next(record)) out.emplace_back(record, reader->line_number());
  return out;
}

TEST(ParallelReader, SameRecordsAndLinesAsTheSerialPath) {
  const std::string tape = mixed_tape(3000);
  auto serial = read_all(tape, ReaderOptions{1, 1 << 20});
  ASSERT_EQ(serial.size(), 3000u);
  // Tiny blocks and initial reads force thousands of blocks through the pipeline, with lines
  // cut at every place a block boundary can fall.
  for (size_t block_bytes : {size_t{1}, size_t{100}, size_t{4096}}) {
    auto parallel = read_all(tape, ReaderOptions{3, block_bytes});
    ASSERT_EQ(parallel.size(), serial.size()) << "block_bytes " << block_bytes;
    for (size_t i = 0; i < serial.size(); ++i) {
      ASSERT_EQ(parallel[i].first, serial[i].first) << "record " << i;
      ASSERT_EQ(parallel[i].second, serial[i].second) << "line of record " << i;
    }
  }
}

TEST(ParallelReader, AbsentExtensionsDoNotInheritAReusedRecordsValues) {
  // Every kind with an extension, written with it and then without, many times over: records
  // are reused across lines and blocks, and an absent extension must read as its default.
  std::vector<Record> written;
  for (int round = 0; round < 400; ++round) {
    const bool with = round % 2 == 0;
    kind::ClockSleep sleep{5};
    sleep.waited = with;
    kind::FileWrite write{"out.txt", std::string(64, 'a'), 3};
    write.by_subprocess = with;
    if (with) write.mode = 0640;
    kind::FileDelete removal{"gone.txt"};
    removal.by_subprocess = with;
    kind::ProcessSpawn spawn;
    spawn.program = "sh";
    spawn.stdout_payload = Payload{Payload::Storage::inline_text, "h", "o", 0};
    spawn.stderr_payload = Payload{Payload::Storage::inline_text, "h", "", 0};
    spawn.pids = with ? 3 : 0;
    spawn.started = with ? 7 : 0;
    for (RecordKind kind :
         {RecordKind{sleep}, RecordKind{write}, RecordKind{removal}, RecordKind{spawn}}) {
      Record record;
      record.seq = written.size();
      record.kind = std::move(kind);
      written.push_back(std::move(record));
    }
  }
  std::string tape = testing::kHeaderLine;
  for (const Record& record : written) tape += encode_record_line(record);
  for (ReaderOptions options :
       {ReaderOptions{1, 1 << 20}, ReaderOptions{3, 100}, ReaderOptions{2, 4096}}) {
    auto read = read_all(tape, options);
    ASSERT_EQ(read.size(), written.size());
    for (size_t i = 0; i < written.size(); ++i) {
      ASSERT_EQ(read[i].first, written[i])
          << "record " << i << " with " << options.threads << " threads";
    }
  }
}

TEST(ParallelReader, TheFirstBadLineIsReportedAfterEveryRecordBeforeIt) {
  std::string tape = mixed_tape(2000);
  // Break the record on a known line, and another one later: the earlier must win.
  auto break_line = [&](uint64_t line_number) {
    size_t at = 0;
    for (uint64_t line = 1; line < line_number; ++line) at = tape.find('\n', at) + 1;
    tape.insert(at, "{oops");
  };
  auto serial_lines = read_all(tape, ReaderOptions{1, 1 << 20});
  const uint64_t bad_line = serial_lines[1500].second;
  const uint64_t later_line = serial_lines[1800].second;
  break_line(later_line);
  break_line(bad_line);
  for (ReaderOptions options : {ReaderOptions{1, 1 << 20}, ReaderOptions{2, 512}}) {
    auto reader = chunked_reader(tape, options);
    Record record;
    size_t handed_out = 0;
    try {
      while (reader->next(record)) ++handed_out;
      FAIL() << "accepted";
    } catch (const TapeError& error) {
      EXPECT_EQ(error.line(), bad_line);
      EXPECT_EQ(handed_out, 1500u);
    }
  }
}

TEST(ParallelReader, AReadErrorSurfacesInOrder) {
  const std::string tape = mixed_tape(500);
  size_t offset = 0;
  TapeReader reader(
      "failing.tape",
      [&](char* dst, size_t capacity) -> size_t {
        if (offset >= tape.size() / 2) throw TapeError("failing.tape", 0, "read failed: EIO");
        size_t n = std::min({capacity, tape.size() - offset, size_t{300}});
        std::memcpy(dst, tape.data() + offset, n);
        offset += n;
        return n;
      },
      ReaderOptions{2, 256});
  Record record;
  size_t handed_out = 0;
  try {
    while (reader.next(record)) ++handed_out;
    FAIL() << "the read error was lost";
  } catch (const TapeError& error) {
    EXPECT_NE(error.detail().find("EIO"), std::string::npos);
    EXPECT_GT(handed_out, 0u);
  }
}

TEST(ParallelReader, DestroyedHalfWayStopsCleanly) {
  const std::string tape = mixed_tape(5000);
  for (int stop_after : {0, 1, 100, 4000}) {
    auto reader = chunked_reader(tape, ReaderOptions{2, 128});
    Record record;
    for (int i = 0; i < stop_after && reader->next(record); ++i) {
    }
  }  // the destructor must join every thread without hanging or touching freed memory
}

}  // namespace
}  // namespace tapedeck

namespace tapedeck {
namespace {

TEST(ParallelReader, CanonicalLinesMatchTheEncoderOnEveryPath) {
  const std::string tape = mixed_tape(2500);
  for (ReaderOptions options : {ReaderOptions{1, 1 << 20, true}, ReaderOptions{2, 333, true},
                                ReaderOptions{2, 333, false}}) {
    auto reader = chunked_reader(tape, options);
    size_t count = 0;
    while (const Record* record = reader->read()) {
      ASSERT_EQ(reader->canonical_line(), encode_record_line(*record)) << "record " << count;
      ++count;
    }
    EXPECT_EQ(count, 2500u);
  }
}

}  // namespace
}  // namespace tapedeck

namespace tapedeck {
namespace {

TEST(TornTail, ALastLineCutShortEndsTheTapeInsteadOfFailingIt) {
  const std::string whole = mixed_tape(3000) + "\n";
  // Cut inside the last record: what a writer killed mid-write leaves.
  const size_t last_start = whole.rfind('\n', whole.size() - 2) + 1;
  const std::string torn = whole.substr(0, last_start + 25);
  for (ReaderOptions options : {ReaderOptions{1, 1 << 20}, ReaderOptions{2, 700}}) {
    auto reader = chunked_reader(torn, options);
    size_t count = 0;
    uint64_t last_line = 0;
    while (reader->read()) {
      ++count;
      last_line = reader->line_number();
    }
    EXPECT_EQ(count, 2999u);
    ASSERT_TRUE(reader->torn_tail().has_value());
    EXPECT_EQ(reader->torn_tail()->offset, last_start);
    EXPECT_EQ(reader->torn_tail()->bytes, 25u);
    EXPECT_GT(reader->torn_tail()->line, last_line);
    EXPECT_EQ(reader->read(), nullptr);  // and it stays at the end
  }
}

TEST(TornTail, AWholeLastLineWithoutNewlineIsARecord) {
  const std::string tape = mixed_tape(100);  // ends without '\n'
  auto reader = chunked_reader(tape, ReaderOptions{2, 300});
  size_t count = 0;
  while (reader->read()) ++count;
  EXPECT_EQ(count, 100u);
  EXPECT_FALSE(reader->torn_tail().has_value());
}

TEST(TornTail, AMalformedLineEndedByNewlineIsStillAnError) {
  std::string tape = mixed_tape(100) + "\n{\"type\":\"record\",\"seq\":0,\n";
  auto reader = chunked_reader(tape, ReaderOptions{2, 300});
  EXPECT_THROW(
      {
        while (reader->read()) {
        }
      },
      TapeError);
}

}  // namespace
}  // namespace tapedeck
