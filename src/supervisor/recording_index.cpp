#include "supervisor/recording_index.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>
#include <stdexcept>

#include "preload/clock_map_layout.hpp"
#include "tapedeck/extensions.hpp"

namespace tapedeck::supervisor {

std::string describe_spawn(const Record& record) {
  const auto& spawn = std::get<kind::ProcessSpawn>(record.kind);
  std::string text = "`" + spawn.program;
  for (const std::string& arg : spawn.args) text += " " + arg;
  return text + "`" + (spawn.cwd ? " in " + *spawn.cwd : std::string());
}

RecordingIndex::RecordingIndex(const Tape& recording, std::filesystem::path clock_map_path)
    : clock_map_path_(std::move(clock_map_path)) {
  // Clock reads by stretch (see clock_map.hpp): a new stretch after every other record.
  preload::ClockMapPlan plan;
  std::optional<int64_t> first[2];
  const kind::ProcessSpawn* last_spawn = nullptr;  // a subprocess's changes follow its spawn
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
    plan.stretches.emplace_back();
    steps_.push_back(&record.kind);
    if (const auto* file = std::get_if<kind::FileRead>(&record.kind)) {
      file_reads_[file->path].push_back(file);
    } else if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&record.kind)) {
      spawns_.push_back(&record);
      last_spawn = spawn;
    } else if (last_spawn != nullptr && extension::is_subprocess_change(record.kind)) {
      changes_[last_spawn].push_back(&record.kind);
    }
  }
  plan.lane_count = lanes_.size();
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
}

uint64_t RecordingIndex::lane_id(std::string_view lane) const {
  if (lane.empty()) return 0;
  const auto found = lanes_.find(lane);
  return found != lanes_.end() ? found->second : lanes_.size() + 1;  // a lane the tape lacks
}

RecordingIndex::~RecordingIndex() {
  if (clock_map_ != nullptr) ::munmap(clock_map_, clock_map_size_);
}

void RecordingIndex::step_clock() {
  preload::step(*clock_map_);
}

void RecordingIndex::defer_step() {
  preload::defer_step(*clock_map_);
}

std::optional<uint64_t> RecordingIndex::next_wait_near(uint64_t ms) const {
  const uint64_t next = preload::next_cut(*clock_map_);
  if (next >= steps_.size()) return std::nullopt;
  const auto* sleep = std::get_if<kind::ClockSleep>(steps_[next]);
  if (sleep == nullptr || !sleep->waited) return std::nullopt;
  if (ms > sleep->duration_ms + std::max<uint64_t>(5, sleep->duration_ms / 10)) return std::nullopt;
  return sleep->duration_ms;
}

bool RecordingIndex::next_sleep_near(uint64_t ms) const {
  const uint64_t next = preload::next_cut(*clock_map_);
  if (next >= steps_.size()) return false;
  const auto* sleep = std::get_if<kind::ClockSleep>(steps_[next]);
  if (sleep == nullptr || sleep->waited) return false;
  return ms <= sleep->duration_ms + std::max<uint64_t>(5, sleep->duration_ms / 10);
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
         describe_spawn(next);
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
    if (first.empty()) first = "process_spawn " + describe_spawn(*spawns_[spawns_served_]);
  }
  return {unused, first};
}

}  // namespace tapedeck::supervisor
