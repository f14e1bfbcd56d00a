#include "tapedeck/recorder.hpp"

#include <sys/mman.h>
#include <time.h>

#include <cstdlib>
#include <new>

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

uint64_t order_stamp_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(now.tv_nsec);
}

// A recorded entry, 40 bytes. The two clock kinds, most of a typical tape, are stored inline;
// every other kind is boxed (they own strings, so they allocate anyway). Small fixed-size
// entries keep recording from being bound by page faults on fresh memory.
struct Entry {
  enum class Tag : uint8_t { clock_read, clock_sleep, boxed };
  static_assert(std::variant_size_v<RecordKind> < 256);
  uint64_t order_ns;
  int64_t virtual_time_ms;
  int64_t monotonic_ms;
  Phase phase;
  Tag tag;
  ClockSource source;
  uint8_t boxed_index;  // the RecordKind alternative behind `boxed`
  union {
    int64_t value_ms;
    uint64_t duration_ms;
    void* boxed;
  };
};

// Entries live in 2 MiB chunks that the kernel may back with one huge page: recording millions
// of records then costs a few page faults instead of one per 4 KiB.
constexpr size_t kChunkBytes = 2 << 20;
constexpr size_t kChunkEntries = kChunkBytes / sizeof(Entry);

// Chunks of finished recorders are kept for the next one (a host that runs one recording per
// test reuses the same memory): fresh pages cost the kernel a clear each, and that clearing
// dominated recording. The pool is capped: it never holds more than kPoolChunks * 2 MiB = 128 MiB.
class ChunkPool {
 public:
  void* take() {
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        void* chunk = free_.back();
        free_.pop_back();
        return chunk;
      }
    }
    void* memory = std::aligned_alloc(kChunkBytes, kChunkBytes);
    if (memory == nullptr) throw std::bad_alloc();
    ::madvise(memory, kChunkBytes, MADV_HUGEPAGE);  // a hint; fine if refused
    return memory;
  }
  void give_back(void* chunk) {
    {
      std::lock_guard lock(mutex_);
      if (free_.size() < kPoolChunks) {
        free_.push_back(chunk);
        return;
      }
    }
    std::free(chunk);
  }
  ~ChunkPool() {
    for (void* chunk : free_) std::free(chunk);
  }

 private:
  static constexpr size_t kPoolChunks = 64;
  std::mutex mutex_;
  std::vector<void*> free_;
};

ChunkPool& chunk_pool() {
  static ChunkPool pool;
  return pool;
}

struct ChunkFree {
  void operator()(Entry* chunk) const { chunk_pool().give_back(chunk); }
};
using Chunk = std::unique_ptr<Entry[], ChunkFree>;

Chunk allocate_chunk() {
  return Chunk(static_cast<Entry*>(chunk_pool().take()));
}

// Non-clock kinds are boxed as their own alternative, not as a whole RecordKind (which is as
// large as its largest alternative).
template <size_t I = 0>
void* box(RecordKind&& kind) {
  if constexpr (I < std::variant_size_v<RecordKind>) {
    if (kind.index() == I) {
      using K = std::variant_alternative_t<I, RecordKind>;
      return new K(std::move(std::get<I>(kind)));
    }
    return box<I + 1>(std::move(kind));
  } else {
    return nullptr;
  }
}

template <size_t I = 0>
void unbox_into(size_t index, const void* boxed, RecordKind& out) {
  if constexpr (I < std::variant_size_v<RecordKind>) {
    using K = std::variant_alternative_t<I, RecordKind>;
    if (index == I) {
      out.emplace<I>(*static_cast<const K*>(boxed));
      return;
    }
    unbox_into<I + 1>(index, boxed, out);
  }
}

template <size_t I = 0>
void delete_boxed(size_t index, void* boxed) {
  if constexpr (I < std::variant_size_v<RecordKind>) {
    using K = std::variant_alternative_t<I, RecordKind>;
    if (index == I) {
      delete static_cast<K*>(boxed);
      return;
    }
    delete_boxed<I + 1>(index, boxed);
  }
}

}  // namespace

struct alignas(64) Recorder::Shard {
  std::thread::id owner;
  // Taken by the owning thread on every record and by snapshot(); never contended in practice.
  mutable std::mutex mutex;
  // Fixed-size chunks: growing never moves what was recorded.
  std::vector<Chunk> chunks;
  size_t size = 0;
  std::map<std::string, std::string> cas;

  Entry& append() {
    if (size == chunks.size() * kChunkEntries) {
      chunks.push_back(allocate_chunk());
    }
    Entry& entry = chunks[size / kChunkEntries][size % kChunkEntries];
    ++size;
    return entry;
  }
  const Entry& at(size_t index) const {
    return chunks[index / kChunkEntries][index % kChunkEntries];
  }

  ~Shard() {
    for (size_t i = 0; i < size; ++i) {
      if (at(i).tag == Entry::Tag::boxed) delete_boxed(at(i).boxed_index, at(i).boxed);
    }
  }
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
  }
  shard_cache = {id_, mine};
  return *mine;
}

void Recorder::record(RecordKind kind) {
  Shard& shard = shard_for_this_thread();
  // Box outside the lock: the allocation is the slow part of a non-clock record.
  void* boxed = nullptr;
  const size_t index = kind.index();
  if (!std::holds_alternative<kind::ClockRead>(kind) &&
      !std::holds_alternative<kind::ClockSleep>(kind)) {
    boxed = box(std::move(kind));
  }
  std::lock_guard lock(shard.mutex);
  Entry& entry = shard.append();
  // Stamped under the shard lock, so a snapshot that has taken this lock sees every entry
  // stamped before it.
  entry.order_ns = order_stamp_ns();
  entry.phase = phase();
  entry.virtual_time_ms = clock_->now_ms();
  entry.monotonic_ms = clock_->monotonic_ms() - started_monotonic_ms_;
  if (boxed != nullptr) {
    entry.tag = Entry::Tag::boxed;
    entry.boxed_index = static_cast<uint8_t>(index);
    entry.boxed = boxed;
  } else if (const auto* read = std::get_if<kind::ClockRead>(&kind)) {
    entry.tag = Entry::Tag::clock_read;
    entry.source = read->source;
    entry.value_ms = read->value_ms;
  } else {
    entry.tag = Entry::Tag::clock_sleep;
    entry.duration_ms = std::get<kind::ClockSleep>(kind).duration_ms;
  }
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

uint64_t Recorder::record_count() const {
  std::lock_guard lock(shards_mutex_);
  uint64_t total = 0;
  for (const auto& shard : shards_) {
    std::lock_guard shard_lock(shard->mutex);
    total += shard->size;
  }
  return total;
}

Tape Recorder::snapshot(Header header) const {
  Tape tape(std::move(header));
  std::lock_guard lock(shards_mutex_);
  std::vector<std::unique_lock<std::mutex>> held;
  size_t total = 0;
  for (const auto& shard : shards_) {
    held.emplace_back(shard->mutex);
    total += shard->size;
    for (const auto& [hash, bytes] : shard->cas) tape.cas_entries().try_emplace(hash, bytes);
  }

  // K-way merge by stamp; ties go to the lower shard, and a shard's own entries keep their order.
  std::vector<size_t> next(shards_.size(), 0);
  tape.records.resize(total);
  for (uint64_t seq = 0; seq < total; ++seq) {
    size_t best = shards_.size();
    uint64_t best_stamp = 0;
    for (size_t s = 0; s < shards_.size(); ++s) {
      if (next[s] == shards_[s]->size) continue;
      const uint64_t stamp = shards_[s]->at(next[s]).order_ns;
      if (best == shards_.size() || stamp < best_stamp) {
        best = s;
        best_stamp = stamp;
      }
    }
    const Entry& entry = shards_[best]->at(next[best]++);
    Record& record = tape.records[seq];
    record.seq = seq;
    record.phase = entry.phase;
    record.virtual_time_ms = entry.virtual_time_ms;
    record.monotonic_ms = entry.monotonic_ms;
    switch (entry.tag) {
      case Entry::Tag::clock_read:
        record.kind = kind::ClockRead{entry.source, entry.value_ms};
        break;
      case Entry::Tag::clock_sleep:
        record.kind = kind::ClockSleep{entry.duration_ms};
        break;
      case Entry::Tag::boxed:
        unbox_into(entry.boxed_index, entry.boxed, record.kind);
        break;
    }
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
