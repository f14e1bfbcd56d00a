// Clock reads and sleeps. Record: the real clock, cut to the millisecond the tape keeps (the
// program sees what replay will serve), sleeps slept and taped. Replay: the recorded values in
// order from a map the supervisor shares with every process (no round trip), sleeps virtual.
// The clock path takes no lock, allocates nothing and resolves nothing.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "preload/clock_units.hpp"
#include "preload/interposer.hpp"
#include "preload/timed_wait.hpp"
#include "preload/trace.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

using clock_units::ceil_ms;
using clock_units::floor_ms;
using clock_units::from_ms;
using clock_units::from_ns;
using clock_units::index_of;
using clock_units::ns_of;
using clock_units::Source;
using clock_units::source_of;

// The last value each clock gave this thread: an absolute-deadline wait lasts from here, in both
// modes, so record and replay compute the same duration. Per thread, because a thread computes
// its deadline from its own read, and other threads' reads fall between in another order on
// every run.
thread_local int64_t last_seen_ms[2] __attribute__((tls_model("initial-exec")));
// Traced only: where the program called the clock from (its return address; addresses repeat
// from run to run, the tree runs without randomization), so that two traces tell which code's
// reads differ in number.
thread_local const void* read_site __attribute__((tls_model("initial-exec")));

// When this thread last read each clock, in real time: past the recording's reads, a thread held
// up for real finds time moved on by as long (clock_map.hpp).
thread_local int64_t last_read_real_ms[2] __attribute__((tls_model("initial-exec")));

// Set when a wait on descriptors returns: this thread's next clock read is in kAfterWaitLane.
thread_local bool woke_from_wait __attribute__((tls_model("initial-exec")));

void note_woke_from_wait() {
  woke_from_wait = true;
}

void forget_real_wait() {
  last_read_real_ms[0] = last_read_real_ms[1] = 0;
}

// Where threads are keyed (thread lanes), a thread's last clock read is held back until the
// thread does anything else the supervisor hears of or waits (another read, a sleep, a wait, a
// request, its end): a read that only computes the deadline of a hand-over between threads (a
// condition wait under 10 ms: CPython's GIL, whose waits come as often as the threads happen to
// contend) is then dropped, in both modes, and a replay gives its value back. Taped, those reads
// moved a Python thread's later reads along: woken by a worker under load, it read its last time 3
// ms early and printed 1.4 s for 1.5 s.
struct HeldRead {
  bool held = false;
  Event event = Event::wall_read;
  int64_t value = 0;
  uint64_t thread = 0;
  int source = 0;
  Taken taken;
};
// (Trivially destructible: a destructor would be registered on a thread's first read, with an
// allocation, and a read may come from inside an allocator (jemalloc's decay clock). A thread's
// held read goes out when its start routine returns: thread_hooks.cpp.)
thread_local HeldRead held_read __attribute__((tls_model("initial-exec")));

void flush_held_read() {
  if (!held_read.held) return;
  held_read.held = false;
  queue_of_thread_now(held_read.event, held_read.value, held_read.thread);
}

void drop_held_read(clockid_t id) {
  // (Only where threads are keyed: a tape before that holds those reads, and its replay reads
  // them.)
  if (!held_read.held || held_read.source != index_of(source_of(id)) || !threads_keyed()) return;
  held_read.held = false;
  const Taken& taken = held_read.taken;
  if (config.mode == Mode::replay && taken.recorded && taken.counter != nullptr) {
    uint64_t after = taken.index + 1;  // (a lane of its own: no other thread moved it since)
    taken.counter->compare_exchange_strong(after, taken.index, std::memory_order_relaxed);
  }
}

// One clock read as the tape will hold it: record cuts the real value to the millisecond,
// replay takes the next recorded value.
int64_t taped_read(Source source, int64_t real_ms) {
  const int index = index_of(source);
  int64_t value = real_ms;
  const bool after_wait = woke_from_wait;
  woke_from_wait = false;
  flush_held_read();
  Taken taken;
  if (config.mode == Mode::replay && config.clock_map != nullptr) {
    const int64_t last = last_read_real_ms[index];
    last_read_real_ms[index] = real_ms;
    const int64_t held_up_ms = last > 0 && real_ms > last ? real_ms - last : 0;
    const uint64_t lane = thread_lane(after_wait);
    value = tapedeck::preload::take(*config.clock_map, index, lane, held_up_ms, &taken,
                                    /*tree_held_up=*/false);
    // A lane keeps its own latest value, which may lie behind where this thread's own clock is
    // (a wait it skipped moved it on): a thread never sees its clock go back. (Without this, a
    // loop's turn after a skipped wait read the time before it and waited the same timer again.)
    value = std::max(value, last_seen_ms[index]);
    TAPEDECK_TRACE("read %s %lld stretch %llu%s held %lld%s site %p", index == 0 ? "wall" : "mono",
                   static_cast<long long>(value), static_cast<unsigned long long>(taken.stretch),
                   taken.recorded ? "" : " past", static_cast<long long>(held_up_ms),
                   after_wait ? " after wait" : "", read_site);
  }
  if (config.mode != Mode::replay) {
    TAPEDECK_TRACE("read %s %lld%s site %p", index == 0 ? "wall" : "mono",
                   static_cast<long long>(value), after_wait ? " after wait" : "", read_site);
  }
  last_seen_ms[index] = value;
  const Event event = after_wait
                          ? (source == Source::wall ? Event::wall_read_after_wait
                                                    : Event::monotonic_read_after_wait)
                          : (source == Source::wall ? Event::wall_read : Event::monotonic_read);
  if (!threads_keyed()) {  // (held back only where threads are keyed)
    queue_of_thread_now(event, value, 0);
    return value;
  }
  held_read.event = event;
  held_read.value = value;
  held_read.thread = thread_key();
  held_read.source = index;
  held_read.taken = taken;
  held_read.held = true;
  return value;
}

// What became of a sleep: slept out, skipped (replay), or interrupted by a signal.
enum class Sleep { slept, skipped, interrupted };

// A sleep a signal's handler came just before (signal_hooks.cpp): none of it slept, so none of
// it taped, in a recording and its replay alike.
Sleep interrupted_at_once(timespec relative, timespec* left) {
  if (left != nullptr) *left = relative;
  errno = EINTR;
  return Sleep::interrupted;
}

// Record: sleeps `relative` for real once the supervisor has been told. Signals are held while
// it is told and let in atomically with the sleep (ppoll with the caller's mask), so one that
// comes meanwhile interrupts the sleep at once, as it would have natively, rather than running
// its handler just before a sleep it then cannot end (a child sent SIGINT as it began a 30 s
// sleep slept 30 s). One whose handler ran while the clock read before the sleep was taped
// ends it at once (interrupted_at_once). `left`: what remains of it when interrupted.
Sleep recorded_sleep(uint64_t duration_ms, timespec relative, timespec* left) {
  sigset_t everything, original;
  sigfillset(&everything);
  pthread_sigmask(SIG_BLOCK, &everything, &original);
  if (signal_handled_since_previous_hook()) {
    pthread_sigmask(SIG_SETMASK, &original, nullptr);
    return interrupted_at_once(relative, left);
  }
  queue_of_thread(Event::sleep, static_cast<int64_t>(duration_ms), thread_key());
  sync_with_supervisor();
  timespec start{};
  ensure(real.clock_gettime, "clock_gettime")(CLOCK_MONOTONIC, &start);
  const int result = ensure(real.ppoll, "ppoll")(nullptr, 0, &relative, &original);
  const int error = errno;
  pthread_sigmask(SIG_SETMASK, &original, nullptr);
  if (result == 0 || error != EINTR) return Sleep::slept;
  if (left != nullptr) {
    timespec now{};
    ensure(real.clock_gettime, "clock_gettime")(CLOCK_MONOTONIC, &now);
    *left = from_ns(ns_of(relative) - (ns_of(now) - ns_of(start)));
  }
  errno = EINTR;
  return Sleep::interrupted;
}

// Records a sleep of `relative` and sleeps it (record), or skips it when the supervisor says so.
// Replay skips it once the supervisor says so (TreeEffects::timed_wait): at once when the
// recording has it here, otherwise once nothing else in the tree runs and no sooner deadline is
// pending. Until then it is slept for real a slice at a time, never longer than asked. A sleep
// the supervisor lets pass is taped by it then; one slept out for real is told as in a recording.
Sleep taped_sleep(uint64_t duration_ms, timespec relative, timespec* left = nullptr) {
  if (config.mode == Mode::replay && signal_handled_since_previous_hook()) {
    return interrupted_at_once(relative, left);  // as recorded_sleep ends it
  }
  if (config.mode == Mode::replay && duration_ms > 0) {
    uint64_t slept = 0;
    Reply reply = Reply::wait;
    while ((reply = ask_about_wait(duration_ms, /*sleep=*/true)) == Reply::busy &&
           slept < duration_ms) {
      const uint64_t slice = std::min(kSliceMs, duration_ms - slept);
      const timespec pause{static_cast<time_t>(slice / 1000),
                           static_cast<long>(slice % 1000) * 1'000'000};
      ensure(real.nanosleep, "nanosleep")(&pause, nullptr);
      slept += slice;
    }
    forget_real_wait();  // (slices slept while the tree was busy are not being held up)
    if (reply != Reply::ok && reply != Reply::wait) tell_wait_over();
    TAPEDECK_TRACE("sleep %llu after %llu: %s", static_cast<unsigned long long>(duration_ms),
                   static_cast<unsigned long long>(slept),
                   reply == Reply::ok ? "skipped" : "slept");
    if (reply == Reply::ok) {
      skip_clock(duration_ms);
      return Sleep::skipped;
    }
  }
  if (config.mode != Mode::replay) return recorded_sleep(duration_ms, relative, left);
  queue_of_thread(Event::sleep, static_cast<int64_t>(duration_ms), thread_key());
  // Replay waits until the supervisor has taken the sleep: it moves the clock to the stretch
  // of reads the recording made after it, which this thread is about to read.
  settle_with_supervisor();
  skip_clock(duration_ms);
  return Sleep::skipped;
}

void skip_clock(uint64_t duration_ms) {
  if (config.clock_map != nullptr) advance_from(*config.clock_map, last_seen_ms, duration_ms);
}

timespec file_time_now() {
  const int index = index_of(Source::wall);
  int64_t ms = last_seen_ms[index];
  if (ms == 0 && config.clock_map != nullptr) ms = config.clock_map->latest_ms[index].load();
  if (ms == 0) {
    timespec now{};
    ensure(real.clock_gettime, "clock_gettime")(CLOCK_REALTIME, &now);
    ms = floor_ms(now);
  }
  return from_ms(ms);
}

void stamp_written_file(int fd) {
  if (config.mode != Mode::replay) return;
  struct stat status {};
  if (fstat(fd, &status) != 0) return;
  const timespec now = file_time_now();
  const bool past_the_clock =
      status.st_mtim.tv_sec > now.tv_sec ||
      (status.st_mtim.tv_sec == now.tv_sec && status.st_mtim.tv_nsec > now.tv_nsec);
  if (!past_the_clock) return;
  const timespec times[2] = {{0, UTIME_OMIT}, now};
  ensure(real.futimens, "futimens")(fd, times);
}

int64_t wait_ends_ms(uint64_t duration_ms) {
  const int index = index_of(Source::monotonic);
  int64_t from = last_seen_ms[index];
  if (from == 0 && config.clock_map != nullptr) from = config.clock_map->latest_ms[index].load();
  return from + static_cast<int64_t>(duration_ms);
}

uint64_t ms_until(clockid_t id, const timespec& deadline) {
  const Source source = source_of(id);
  const int index = index_of(source == Source::none ? Source::monotonic : source);
  int64_t from = last_seen_ms[index];
  if (from == 0) {  // the deadline came from a clock read this library did not see
    timespec now{};
    ensure(real.clock_gettime, "clock_gettime")(id, &now);
    from = config.mode == Mode::replay && config.clock_map != nullptr
               ? config.clock_map->latest_ms[index].load()
               : floor_ms(now);
  }
  const int64_t until_ms = static_cast<int64_t>(ceil_ms(deadline));
  return until_ms > from ? static_cast<uint64_t>(until_ms - from) : 0;
}

void map_clock(const char* path) {
  const int fd = ensure(real.open, "open")(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  struct stat status;
  if (fstat(fd, &status) == 0 &&
      status.st_size >= static_cast<off_t>(sizeof(tapedeck::preload::ClockMap))) {
    // At a fixed address far below where mappings go, so that this one, which the recording
    // did not have, moves none of the program's (the addresses its threads and heap get are
    // mixed into seeds: OpenSSL's nonce holds its thread's).
    void* const kFarBelow = reinterpret_cast<void*>(uintptr_t{0x100000000000});
    void* mapped = mmap(kFarBelow, static_cast<size_t>(status.st_size), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
    if (mapped == MAP_FAILED) {
      mapped = mmap(nullptr, static_cast<size_t>(status.st_size), PROT_READ | PROT_WRITE,
                    MAP_SHARED, fd, 0);
    }
    auto* map = static_cast<tapedeck::preload::ClockMap*>(mapped);
    if (mapped != MAP_FAILED && map->magic == tapedeck::preload::ClockMap::kMagic) {
      config.clock_map = map;
    }
  }
  ensure(real.close, "close")(fd);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int clock_gettime(clockid_t id, struct timespec* ts) {
  const int result = ensure(real.clock_gettime, "clock_gettime")(id, ts);
  const Source source = source_of(id);
  if (result != 0 || source == Source::none || !recording_or_replaying() || ts == nullptr) {
    return result;
  }
  HookScope scope;
  if (trace_fd >= 0) read_site = __builtin_return_address(0);
  *ts = from_ms(taped_read(source, floor_ms(*ts)));
  return result;
}

int gettimeofday(struct timeval* tv, void* tz) {
  auto* real_gettimeofday =
      reinterpret_cast<int (*)(timeval*, void*)>(ensure(real.gettimeofday, "gettimeofday"));
  const int result = real_gettimeofday(tv, tz);
  if (result != 0 || tv == nullptr || !recording_or_replaying()) return result;
  HookScope scope;
  if (trace_fd >= 0) read_site = __builtin_return_address(0);
  const int64_t ms =
      taped_read(Source::wall, static_cast<int64_t>(tv->tv_sec) * 1000 + tv->tv_usec / 1000);
  tv->tv_sec = ms / 1000;
  tv->tv_usec = (ms % 1000) * 1000;
  return result;
}

time_t time(time_t* out) {
  time_t now = ensure(real.time, "time")(nullptr);
  if (recording_or_replaying()) {
    HookScope scope;
    // Taped from the precise wall clock: time() reads a coarse one, a tick behind, which just
    // past a second's turn says the second before a gettimeofday() made just earlier; a replay,
    // whose wall clock never goes back, would then answer the later second.
    timespec precise{};
    ensure(real.clock_gettime, "clock_gettime")(CLOCK_REALTIME, &precise);
    const int64_t real_ms =
        static_cast<int64_t>(precise.tv_sec) * 1000 + precise.tv_nsec / 1'000'000;
    now = static_cast<time_t>(taped_read(Source::wall, real_ms) / 1000);
  }
  if (out != nullptr) *out = now;
  return now;
}

int nanosleep(const struct timespec* request, struct timespec* remaining) {
  if (request != nullptr && recording_or_replaying()) {
    HookScope scope;
    const Sleep sleep = taped_sleep(ceil_ms(*request), *request, remaining);
    if (sleep == Sleep::interrupted) return -1;  // errno is EINTR, `remaining` what is left
    if (remaining != nullptr) *remaining = timespec{};
    return 0;
  }
  return ensure(real.nanosleep, "nanosleep")(request, remaining);
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec* request,
                    struct timespec* remaining) {
  const Source source = source_of(id);
  if (request != nullptr && source != Source::none && recording_or_replaying()) {
    HookScope scope;
    const bool absolute = (flags & TIMER_ABSTIME) != 0;
    const uint64_t duration_ms = absolute ? ms_until(id, *request) : ceil_ms(*request);
    // The real sleep lasts as long as asked: until the deadline on that clock, from now.
    timespec relative = *request;
    if (absolute) {
      timespec now{};
      ensure(real.clock_gettime, "clock_gettime")(id, &now);
      relative = from_ns(ns_of(*request) - ns_of(now));
    }
    const Sleep sleep = taped_sleep(duration_ms, relative, absolute ? nullptr : remaining);
    if (sleep == Sleep::interrupted) return EINTR;
    if (remaining != nullptr && !absolute) *remaining = timespec{};
    return 0;
  }
  return ensure(real.clock_nanosleep, "clock_nanosleep")(id, flags, request, remaining);
}

int usleep(useconds_t microseconds) {
  if (recording_or_replaying()) {
    HookScope scope;
    const timespec relative{static_cast<time_t>(microseconds / 1'000'000),
                            static_cast<long>(microseconds % 1'000'000) * 1000};
    const Sleep sleep = taped_sleep((static_cast<uint64_t>(microseconds) + 999) / 1000, relative);
    return sleep == Sleep::interrupted ? -1 : 0;
  }
  return ensure(real.usleep, "usleep")(microseconds);
}

unsigned int sleep(unsigned int seconds) {
  if (recording_or_replaying()) {
    HookScope scope;
    timespec left{};
    const Sleep sleep =
        taped_sleep(uint64_t{seconds} * 1000, timespec{static_cast<time_t>(seconds), 0}, &left);
    // sleep() says how many seconds were left, rounded up.
    return sleep == Sleep::interrupted
               ? static_cast<unsigned>(left.tv_sec + (left.tv_nsec > 0 ? 1 : 0))
               : 0;
  }
  return ensure(real.sleep, "sleep")(seconds);
}

}  // extern "C"
