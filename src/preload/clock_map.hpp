// Replay's clock, shared by every process of the tree. The supervisor writes the recorded clock
// reads into a file that every process maps; a read takes the next value with one atomic
// increment (no round trip, no lock).
//
// The reads are cut into stretches at every other record of the recording (a file, a
// subprocess, an LLM call, a sleep): stretch k holds the reads between the k-th such record and
// the next. The supervisor moves the current stretch as the replay makes those records. So a
// runtime that polls the clock more or less often while it waits (a fast replay waits less)
// shifts values only within that stretch, never past it: the program reads, after each step,
// the times the recording read after it.
//
// Past a stretch's recorded values, time stands at the last value served: the reads a replay
// makes beyond the recording's (an event loop turning once more as its stream's end comes in
// another piece, threads in another order) are the same moment as the last one. Time run on at
// the real pace there set an asyncio timer 7 ms late and printed the clock after it so. It moves
// a millisecond every kReadsPerTick reads, so that a loop spinning on the clock ends, and by
// however long the reading thread was held up for real when that is kHeldUpMs or more, so that
// a thread blocked in a timed wait this library does not see (a raw futex) finds its deadline
// come. Both stay short of the next value the recording read after the stretch
// (ClockStretch::ahead), which the reads after the next record are served; the creep only until
// kCappedReadsBeforeCreep reads since the last cut. A wait that times out or is skipped moves it
// past that (advance_from), as the program's deadline asks. Sleeps advance it; it never goes
// back.
//
// A cut the supervisor cannot place exactly (an LLM call no preload announced: a program under
// the floor, whose recording's reads on a stream's last event fell before or after the call's
// record by a race) is deferred: each clock moves past it when a read of that clock finds its
// stretch used up, or with the next cut, whichever comes first. Per clock, since another thread
// may read the wall clock past the call while the one on the stream is still before it.
//
// Reads may come in lanes (a clock_read's `lane`: for a Go program, the function of the package
// time that read). Within a stretch each lane's reads are served in their own recorded order, so
// that goroutines or threads that read side by side, in another order than the recording's, are
// each handed their own values: the program's time.Since on a stream's last event gets its own
// value even when net/http's goroutine read before it this time. A lane's recorded values never go
// back for that lane (each lane keeps its latest); past them, time goes on from the latest value
// any read was served, as for reads without a lane. A tape without lanes serves every read from
// the one lane 0, as before lanes existed.
//
// A preloaded process's threads other than its main thread read in lanes of their own
// (thread_lane_name): a runtime's worker threads read the clock as many times as their tasks
// happen to need, in whatever order, and served from lane 0 they moved the main thread's values
// along (Node's platform workers took 24 reads where the recording took 28, and a timer set in
// the main loop came out a millisecond late). A tape recorded before thread lanes serves every
// thread from lane 0 (ClockMap::threads_laned).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tapedeck::preload {

struct ClockStretch {
  uint64_t start[2];  // wall, monotonic: where the stretch's values begin in values()
  uint64_t count[2];  // (of lane 0: the reads without a lane)
  std::atomic<uint64_t> next[2];
  uint64_t lanes_start[2];  // the stretch's other lanes, per clock: where they begin in lanes()
  uint64_t lanes_count[2];
  // Per clock, the first value the recording read in a later stretch (kNothingAhead: none):
  // reads past this stretch's values stay short of it.
  int64_t ahead[2];
  static constexpr int64_t kNothingAhead = std::numeric_limits<int64_t>::max();
  // Tapes with thread lanes: the lanes of the thread whose record ends the stretch (its sleep or
  // wait: a clock_sleep's `thread`), kCutByAll for a record no one thread owns (a file, a
  // subprocess, an LLM call). Any other lane may read on into the next stretch before the replay
  // reaches that record: its reads are its own sequence, which the record did not cut.
  // kCutByNone: a record whose moment is no thread's own (a written file, taped at the next point
  // where the tree's order matters, which any thread of its process may reach first).
  uint64_t cut_by[2];
  static constexpr uint64_t kCutByAll = std::numeric_limits<uint64_t>::max();
  static constexpr uint64_t kCutByNone = kCutByAll - 1;
};

// One lane's reads of one clock in one stretch.
struct ClockLane {
  uint64_t lane;  // its id: 1 … ClockMap::lane_count, as the supervisor numbered the tape's lanes
  uint64_t start;  // where its values begin in values()
  uint64_t count;
  std::atomic<uint64_t> next;
};

// The current stretch, the cuts deferred past it and how many of those each clock has made,
// packed in one word so that a cut and a read agree on all of them.
struct ClockPosition {
  uint64_t stretch = 0;  // (40 bits)
  uint64_t deferred = 0;
  uint64_t taken[2] = {0, 0};  // by the wall and the monotonic clock, each at most `deferred`

  static constexpr uint64_t kMostDeferred = 255;
  static ClockPosition unpack(uint64_t word) {
    return {word >> 24, (word >> 16) & 0xff, {(word >> 8) & 0xff, word & 0xff}};
  }
  uint64_t pack() const { return stretch << 24 | deferred << 16 | taken[0] << 8 | taken[1]; }
  uint64_t of(int source) const { return stretch + taken[source]; }
};

// A lane's name in the map's table of names (longer names are not laid out: their reads are
// served as a lane the tape lacks).
inline constexpr size_t kLaneNameBytes = 40;

struct ClockMap {
  static constexpr uint64_t kMagic = 0x7461706564636c6cull;  // "tapedcll"
  uint64_t magic;
  uint64_t stretch_count;             // at least 1
  uint64_t lane_count;                // lanes the tape names (0: every read is in lane 0)
  uint64_t after_wait_lane;           // the id of kAfterWaitLane (0: the tape has none)
  uint64_t lane_entries;              // ClockLane entries in lanes()
  uint64_t value_count;               // in values()
  uint64_t threads_laned;             // 1: the tape's threads read in lanes of their own
  uint64_t lane_index_entries;        // in lane_index_data() (tapes with thread lanes)
  std::atomic<uint64_t> position;     // where reads take from: see ClockPosition
  std::atomic<int64_t> latest_ms[2];  // the latest time served (or slept to), per source
  // Time the replay itself let pass (advance: a slowed stream's gaps), which every thread's
  // clock is past, whatever its lane's recorded values.
  std::atomic<int64_t> passed_ms[2];
  // Tapes with thread lanes: the stretch below which no lane reads (a cut no thread owns moves
  // every lane past it; a thread's own cut moves only its lanes: lane_at).
  std::atomic<uint64_t> lanes_from;
  std::atomic<uint64_t> still_reads[2];   // reads past a stretch, per source
  std::atomic<uint64_t> capped_reads[2];  // of those, since the last cut, with a read ahead

  ClockStretch* stretches() { return reinterpret_cast<ClockStretch*>(this + 1); }
  ClockLane* lanes() { return reinterpret_cast<ClockLane*>(stretches() + stretch_count); }
  // Each lane's latest value served, per source: lane ids 0 … lane_count + 1 (the last one for
  // lanes the tape does not name).
  std::atomic<int64_t>* lane_latest(uint64_t lane) {
    return reinterpret_cast<std::atomic<int64_t>*>(lanes() + lane_entries) + 2 * lane;
  }
  // Tapes with thread lanes: the stretch each lane reads from, per source (lane ids as above). A
  // lane lags behind the current stretch while it still has values in an earlier one: another
  // thread's record cut the stretch, not its own, and its reads are its own sequence.
  std::atomic<uint64_t>* lane_at(uint64_t lane) {
    return reinterpret_cast<std::atomic<uint64_t>*>(lane_latest(0) + 2 * (lane_count + 2)) +
           2 * lane;
  }
  int64_t* values() {
    return reinterpret_cast<int64_t*>(lanes() + lane_entries) + 4 * (lane_count + 2);
  }
  // Lane k's name (k = 1 … lane_count), NUL-padded; empty when it was too long to lay out.
  char* lane_name(uint64_t lane) {
    return reinterpret_cast<char*>(values() + value_count) + (lane - 1) * kLaneNameBytes;
  }
  // The id of the lane named `name`; one past the tape's lanes when it has none so named.
  uint64_t lane_named(const char* name) {
    for (uint64_t lane = 1; lane <= lane_count; ++lane) {
      if (std::strncmp(lane_name(lane), name, kLaneNameBytes) == 0) return lane;
    }
    return lane_count + 1;
  }
  // Tapes with thread lanes, per lane (ids 0 … lane_count + 1): where in lane_index_data() its
  // sorted lists begin and how long they are: the stretches holding its reads of the wall clock,
  // of the monotonic clock, and the stretches its thread's records or records no thread owns end
  // (kLaneIndexWidth words: start and count of each). A thread past its values in one stretch
  // finds its next values, and whether a cut of its own comes first, by a binary search however
  // far on they are (a main thread's last read, held back until the thread exits, is taped past
  // a hundred records of its workers).
  static constexpr uint64_t kLaneIndexWidth = 6;
  uint64_t* lane_index(uint64_t lane) {
    return reinterpret_cast<uint64_t*>(lane_name(1) + lane_count * kLaneNameBytes) +
           kLaneIndexWidth * lane;
  }
  uint64_t* lane_index_data() { return lane_index(lane_count + 2); }
  static uint64_t bytes_for(uint64_t stretches, uint64_t lane_entries, uint64_t lane_count,
                            uint64_t values, uint64_t lane_index_entries = 0) {
    return sizeof(ClockMap) + stretches * sizeof(ClockStretch) + lane_entries * sizeof(ClockLane) +
           (4 * (lane_count + 2) + values) * sizeof(int64_t) + lane_count * kLaneNameBytes +
           (kLaneIndexWidth * (lane_count + 2) + lane_index_entries) * sizeof(uint64_t);
  }
};

// The lane of a preloaded thread's first clock read after a wait on descriptors (poll, select,
// epoll) returned: the time an event loop's turn starts from, which its timers count from.
// Served in their own order, these reads take the recording's values even when the replay's loop
// reads the clock more or less often in between (a stream's events arriving in other pieces):
// a Node tool's 500 ms timer, set on a turn whose start came 21 ms early, fired 13 ms early.
inline constexpr const char* kAfterWaitLane = "after_wait";

// A thread of a preloaded process, as a replay finds it again: its process's place in the tree
// (the entropy stream's key: "0" the root, "0.2" its third fork, "0.2x" the image that fork
// exec'd), folded to 32 bits (0 for the root's own image), and the thread's number (0 for the
// main thread, k for the k-th it started, and so on down: thread_hooks.cpp). Packed in one event
// value: place above, number below; 0 is the root's main thread, which reads in lane 0.
struct ThreadKey {
  uint32_t place = 0;
  uint32_t number = 0;
  static ThreadKey unpack(uint64_t value) {
    return {static_cast<uint32_t>(value >> 32), static_cast<uint32_t>(value)};
  }
  uint64_t pack() const { return uint64_t{place} << 32 | number; }
};
// The number of a thread the process did not start through pthread_create (a libc-internal one).
inline constexpr uint32_t kUnnumberedThread = 0x7fffffff;

// A process's place folded (FNV-1a); the root's own image's is 0.
inline uint32_t fold_place(const char* place) {
  if (place[0] == '\0' || (place[0] == '0' && place[1] == '\0')) return 0;
  uint32_t hash = 2166136261u;
  for (const char* c = place; *c != '\0'; ++c) hash = (hash ^ static_cast<uint8_t>(*c)) * 16777619u;
  return hash == 0 ? 1 : hash;
}

// Appends "@" and `place` in hex, unless it is the root's own (0).
inline size_t put_place(char (&name)[kLaneNameBytes], size_t at, uint32_t place) {
  if (place == 0) return at;
  name[at++] = '@';
  for (int shift = 28; shift >= 0; shift -= 4)
    name[at++] = "0123456789abcdef"[(place >> shift) & 0xf];
  return at;
}

// A thread's lane: "t3" (the root's third thread), "t0@5c0ffee1" (another process's main thread,
// by its folded place), "t1@5c0ffee1" (the first that process started). Short: every read of a
// worker thread carries it on the tape. (By hand: a thread's first read may come in a signal
// handler, where snprintf may not.)
inline void thread_lane_name(char (&name)[kLaneNameBytes], ThreadKey key) {
  size_t at = 0;
  char digits[12];
  size_t count = 0;
  uint32_t number = key.number;
  do {
    digits[count++] = static_cast<char>('0' + number % 10);
    number /= 10;
  } while (number != 0);
  name[at++] = 't';
  while (count > 0) name[at++] = digits[--count];
  name[put_place(name, at, key.place)] = '\0';
}

// The lane of the reads after a wait on descriptors of a process's main thread: kAfterWaitLane,
// and the process's place for any but the root's own image ("after_wait@5c0ffee1").
inline void after_wait_lane_name(char (&name)[kLaneNameBytes], ThreadKey key) {
  const size_t length = std::strlen(kAfterWaitLane);
  std::memcpy(name, kAfterWaitLane, length);
  name[put_place(name, length, key.place)] = '\0';
}
// Whether a tape's lane is a thread's (thread_lane_name's shape), not a named one (a Go
// function's, kAfterWaitLane).
inline bool is_thread_lane(const char* name) {
  return (name[0] == 't' && name[1] >= '0' && name[1] <= '9') ||
         std::strncmp(name, "after_wait@", 11) == 0;
}
static_assert(std::atomic<int64_t>::is_always_lock_free, "the map is shared between processes");

// Past its values in a stretch and a record of its own, a thread looks this many stretches on
// for a next value that is the moment it stands at.
inline constexpr uint64_t kStretchesLookedAhead = 8;
// Past a stretch, reads move the clock a millisecond per this many.
inline constexpr uint64_t kReadsPerTick = 64;
// Past a stretch, a thread that went this long without reading a clock, in real time, was held
// up (a wait, a long computation), not merely slow: the clock moves on by as long.
inline constexpr int64_t kHeldUpMs = 50;
// Past a stretch, reads since the last cut after which the creep no longer stays short of the
// next recorded read.
inline constexpr uint64_t kCappedReadsBeforeCreep = 65536;

// Where a lane's reads of one clock are in one stretch: its counter, its values; none (no
// counter, no values) when the recording has no such read there.
struct LaneSlot {
  std::atomic<uint64_t>* next = nullptr;
  uint64_t start = 0;
  uint64_t count = 0;
};
inline LaneSlot slot_of(ClockMap& map, uint64_t stretch_index, int source, uint64_t lane) {
  ClockStretch& stretch = map.stretches()[stretch_index];
  if (lane == 0) return {&stretch.next[source], stretch.start[source], stretch.count[source]};
  ClockLane* lanes = map.lanes() + stretch.lanes_start[source];
  for (uint64_t k = 0; k < stretch.lanes_count[source]; ++k) {
    if (lanes[k].lane == lane) return {&lanes[k].next, lanes[k].start, lanes[k].count};
  }
  return {};
}

// Tapes with thread lanes: the first stretch past `stretch` holding reads of `lane` on clock
// `source` (0, 1), or with `source` 2 the first stretch from `stretch` on that a record of its
// thread or of no one thread ends; the stretch count when there is none.
inline uint64_t lane_index_find(ClockMap& map, uint64_t lane, int source, uint64_t stretch) {
  const uint64_t* index = map.lane_index(lane);
  const uint64_t* list = map.lane_index_data() + index[2 * source];
  const uint64_t* end = list + index[2 * source + 1];
  const uint64_t* found =
      source == 2 ? std::lower_bound(list, end, stretch) : std::upper_bound(list, end, stretch);
  return found != end ? *found : map.stretch_count;
}

// Raises `at` to at least `stretch`.
inline void move_to(std::atomic<uint64_t>& at, uint64_t stretch) {
  uint64_t seen = at.load(std::memory_order_relaxed);
  while (seen < stretch && !at.compare_exchange_weak(seen, stretch, std::memory_order_acq_rel)) {
  }
}

// Where a read's value came from (for the trace): its stretch, and whether it was a recorded
// value of it or one past them.
struct Taken {
  uint64_t stretch = 0;
  bool recorded = false;
  // A recorded value's counter and place, so that a read that proves a mere hand-over's (see
  // clock_hooks.cpp) can give it back.
  std::atomic<uint64_t>* counter = nullptr;
  uint64_t index = 0;
};

// The next value of clock `source` (0 wall, 1 monotonic) for a read of `lane` (0: none) by a
// thread that last read that clock `held_up_ms` ago in real time (0: never). `tree_held_up`: a
// held-up read moves the clock of every thread on (the floor's reads, which keep no clock of
// their own per thread); else only the reader's, which then keeps it (the preload: a Node worker
// idle 547 ms in a wait nothing sees moved the main thread's clock to its timer's deadline).
inline int64_t take(ClockMap& map, int source, uint64_t lane, int64_t held_up_ms,
                    Taken* taken = nullptr, bool tree_held_up = true) {
  if (map.lane_count == 0) lane = 0;  // a tape without lanes: every read shares the one
  if (lane > map.lane_count + 1) lane = map.lane_count + 1;
  uint64_t current = 0;
  uint64_t from = 0;  // the stretch this read takes from: the current one, or its lane's
  uint64_t index = 0;
  LaneSlot slot;
  for (;;) {
    uint64_t word = map.position.load(std::memory_order_acquire);
    ClockPosition position = ClockPosition::unpack(word);
    current = std::min(position.of(source), map.stretch_count - 1);
    from = current;
    if (map.threads_laned != 0) {
      // (A lane may stand past the current stretch: its thread's own record, which the replay
      // made before records of other threads the recording made first, moved it there.)
      from = std::min(map.stretch_count - 1,
                      std::max(map.lane_at(lane)[source].load(std::memory_order_acquire),
                               map.lanes_from.load(std::memory_order_acquire)));
    }
    slot = slot_of(map, from, source, lane);
    index = slot.next != nullptr ? slot.next->fetch_add(1, std::memory_order_relaxed) : 0;
    if (index < slot.count) break;
    if (from < current) {  // its values in an earlier stretch are used up: on to the next
      move_to(map.lane_at(lane)[source], from + 1);
      continue;
    }
    if (from > current) break;  // past its values ahead of the tree: looked on for below
    // Used up: this clock makes a deferred cut now, if one is left (else it is past the stretch).
    if (position.taken[source] >= position.deferred) {
      if (map.position.load(std::memory_order_acquire) == word) break;
      continue;  // moved meanwhile: read again
    }
    ++position.taken[source];
    map.position.compare_exchange_strong(word, position.pack(), std::memory_order_acq_rel);
  }
  std::atomic<int64_t>& latest = map.latest_ms[source];
  // Raises `clock` to at least `value`; answers what it then holds.
  const auto raise = [](std::atomic<int64_t>& clock, int64_t value) {
    int64_t seen = clock.load(std::memory_order_relaxed);
    while (seen < value && !clock.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
    return value > seen ? value : seen;
  };
  if (taken != nullptr) *taken = {from, index < slot.count, slot.next, index};
  if (index >= slot.count && map.threads_laned != 0) {
    // Past its values here, a thread's read takes its next recorded one when that is the moment
    // it already stands at: the recording made it after another thread's record (a sleep that
    // began while this thread went on reading), which the replay has not reached yet. Taken now,
    // it is not taken again after that record, and the thread's later reads stay its own (a
    // Python main thread read four times before its worker's sleep began, and its last read,
    // after the worker woke it, came four values short).
    // Past a record another thread owns, the next value is this thread's whatever it is, however
    // many records of other threads lie between (lane_index_find).
    const int64_t standing = map.lane_latest(lane)[source].load(std::memory_order_relaxed);
    const uint64_t own_cut = lane_index_find(map, lane, 2, from);  // its thread's, or no one's
    for (uint64_t later = lane_index_find(map, lane, source, from); later < map.stretch_count;
         later = lane_index_find(map, lane, source, later)) {
      const bool own_sequence = own_cut >= later;  // every record up to `later` another's
      if (!own_sequence && later - from > kStretchesLookedAhead) break;
      const LaneSlot ahead_slot = slot_of(map, later, source, lane);
      if (ahead_slot.next == nullptr) break;
      const int64_t until = own_sequence ? std::numeric_limits<int64_t>::max() : standing;
      uint64_t next = ahead_slot.next->load(std::memory_order_relaxed);
      while (next < ahead_slot.count && map.values()[ahead_slot.start + next] <= until &&
             !ahead_slot.next->compare_exchange_weak(next, next + 1, std::memory_order_relaxed)) {
      }
      if (next < ahead_slot.count && map.values()[ahead_slot.start + next] <= until) {
        // Its own sequence: the lane reads on from there (nothing of it is left before).
        if (own_sequence) move_to(map.lane_at(lane)[source], later);
        if (taken != nullptr) *taken = {later, true, ahead_slot.next, next};
        const int64_t value = map.values()[ahead_slot.start + next];
        raise(latest, value);
        return raise(map.lane_latest(lane)[source], value);
      }
      // Its next value is later (time stands, below), or those there were taken ahead already.
      if (next < ahead_slot.count || !own_sequence) break;
    }
  }
  if (index < slot.count) {
    const int64_t value = map.values()[slot.start + index];
    // Lane 0 holds every read without a lane of its own: the tree's clock, which never goes back,
    // but for a tape whose threads have lanes, where it is the root's main thread's own.
    if (lane == 0 && map.threads_laned == 0) return raise(latest, value);
    const int64_t passed = map.passed_ms[source].load(std::memory_order_relaxed);
    raise(latest, std::max(value, passed));
    return raise(map.lane_latest(lane)[source], std::max(value, passed));
  }
  const bool held_up = held_up_ms >= kHeldUpMs;
  int64_t step = held_up ? held_up_ms : 0;
  if (step == 0) {
    const uint64_t still = map.still_reads[source].fetch_add(1, std::memory_order_relaxed) + 1;
    if (still % kReadsPerTick == 0) step = 1;
  }
  // The clock stays short of the next recorded read: Node's start-up, whose reads vary by
  // thousands, crept 80 ms past the recording's and set its timers there. After
  // kCappedReadsBeforeCreep reads held there since the last cut, the creep goes on past it, so
  // that a loop spinning until a deadline the recording never had here (its records came in
  // another order) still ends: Python's communicate() spun 2.6 million reads on it.
  int64_t ahead = map.stretches()[std::max(current, from)].ahead[source];
  if (!held_up && ahead != ClockStretch::kNothingAhead &&
      map.capped_reads[source].fetch_add(1, std::memory_order_relaxed) >= kCappedReadsBeforeCreep) {
    ahead = ClockStretch::kNothingAhead;
  }
  const int64_t now = latest.load(std::memory_order_relaxed);
  int64_t to = now + step;
  if (ahead != ClockStretch::kNothingAhead) to = std::min(to, ahead - 1);
  if (held_up && !tree_held_up) return std::max(to, now);
  const int64_t value = raise(latest, to);
  // (Lane 0 keeps its latest too where threads have lanes: it is then one thread's.)
  if (lane != 0 || map.threads_laned != 0) raise(map.lane_latest(lane)[source], value);
  return value;
}
inline int64_t take(ClockMap& map, int source, int64_t held_up_ms) {
  return take(map, source, 0, held_up_ms);
}

// The supervisor's cut: the next stretch, past every deferred one. `owner_lanes` (`owners` of
// them): the lanes of the thread whose record it is, on a tape with thread lanes; only they skip
// what they did not read of the stretch before, while every other thread goes on reading its own
// values there first (a Node worker's reads, cut by the main loop's timer, skipped its values
// and read 45 ms ahead). Without owners every lane skips them, as on a tape without thread lanes.
// `own_stretch`: where the owners read on from, when the supervisor found the recording's record
// of their thread that this one stands for (the stretch after it; else the next stretch): threads
// make their records in another order on every run, and the next record in the tree's order may
// be another thread's.
inline constexpr uint64_t kNextStretch = std::numeric_limits<uint64_t>::max();
inline void step(ClockMap& map, const uint64_t* owner_lanes = nullptr, size_t owners = 0,
                 uint64_t own_stretch = kNextStretch) {
  uint64_t word = map.position.load(std::memory_order_acquire);
  ClockPosition next;
  do {
    const ClockPosition position = ClockPosition::unpack(word);
    next = ClockPosition{position.stretch + position.deferred + 1, 0, {0, 0}};
  } while (!map.position.compare_exchange_weak(word, next.pack(), std::memory_order_acq_rel));
  const uint64_t stretch = std::min(next.stretch, map.stretch_count - 1);
  if (owners == 0) move_to(map.lanes_from, stretch);
  const uint64_t owners_at =
      own_stretch == kNextStretch ? stretch : std::min(own_stretch, map.stretch_count - 1);
  for (size_t k = 0; k < owners; ++k) {
    if (owner_lanes[k] > map.lane_count + 1) continue;
    for (int source = 0; source < 2; ++source)
      move_to(map.lane_at(owner_lanes[k])[source], owners_at);
  }
  for (auto& capped : map.capped_reads) capped.store(0, std::memory_order_relaxed);
}

// A cut made once a read finds its clock's stretch used up (or with the next step()).
inline void defer_step(ClockMap& map) {
  uint64_t word = map.position.load(std::memory_order_acquire);
  ClockPosition next;
  do {
    next = ClockPosition::unpack(word);
    if (next.deferred == ClockPosition::kMostDeferred) return;  // (a cut too many: left unmade)
    ++next.deferred;
  } while (!map.position.compare_exchange_weak(word, next.pack(), std::memory_order_acq_rel));
}

// The record that ends the last stretch a read may take from: the current one's, past every
// deferred cut.
inline uint64_t next_cut(const ClockMap& map) {
  const ClockPosition position =
      ClockPosition::unpack(map.position.load(std::memory_order_acquire));
  return position.stretch + position.deferred;
}

// A sleep of `duration_ms` skipped by a thread whose clocks last read `from_ms` (0: never): both
// clocks are then at least where that thread's sleep ends. Threads that sleep side by side so
// move the clock as far as the one that wakes last, not by the sum of their sleeps (test_queue's
// threads slept 30 s in 7.6 s). Answers where each clock's sleep ended.
// A sleep is timed on the monotonic clock (source 1); the wall clock's (source 0) milliseconds
// turn at another phase, so in whole milliseconds it may have moved one less: a recording read
// the wall clock 49 ms on across a 50 ms sleep, and a replay that moved it 50 served 1 ms late.
inline void advance_from(ClockMap& map, int64_t from_ms[2], uint64_t duration_ms) {
  for (int source = 0; source < 2; ++source) {
    std::atomic<int64_t>& latest = map.latest_ms[source];
    int64_t seen = latest.load(std::memory_order_relaxed);
    const int64_t moved = static_cast<int64_t>(duration_ms) - (source == 0 && duration_ms > 0);
    const int64_t woke = (from_ms[source] > 0 ? from_ms[source] : seen) + moved;
    while (seen < woke && !latest.compare_exchange_weak(seen, woke, std::memory_order_relaxed)) {
    }
    from_ms[source] = woke;
  }
}

// A sleep of `duration_ms` with no thread to count it from (the floor's), or time the replay
// lets pass itself (a slowed stream's gap): both clocks move on by it, for every thread.
inline void advance(ClockMap& map, uint64_t duration_ms) {
  for (int source = 0; source < 2; ++source) {
    const int64_t now = map.latest_ms[source].fetch_add(static_cast<int64_t>(duration_ms),
                                                        std::memory_order_relaxed) +
                        static_cast<int64_t>(duration_ms);
    int64_t passed = map.passed_ms[source].load(std::memory_order_relaxed);
    while (passed < now &&
           !map.passed_ms[source].compare_exchange_weak(passed, now, std::memory_order_relaxed)) {
    }
  }
}

}  // namespace tapedeck::preload
