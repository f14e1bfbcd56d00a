#include "tapedeck/recorder.hpp"

#include <algorithm>
#include <thread>
#include <utility>

namespace tapedeck {

namespace {

std::atomic<uint64_t> next_recorder_id{1};

// The shard this thread used last, keyed by recorder id (ids are never reused, so a stale entry
// for a destroyed recorder can never match a new one at the same address).
struct ShardCache {
  uint64_t recorder_id = 0;
  void* shard = nullptr;
};
thread_local ShardCache shard_cache;

thread_local std::shared_ptr<Recorder> active;

}  // namespace

struct Recorder::Shard {
  std::thread::id owner;
  // Taken by the owning thread on every record and by snapshot(); never contended in practice.
  mutable std::mutex mutex;
  std::vector<Record> records;
  std::map<std::string, std::string> cas;
};

Recorder::Recorder(std::shared_ptr<Clock> clock)
    : id_(next_recorder_id.fetch_add(1, std::memory_order_relaxed)),
      clock_(clock ? std::move(clock) : default_clock()),
      started_monotonic_ms_(clock_->monotonic_ms()) {}

Recorder::~Recorder() = default;

Recorder::Shard& Recorder::shard_for_this_thread() {
  if (shard_cache.recorder_id == id_) return *static_cast<Shard*>(shard_cache.shard);
  const std::thread::id me = std::this_thread::get_id();
  std::lock_guard lock(shards_mutex_);
  Shard* mine = nullptr;
  for (auto& shard : shards_) {
    if (shard->owner == me) mine = shard.get();
  }
  if (mine == nullptr) {
    shards_.push_back(std::make_unique<Shard>());
    mine = shards_.back().get();
    mine->owner = me;
    mine->records.reserve(1024);
  }
  shard_cache = {id_, mine};
  return *mine;
}

uint64_t Recorder::record(RecordKind kind) {
  Shard& shard = shard_for_this_thread();
  std::lock_guard lock(shard.mutex);
  // Only this thread appends to its shard, so each shard is sorted by seq and snapshot() merges
  // shards instead of sorting them.
  const uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
  Record& record = shard.records.emplace_back();
  record.seq = seq;
  record.phase = phase();
  record.virtual_time_ms = clock_->now_ms();
  record.monotonic_ms = clock_->monotonic_ms() - started_monotonic_ms_;
  record.kind = std::move(kind);
  return seq;
}

Payload Recorder::payload_from_bytes(std::string bytes) {
  Shard& shard = shard_for_this_thread();
  // Hash outside the lock: it is the expensive part for large payloads.
  std::map<std::string, std::string> spilled;
  Payload payload = make_payload(std::move(bytes), spilled);
  if (!spilled.empty()) {
    std::lock_guard lock(shard.mutex);
    shard.cas.merge(spilled);
  }
  return payload;
}

Phase Recorder::swap_phase(Phase phase) {
  return static_cast<Phase>(phase_.exchange(static_cast<uint8_t>(phase)));
}

Tape Recorder::snapshot(Header header) const {
  Tape tape(std::move(header));
  std::lock_guard lock(shards_mutex_);
  std::vector<std::unique_lock<std::mutex>> held;
  size_t total = 0;
  for (const auto& shard : shards_) {
    held.emplace_back(shard->mutex);
    total += shard->records.size();
  }
  tape.records.reserve(total);
  for (const auto& shard : shards_) {
    const size_t middle = tape.records.size();
    tape.records.insert(tape.records.end(), shard->records.begin(), shard->records.end());
    std::inplace_merge(tape.records.begin(), tape.records.begin() + static_cast<ptrdiff_t>(middle),
                       tape.records.end(),
                       [](const Record& a, const Record& b) { return a.seq < b.seq; });
    for (const auto& [hash, bytes] : shard->cas) tape.cas_entries().try_emplace(hash, bytes);
  }
  return tape;
}

PhaseGuard::PhaseGuard(std::shared_ptr<Recorder> recorder, Phase phase)
    : recorder_(std::move(recorder)), previous_(recorder_->swap_phase(phase)) {}

PhaseGuard::~PhaseGuard() {
  recorder_->swap_phase(previous_);
}

RecorderGuard::RecorderGuard(std::shared_ptr<Recorder> recorder)
    : previous_(std::exchange(active, std::move(recorder))) {}

RecorderGuard::~RecorderGuard() {
  active = std::move(previous_);
}

RecorderGuard install_recorder(std::shared_ptr<Recorder> recorder) {
  return RecorderGuard(std::move(recorder));
}

std::shared_ptr<Recorder> active_recorder() {
  return active;
}

std::optional<PhaseGuard> enter_phase(Phase phase) {
  std::shared_ptr<Recorder> recorder = active_recorder();
  if (!recorder) return std::nullopt;
  return std::optional<PhaseGuard>(std::in_place, std::move(recorder), phase);
}

}  // namespace tapedeck
