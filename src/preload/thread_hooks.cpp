// Threads, numbered by who started them and in what order (pthread_create), so that a replay
// finds each one again: its clock reads are served from its own lane (clock_map.hpp's
// ThreadKey) and its randomness from its own stream, not in the order in which the tree's
// threads happened to read. A thread's number is its place among the threads its starter
// started: the main thread's k-th is k; the j-th of thread n is n and j folded (the high bit
// set). Counted per starter, not per process: a pool a runtime starts lazily, from whichever
// thread needs it first (libuv's, from a Node worker's first file read), would otherwise shift
// the numbers of every thread started after it.
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "preload/clock_map.hpp"
#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

namespace {

// Moved on in a forked child, whose threads start counting again and whose place is another:
// a thread's cached key is of the process it was computed in.
std::atomic<uint32_t> process_generation{1};

thread_local uint32_t thread_number __attribute__((tls_model("initial-exec")));
thread_local uint32_t threads_started __attribute__((tls_model("initial-exec")));  // by this one
thread_local uint32_t key_generation __attribute__((tls_model("initial-exec")));
thread_local uint64_t cached_key __attribute__((tls_model("initial-exec")));
thread_local uint32_t lane_generation __attribute__((tls_model("initial-exec")));
thread_local uint64_t cached_lane __attribute__((tls_model("initial-exec")));
thread_local uint64_t cached_after_wait_lane __attribute__((tls_model("initial-exec")));

struct ThreadStart {
  void* (*routine)(void*);
  void* argument;
  uint32_t number;
};

void* start_numbered(void* opaque) {
  const ThreadStart start = *static_cast<ThreadStart*>(opaque);
  free(opaque);
  thread_number = start.number;
  void* const result = start.routine(start.argument);
  flush_held_read();  // (a thread that ends by pthread_exit loses its last read)
  return result;
}

void after_fork_child() {
  // (Run by the thread that forked: the child's main thread, which has started none yet.)
  thread_number = 0;
  threads_started = 0;
  process_generation.fetch_add(1, std::memory_order_relaxed);
}

// The number of the `k`-th thread the calling thread starts.
uint32_t number_for_child(uint32_t k) {
  const bool main = gettid() == getpid();
  if (main) return k;
  uint32_t hash = 2166136261u;
  for (const uint32_t part : {thread_number, k}) {
    for (int shift = 0; shift < 32; shift += 8)
      hash = (hash ^ ((part >> shift) & 0xff)) * 16777619u;
  }
  return hash | 0x80000000u;
}

}  // namespace

bool threads_keyed() {
  if (config.mode == Mode::replay) {
    return config.clock_map != nullptr && config.clock_map->threads_laned != 0;
  }
  return config.thread_lanes;
}

uint64_t thread_key() {
  return threads_keyed() ? thread_identity() : 0;
}

uint64_t file_report_thread() {
  return threads_keyed() ? thread_identity() : tapedeck::wire::kUnkeyedThread;
}

uint64_t thread_identity() {
  const uint32_t generation = process_generation.load(std::memory_order_relaxed);
  if (key_generation != generation) {
    key_generation = generation;
    // The thread that forked is its child's main thread, whatever its number was.
    const bool main = gettid() == getpid();
    const uint32_t number = main ? 0 : thread_number != 0 ? thread_number : kUnnumberedThread;
    cached_key = ThreadKey{fold_place(process_place()), number}.pack();
  }
  return cached_key;
}

uint64_t thread_lane(bool after_wait) {
  ClockMap* map = config.clock_map;
  if (map == nullptr) return 0;
  const uint64_t shared = after_wait ? map->after_wait_lane : 0;
  if (map->threads_laned == 0) return shared;  // a tape from before thread lanes
  const uint32_t generation = process_generation.load(std::memory_order_relaxed);
  if (lane_generation != generation) {
    const uint64_t key = thread_key();
    char name[kLaneNameBytes];
    thread_lane_name(name, ThreadKey::unpack(key));
    cached_lane = key == 0 ? 0 : map->lane_named(name);
    after_wait_lane_name(name, ThreadKey::unpack(key));
    cached_after_wait_lane = map->lane_named(name);
    lane_generation = generation;
  }
  return after_wait ? cached_after_wait_lane : cached_lane;
}

void install_thread_numbering() {
  pthread_atfork(nullptr, nullptr, after_fork_child);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int pthread_create(pthread_t* thread, const pthread_attr_t* attributes, void* (*routine)(void*),
                   void* argument) {
  auto* real_create = ensure(real.pthread_create, "pthread_create");
  if (config.mode == Mode::off) return real_create(thread, attributes, routine, argument);
  auto* start = static_cast<ThreadStart*>(malloc(sizeof(ThreadStart)));
  if (start == nullptr) return real_create(thread, attributes, routine, argument);
  *start = {routine, argument, number_for_child(++threads_started)};
  const int result = real_create(thread, attributes, start_numbered, start);
  if (result != 0) free(start);
  return result;
}

}  // extern "C"
