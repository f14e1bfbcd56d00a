// Where a replay's clock moves as it makes records: which recorded wait a replay's wait stands
// for, and how a step gets past the recording's timer waits that the replay did not make.
#include "supervisor/recording_index.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace tapedeck::supervisor {
namespace {

using testing::append_record;

void monotonic(Tape& tape, int64_t value, std::string lane = "") {
  append_record(tape, kind::ClockRead{ClockSource::monotonic, value, std::move(lane)});
}
void waited(Tape& tape, uint64_t ms) {
  append_record(tape, kind::ClockSleep{ms, /*waited=*/true});
}
void llm_call(Tape& tape) {
  append_record(tape, kind::LlmCall{"digest", Payload{}});
}

// A monotonic read after the current cut.
int64_t read(RecordingIndex& index, uint64_t lane = 0) {
  return preload::take(index.clock_map(), 1, lane, 0);
}

class RecordingIndexTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(RecordingIndexTest, AWaitStandsForTheNextRecordedOneOfAboutItsLength) {
  Tape tape;
  llm_call(tape);
  monotonic(tape, 1000);
  waited(tape, 489);
  monotonic(tape, 1490);
  RecordingIndex index(tape, dir_ / "clock");
  index.step_clock();  // the call
  ASSERT_TRUE(index.next_wait_near(489));
  EXPECT_EQ(index.next_wait_near(499)->ms, 489u);
  EXPECT_EQ(index.next_wait_near(499)->ahead, 0u);
  EXPECT_TRUE(index.next_wait_near(300)) << "a replay's clock run ahead shortens its timeouts";
  EXPECT_FALSE(index.next_wait_near(540)) << "more than a tenth longer";
  // A loop's other, short timer (due as a stream's end came sooner) is not the 489 ms one.
  EXPECT_FALSE(index.next_wait_near(23));
  EXPECT_FALSE(index.next_wait_near(10));
  // Short waits: 5 ms either way.
  Tape short_tape;
  waited(short_tape, 14);
  RecordingIndex short_index(short_tape, dir_ / "short");
  EXPECT_TRUE(short_index.next_wait_near(7));
  EXPECT_TRUE(short_index.next_wait_near(19));
  EXPECT_FALSE(short_index.next_wait_near(20));
}

TEST_F(RecordingIndexTest, AWaitMayStandForOnePastRecordedWaitsTheReplayDidNotMake) {
  Tape tape;
  monotonic(tape, 1000);
  waited(tape, 24);
  monotonic(tape, 1024);
  waited(tape, 472);
  monotonic(tape, 1500);
  llm_call(tape);
  waited(tape, 150);
  RecordingIndex index(tape, dir_ / "clock");
  EXPECT_EQ(read(index), 1000);
  const auto match = index.next_wait_near(468);
  ASSERT_TRUE(match);
  EXPECT_EQ(match->ahead, 1u);
  EXPECT_EQ(match->ms, 472u);
  EXPECT_EQ(index.next_wait_near(24)->ahead, 0u) << "the nearest first";
  EXPECT_FALSE(index.next_wait_near(150)) << "never past a record of another kind";
  index.skip_steps(match->ahead);
  index.step_clock();
  EXPECT_EQ(read(index), 1500) << "the reads after the recording's 472 ms wait";
}

TEST_F(RecordingIndexTest, AStepGoesPastTimerWaitsToTheRecordOfItsKind) {
  Tape tape;
  monotonic(tape, 1000);
  waited(tape, 14);
  monotonic(tape, 1014);
  waited(tape, 480);
  monotonic(tape, 1494);
  llm_call(tape);
  monotonic(tape, 1600);
  waited(tape, 10);
  monotonic(tape, 1610);
  append_record(tape, kind::FileRead{"notes.txt", "hash", 5, false});
  monotonic(tape, 1700);
  RecordingIndex index(tape, dir_ / "clock");
  // The replay's request went out before the timers the recording fired ahead of it.
  static const RecordKind kCall = kind::LlmCall{};
  index.step_clock(&kCall);
  EXPECT_EQ(read(index), 1600);
  // A file read with a wait ahead and no file read past it: an ordinary step, onto the wait.
  static const RecordKind kWrite = kind::FileWrite{};
  index.step_clock(&kWrite);
  EXPECT_EQ(read(index), 1610);
  // A step of no stated kind is positional too.
  index.step_clock();
  EXPECT_EQ(read(index), 1700);
}

TEST_F(RecordingIndexTest, ReadsAfterAWaitAreServedFromTheirOwnLane) {
  Tape tape;
  llm_call(tape);
  monotonic(tape, 1000, preload::kAfterWaitLane);
  monotonic(tape, 1000);
  monotonic(tape, 1001);
  monotonic(tape, 1020, preload::kAfterWaitLane);
  monotonic(tape, 1021);
  monotonic(tape, 1022);
  RecordingIndex index(tape, dir_ / "clock");
  index.step_clock();
  preload::ClockMap& map = index.clock_map();
  ASSERT_NE(map.after_wait_lane, 0u);
  EXPECT_EQ(read(index, map.after_wait_lane), 1000);
  EXPECT_EQ(read(index), 1000);
  // The replay's loop turns again sooner than the recording's did (the stream's next event in
  // one piece with this one): its turn still starts at the recording's time.
  EXPECT_EQ(read(index, map.after_wait_lane), 1020);
  EXPECT_EQ(read(index), 1020) << "never back past what the turn's start read";
  EXPECT_EQ(read(index), 1021);
}

TEST_F(RecordingIndexTest, ATapeWithoutReadsAfterWaitsHasNoSuchLane) {
  Tape tape;
  monotonic(tape, 1000);
  RecordingIndex index(tape, dir_ / "clock");
  EXPECT_EQ(index.clock_map().after_wait_lane, 0u);
  EXPECT_EQ(read(index, index.clock_map().after_wait_lane), 1000);
}

// With thread lanes, a file record names its thread, and a replay's record moves that thread's
// clock to the reads after the recording's record of the same thread, whichever thread's record
// comes first this time. A written file's record (taped at the next point the tree's order
// matters, which any thread may reach) cuts no thread's reads, and a thread reads on past any
// number of other threads' records.
TEST_F(RecordingIndexTest, EachThreadsFileRecordMovesItsOwnClockWhateverTheOrder) {
  Tape tape;
  monotonic(tape, 100, "t1");
  monotonic(tape, 200, "t2");
  append_record(tape, kind::FileRead{"a.txt", "h", 1, false, false, "t1"});
  monotonic(tape, 110, "t1");
  append_record(tape, kind::FileRead{"b.txt", "h", 1, false, false, "t2"});
  monotonic(tape, 210, "t2");
  for (int k = 0; k < 12; ++k) append_record(tape, kind::FileDelete{"b.txt", false, false, "t2"});
  append_record(tape, kind::FileWrite{"c.txt", "h", 1, false, std::nullopt, "t1"});
  monotonic(tape, 120, "t1");
  monotonic(tape, 130, "t1");
  append_record(tape, kind::FileRead{"a.txt", "h", 1, false, false, "t1"});
  monotonic(tape, 140, "t1");
  RecordingIndex index(tape, dir_ / "clock");
  ASSERT_TRUE(index.file_records_owned());
  const uint64_t t1 = index.lane_id("t1");
  const uint64_t t2 = index.lane_id("t2");
  const uint64_t t1_key = preload::ThreadKey{0, 1}.pack();
  const uint64_t t2_key = preload::ThreadKey{0, 2}.pack();
  // The replay's second thread opens its file first.
  const RecordKind read_b = kind::FileRead{"b.txt", "h", 1, false, false, "t2"};
  index.step_clock(&read_b, t2_key);
  EXPECT_EQ(read(index, t2), 210) << "past its own record";
  EXPECT_EQ(read(index, t1), 100) << "the first thread's record is not made yet";
  const RecordKind read_a = kind::FileRead{"a.txt", "h", 1, false, false, "t1"};
  index.step_clock(&read_a, t1_key);
  EXPECT_EQ(read(index, t1), 110);
  // Its next read lies past a dozen of the other thread's records and a written file's.
  EXPECT_EQ(read(index, t1), 120);
  const RecordKind write_c = kind::FileWrite{"c.txt", "h", 1, false, std::nullopt, "t1"};
  index.step_clock(&write_c, t1_key);
  EXPECT_EQ(read(index, t1), 130) << "a written file's record skips none of the thread's reads";
  index.step_clock(&read_a, t1_key);  // its second read of a.txt: the recording's second
  EXPECT_EQ(read(index, t1), 140);
}

// A thread's sleep the recording never made (about its length) stands for none of the thread's
// later ones: its clock moves as for any record, not past its own reads to that sleep's end.
TEST_F(RecordingIndexTest, ASleepTheRecordingNeverMadeStandsForNoLaterOne) {
  Tape tape;
  monotonic(tape, 100, "t1");
  for (int k = 0; k < 3; ++k) append_record(tape, kind::FileDelete{"b.txt", false, false, "t2"});
  monotonic(tape, 110, "t1");
  append_record(tape, kind::ClockSleep{500, false, "t1"});
  monotonic(tape, 610, "t1");
  RecordingIndex index(tape, dir_ / "clock");
  const uint64_t t1 = index.lane_id("t1");
  const uint64_t t1_key = preload::ThreadKey{0, 1}.pack();
  EXPECT_EQ(read(index, t1), 100);
  const RecordKind short_nap = kind::ClockSleep{20, false, "t1"};
  index.step_clock(&short_nap, t1_key);
  EXPECT_EQ(read(index, t1), 110) << "its next read, not the one after its recorded 500 ms sleep";
  const RecordKind recorded_sleep = kind::ClockSleep{500, false, "t1"};
  index.step_clock(&recorded_sleep, t1_key);
  EXPECT_EQ(read(index, t1), 610);
}

}  // namespace
}  // namespace tapedeck::supervisor
