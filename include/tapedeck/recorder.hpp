// The recorder: stamps every record with the current phase, virtual time from the mock clock
// and monotonic time since the recorder started; the tape numbers them with a global gap-free seq.
//
// Recording shares nothing between threads: each thread appends to a shard of its own
// (registered once, under a lock, the first time it records into this recorder), stamped with
// the system's monotonic clock in nanoseconds. A shared seq counter would not do: one atomic
// cache line bouncing between cores makes two recording threads slower than one. snapshot()
// merges the shards by that stamp, which orders records as they happened (CLOCK_MONOTONIC is
// consistent across CPUs, and a thread's own records keep their program order), and hands out
// seq 0..N-1 in that order.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "tapedeck/clock.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck {

// When a streaming recorder asks the disk to keep what it wrote (fsync).
enum class FsyncPolicy {
  never,                // the page cache only: survives the process being killed, not power loss
  at_phase_and_finish,  // at every phase change and at finalize()
  every_flush,          // after every flush (at most flush_interval apart); CAS entries too
};

struct StreamOptions {
  // Records reach the file at least this often, and at every phase change and at finalize().
  std::chrono::milliseconds flush_interval{100};
  FsyncPolicy fsync = FsyncPolicy::at_phase_and_finish;
  // Called on the flushing thread after each flush with how many records this recorder has
  // written in all (for progress reports and tests).
  std::function<void(uint64_t records_written)> on_flush;
};

class Recorder {
 public:
  explicit Recorder(std::shared_ptr<Clock> clock = default_clock());
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Appends a record. Its seq is its place in the merged order (see snapshot()). It is stamped
  // with the clock's time (virtual_time_ms) now: a record is made when its input reached the
  // program, so a span (a subprocess, an LLM call, a sleep) is stamped where it ended.
  void record(RecordKind kind);
  // A span taped as it begins (a sleep the supervisor learns of before it is slept): stamped
  // where it ends, `duration_ms` from now, as every span is.
  void record_ending_in(RecordKind kind, uint64_t duration_ms);

  // A record's stamps: virtual_time_ms, and monotonic_ms (from the recorder's start).
  struct Stamps {
    int64_t virtual_time_ms = 0;
    int64_t monotonic_ms = 0;
  };
  // Where records' stamps come from when not from the clock: a replay stamps each record with
  // its recorded counterpart's (Session), so that a replay that did what the recording did is
  // stamped alike. Called for every record, before it is appended, with the clock's stamps.
  // Set before the first record.
  using Stamper = std::function<Stamps(const RecordKind& kind, Stamps clock)>;
  void stamp_with(Stamper stamper) { stamper_ = std::move(stamper); }
  // Applies the payload rule (inline or CAS) and keeps CAS bytes for the snapshot. Every
  // secret (see add_secret) in the bytes is replaced by kRedacted first.
  Payload payload_from_bytes(std::string bytes);

  // A credential the recorded process was given (an API key, a bearer token): from now on no
  // payload carries it. Values shorter than 8 bytes are ignored: they would redact plain text.
  void add_secret(std::string value);
  // The secrets added once records had been written (which may hold them): the session scrubs
  // the written tape of them when it ends (see secrets::scrub_tape). A streaming recorder notes
  // each in the tape's scrub journal as it is added (secrets::note_pending_scrub).
  std::vector<std::string> late_secrets() const;
  // Whether `bytes` holds a secret (for bytes the caller keeps by their hash, which redaction
  // would break: file contents).
  bool holds_secret(std::string_view bytes) const;
  static constexpr std::string_view kRedacted = "[redacted by tapedeck]";
  // Replaces, in `bytes`, every secret added and every credential-shaped string (see
  // tapedeck/secrets.hpp) with kRedacted; the number replaced. payload_from_bytes does it to
  // every payload; a caller that keeps bytes by their hash itself does it first.
  size_t redact(std::string& bytes) const;

  Phase phase() const { return static_cast<Phase>(phase_.load(std::memory_order_relaxed)); }
  // Sets the phase and answers the previous one (PhaseGuard is the usual way in).
  Phase swap_phase(Phase phase);

  // Every record so far, in seq order, with every CAS entry they name. A streaming recorder
  // flushes and reads its tape back (which may hold other processes' records too).
  Tape snapshot(Header header) const;

  // Streaming: from now on records reach `tape` as they are recorded (see StreamOptions), in the
  // canonical encoding, so a killed process leaves a valid tape holding every record flushed
  // before the kill. CAS entries are written, whole, before any record naming them. An existing
  // tape is appended to, and several processes may append to one tape at once: seq stays unique
  // and gap-free across them. Throws TapeError when the tape cannot be opened.
  void stream_to(const std::filesystem::path& tape, const Header& header,
                 StreamOptions options = {});
  // Writes what was recorded so far; throws the stream's error (disk full, …) if it has one.
  void flush();
  // Writes everything, fsyncs (unless FsyncPolicy::never) and stops streaming. Throws the
  // stream's error: the tape then holds every record before the failed write, whole.
  void finalize();
  bool streaming() const { return streaming_ != nullptr; }
  // How many records were recorded so far.
  uint64_t record_count() const;
  const Clock& clock() const { return *clock_; }

 private:
  struct Shard;
  struct Streaming;
  Shard& shard_for_this_thread();
  // Writes every entry stamped up to now; errors are kept in the stream, not thrown.
  void flush_pending(bool sync) noexcept;
  void fail_stream(std::exception_ptr error) noexcept;

  void append(RecordKind&& kind, int64_t ahead_ms);

  const uint64_t id_;  // unique for the process lifetime: thread caches key on it, not on `this`
  std::shared_ptr<Clock> clock_;
  const int64_t started_monotonic_ms_;
  alignas(64) std::atomic<uint8_t> phase_{static_cast<uint8_t>(Phase::user_script)};
  mutable std::mutex shards_mutex_;  // guards the shard list, never taken on the record path
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Streaming> streaming_;
  mutable std::mutex secrets_mutex_;
  std::vector<std::string> secrets_;
  std::vector<std::string> late_secrets_;
  std::atomic<bool> has_secrets_{false};  // the common case skips the lock
  Stamper stamper_;
};

// Restores the previous phase when it goes out of scope.
class PhaseGuard {
 public:
  PhaseGuard(std::shared_ptr<Recorder> recorder, Phase phase);
  ~PhaseGuard();
  PhaseGuard(const PhaseGuard&) = delete;
  PhaseGuard& operator=(const PhaseGuard&) = delete;

 private:
  std::shared_ptr<Recorder> recorder_;
  Phase previous_;
};

// Installs a recorder as this thread's active one; restores the previous one when destroyed.
class RecorderGuard {
 public:
  explicit RecorderGuard(std::shared_ptr<Recorder> recorder);
  ~RecorderGuard();
  RecorderGuard(const RecorderGuard&) = delete;
  RecorderGuard& operator=(const RecorderGuard&) = delete;

 private:
  std::shared_ptr<Recorder> previous_;
};

[[nodiscard]] RecorderGuard install_recorder(std::shared_ptr<Recorder> recorder);
// This thread's active recorder, or null.
std::shared_ptr<Recorder> active_recorder();
// Enters `phase` on the active recorder; nullopt when none is active.
[[nodiscard]] std::optional<PhaseGuard> enter_phase(Phase phase);

// Runs `build` with the active recorder (if any) and records the kind it returns (if any).
// The builder only runs when something is recording, so callers pay nothing otherwise.
template <typename Build>
void with_active_recorder(Build&& build) {
  std::shared_ptr<Recorder> recorder = active_recorder();
  if (!recorder) return;
  std::optional<RecordKind> kind = build(*recorder);
  if (kind) recorder->record(std::move(*kind));
}

}  // namespace tapedeck
