// Replay's index of the recording it serves from: the file reads by path, the subprocesses in
// tape order with the workspace changes each made, and the clock map every process of the tree
// reads (see preload/clock_map.hpp) with the supervisor moving it stretch by stretch.
//
// Built once, before the program starts; used by the supervisor's serving thread only, but for
// step_clock(), which the LLM proxy's threads call too (the map's stretch is atomic).
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "preload/clock_map.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::supervisor {

// "`program arg…` in cwd", as messages name a recorded subprocess.
std::string describe_spawn(const Record& record);

class RecordingIndex {
 public:
  // Indexes `recording` (which must outlive this) and makes its clock map at `clock_map_path`.
  RecordingIndex(const Tape& recording, std::filesystem::path clock_map_path);
  ~RecordingIndex();
  RecordingIndex(const RecordingIndex&) = delete;
  RecordingIndex& operator=(const RecordingIndex&) = delete;

  const std::filesystem::path& clock_map_path() const { return clock_map_path_; }
  // The map itself, for clock reads the supervisor serves (the system-call floor's).
  preload::ClockMap& clock_map() { return *clock_map_; }
  // The map's id of a clock_read's lane (0: none; one past the tape's lanes for a lane it lacks).
  uint64_t lane_id(std::string_view lane) const;
  // The lanes of the thread `owner` (ThreadKey, packed) on a tape with thread lanes; none when
  // not known, or on a tape without them.
  std::vector<uint64_t> owner_lanes(std::optional<uint64_t> owner) const;
  // A thread's lanes by its thread lane's name (empty: the root's main thread): its own, and
  // that of its reads after a wait on descriptors (its own again for a thread not a main one).
  std::array<uint64_t, 2> lanes_of_thread(std::string_view thread) const;
  // Whether the recording's file records name their threads (a recording with thread lanes):
  // a replay's file record then steps the clock for its thread's lanes alone.
  bool file_records_owned() const { return file_records_owned_; }
  // How far on a thread's record is looked for among the recording's (own_step).
  static constexpr uint64_t kOwnStepsLookedAhead = 4096;
  // The replay made a record other than a clock read (`replayed`; null: a kind not compared):
  // the clock moves to the reads the recording made after its counterpart. That is the
  // recording's next record, unless that is a wait that timed out (a waited clock_sleep) and the
  // replay made another kind: then the first record of the replay's kind past a few such waits,
  // when there is one. An event loop's timer that fired in the recording just before an answer's
  // request, or a file's read, may fire after it in a replay (or not at all): stepping onto the
  // wait would serve every later read one stretch early.
  // `owner`: the thread whose record it is (ThreadKey, packed), when known: on a tape with thread
  // lanes only its lanes skip what they left unread (preload::step).
  void step_clock(const RecordKind* replayed = nullptr, std::optional<uint64_t> owner = {});
  // The recording's waits a replay's wait may stand for: the next record and up to this many
  // more past waited sleeps only (next_wait_near).
  static constexpr uint64_t kWaitsLookedPast = 8;
  // Moves the clock past `count` recorded records the replay has no counterpart of (waits
  // next_wait_near looked past).
  void skip_steps(uint64_t count, std::optional<uint64_t> owner = {});
  // A cut made once a read finds the current stretch used up, or with the next step_clock()
  // (see preload/clock_map.hpp).
  void defer_step();
  // A recorded wait a replay's wait stands for: `ahead` records past the next one, `ms` long.
  struct WaitMatch {
    uint64_t ahead = 0;
    uint64_t ms = 0;
  };
  // The recording's wait that timed out (a waited clock_sleep) that a replay's wait of `ms`
  // stands for: the next record other than a clock read (the counterpart of the replay's next),
  // or, when the next ones are such waits of other lengths, one of up to kWaitsLookedPast more
  // (two timers of the recording may fire as one in a replay whose values fell a few reads
  // apart: its first wait, 31 ms against 24, went by untaped, and its next, 468 ms, is the
  // recording's 472). About `ms`: no longer by more than a tenth (or 5 ms), no shorter by more
  // than half (or 5 ms); else none.
  // Shorter, since a replay's values may fall a few reads apart from the recording's, or run
  // ahead of them, and so shorten the timeouts computed from them (a 14 ms timer came out 7);
  // not much shorter, since an event loop's other timer is then taken for it: a 10 ms timer, due
  // as a stream's end came sooner than recorded, passed for the 489 ms one after it and moved
  // the clock half a second early.
  std::optional<WaitMatch> next_wait_near(uint64_t ms) const;
  // Whether the recording's next record other than a clock read is a sleep (not a wait) of
  // about `ms`, as next_wait_near judges it.
  bool next_sleep_near(uint64_t ms) const;

  // The next recorded read of `path`, consumed; null when the tape holds no more.
  const kind::FileRead* take_read(const std::string& path);
  // The same, left in place.
  const kind::FileRead* next_read(const std::string& path) const;
  // Whether the recording read `read`'s bytes after writing that path itself.
  bool reads_own_write(const kind::FileRead* read) const {
    return reads_of_own_writes_.contains(read);
  }
  // A subprocess was served; what the message of a miss names as expected next.
  void spawn_served() { ++spawns_served_; }
  std::string next_spawn() const;
  // The workspace changes the recorded subprocess `spawn` made (empty when none).
  const std::vector<const RecordKind*>& changes_of(const kind::ProcessSpawn* spawn) const;
  // Recorded inputs the replay never asked for (file reads and subprocesses; clock reads past
  // the replay's own are left to fidelity: runtimes read the clock more or less each run), and
  // the first of them.
  std::pair<uint64_t, std::string> unused_inputs() const;

 private:
  void trace_cut(const char* what);
  std::optional<uint64_t> own_step(const std::array<uint64_t, 2>& lanes,
                                   const RecordKind& replayed) const;

  std::FILE* trace_ = nullptr;
  std::filesystem::path clock_map_path_;
  preload::ClockMap* clock_map_ = nullptr;
  size_t clock_map_size_ = 0;
  std::map<std::string, std::deque<const kind::FileRead*>> file_reads_;
  std::set<const kind::FileRead*> reads_of_own_writes_;
  std::map<std::string, uint64_t, std::less<>> lanes_;  // the tape's lanes, numbered from 1
  bool file_records_owned_ = false;
  // Per thread (by its lanes): the step after its record last found by own_step.
  std::map<std::array<uint64_t, 2>, uint64_t> own_steps_found_;
  std::vector<const Record*> spawns_;     // in tape order
  std::vector<const RecordKind*> steps_;  // every record but clock reads, in tape order
  size_t spawns_served_ = 0;
  std::map<const kind::ProcessSpawn*, std::vector<const RecordKind*>> changes_;
};

}  // namespace tapedeck::supervisor
