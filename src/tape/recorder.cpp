#include "tapedeck/recorder.hpp"

#include "tapedeck/secrets.hpp"

#include <algorithm>

#include "tape/tape_appender.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/error.hpp"

#include <sys/mman.h>
#include <time.h>

#include <cstdlib>
#include <new>

#include <algorithm>
#include <condition_variable>
#include <deque>
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
  enum class Tag : uint8_t { clock_read, clock_sleep, clock_waited, boxed };
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

// Moves a boxed kind into `out` and frees the box (a flushed entry is not needed again).
template <size_t I = 0>
void unbox_and_free(size_t index, void* boxed, RecordKind& out) {
  if constexpr (I < std::variant_size_v<RecordKind>) {
    using K = std::variant_alternative_t<I, RecordKind>;
    if (index == I) {
      K* kind = static_cast<K*>(boxed);
      out.emplace<I>(std::move(*kind));
      delete kind;
      return;
    }
    unbox_and_free<I + 1>(index, boxed, out);
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

// Fills a record's stamps and kind from an entry; a boxed kind is copied, or moved out and freed.
void fill_record(const Entry& entry, uint64_t seq, bool consume_box, Record& record) {
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
    case Entry::Tag::clock_waited:
      record.kind = kind::ClockSleep{entry.duration_ms, true};
      break;
    case Entry::Tag::boxed:
      if (consume_box) {
        unbox_and_free(entry.boxed_index, entry.boxed, record.kind);
      } else {
        unbox_into(entry.boxed_index, entry.boxed, record.kind);
      }
      break;
  }
}

// Merges per-shard runs (each sorted by stamp) into one run in stamp order; ties go to the
// lower shard and a shard's own entries keep their order.
template <typename At>
void merge_by_stamp(const std::vector<size_t>& sizes, At&& at, std::vector<const Entry*>& out) {
  std::vector<size_t> next(sizes.size(), 0);
  size_t total = 0;
  for (size_t size : sizes) total += size;
  out.clear();
  out.reserve(total);
  for (size_t n = 0; n < total; ++n) {
    size_t best = sizes.size();
    uint64_t best_stamp = 0;
    for (size_t s = 0; s < sizes.size(); ++s) {
      if (next[s] == sizes[s]) continue;
      const uint64_t stamp = at(s, next[s]).order_ns;
      if (best == sizes.size() || stamp < best_stamp) {
        best = s;
        best_stamp = stamp;
      }
    }
    out.push_back(&at(best, next[best]++));
  }
}

}  // namespace

struct alignas(64) Recorder::Shard {
  std::thread::id owner;
  // Taken by the owning thread on every record and by snapshot() and the flusher; never
  // contended in practice.
  mutable std::mutex mutex;
  // Fixed-size chunks: growing never moves what was recorded. chunks[0] starts at entry `base`;
  // a streaming recorder releases chunks once every entry in them was written.
  std::deque<Chunk> chunks;
  size_t base = 0;
  size_t size = 0;   // entries appended, ever
  size_t taken = 0;  // entries handed to the flusher (streaming)
  std::map<std::string, std::string> cas;

  Entry& append() {
    if (size - base == chunks.size() * kChunkEntries) chunks.push_back(allocate_chunk());
    Entry& entry = at(size);
    ++size;
    return entry;
  }
  Entry& at(size_t index) const {
    const size_t offset = index - base;
    return chunks[offset / kChunkEntries][offset % kChunkEntries];
  }
  void release_taken_chunks() {
    while (taken - base >= kChunkEntries) {
      chunks.pop_front();
      base += kChunkEntries;
    }
  }

  ~Shard() {
    for (size_t i = taken; i < size; ++i) {
      if (at(i).tag == Entry::Tag::boxed) delete_boxed(at(i).boxed_index, at(i).boxed);
    }
  }
};

struct Recorder::Streaming {
  Streaming(const std::filesystem::path& tape, const Header& header, StreamOptions stream_options)
      : appender(tape, header), cas_dir(cas_dir_for(tape)), options(std::move(stream_options)) {}

  detail::TapeAppender appender;
  std::filesystem::path cas_dir;
  StreamOptions options;
  std::mutex flush_mutex;  // one flush at a time; guards what follows
  std::condition_variable wake;
  bool stopping = false;
  bool finished = false;
  uint64_t written = 0;
  std::mutex error_mutex;
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  std::thread flusher;
};

Recorder::Recorder(std::shared_ptr<Clock> clock)
    : id_(next_recorder_id.fetch_add(1, std::memory_order_relaxed)),
      clock_(clock ? std::move(clock) : default_clock()),
      started_monotonic_ms_(clock_->monotonic_ms()) {}

Recorder::~Recorder() {
  if (streaming_ && !streaming_->finished) {
    try {
      finalize();
    } catch (...) {
      // A destructor cannot report it; hosts that care call finalize() themselves.
    }
  }
}

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
  append(std::move(kind), 0);
}

void Recorder::record_ending_in(RecordKind kind, uint64_t duration_ms) {
  append(std::move(kind), static_cast<int64_t>(duration_ms));
}

void Recorder::append(RecordKind&& kind, int64_t ahead_ms) {
  std::optional<Stamps> given;  // a replay's (stamp_with); else the clock's, under the lock
  if (stamper_) [[unlikely]] {
    given = stamper_(kind, {clock_->now_ms() + ahead_ms,
                            clock_->monotonic_ms() - started_monotonic_ms_ + ahead_ms});
  }
  Shard& shard = shard_for_this_thread();
  // Box outside the lock: the allocation is the slow part of a non-clock record.
  void* boxed = nullptr;
  const size_t index = kind.index();
  // A clock read with a lane (a worker thread's, a Go function's) or a sleep naming its thread
  // is boxed like the rest.
  const auto* clock_read = std::get_if<kind::ClockRead>(&kind);
  const auto* clock_sleep = std::get_if<kind::ClockSleep>(&kind);
  if ((clock_read == nullptr || !clock_read->lane.empty()) &&
      (clock_sleep == nullptr || !clock_sleep->thread.empty())) {
    boxed = box(std::move(kind));
  }
  std::lock_guard lock(shard.mutex);
  Entry& entry = shard.append();
  // Stamped under the shard lock, so a snapshot that has taken this lock sees every entry
  // stamped before it.
  entry.order_ns = order_stamp_ns();
  entry.phase = phase();
  if (given) [[unlikely]] {
    entry.virtual_time_ms = given->virtual_time_ms;
    entry.monotonic_ms = given->monotonic_ms;
  } else {
    entry.virtual_time_ms = clock_->now_ms() + ahead_ms;
    entry.monotonic_ms = clock_->monotonic_ms() - started_monotonic_ms_ + ahead_ms;
  }
  if (boxed != nullptr) {
    entry.tag = Entry::Tag::boxed;
    entry.boxed_index = static_cast<uint8_t>(index);
    entry.boxed = boxed;
  } else if (const auto* read = std::get_if<kind::ClockRead>(&kind)) {
    entry.tag = Entry::Tag::clock_read;
    entry.source = read->source;
    entry.value_ms = read->value_ms;
  } else {
    const auto& sleep = std::get<kind::ClockSleep>(kind);
    entry.tag = sleep.waited ? Entry::Tag::clock_waited : Entry::Tag::clock_sleep;
    entry.duration_ms = sleep.duration_ms;
  }
}

void Recorder::add_secret(std::string value) {
  if (value.size() < 8) return;
  std::lock_guard lock(secrets_mutex_);
  if (std::find(secrets_.begin(), secrets_.end(), value) != secrets_.end()) return;
  const bool late = record_count() > 0;
  if (late) late_secrets_.push_back(value);
  secrets_.push_back(std::move(value));
  has_secrets_.store(true, std::memory_order_release);
  if (late && streaming_) {
    // Bytes holding it may be on disk already: written down now, a kill before the session's
    // scrub leaves what `verify --repair` needs to finish it. On failure that scrub writes it.
    try {
      secrets::note_pending_scrub(streaming_->appender.path(), late_secrets_);
    } catch (const std::exception&) {
    }
  }
}

std::vector<std::string> Recorder::late_secrets() const {
  std::lock_guard lock(secrets_mutex_);
  return late_secrets_;
}

bool Recorder::holds_secret(std::string_view bytes) const {
  if (!has_secrets_.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(secrets_mutex_);
  for (const std::string& secret : secrets_) {
    if (bytes.find(secret) != std::string_view::npos) return true;
  }
  return false;
}

size_t Recorder::redact(std::string& bytes) const {
  size_t redacted = 0;
  if (has_secrets_.load(std::memory_order_acquire)) {
    std::lock_guard lock(secrets_mutex_);
    redacted = secrets::redact_values(bytes, secrets_);
  }
  return redacted + secrets::redact(bytes);
}

Payload Recorder::payload_from_bytes(std::string bytes) {
  redact(bytes);
  Shard& shard = shard_for_this_thread();
  // Hash outside the lock: it is the expensive part for large payloads.
  std::map<std::string, std::string> spilled;
  Payload payload = make_payload(std::move(bytes), spilled);
  if (spilled.empty()) return payload;
  if (streaming_ && !streaming_->finished) {
    // Written whole (temporary file, rename) before the record that names it can exist; if that
    // fails the stream stops, so no record on the tape ever names a missing entry.
    try {
      cas::write_entries(streaming_->cas_dir, spilled,
                         streaming_->options.fsync == FsyncPolicy::every_flush);
    } catch (...) {
      fail_stream(std::current_exception());
    }
    return payload;
  }
  std::lock_guard lock(shard.mutex);
  shard.cas.merge(spilled);
  return payload;
}

Phase Recorder::swap_phase(Phase phase) {
  // A phase change is a flush point: what the ending phase recorded reaches the file first.
  if (streaming_ && !streaming_->finished) {
    flush_pending(streaming_->options.fsync != FsyncPolicy::never);
  }
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
  if (streaming_) {
    const_cast<Recorder*>(this)->flush();
    Tape tape = Tape::load(streaming_->appender.path());
    tape.header = std::move(header);
    return tape;
  }
  Tape tape(std::move(header));
  std::lock_guard lock(shards_mutex_);
  std::vector<std::unique_lock<std::mutex>> held;
  std::vector<size_t> sizes;
  for (const auto& shard : shards_) {
    held.emplace_back(shard->mutex);
    sizes.push_back(shard->size);
    for (const auto& [hash, bytes] : shard->cas) tape.cas_entries().try_emplace(hash, bytes);
  }
  std::vector<const Entry*> ordered;
  merge_by_stamp(
      sizes, [&](size_t s, size_t i) -> const Entry& { return shards_[s]->at(i); }, ordered);
  tape.records.resize(ordered.size());
  for (uint64_t seq = 0; seq < ordered.size(); ++seq) {
    fill_record(*ordered[seq], seq, false, tape.records[seq]);
  }
  return tape;
}

void Recorder::stream_to(const std::filesystem::path& tape, const Header& header,
                         StreamOptions options) {
  if (streaming_) throw TapeError(tape.string(), 0, "this recorder is already streaming");
  streaming_ = std::make_unique<Streaming>(tape, header, std::move(options));
  // What was recorded before streaming began goes out with the first flush.
  streaming_->flusher = std::thread([this] {
    Streaming& stream = *streaming_;
    std::unique_lock lock(stream.flush_mutex);
    // Deadlines run from the start of each flush, so a slow flush does not stretch the interval.
    auto deadline = std::chrono::steady_clock::now() + stream.options.flush_interval;
    while (!stream.stopping) {
      stream.wake.wait_until(lock, deadline, [&] { return stream.stopping; });
      if (stream.stopping) break;
      deadline = std::chrono::steady_clock::now() + stream.options.flush_interval;
      lock.unlock();
      flush_pending(stream.options.fsync == FsyncPolicy::every_flush);
      lock.lock();
    }
  });
}

void Recorder::fail_stream(std::exception_ptr error) noexcept {
  std::lock_guard lock(streaming_->error_mutex);
  if (!streaming_->error) streaming_->error = error;
  streaming_->failed.store(true);
}

namespace {

// A shard's share of one flush: runs of entries inside its chunks, in stamp order.
struct TakenEntries {
  struct Span {
    const Entry* first;
    size_t count;
  };
  std::vector<Span> spans;
  size_t span = 0;  // read position
  size_t offset = 0;

  const Entry* peek() const { return span < spans.size() ? spans[span].first + offset : nullptr; }
  void advance() {
    if (++offset == spans[span].count) {
      ++span;
      offset = 0;
    }
  }
};

// Up to `limit` entries from all shards' shares, merged in stamp order (ties: lower shard).
void next_in_stamp_order(std::vector<TakenEntries>& shares, size_t limit,
                         std::vector<const Entry*>& out) {
  out.clear();
  while (out.size() < limit) {
    TakenEntries* best = nullptr;
    for (auto& share : shares) {
      const Entry* candidate = share.peek();
      if (candidate != nullptr &&
          (best == nullptr || candidate->order_ns < best->peek()->order_ns)) {
        best = &share;
      }
    }
    if (best == nullptr) return;
    out.push_back(best->peek());
    best->advance();
  }
}

constexpr size_t kRecordsPerWrite = 1 << 16;

}  // namespace

void Recorder::flush_pending(bool sync) noexcept {
  Streaming& stream = *streaming_;
  std::lock_guard flush_lock(stream.flush_mutex);

  // Every entry stamped up to `horizon` is in its shard by the time we hold that shard's lock
  // (entries are stamped under it), so this flush and the next never interleave in stamp order.
  // Under each shard lock we only note where the entries are: copying them there would stall
  // the recording thread for as long as the copy takes.
  const uint64_t horizon = order_stamp_ns();
  std::vector<TakenEntries> shares;
  std::vector<Chunk> retired;  // chunks this flush consumed; back to the pool when it ends
  {
    std::lock_guard lock(shards_mutex_);
    shares.resize(shards_.size());
    for (size_t s = 0; s < shards_.size(); ++s) {
      Shard& shard = *shards_[s];
      std::lock_guard shard_lock(shard.mutex);
      size_t end = shard.size;
      while (end > shard.taken && shard.at(end - 1).order_ns > horizon) --end;
      for (size_t i = shard.taken; i < end;) {
        const size_t room = kChunkEntries - (i - shard.base) % kChunkEntries;
        const size_t count = std::min(room, end - i);
        shares[s].spans.push_back({&shard.at(i), count});
        i += count;
      }
      shard.taken = end;
      while (shard.taken - shard.base >= kChunkEntries) {
        retired.push_back(std::move(shard.chunks.front()));
        shard.chunks.pop_front();
        shard.base += kChunkEntries;
      }
    }
  }

  // Written in slices, so a flush that fell behind never builds one huge buffer.
  std::vector<const Entry*> slice;
  Record record;
  for (;;) {
    next_in_stamp_order(shares, kRecordsPerWrite, slice);
    if (slice.empty()) break;
    size_t encoded = 0;           // boxes past this one are still owned by the slice
    if (!stream.failed.load()) {  // after a failure nothing more is written
      try {
        stream.appender.append(slice.size(), [&](uint64_t first_seq, LineBuffer& out) {
          for (; encoded < slice.size(); ++encoded) {
            fill_record(*slice[encoded], first_seq + encoded, true, record);
            out.append_record(record);
          }
        });
        stream.written += slice.size();
      } catch (...) {
        fail_stream(std::current_exception());
      }
    }
    for (size_t i = encoded; i < slice.size(); ++i) {
      if (slice[i]->tag == Entry::Tag::boxed) delete_boxed(slice[i]->boxed_index, slice[i]->boxed);
    }
  }
  if (stream.failed.load()) return;
  if (sync) {
    try {
      stream.appender.sync();
    } catch (...) {
      fail_stream(std::current_exception());
      return;
    }
  }
  if (stream.options.on_flush) stream.options.on_flush(stream.written);
}

void Recorder::flush() {
  if (!streaming_) return;
  flush_pending(streaming_->options.fsync == FsyncPolicy::every_flush);
  std::lock_guard lock(streaming_->error_mutex);
  if (streaming_->error) std::rethrow_exception(streaming_->error);
}

void Recorder::finalize() {
  if (!streaming_ || streaming_->finished) return;
  {
    std::lock_guard lock(streaming_->flush_mutex);
    streaming_->stopping = true;
  }
  streaming_->wake.notify_all();
  streaming_->flusher.join();
  streaming_->finished = true;
  flush_pending(streaming_->options.fsync != FsyncPolicy::never);
  // A compressed tape's frame is closed, so that it reads back whole (a plain one has nothing to
  // close).
  streaming_->appender.finish();
  if (streaming_->options.fsync != FsyncPolicy::never && !streaming_->failed.load()) {
    try {
      streaming_->appender.sync();
    } catch (...) {
      fail_stream(std::current_exception());
    }
  }
  std::lock_guard lock(streaming_->error_mutex);
  if (streaming_->error) std::rethrow_exception(streaming_->error);
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
