// The calls the system-call floor serves for a root the preload library cannot reach (static,
// Go): handled exactly as the preload's reports of the same effects, so that the tape does not
// say which of the two served them.
#include <sys/stat.h>

#include "supervisor/tree_effects.hpp"

namespace tapedeck::supervisor {

namespace {

// The floor's processes have no connection: answers to it go nowhere, a miss stops the tree.
Connection floor_connection(pid_t pid) {
  Connection connection;
  connection.pid = pid;
  return connection;
}

}  // namespace

int64_t TreeEffects::clock_read(pid_t, bool wall, int64_t real_ms) {
  const int source = wall ? 0 : 1;
  int64_t value = real_ms;
  if (index_) {
    preload::ClockMap& map = index_->clock_map();
    const preload::ClockStretch& stretch =
        map.stretches()[std::min(map.stretch.load(), map.stretch_count - 1)];
    const bool past_recorded = stretch.next[source].load() >= stretch.count[source];
    value = preload::take(map, source);
    // Past what the recording read here, time goes on at the real pace rather than a
    // millisecond a read: a runtime that reads the clock rarely while it waits for a deadline
    // (Go's scheduler, parked on a futex) would otherwise wait a second per millisecond.
    ServedClock& served = served_clock_[source];
    if (past_recorded && served.real_ms != 0) {
      value = std::max(value, served.value_ms + (real_ms - served.real_ms));
      int64_t latest = map.latest_ms[source].load();
      while (latest < value && !map.latest_ms[source].compare_exchange_weak(latest, value)) {
      }
    }
    served = {value, real_ms};
  }
  recorder().record(kind::ClockRead{wall ? ClockSource::wall : ClockSource::monotonic, value});
  return value;
}

bool TreeEffects::sleep(pid_t, uint64_t ms) {
  const bool replay = options_.mode == RunOptions::Mode::replay;
  if (replay) session_->clock().advance_ms(ms);
  recorder().record(kind::ClockSleep{ms});
  step_clock();
  if (replay && index_) preload::advance(index_->clock_map(), ms);
  return replay;
}

bool TreeEffects::open(pid_t pid, const std::string& absolute, bool writes, bool reads_too) {
  const std::optional<std::string> path = relative(absolute);
  if (!path) return true;
  const Connection connection = floor_connection(pid);
  if (!writes) {
    if (options_.mode == RunOptions::Mode::record) {
      record_file(connection, wire::Op::open_read, *path);
    } else {
      replay_file(connection, wire::Op::open_read, *path, 0);
    }
  } else {
    if (options_.mode == RunOptions::Mode::replay) {
      replay_file(connection, wire::Op::open_write, *path, reads_too ? 2 : 0);
    } else if (reads_too) {
      record_file(connection, wire::Op::open_read, *path);
    }
    floor_writes_.try_emplace(*path, -1, 0);
  }
  return !server_.miss();
}

void TreeEffects::settle(pid_t pid) {
  for (auto& [path, taped] : floor_writes_) {
    struct stat status {};
    if (::stat(view_.path(path).c_str(), &status) != 0 || !S_ISREG(status.st_mode)) continue;
    const std::pair<off_t, int64_t> now{
        status.st_size, int64_t{status.st_mtim.tv_sec} * 1'000'000'000 + status.st_mtim.tv_nsec};
    if (now == taped) continue;
    taped = now;
    const Connection connection = floor_connection(pid);
    if (options_.mode == RunOptions::Mode::record) {
      record_file(connection, wire::Op::closed_write, path);
    } else {
      replay_file(connection, wire::Op::closed_write, path, 0);
    }
  }
}

// The exec shim, as the preload's exec hook starts it: MODE SOCKET SEARCH (the floor gives it
// the program's absolute path: no search).
std::vector<std::string> TreeEffects::exec_wrapper() {
  return {std::filesystem::absolute(options_.exec_shim).string(),
          options_.mode == RunOptions::Mode::replay ? "replay" : "record", server_.socket_path(),
          "0"};
}

}  // namespace tapedeck::supervisor
