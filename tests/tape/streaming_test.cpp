// The streaming recorder: records reach the file as they are recorded, whole, in seq order,
// with their CAS entries written first; existing tapes are appended to; torn tails are cut.
#include <gtest/gtest.h>

#include <thread>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/recorder.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

size_t lines_in(const std::filesystem::path& path) {
  const std::string bytes = read_file(path);
  return static_cast<size_t>(std::count(bytes.begin(), bytes.end(), '\n'));
}

// Whether the tape reads to its end without a torn tail (for a compressed one: its frame closed).
bool reads_whole(const std::filesystem::path& path) {
  auto reader = TapeReader::open(path);
  while (reader->read() != nullptr) {
  }
  return !reader->torn_tail().has_value();
}

StreamOptions slow_flushes() {
  StreamOptions options;
  options.flush_interval = std::chrono::hours(1);  // only explicit flush points write
  return options;
}

TEST(Streaming, WritesWhatASnapshotWouldHold) {
  TempDir tmp;
  auto streamed = std::make_shared<Recorder>(Clock::paused_at(1000));
  auto in_memory = std::make_shared<Recorder>(Clock::paused_at(1000));
  streamed->stream_to(tmp / "s.tape", Header::current(1000, "s", {"a"}));
  for (auto* recorder : {streamed.get(), in_memory.get()}) {
    recorder->record(kind::ClockRead{ClockSource::wall, 7});
    recorder->record(kind::LlmCall{"d", recorder->payload_from_bytes(std::string(5000, 'x'))});
    recorder->record(kind::FileDelete{"gone"});
  }
  streamed->finalize();
  Tape expected = in_memory->snapshot(Header::current(1000, "s", {"a"}));
  expected.persist(tmp / "m.tape");
  EXPECT_EQ(read_file(tmp / "s.tape"), read_file(tmp / "m.tape"));
  const Tape loaded = Tape::load(tmp / "s.tape");
  const auto& response = std::get<kind::LlmCall>(loaded.records[1].kind).response;
  EXPECT_EQ(loaded.resolve(response), std::string(5000, 'x'));
}

TEST(Streaming, RecordsReachTheFileAtFlushPointsWithoutFinalize) {
  TempDir tmp;
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(0));
  RecorderGuard active = install_recorder(recorder);
  recorder->stream_to(tmp / "t.tape", Header::current(), slow_flushes());
  EXPECT_EQ(lines_in(tmp / "t.tape"), 1u);  // the header, at once
  recorder->record(kind::ClockSleep{1});
  recorder->record(kind::ClockSleep{2});
  EXPECT_EQ(lines_in(tmp / "t.tape"), 1u);  // buffered
  {
    auto phase = enter_phase(Phase::runtime_finalize);  // a phase change is a flush point
    EXPECT_EQ(lines_in(tmp / "t.tape"), 3u);
    recorder->record(kind::ClockSleep{3});
  }
  EXPECT_EQ(lines_in(tmp / "t.tape"), 4u);
  recorder->record(kind::ClockSleep{4});
  recorder->flush();
  EXPECT_EQ(lines_in(tmp / "t.tape"), 5u);
  Tape tape = Tape::load(tmp / "t.tape");
  ASSERT_EQ(tape.records.size(), 4u);
  EXPECT_EQ(tape.records[2].phase, Phase::runtime_finalize);
  EXPECT_EQ(tape.records[3].phase, Phase::user_script);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(tape.records[i].seq, i);
}

TEST(Streaming, TheIntervalFlushesOnItsOwn) {
  TempDir tmp;
  Recorder recorder(Clock::paused_at(0));
  StreamOptions options;
  options.flush_interval = std::chrono::milliseconds(5);
  std::atomic<uint64_t> reported{0};
  options.on_flush = [&](uint64_t written) { reported = written; };
  recorder.stream_to(tmp / "t.tape", Header::current(), options);
  recorder.record(kind::ClockSleep{1});
  for (int i = 0; i < 2000 && reported.load() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(reported.load(), 1u);
  EXPECT_EQ(lines_in(tmp / "t.tape"), 2u);
  recorder.finalize();
}

TEST(Streaming, CasEntriesAreOnDiskBeforeTheirRecord) {
  TempDir tmp;
  Recorder recorder(Clock::paused_at(0));
  recorder.stream_to(tmp / "t.tape", Header::current(), slow_flushes());
  Payload payload = recorder.payload_from_bytes(std::string(9000, 'c'));
  ASSERT_TRUE(payload.in_cas());
  // Before the record exists, its entry is already in the sidecar.
  EXPECT_EQ(read_file(tmp / "t.tape.cas" / payload.content_hash), std::string(9000, 'c'));
  recorder.record(kind::LlmCall{"d", payload});
  recorder.finalize();
}

TEST(Streaming, AppendsToAnExistingTapeAndCutsATornTail) {
  TempDir tmp;
  {
    Recorder first(Clock::paused_at(0));
    first.stream_to(tmp / "t.tape", Header::current(0, "first", {}));
    first.record(kind::ClockSleep{1});
    first.record(kind::ClockSleep{2});
    first.finalize();
  }
  // A writer killed mid-line leaves a torn tail; the next writer cuts it before appending.
  const std::string whole = read_file(tmp / "t.tape");
  write_file(tmp / "t.tape", whole + R"({"type":"record","seq":2,"pha)");
  {
    Recorder second(Clock::paused_at(0));
    second.stream_to(tmp / "t.tape", Header::current(0, "second", {}));
    second.record(kind::ClockSleep{3});
    second.finalize();
  }
  Tape tape = Tape::load(tmp / "t.tape");
  EXPECT_EQ(tape.header.script_path, std::optional<std::string>("first"));  // kept
  EXPECT_EQ(tape.torn_tail_bytes, 0u);
  ASSERT_EQ(tape.records.size(), 3u);
  EXPECT_EQ(tape.records[2].seq, 2u);
  EXPECT_EQ(std::get<kind::ClockSleep>(tape.records[2].kind).duration_ms, 3u);
}

TEST(Streaming, AppendsAfterBlankLinesAsReadersReadPastThem) {
  TempDir tmp;
  {
    Recorder first(Clock::paused_at(0));
    first.stream_to(tmp / "t.tape", Header::current(0, "first", {}));
    first.record(kind::ClockSleep{1});
    first.finalize();
  }
  write_file(tmp / "t.tape", read_file(tmp / "t.tape") + "\n  \n");
  {
    Recorder second(Clock::paused_at(0));
    second.stream_to(tmp / "t.tape", Header::current(0, "second", {}));
    second.record(kind::ClockSleep{2});
    second.finalize();
  }
  Tape tape = Tape::load(tmp / "t.tape");
  ASSERT_EQ(tape.records.size(), 2u);
  EXPECT_EQ(tape.records[1].seq, 1u);
  EXPECT_EQ(std::get<kind::ClockSleep>(tape.records[1].kind).duration_ms, 2u);
}

TEST(Streaming, RefusesToAppendToSomethingThatIsNotATape) {
  TempDir tmp;
  write_file(tmp / "notes.txt", "just some notes\n");
  Recorder recorder(Clock::paused_at(0));
  try {
    recorder.stream_to(tmp / "notes.txt", Header::current());
    FAIL() << "appended to a file that is not a tape";
  } catch (const TapeError& error) {
    EXPECT_NE(error.detail().find("not a record"), std::string::npos) << error.what();
  }
  EXPECT_EQ(read_file(tmp / "notes.txt"), "just some notes\n");
}

// Two recorders streaming into one tape from four threads; the tape read back.
Tape two_recorders_share(const std::filesystem::path& path) {
  Recorder a(Clock::paused_at(0));
  Recorder b(Clock::paused_at(0));
  StreamOptions options;
  options.flush_interval = std::chrono::milliseconds(1);
  a.stream_to(path, Header::current(), options);
  b.stream_to(path, Header::current(), options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Recorder& mine = t % 2 ? a : b;
      for (uint64_t i = 0; i < 20'000; ++i) mine.record(kind::ClockSleep{i});
    });
  }
  for (auto& thread : threads) thread.join();
  a.finalize();
  b.finalize();
  return Tape::load(path);
}

TEST(Streaming, ThreadsAndTwoRecordersShareOneGapFreeTape) {
  TempDir tmp;
  Tape tape = two_recorders_share(tmp / "t.tape");
  ASSERT_EQ(tape.records.size(), 80'000u);
  for (uint64_t i = 0; i < tape.records.size(); ++i) ASSERT_EQ(tape.records[i].seq, i);
}

TEST(Streaming, SnapshotOfAStreamingRecorderReadsItsTape) {
  TempDir tmp;
  Recorder recorder(Clock::paused_at(0));
  recorder.stream_to(tmp / "t.tape", Header::current(), slow_flushes());
  recorder.record(kind::ClockSleep{5});
  Tape tape = recorder.snapshot(Header::current());
  ASSERT_EQ(tape.records.size(), 1u);
  EXPECT_EQ(std::get<kind::ClockSleep>(tape.records[0].kind).duration_ms, 5u);
  recorder.finalize();
}

// Compressed tapes (*.zst): the same records, in zstd frames that read back as the plain tape.
TEST(Streaming, ACompressedTapeHoldsWhatThePlainOneDoes) {
  TempDir tmp;
  for (const char* name : {"p.tape", "c.tape.zst"}) {
    Recorder recorder(Clock::paused_at(0));
    recorder.stream_to(tmp / name, Header::current(0, "x", {}), slow_flushes());
    for (uint64_t i = 0; i < 5000; ++i) recorder.record(kind::ClockRead{ClockSource::wall, 1});
    recorder.flush();  // a second batch: the open frame goes on
    recorder.record(kind::ClockSleep{9});
    recorder.finalize();
  }
  const std::string plain = read_file(tmp / "p.tape");
  const std::string compressed = read_file(tmp / "c.tape.zst");
  EXPECT_LT(compressed.size() * 20, plain.size());
  const Tape loaded = Tape::load(tmp / "c.tape.zst");
  EXPECT_TRUE(reads_whole(tmp / "c.tape.zst"));
  EXPECT_EQ(loaded.records, Tape::load(tmp / "p.tape").records);
}

TEST(Streaming, AFlushedCompressedBatchReadsBeforeTheFrameIsClosed) {
  TempDir tmp;
  Recorder recorder(Clock::paused_at(0));
  recorder.stream_to(tmp / "t.tape.zst", Header::current(), slow_flushes());
  recorder.record(kind::ClockSleep{1});
  recorder.flush();
  // As a kill would leave it: the frame is open, the flushed record is whole.
  auto reader = TapeReader::open(tmp / "t.tape.zst");
  Record record;
  ASSERT_TRUE(reader->next(record));
  EXPECT_EQ(std::get<kind::ClockSleep>(record.kind).duration_ms, 1u);
  EXPECT_FALSE(reader->next(record));
  ASSERT_TRUE(reader->torn_tail().has_value());
  EXPECT_TRUE(reader->torn_tail()->compressed);
  EXPECT_EQ(reader->torn_tail()->bytes, 0u);
  recorder.finalize();
  EXPECT_TRUE(reads_whole(tmp / "t.tape.zst"));
}

TEST(Streaming, AWriterAppendsToACompressedTapeLeftOpen) {
  TempDir tmp;
  std::string left_open;
  {
    Recorder first(Clock::paused_at(0));
    first.stream_to(tmp / "t.tape.zst", Header::current(0, "first", {}), slow_flushes());
    first.record(kind::ClockSleep{1});
    first.record(kind::ClockSleep{2});
    first.flush();
    left_open = read_file(tmp / "t.tape.zst");  // what a kill here leaves
    first.finalize();
  }
  write_file(tmp / "t.tape.zst", left_open);
  {
    Recorder second(Clock::paused_at(0));
    second.stream_to(tmp / "t.tape.zst", Header::current(0, "second", {}));
    second.record(kind::ClockSleep{3});
    second.finalize();
  }
  auto reader = TapeReader::open(tmp / "t.tape.zst");
  EXPECT_EQ(reader->header().script_path, std::optional<std::string>("first"));
  std::vector<uint64_t> seen;
  Record record;
  while (reader->next(record)) {
    EXPECT_EQ(record.seq, seen.size());
    seen.push_back(std::get<kind::ClockSleep>(record.kind).duration_ms);
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_FALSE(reader->torn_tail().has_value());
}

TEST(Streaming, TwoRecordersShareOneCompressedTape) {
  TempDir tmp;
  Tape tape = two_recorders_share(tmp / "t.tape.zst");
  EXPECT_TRUE(reads_whole(tmp / "t.tape.zst"));
  ASSERT_EQ(tape.records.size(), 80'000u);
  for (uint64_t i = 0; i < tape.records.size(); ++i) ASSERT_EQ(tape.records[i].seq, i);
}

}  // namespace
}  // namespace tapedeck
