#include "supervisor/recording_index.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <stdexcept>

#include "preload/clock_map_layout.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/testbench.hpp"

namespace tapedeck::supervisor {

std::string describe_spawn(const Record& record) {
  const auto& spawn = std::get<kind::ProcessSpawn>(record.kind);
  std::string text = "`" + spawn.program;
  for (const std::string& arg : spawn.args) text += " " + arg;
  return text + "`" + (spawn.cwd ? " in " + *spawn.cwd : std::string());
}

namespace {
// The thread a file record names (tapes with thread lanes), if it is one.
const std::string* file_thread(const RecordKind& kind) {
  if (const auto* read = std::get_if<kind::FileRead>(&kind)) return &read->thread;
  if (const auto* write = std::get_if<kind::FileWrite>(&kind)) return &write->thread;
  if (const auto* removal = std::get_if<kind::FileDelete>(&kind)) return &removal->thread;
  return nullptr;
}

// A file written, on a tape whose file records name their threads: taped once closed, at the
// next point where the tree's order matters, which any thread of its process may reach first (a
// write closed by one thread, reported as another opened a file). That moment is no thread's:
// the record cuts no lane.
bool cuts_no_lane(const RecordKind& kind) {
  const auto* write = std::get_if<kind::FileWrite>(&kind);
  return write != nullptr && !write->thread.empty();
}
}  // namespace

RecordingIndex::RecordingIndex(const Tape& recording, std::filesystem::path clock_map_path)
    : clock_map_path_(std::move(clock_map_path)) {
  // Clock reads by stretch (see clock_map.hpp): a new stretch after every other record.
  preload::ClockMapPlan plan;
  std::optional<int64_t> first[2];
  const kind::ProcessSpawn* last_spawn = nullptr;  // a subprocess's changes follow its spawn
  std::map<uint64_t, std::string> sleepers;  // stretch → the thread whose sleep or file ends it
  std::set<std::string> written;             // paths the recording wrote so far
  for (const Record& record : recording.records) {
    if (const auto* read = std::get_if<kind::ClockRead>(&record.kind)) {
      const int source = read->source == ClockSource::wall ? 0 : 1;
      uint64_t lane = 0;
      if (!read->lane.empty())
        lane = lanes_.try_emplace(read->lane, lanes_.size() + 1).first->second;
      plan.stretches.back()[source][lane].push_back(read->value_ms);
      if (!first[source]) first[source] = read->value_ms;
      continue;
    }
    if (const auto* sleep = std::get_if<kind::ClockSleep>(&record.kind)) {
      sleepers[plan.stretches.size() - 1] = sleep->thread;
    }
    if (const std::string* thread = file_thread(record.kind); thread && !thread->empty()) {
      file_records_owned_ = true;
      if (cuts_no_lane(record.kind)) {
        plan.cut_by[plan.stretches.size() - 1] = {preload::ClockStretch::kCutByNone,
                                                  preload::ClockStretch::kCutByNone};
      } else {
        sleepers[plan.stretches.size() - 1] = *thread;
      }
    }
    plan.stretches.emplace_back();
    steps_.push_back(&record.kind);
    if (const auto* write = std::get_if<kind::FileWrite>(&record.kind)) written.insert(write->path);
    // (A file as the run found it before changing it is no read to serve: the replay tapes it
    // again itself.)
    if (const auto* file = std::get_if<kind::FileRead>(&record.kind); file && !file->found) {
      file_reads_[file->path].push_back(file);
      if (written.contains(file->path)) reads_of_own_writes_.insert(file);
    } else if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&record.kind)) {
      spawns_.push_back(&record);
      last_spawn = spawn;
    } else if (last_spawn != nullptr && extension::is_subprocess_change(record.kind)) {
      changes_[last_spawn].push_back(&record.kind);
    }
  }
  plan.lane_count = lanes_.size();
  // A sleep's thread, by its lanes: its own and that of its reads after a wait on descriptors
  // (the root's main thread: lane 0 and kAfterWaitLane; another process's: "t0@P" and
  // "after_wait@P").
  for (const auto& [stretch, thread] : sleepers) plan.cut_by[stretch] = lanes_of_thread(thread);
  plan.lane_names.resize(lanes_.size());
  for (const auto& [name, id] : lanes_) plan.lane_names[id - 1] = name;
  plan.after_wait_lane = lane_id(preload::kAfterWaitLane);
  if (plan.after_wait_lane > plan.lane_count) plan.after_wait_lane = 0;
  plan.latest = {first[0].value_or(recording.header.started_at_unix_ms.value_or(0)),
                 first[1].value_or(0)};
  clock_map_size_ = plan.bytes();
  const std::string path = clock_map_path_.string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(clock_map_size_)) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot make the replay clock map " + path);
  }
  void* mapped = ::mmap(nullptr, clock_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) throw std::runtime_error("cannot map " + path);
  clock_map_ = preload::lay_out(plan, mapped);
  if (const char* prefix = std::getenv("TAPEDECK_TRACE"); prefix != nullptr && *prefix != '\0') {
    trace_ = std::fopen((std::string(prefix) + ".supervisor").c_str(), "ae");
  }
}

uint64_t RecordingIndex::lane_id(std::string_view lane) const {
  if (lane.empty()) return 0;
  const auto found = lanes_.find(lane);
  return found != lanes_.end() ? found->second : lanes_.size() + 1;  // a lane the tape lacks
}

RecordingIndex::~RecordingIndex() {
  if (clock_map_ != nullptr) ::munmap(clock_map_, clock_map_size_);
  if (trace_ != nullptr) std::fclose(trace_);
}

namespace {
bool is_waited(const RecordKind& kind) {
  const auto* sleep = std::get_if<kind::ClockSleep>(&kind);
  return sleep != nullptr && sleep->waited;
}
}  // namespace

void RecordingIndex::step_clock(const RecordKind* replayed, std::optional<uint64_t> owner) {
  if (replayed != nullptr && owner && file_records_owned_ && cuts_no_lane(*replayed)) {
    const uint64_t no_lane = preload::ClockStretch::kCutByNone;  // (a lane no map has)
    preload::step(*clock_map_, &no_lane, 1);
    trace_cut("step of no lane");
    return;
  }
  if (replayed != nullptr && owner) {
    const std::vector<uint64_t> lanes = owner_lanes(owner);
    if (const auto own =
            lanes.size() == 2 ? own_step({lanes[0], lanes[1]}, *replayed) : std::nullopt) {
      own_steps_found_[{lanes[0], lanes[1]}] = *own + 1;
      preload::step(*clock_map_, lanes.data(), lanes.size(), *own + 1);
      trace_cut("own step");
      return;
    }
  }
  const uint64_t next = preload::next_cut(*clock_map_);
  if (replayed != nullptr && !is_waited(*replayed)) {
    uint64_t at = next;
    while (at < steps_.size() && at - next < kWaitsLookedPast && is_waited(*steps_[at])) ++at;
    if (at > next && at < steps_.size() && steps_[at]->index() == replayed->index()) {
      skip_steps(at - next, owner);
    }
  }
  const std::vector<uint64_t> lanes = owner_lanes(owner);
  preload::step(*clock_map_, lanes.data(), lanes.size());
  trace_cut("step");
}

void RecordingIndex::skip_steps(uint64_t count, std::optional<uint64_t> owner) {
  const std::vector<uint64_t> lanes = owner_lanes(owner);
  for (uint64_t k = 0; k < count; ++k) preload::step(*clock_map_, lanes.data(), lanes.size());
  if (count > 0) trace_cut("skipped waits");
}

namespace {
// Whether two records stand for the same act: the same kind; for a file the same path; for a
// sleep or a timed-out wait about the same length, as next_sleep_near and next_wait_near judge
// it (a replay's sleep the recording never made must not stand for a later one of its thread,
// and move the thread's clock past the reads in between).
bool same_act(const RecordKind& recorded, const RecordKind& replayed) {
  if (recorded.index() != replayed.index()) return false;
  return std::visit(
      [&](const auto& a) {
        using K = std::decay_t<decltype(a)>;
        const K& b = std::get<K>(replayed);
        if constexpr (std::is_same_v<K, kind::ClockSleep>) {
          const uint64_t ms = a.duration_ms;
          return a.waited == b.waited && b.duration_ms <= ms + std::max<uint64_t>(5, ms / 10) &&
                 b.duration_ms + std::max<uint64_t>(5, ms / 2) >= ms;
        } else if constexpr (requires { a.path; }) {
          return a.path == b.path;  // a file_read, file_write or file_delete
        } else {
          return true;
        }
      },
      recorded);
}
}  // namespace

// The recording's record the replay's `replayed` of the thread with `lanes` stands for: that
// thread's next one of the same act, past the last found and past the cuts no thread owns that
// the replay has made, and before the first it has not. The threads of a runtime make their
// records in another order on every run; each thread's own come in its order.
std::optional<uint64_t> RecordingIndex::own_step(const std::array<uint64_t, 2>& lanes,
                                                 const RecordKind& replayed) const {
  const uint64_t next = preload::next_cut(*clock_map_);
  const auto found = own_steps_found_.find(lanes);
  uint64_t at = std::max<uint64_t>(found != own_steps_found_.end() ? found->second : 0,
                                   clock_map_->lanes_from.load(std::memory_order_acquire));
  const uint64_t last = std::min<uint64_t>(steps_.size(), at + kOwnStepsLookedAhead);
  for (; at < last; ++at) {
    const uint64_t* cut_by = clock_map_->stretches()[at].cut_by;
    if (cut_by[0] == preload::ClockStretch::kCutByAll) {
      if (at >= next) return std::nullopt;
      continue;
    }
    if (cut_by[0] == lanes[0] && cut_by[1] == lanes[1] && same_act(*steps_[at], replayed)) {
      return at;
    }
  }
  return std::nullopt;
}

std::array<uint64_t, 2> RecordingIndex::lanes_of_thread(std::string_view thread) const {
  // The root's main thread reads in lane 0; a main thread's reads after a wait on descriptors
  // go to its process's after-wait lane ("t0@P": "after_wait@P"); any other thread has one lane.
  if (thread == "t0") thread = {};  // (a file record's name for the root's main thread)
  const bool main = thread.empty() || thread.starts_with("t0@");
  const uint64_t own = thread.empty() ? 0 : lane_id(thread);
  if (!main) return {own, own};
  std::string after_wait = preload::kAfterWaitLane;
  if (!thread.empty()) after_wait += thread.substr(2);
  return {own, lane_id(after_wait)};
}

std::vector<uint64_t> RecordingIndex::owner_lanes(std::optional<uint64_t> owner) const {
  if (!owner || clock_map_->threads_laned == 0) return {};
  char name[preload::kLaneNameBytes] = "";
  if (*owner != 0) preload::thread_lane_name(name, preload::ThreadKey::unpack(*owner));
  // (A lane the tape lacks stays in: the thread owns the cut, so the others keep their places.)
  const std::array<uint64_t, 2> lanes = lanes_of_thread(name);
  return {lanes.begin(), lanes.end()};
}

void RecordingIndex::defer_step() {
  preload::defer_step(*clock_map_);
  trace_cut("deferred step");
}

// TAPEDECK_TRACE (src/preload/trace.hpp): the supervisor's cuts, beside the processes' reads.
void RecordingIndex::trace_cut(const char* what) {
  if (trace_ == nullptr) return;
  const uint64_t cut = preload::next_cut(*clock_map_);
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  std::fprintf(trace_, "%lld supervisor %s: stretch %llu, after %s\n",
               static_cast<long long>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000, what,
               static_cast<unsigned long long>(cut),
               cut > 0 && cut <= steps_.size() ? std::string(kind_name(*steps_[cut - 1])).c_str()
                                               : "nothing");
  std::fflush(trace_);
}

std::optional<RecordingIndex::WaitMatch> RecordingIndex::next_wait_near(uint64_t ms) const {
  const uint64_t next = preload::next_cut(*clock_map_);
  for (uint64_t at = next; at < steps_.size() && at - next <= kWaitsLookedPast; ++at) {
    if (!is_waited(*steps_[at])) break;
    const uint64_t recorded = std::get<kind::ClockSleep>(*steps_[at]).duration_ms;
    if (ms <= recorded + std::max<uint64_t>(5, recorded / 10) &&
        ms + std::max<uint64_t>(5, recorded / 2) >= recorded) {
      return WaitMatch{at - next, recorded};
    }
  }
  return std::nullopt;
}

bool RecordingIndex::next_sleep_near(uint64_t ms) const {
  const uint64_t next = preload::next_cut(*clock_map_);
  if (next >= steps_.size()) return false;
  const auto* sleep = std::get_if<kind::ClockSleep>(steps_[next]);
  if (sleep == nullptr || sleep->waited) return false;
  return ms <= sleep->duration_ms + std::max<uint64_t>(5, sleep->duration_ms / 10);
}

const kind::FileRead* RecordingIndex::next_read(const std::string& path) const {
  const auto found = file_reads_.find(path);
  return found == file_reads_.end() || found->second.empty() ? nullptr : found->second.front();
}

const kind::FileRead* RecordingIndex::take_read(const std::string& path) {
  auto found = file_reads_.find(path);
  if (found == file_reads_.end() || found->second.empty()) return nullptr;
  const kind::FileRead* read = found->second.front();
  found->second.pop_front();
  return read;
}

std::string RecordingIndex::next_spawn() const {
  if (spawns_served_ >= spawns_.size()) return "the tape holds no more subprocesses";
  const Record& next = *spawns_[spawns_served_];
  return "the next recorded one is seq " + std::to_string(next.seq) + " process_spawn " +
         abbreviated(describe_spawn(next), 120);
}

const std::vector<const RecordKind*>& RecordingIndex::changes_of(
    const kind::ProcessSpawn* spawn) const {
  static const std::vector<const RecordKind*> kNone;
  const auto found = changes_.find(spawn);
  return found == changes_.end() ? kNone : found->second;
}

std::pair<uint64_t, std::string> RecordingIndex::unused_inputs() const {
  uint64_t unused = 0;
  std::string first;
  for (const auto& [path, queue] : file_reads_) {
    unused += queue.size();
    if (first.empty() && !queue.empty()) first = "file_read " + path;
  }
  if (spawns_served_ < spawns_.size()) {
    unused += spawns_.size() - spawns_served_;
    if (first.empty()) {
      first = "process_spawn " + abbreviated(describe_spawn(*spawns_[spawns_served_]), 120);
    }
  }
  return {unused, first};
}

}  // namespace tapedeck::supervisor
