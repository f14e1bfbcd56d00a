#include "preload/clock_map.hpp"

#include "preload/clock_map_layout.hpp"

#include <gtest/gtest.h>

#include <array>
#include <new>
#include <vector>

#include "preload/wire.hpp"

namespace tapedeck::preload {
namespace {

// A map in ordinary memory, laid out as the supervisor lays out the shared one.
class MapFixture {
 public:
  struct Laned {};
  MapFixture(Laned, const ClockMapPlan& plan)
      : memory_(plan.bytes() / sizeof(uint64_t) + 1), map_(lay_out(plan, memory_.data())) {}
  // stretches[k][source]: the recorded reads of that stretch, all without a lane.
  explicit MapFixture(const std::vector<std::array<std::vector<int64_t>, 2>>& stretches)
      : MapFixture(Laned{}, unlaned(stretches)) {}
  ClockMap& map() { return *map_; }

 private:
  static ClockMapPlan unlaned(const std::vector<std::array<std::vector<int64_t>, 2>>& stretches) {
    ClockMapPlan plan;
    plan.stretches.resize(stretches.size());
    for (size_t k = 0; k < stretches.size(); ++k) {
      for (size_t source = 0; source < 2; ++source) {
        if (!stretches[k][source].empty()) plan.stretches[k][source][0] = stretches[k][source];
      }
    }
    return plan;
  }
  std::vector<uint64_t> memory_;
  ClockMap* map_;
};

TEST(ClockMap, ServesEachStretchInOrderAndMovesOnWhenTold) {
  MapFixture fixture({{{{1000, 1001}, {50}}}, {{{2000}, {60, 61}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  EXPECT_EQ(take(map, 1, 0), 50);
  // The replay made its next record before reading the rest of this stretch: the unread value
  // (1001) is skipped, not served late.
  map.position = ClockPosition{1}.pack();
  EXPECT_EQ(take(map, 0, 0), 2000);
  EXPECT_EQ(take(map, 1, 0), 60);
  EXPECT_EQ(take(map, 1, 0), 61);
}

TEST(ClockMap, ADeferredCutIsMadeByEachClockOnceItsStretchIsUsedUp) {
  MapFixture fixture({{{{1000}, {50, 51}}}, {{{2000}, {60}}}, {{{3000}, {70}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 0), 50);
  defer_step(map);  // a call the recording cut somewhere among these reads
  EXPECT_EQ(next_cut(map), 1u);
  EXPECT_EQ(take(map, 1, 0), 51);    // still before the cut: the recording read it there
  EXPECT_EQ(take(map, 0, 0), 1000);  // the wall clock's read before it too
  EXPECT_EQ(take(map, 0, 0), 2000);  // its stretch used up: past the cut
  EXPECT_EQ(take(map, 1, 0), 60);    // and so is the monotonic clock's, on its own
  // The next cut moves both past every deferred one.
  defer_step(map);
  step(map);
  EXPECT_EQ(next_cut(map), 3u);
  EXPECT_EQ(take(map, 0, 0), 3000);
  EXPECT_EQ(take(map, 1, 0), 70);
}

TEST(ClockMap, ACutMadeBeforeTheDeferredOneIsUsedSkipsWhatIsLeft) {
  MapFixture fixture({{{{}, {50, 51}}}, {{{}, {60}}}, {{{}, {70}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 0), 50);
  defer_step(map);
  step(map);  // a file read, say: the recording's next record after the call
  EXPECT_EQ(take(map, 1, 0), 70);
}

TEST(ClockMap, PastAStretchTimeCreepsOnAndNeverGoesBack) {
  MapFixture fixture({{{{1000}, {}}}, {{{1100}, {}}}, {{{990}, {}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  // More reads than the recording made, with real time standing still: a millisecond every
  // kReadsPerTick of them, so a loop spinning on the clock still ends.
  for (uint64_t read = 1; read < kReadsPerTick; ++read) ASSERT_EQ(take(map, 0, 0), 1000);
  EXPECT_EQ(take(map, 0, 0), 1001);
  for (uint64_t read = 1; read < kReadsPerTick; ++read) ASSERT_EQ(take(map, 0, 0), 1001);
  EXPECT_EQ(take(map, 0, 0), 1002);
  step(map);
  EXPECT_EQ(take(map, 0, 0), 1100);
  step(map);
  EXPECT_EQ(take(map, 0, 0), 1100);  // the recorded 990 would go back in time
}

TEST(ClockMap, PastAStretchTimeStandsAndStaysShortOfTheNextRecordedRead) {
  MapFixture fixture({{{{}, {100}}}, {{{}, {}}}, {{{}, {105, 106}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 0), 100);
  // An event loop reading once more per turn than the recording did, a few real milliseconds
  // apart: the same moment as the last recorded read, so that a timer it sets now is due when
  // the recording's was.
  EXPECT_EQ(take(map, 1, 3), 100);
  EXPECT_EQ(take(map, 1, 20), 100);
  // A thread held up for real moves it on, but never as far as the next recorded read...
  EXPECT_EQ(take(map, 1, kHeldUpMs), 104);
  EXPECT_EQ(take(map, 1, 2 * kHeldUpMs), 104);
  // ... which the reads after the next records are served.
  step(map);
  EXPECT_EQ(take(map, 1, 0), 104);  // (the stretch between holds no read either)
  step(map);
  EXPECT_EQ(take(map, 1, 0), 105);
  EXPECT_EQ(take(map, 1, 0), 106);
  // A wait that ends later than that moves the clock past it all the same.
  int64_t from[2] = {0, 106};
  advance_from(map, from, 50);
  EXPECT_EQ(take(map, 1, 0), 156);
  // And a loop spinning on the clock creeps past anything, a millisecond per kReadsPerTick.
  for (uint64_t read = 1; read < 2 * kReadsPerTick; ++read) take(map, 1, 0);
  EXPECT_GE(take(map, 1, 0), 157);
}

TEST(ClockMap, ACreepStaysShortOfTheNextRecordedReadUntilALoopSpinsOnIt) {
  MapFixture fixture({{{{}, {100}}}, {{{}, {103}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 0), 100);
  // A start-up reading thousands of times more than the recording's: no further than 102.
  for (uint64_t read = 0; read < 10 * kReadsPerTick; ++read) ASSERT_LE(take(map, 1, 0), 102);
  step(map);
  EXPECT_EQ(take(map, 1, 0), 103);
  // A loop spinning past the stretch for a deadline beyond the recording's next read ends.
  MapFixture spinning({{{{}, {100}}}, {{{}, {103}}}});
  EXPECT_EQ(take(spinning.map(), 1, 0), 100);
  int64_t value = 0;
  for (uint64_t read = 0; read < kCappedReadsBeforeCreep + 4 * kReadsPerTick && value < 104;
       ++read) {
    value = take(spinning.map(), 1, 0);
  }
  EXPECT_GE(value, 104);
}

TEST(ClockMap, PastTheLastStretchAThreadHeldUpForRealFindsTimeMovedOn) {
  MapFixture fixture({{{{1000}, {}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  // Blocked for real in a wait nobody skipped (a raw futex with a timeout computed from these
  // times): as long in replayed time, so its deadline comes.
  EXPECT_EQ(take(map, 0, 3000), 4000);
  // Merely slow between two reads: the same moment.
  EXPECT_EQ(take(map, 0, kHeldUpMs - 1), 4000);
}

TEST(ClockMap, AThreadHeldUpForRealMayMoveOnlyItsOwnClock) {
  MapFixture fixture({{{{1000}, {}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  // The preload's reads: the held-up thread finds time moved on (it keeps that value itself)...
  EXPECT_EQ(take(map, 0, 0, 3000, nullptr, /*tree_held_up=*/false), 4000);
  // ...and the other threads, which were not held up, do not.
  EXPECT_EQ(take(map, 0, 0, 0, nullptr, false), 1000);
}

TEST(ClockMap, SleepsAdvanceBothClocksAndAStretchBeyondTheLastIsTheLast) {
  MapFixture fixture({{{{1000}, {5}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  EXPECT_EQ(take(map, 1, 0), 5);
  advance(map, 250);
  map.position = ClockPosition{7}.pack();  // more records than the recording made
  EXPECT_EQ(take(map, 0, 0), 1250);
  EXPECT_EQ(take(map, 1, 0), 255);
}

TEST(ClockMap, ThreadsSleepingSideBySideMoveTheClockAsFarAsTheLastToWake) {
  MapFixture fixture({{{{1000}, {50}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 0, 0), 1000);
  EXPECT_EQ(take(map, 1, 0), 50);
  // Two threads that last read 1000 / 50 sleep 100 ms and 300 ms: the clocks end 300 ms on, not
  // 400, and each thread's own reads now count from where its sleep ended. The monotonic clock
  // (1), which a sleep is timed on, moves by the sleep; the wall clock (0) by one millisecond less,
  // as a recording's whole milliseconds of it may have.
  int64_t first[2] = {1000, 50}, second[2] = {1000, 50};
  advance_from(map, first, 100);
  advance_from(map, second, 300);
  EXPECT_EQ(first[0], 1099);
  EXPECT_EQ(first[1], 150);
  EXPECT_EQ(second[1], 350);
  EXPECT_EQ(map.latest_ms[0].load(), 1299);
  EXPECT_EQ(map.latest_ms[1].load(), 350);
  // A thread that never read the clock counts from the latest time served.
  int64_t unread[2] = {0, 0};
  advance_from(map, unread, 10);
  EXPECT_EQ(map.latest_ms[0].load(), 1308);
  EXPECT_EQ(map.latest_ms[1].load(), 360);
}

// A recording read the wall clock at ….011 (its millisecond nearly over), slept 50 ms on the
// monotonic clock and read the wall clock at ….060: 49 whole milliseconds. A replay that skips
// the sleep serves the recorded ….060, which the skipped sleep must not push to ….061.
TEST(ClockMap, ASkippedSleepLeavesTheWallClockWhereTheRecordingReadIt) {
  MapFixture fixture({{{{1011}, {80}}}, {{{1060}, {130}}}});
  ClockMap& map = fixture.map();
  int64_t seen[2] = {take(map, 0, 0), take(map, 1, 0)};
  advance_from(map, seen, 50);
  EXPECT_EQ(seen[0], 1060);  // not 1061: the read after it is served as recorded
  EXPECT_EQ(seen[1], 130);
}

// Two lanes read side by side (a Go program's time.Since on a stream's last event, and
// net/http's goroutine's time.Now): whichever reads first in the replay, each gets its own
// recorded values, also past a deferred cut; without lanes the first reader takes the other's.
TEST(ClockMap, EachLaneIsServedItsOwnReadsWhateverTheInterleaving) {
  ClockMapPlan plan;
  plan.lane_count = 2;  // 1: the program's, 2: net/http's
  plan.stretches.resize(2);
  plan.stretches[0][1] = {{1, {100, 120}}, {2, {101}}};
  plan.stretches[1][1] = {{1, {148, 148}}, {2, {144}}};
  MapFixture fixture(MapFixture::Laned{}, plan);
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 1, 0), 100);
  EXPECT_EQ(take(map, 1, 1, 0), 120);
  defer_step(map);                     // the call's record, among the last event's reads
  EXPECT_EQ(take(map, 1, 1, 0), 148);  // lane 1's stretch used up: past the cut, its own 148
  EXPECT_EQ(take(map, 1, 2, 0), 144);  // lane 2's 101 is skipped (the clock is past the cut)
  EXPECT_EQ(take(map, 1, 1, 0), 148);  // not raised by lane 2's read: each lane's own
  // Past its values a lane goes on from the latest time any read was served, and never back.
  EXPECT_EQ(take(map, 1, 2, 0), 148);
  // A lane the tape does not name has no recorded values: it follows the latest time too.
  EXPECT_EQ(take(map, 1, 9, 0), 148);
}

TEST(ClockMap, ATapeWithoutLanesServesLanedReadsFromTheOneLane) {
  MapFixture fixture({{{{}, {50, 51}}}});
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 3, 0), 50);  // a read with a lane, on a tape recorded before lanes
  EXPECT_EQ(take(map, 1, 0, 0), 51);
}

// A thread's lane is named by its process's place and its number, the same way by the
// supervisor (recording) and by the preload (replay, looking its lane up in the map).
TEST(ThreadLanes, AreNamedByPlaceAndNumberAndToldFromNamedLanes) {
  char name[kLaneNameBytes];
  thread_lane_name(name, ThreadKey{0, 3});
  EXPECT_STREQ(name, "t3");
  thread_lane_name(name, ThreadKey{0x5c0ffee1u, 12});
  EXPECT_STREQ(name, "t12@5c0ffee1");
  thread_lane_name(name, ThreadKey{0xffffffffu, kUnnumberedThread});
  EXPECT_STREQ(name, "t2147483647@ffffffff");
  EXPECT_TRUE(is_thread_lane("t3"));
  EXPECT_TRUE(is_thread_lane("t1@5c0ffee1"));
  EXPECT_FALSE(is_thread_lane("time.Now"));
  EXPECT_FALSE(is_thread_lane(kAfterWaitLane));
  // The root's own image folds to 0 (its threads' lanes carry no place); its forks and the images
  // they exec fold to others, each its own.
  EXPECT_EQ(fold_place("0"), 0u);
  EXPECT_NE(fold_place("0.1"), 0u);
  EXPECT_NE(fold_place("0.1"), fold_place("0.2"));
  EXPECT_NE(fold_place("0.1"), fold_place("0.1x"));
  const ThreadKey key = ThreadKey::unpack(ThreadKey{7, 9}.pack());
  EXPECT_EQ(key.place, 7u);
  EXPECT_EQ(key.number, 9u);
}

ClockMapPlan thread_laned_plan() {
  ClockMapPlan plan;
  plan.lane_count = 3;
  plan.lane_names = {"time.Now", "t1", "t2@0000002a"};
  plan.stretches.resize(1);
  plan.stretches[0][1] = {{0, {500, 501, 502}}, {2, {450}}, {3, {460, 470}}};
  return plan;
}

TEST(ThreadLanes, TheMapFindsALaneByItsNameAndKnowsWhetherThreadsHaveLanes) {
  MapFixture fixture(MapFixture::Laned{}, thread_laned_plan());
  ClockMap& map = fixture.map();
  EXPECT_EQ(map.threads_laned, 1u);
  EXPECT_EQ(map.lane_named("time.Now"), 1u);
  EXPECT_EQ(map.lane_named("t1"), 2u);
  EXPECT_EQ(map.lane_named("t2@0000002a"), 3u);
  EXPECT_EQ(map.lane_named("t9"), 4u);  // a thread the recording did not have
  EXPECT_EQ(map.lane_named("t2"), 4u);  // (a prefix of a name is not that name)

  ClockMapPlan go_only;
  go_only.lane_count = 1;
  go_only.lane_names = {"time.Since"};
  MapFixture go(MapFixture::Laned{}, go_only);
  EXPECT_EQ(go.map().threads_laned, 0u);  // a tape before thread lanes: threads share lane 0
}

// A worker thread that reads more often than it did in the recording (its tasks fell otherwise)
// takes nothing from the main thread's values: each thread is served its own reads.
TEST(ThreadLanes, AWorkerReadingMoreOftenLeavesTheMainThreadsValuesAlone) {
  MapFixture fixture(MapFixture::Laned{}, thread_laned_plan());
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 3, 0), 460);
  EXPECT_EQ(take(map, 1, 0, 0), 500);
  EXPECT_EQ(take(map, 1, 3, 0), 470);
  EXPECT_EQ(take(map, 1, 3, 0), 500);  // past its own: from the latest served, never back
  EXPECT_EQ(take(map, 1, 3, 0), 500);
  EXPECT_EQ(take(map, 1, 0, 0), 501);  // the main thread's next, as recorded
  EXPECT_EQ(take(map, 1, 2, 0), 450);  // another thread's first read: its own recorded value
  EXPECT_EQ(take(map, 1, 0, 0), 502);
}

// A cut is the record of one thread (its sleep, its wait's timeout, its LLM call): that thread's
// lanes skip what they left unread before it, while another thread, which the cut did not
// concern, goes on reading its own values first (a Node worker cut by the main loop's timer
// otherwise skipped its values and read 45 ms ahead).
TEST(ThreadLanes, OnlyTheThreadWhoseRecordCutsSkipsItsUnreadValues) {
  ClockMapPlan plan;
  plan.lane_count = 1;
  plan.lane_names = {"t1"};
  plan.stretches.resize(2);
  plan.stretches[0][1] = {{0, {100, 101, 102}}, {1, {200, 201}}};
  plan.stretches[1][1] = {{0, {150}}, {1, {250}}};
  MapFixture fixture(MapFixture::Laned{}, plan);
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 0, 0), 100);
  EXPECT_EQ(take(map, 1, 1, 0), 200);
  const uint64_t main_lanes[] = {0};
  step(map, main_lanes, 1);  // the main thread's sleep: it skips 101 and 102
  EXPECT_EQ(take(map, 1, 0, 0), 150);
  EXPECT_EQ(take(map, 1, 1, 0), 201);  // the worker still reads its own, then goes on
  EXPECT_EQ(take(map, 1, 1, 0), 250);
}

TEST(ThreadLanes, ACutNoThreadOwnsMovesEveryLaneAndAReadPastItEnds) {
  ClockMapPlan plan;
  plan.lane_count = 1;
  plan.lane_names = {"t1"};
  plan.stretches.resize(3);
  plan.stretches[0][1] = {{0, {100}}, {1, {200, 201}}};
  plan.stretches[2][1] = {{0, {300}}};
  MapFixture fixture(MapFixture::Laned{}, plan);
  ClockMap& map = fixture.map();
  EXPECT_EQ(take(map, 1, 1, 0), 200);
  step(map);  // a subprocess's record: every lane past it (201 is skipped)
  const uint64_t main_lanes[] = {0};
  step(map, main_lanes, 1);
  // The worker's lane is behind the cut no thread owned and has nothing in the stretches after
  // it: its read ends, past them (it once spun here, its lane never catching up).
  EXPECT_EQ(take(map, 1, 1, 0), 200);
  EXPECT_EQ(take(map, 1, 0, 0), 300);
}

TEST(Wire, FramesRoundTripAndATruncatedBodyIsRefused) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_replay));
  wire::put_bytes(frame, "/usr/bin/git");
  wire::put_int(frame, uint32_t{2});
  wire::put_bytes(frame, "status");
  wire::put_bytes(frame, std::string("a\0b", 3));
  wire::put_int(frame, int64_t{-42});
  wire::store_length(frame.data(), frame.size());
  ASSERT_EQ(wire::load_length(frame.data()), frame.size() - 4);
  EXPECT_EQ(static_cast<wire::Op>(frame[4]), wire::Op::spawn_replay);

  wire::Cursor cursor(std::string_view(frame).substr(wire::kHeaderBytes));
  EXPECT_EQ(cursor.take_bytes(), "/usr/bin/git");
  EXPECT_EQ(cursor.take_int<uint32_t>(), 2u);
  EXPECT_EQ(cursor.take_bytes(), "status");
  EXPECT_EQ(cursor.take_bytes(), std::string_view("a\0b", 3));
  EXPECT_EQ(cursor.take_int<int64_t>(), -42);
  EXPECT_TRUE(cursor.ok());
  EXPECT_TRUE(cursor.done());

  wire::Cursor cut(std::string_view(frame).substr(wire::kHeaderBytes, 10));
  cut.take_bytes();  // claims 12 bytes, 6 are there
  EXPECT_FALSE(cut.ok());
  EXPECT_EQ(cut.take_int<int64_t>(), 0);  // and stays refused
}

TEST(Wire, AFixedSinkStopsAtItsEndInsteadOfOverrunning) {
  char buffer[8];
  wire::FixedSink sink{buffer, sizeof buffer};
  wire::put_bytes(sink, "abc");  // 4 + 3 bytes: fits
  EXPECT_FALSE(sink.overflow);
  wire::put_bytes(sink, "de");  // would need 6 more
  EXPECT_TRUE(sink.overflow);
  EXPECT_EQ(sink.size, 7u);
}

}  // namespace
}  // namespace tapedeck::preload
