// The calls the system-call floor serves for a root the preload library cannot reach (static,
// Go): handled exactly as the preload's reports of the same effects, so that the tape does not
// say which of the two served them.
#include <blake3.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>

#include "floor/process_access.hpp"
#include "preload/clock_map.hpp"
#include "preload/entropy_stream.hpp"
#include "supervisor/tree_effects.hpp"

namespace tapedeck::supervisor {

namespace {

// The floor's processes have no connection: answers to it go nowhere, a miss stops the tree.
Connection floor_connection(pid_t pid) {
  Connection connection;
  connection.pid = pid;
  return connection;
}

int64_t monotonic_now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

}  // namespace

int64_t TreeEffects::clock_read(pid_t pid, bool wall, int64_t real_ms, std::string_view lane) {
  const int source = wall ? 0 : 1;
  int64_t value = real_ms;
  if (index_) {
    int64_t held_up_ms = 0;
    {
      const std::lock_guard lock(floor_reads_mutex_);
      int64_t& last = floor_read_at_ms_[{pid, source}];
      held_up_ms = last > 0 && real_ms > last ? real_ms - last : 0;
      last = real_ms;
    }
    value = preload::take(index_->clock_map(), source, index_->lane_id(lane), held_up_ms);
  }
  recorder().record(
      kind::ClockRead{wall ? ClockSource::wall : ClockSource::monotonic, value, std::string(lane)});
  return value;
}

bool TreeEffects::sleep(pid_t, uint64_t ms) {
  record_sleep(ms);
  const bool replay = options_.mode == RunOptions::Mode::replay;
  if (replay && index_) preload::advance(index_->clock_map(), ms);
  return replay;
}

int TreeEffects::open(pid_t pid, uint32_t thread_rank, const std::string& absolute, bool writes,
                      bool reads_too) {
  const std::optional<std::string> path = relative(absolute);
  if (!path) return 0;
  const FileOwnerScope owner(*this, floor_file_owner(pid, thread_rank));
  if (options_.mode == RunOptions::Mode::replay && (!writes || reads_too)) {
    if (const int error = file_fault(*path); error != 0) return error;
  }
  const Connection connection = floor_connection(pid);
  if (!writes) {
    file_effect(connection, wire::Op::open_read, *path);
  } else {
    // As the preload reports it: replay serves a write that reads too as one open; record
    // tapes the read, and the write once its file is closed.
    if (options_.mode == RunOptions::Mode::replay) {
      file_effect(connection, wire::Op::open_write, *path, reads_too ? 2 : 0);
    } else if (reads_too) {
      file_effect(connection, wire::Op::open_read, *path);
    }
    floor_writes_.try_emplace(*path, -1, 0);
  }
  return server_.miss() ? EIO : 0;
}

void TreeEffects::settle(pid_t pid, const std::string& path, std::pair<off_t, int64_t>& taped) {
  struct stat status {};
  if (::stat(view_.path(path).c_str(), &status) != 0 || !S_ISREG(status.st_mode)) return;
  const std::pair<off_t, int64_t> now{
      status.st_size, int64_t{status.st_mtim.tv_sec} * 1'000'000'000 + status.st_mtim.tv_nsec};
  if (now == taped) return;
  taped = now;
  file_effect(floor_connection(pid), wire::Op::closed_write, path);
}

void TreeEffects::closing(pid_t pid, uint32_t thread_rank, const std::string& absolute) {
  const std::optional<std::string> path = relative(absolute);
  if (!path) return;
  const FileOwnerScope owner(*this, floor_file_owner(pid, thread_rank));
  const auto written = floor_writes_.find(*path);
  if (written != floor_writes_.end()) settle(pid, written->first, written->second);
}

void TreeEffects::deleting(pid_t pid, uint32_t thread_rank, const std::string& absolute) {
  const std::optional<std::string> path = relative(absolute);
  if (!path) return;
  const FileOwnerScope owner(*this, floor_file_owner(pid, thread_rank));
  const auto written = floor_writes_.find(*path);
  if (written != floor_writes_.end()) {  // its last bytes first, as a close would have
    settle(pid, written->first, written->second);
    floor_writes_.erase(written);
  }
  file_effect(floor_connection(pid), wire::Op::deleted, *path);
}

void TreeEffects::renamed(pid_t pid, uint32_t thread_rank, const std::string& from,
                          const std::string& to) {
  // The new path's bytes are taped now, as the rename's; neither path is a pending write since.
  for (const std::string& absolute : {from, to}) {
    if (const std::optional<std::string> path = relative(absolute)) floor_writes_.erase(*path);
  }
  std::string body;
  wire::put_bytes(body, from);
  wire::put_bytes(body, to);
  wire::put_int(body, floor_file_owner(pid, thread_rank).value_or(wire::kUnkeyedThread));
  wire::Cursor cursor(body);
  handle_rename(floor_connection(pid), cursor);
}

void TreeEffects::settle_all() {
  for (auto& [path, taped] : floor_writes_) settle(0, path, taped);
}

// Record: the real clock. Replay: from the program's latest monotonic time, a microsecond a read
// (a runtime loop that waits for time to pass still ends), on by every wait skipped; after a
// wait that ran in the kernel, at least at the real pace (its timer must come due), until the
// next skip.
int64_t TreeEffects::runtime_clock_ns(pid_t, int64_t real_ns) {
  if (!index_) return real_ns;
  const int64_t program_ns = index_->clock_map().latest_ms[1].load() * 1'000'000;
  const int64_t paced =
      paced_since_real_ns_ != 0 ? paced_from_ns_ + (real_ns - paced_since_real_ns_) : int64_t{0};
  runtime_ns_ = std::max({runtime_ns_ + 1'000, program_ns, paced});
  return runtime_ns_;
}

void TreeEffects::wait_runs(pid_t) {
  if (paced_since_real_ns_ != 0 || !index_) return;
  paced_since_real_ns_ = monotonic_now_ns();
  paced_from_ns_ = runtime_ns_;
}

bool TreeEffects::waits_are_virtual() const {
  return options_.mode == RunOptions::Mode::replay && index_ != nullptr;
}

bool TreeEffects::skip_wait(pid_t pid, uint64_t ms) {
  // An LLM answer on its way (a request the proxy is handling; the floor itself sees one it has
  // not taken yet): the wait is for it, and time must not jump past the program's own
  // deadlines meanwhile.
  if (llm_in_flight_.load() > 0) return false;
  runtime_clock_ns(pid, monotonic_now_ns());
  runtime_ns_ += static_cast<int64_t>(ms) * 1'000'000;
  paced_since_real_ns_ = 0;
  return true;
}

void TreeEffects::set_entropy_seed(const std::string& seed_hex) {
  uint8_t seed[BLAKE3_KEY_LEN];
  entropy_seed_ = entropy_stream::seed_from_hex(seed_hex, seed)
                      ? std::string(reinterpret_cast<const char*>(seed), sizeof seed)
                      : std::string();
}

namespace {

// Bytes [offset, offset + size) of `place`'s stream, as the preload's entropy axis draws them.
std::string draw(const std::string& seed, const std::string& place, uint64_t offset, size_t size) {
  blake3_hasher keyed;
  entropy_stream::open(keyed, reinterpret_cast<const uint8_t*>(seed.data()), place);
  std::string bytes(size, '\0');
  blake3_hasher_finalize_seek(&keyed, offset, reinterpret_cast<uint8_t*>(bytes.data()), size);
  return bytes;
}

}  // namespace

std::string TreeEffects::entropy(pid_t process, uint32_t thread_rank, size_t size) {
  if (entropy_seed_.empty()) {  // no seed (an untaped run): the kernel's own
    std::string bytes(size, '\0');
    for (size_t at = 0; at < size;) {
      const ssize_t got = ::getrandom(bytes.data() + at, size - at, 0);
      if (got > 0) at += static_cast<size_t>(got);
    }
    return bytes;
  }
  const std::string& name = stream_name(process);
  if (entropy_per_thread_ && thread_rank != 0) {
    // A thread's draws come in whatever order its process's threads race to them: each has
    // its own stream, named after its place in the process's creation order.
    const std::string thread = name + ".t" + std::to_string(thread_rank);
    uint64_t& offset = thread_streams_[thread];
    std::string bytes = draw(entropy_seed_, thread, offset, size);
    offset += size;
    return bytes;
  }
  auto& stream = entropy_streams_.at(process);
  std::string bytes = draw(entropy_seed_, stream.first, stream.second, size);
  stream.second += size;
  return bytes;
}

// The root is "0"; another process of the root's image (a fork) is named by the order the floor
// first met it in, "0.f1", "0.f2"…; a process the floor follows, by its preload stream key.
const std::string& TreeEffects::stream_name(pid_t process) {
  auto [stream, fresh] = entropy_streams_.try_emplace(process);
  if (fresh) {
    stream->second.first = entropy_streams_.size() == 1
                               ? std::string("0")
                               : "0.f" + std::to_string(entropy_streams_.size() - 1);
  }
  return stream->second.first;
}

uint32_t TreeEffects::stream_place(pid_t process) {
  const std::string& name = stream_name(process);
  return preload::fold_place(name == "0" ? "" : name.c_str());
}

// Whether the run keeps thread lanes: a recording asked for them, a replay follows its tape.
bool TreeEffects::floor_threads_laned() const {
  return options_.mode == RunOptions::Mode::replay
             ? index_ && index_->clock_map().threads_laned != 0
             : options_.thread_lanes;
}

std::optional<uint64_t> TreeEffects::floor_file_owner(pid_t tid, uint32_t thread_rank) {
  if (!floor_threads_laned()) return std::nullopt;
  const pid_t process = floor::process_of(tid);
  if (process <= 0) return std::nullopt;
  return preload::ThreadKey{stream_place(process), thread_rank}.pack();
}

// The lane of a floor-served thread, as the preload names a thread's ("t3"; with its process's
// place when that is not the root's own image, "t3@5c0ffee1", "t0@5c0ffee1" for its main thread;
// none for the root's main thread), when the run keeps thread lanes.
std::string TreeEffects::thread_lane(pid_t process, uint32_t rank) {
  if (!floor_threads_laned()) return {};
  const uint32_t place = stream_place(process);
  if (rank == 0 && place == 0) return {};  // the root's main thread: no lane, as the preload's
  char lane[preload::kLaneNameBytes];
  preload::thread_lane_name(lane, preload::ThreadKey{place, rank});
  return lane;
}

std::string TreeEffects::startup_random() {
  return startup_random("0");
}

std::string TreeEffects::startup_random(const std::string& key) {
  return entropy_seed_.empty() ? std::string() : draw(entropy_seed_, key + " AT_RANDOM", 0, 16);
}

const std::string& TreeEffects::name_entropy_stream(pid_t process, const std::string& key) {
  auto& stream = entropy_streams_[process];
  stream = {key.empty() ? "0" : key, 0};
  return stream.first;
}

// The exec shim, as the preload's exec hook starts it: MODE SOCKET SEARCH (the floor gives it
// the program's absolute path: no search).
std::vector<std::string> TreeEffects::exec_wrapper() {
  return {std::filesystem::absolute(options_.exec_shim).string(),
          options_.mode == RunOptions::Mode::replay ? "replay" : "record", server_.socket_path(),
          "0"};
}

}  // namespace tapedeck::supervisor
