// Waits with a deadline on a semaphore or a condition variable: sem_timedwait, sem_clockwait,
// pthread_cond_timedwait, pthread_cond_clockwait. A thread sleeps in them when it waits for
// another "at most so long": Python's threading.Event.wait(timeout), Condition.wait, Timer and
// queue.get(timeout=) are semaphore waits; C++'s condition_variable::wait_for is a condition
// wait. Taped and replayed as timed_wait.hpp says: a wait that timed out is the program's sleep
// (replay skips it when the recording's did time out there), one another thread ended is not.
//
// The deadline is absolute, on the program's clock; its length is taken from the last value that
// clock gave this thread (ms_until), as for clock_nanosleep. A recording's real wait ends at the
// program's deadline rounded up to the millisecond (recorded_deadline); a replay's lasts that
// length from the real present (real_deadline).
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

#include <cstdint>

#include "preload/clock_units.hpp"
#include "preload/interposer.hpp"
#include "preload/timed_wait.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

namespace {

// The real clock `id` plus `ms`: the deadline of a replay's real wait of `ms`. A replay's program
// computed its deadline on the replayed clock, which runs at no fixed offset from the real one (a
// monotonic clock counts from each machine's boot): the real wait lasts as long as the program's
// clock says it asked, from the real present.
timespec real_deadline(clockid_t id, uint64_t ms) {
  timespec now{};
  ensure(real.clock_gettime, "clock_gettime")(id, &now);
  now.tv_sec += static_cast<time_t>(ms / 1000);
  now.tv_nsec += static_cast<long>(ms % 1000) * 1'000'000;
  if (now.tv_nsec >= 1'000'000'000) {
    now.tv_nsec -= 1'000'000'000;
    ++now.tv_sec;
  }
  return now;
}

// The deadline a recording's real wait gets: the program's own, rounded up to the millisecond.
// A recording's program reads the real clock cut to the millisecond, so when the real clock
// reaches its deadline its own clock may still be short of it, and it waits again (Python's
// queue.get loops so, to the next millisecond, taping each wait). At the rounded-up deadline the
// program's clock has reached its deadline.
timespec recorded_deadline(const timespec& deadline) {
  return clock_units::from_ms(static_cast<int64_t>(clock_units::ceil_ms(deadline)));
}

// The deadline of the real call for a wait of `ms` the program asked until `deadline`.
timespec real_wait_deadline(clockid_t id, const timespec& deadline, uint64_t ms) {
  return config.mode == Mode::replay ? real_deadline(id, ms) : recorded_deadline(deadline);
}

// The clock a condition variable's deadlines are on. glibc keeps it in bit 1 of __wrefs
// (pthread_condattr_setclock; 0 = CLOCK_REALTIME), as it has since its condition variables were
// rewritten (2.25); the public pthread_cond_t shows the field.
clockid_t clock_of(const pthread_cond_t* cond) {
  constexpr unsigned kMonotonicBit = 2;
  return (cond->__data.__wrefs & kMonotonicBit) != 0 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

// A wait on clock `id` until `deadline`, on a semaphore or a condition variable.
// `real_wait(until)` makes the real call; `look()` the real call that does not wait. Waits
// shorter than `shortest_taped_ms` run untaped.
// Answers 1 when the wait ended, 0 when it timed out, -1 with `error` set otherwise.
template <typename RealWait, typename Look>
int deadline_wait(clockid_t id, const timespec* deadline, uint64_t shortest_taped_ms,
                  RealWait&& real_wait, Look&& look, int& error) {
  const uint64_t ms = ms_until(id, *deadline);
  // A condition wait this short is a hand-over: the read that computed its deadline is no input.
  if (ms < shortest_taped_ms && shortest_taped_ms > 1 && recording_or_replaying()) {
    HookScope scope;
    drop_held_read(id);
  }
  if (ms < shortest_taped_ms || !timed(static_cast<int64_t>(ms))) {
    const timespec until = real_wait_deadline(id, *deadline, ms);
    return real_wait(&until, error);
  }
  return timed_wait(ms, [&](uint64_t wait_ms) {
    if (wait_ms == 0) return look(error);
    // A recording waits once, for all of it; a replay may wait a part of it.
    const timespec until = real_wait_deadline(id, *deadline, wait_ms);
    return real_wait(&until, error);
  });
}

// sem_*wait's way of answering (0, or -1 with errno) as deadline_wait's.
int semaphore_outcome(int result, int& error) {
  if (result == 0) return 1;
  error = errno;
  return error == ETIMEDOUT || error == EAGAIN ? 0 : -1;
}

// ... and back.
int semaphore_answer(int outcome, int error) {
  if (outcome > 0) return 0;
  errno = outcome == 0 ? ETIMEDOUT : error;
  return -1;
}

// pthread_cond_*wait's way of answering (0 or an error number) as deadline_wait's.
int condition_outcome(int result, int& error) {
  if (result == 0) return 1;
  error = result;
  return result == ETIMEDOUT ? 0 : -1;
}

int condition_answer(int outcome, int error) {
  return outcome > 0 ? 0 : outcome == 0 ? ETIMEDOUT : error;
}

bool taped_clock(clockid_t id) {
  return clock_units::source_of(id) != clock_units::Source::none;
}

// A condition wait this short is a hand-over between threads, not a sleep: CPython's GIL waits
// 5 ms (its switch interval) for the holder to let go, and taping those would fill a busy
// threaded program's tape with waits no two runs make alike. Shorter ones run untaped.
constexpr uint64_t kShortestTapedConditionWaitMs = 10;

// A semaphore wait; `wait_until(until)` is the real call (0, or -1 with errno).
template <typename WaitUntil>
int semaphore_wait(sem_t* sem, clockid_t id, const timespec* deadline, WaitUntil&& wait_until) {
  int error = 0;
  const int outcome = deadline_wait(
      id, deadline, 1,
      [&](const timespec* until, int& e) { return semaphore_outcome(wait_until(until), e); },
      [&](int& e) { return semaphore_outcome(sem_trywait(sem), e); }, error);
  return semaphore_answer(outcome, error);
}

// A condition wait; `wait_until(until)` is the real call (0 or an error number). A look is a
// wait until the clock's present: it lets the mutex go and takes it back, and finds a signal only
// if one came meanwhile, which is all a condition variable ever promises.
template <typename WaitUntil>
int condition_wait(clockid_t id, const timespec* deadline, WaitUntil&& wait_until) {
  int error = 0;
  auto wait = [&](const timespec* until, int& e) {
    return condition_outcome(wait_until(until), e);
  };
  const int outcome = deadline_wait(
      id, deadline, kShortestTapedConditionWaitMs, wait,
      [&](int& e) {
        const timespec now = real_deadline(id, 0);
        return wait(&now, e);
      },
      error);
  return condition_answer(outcome, error);
}

}  // namespace

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int sem_timedwait(sem_t* sem, const struct timespec* deadline) {
  auto* real_wait = ensure(real.sem_timedwait, "sem_timedwait");
  if (deadline == nullptr || !recording_or_replaying()) return real_wait(sem, deadline);
  return semaphore_wait(sem, CLOCK_REALTIME, deadline,
                        [&](const timespec* until) { return real_wait(sem, until); });
}

int sem_clockwait(sem_t* sem, clockid_t id, const struct timespec* deadline) {
  auto* real_wait = ensure(real.sem_clockwait, "sem_clockwait");
  if (deadline == nullptr || !taped_clock(id) || !recording_or_replaying()) {
    return real_wait(sem, id, deadline);
  }
  return semaphore_wait(sem, id, deadline,
                        [&](const timespec* until) { return real_wait(sem, id, until); });
}

int pthread_cond_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex,
                           const struct timespec* deadline) {
  auto* real_wait = ensure(real.pthread_cond_timedwait, "pthread_cond_timedwait");
  if (deadline == nullptr || !recording_or_replaying()) return real_wait(cond, mutex, deadline);
  return condition_wait(clock_of(cond), deadline,
                        [&](const timespec* until) { return real_wait(cond, mutex, until); });
}

int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t id,
                           const struct timespec* deadline) {
  auto* real_wait = ensure(real.pthread_cond_clockwait, "pthread_cond_clockwait");
  if (deadline == nullptr || !taped_clock(id) || !recording_or_replaying()) {
    return real_wait(cond, mutex, id, deadline);
  }
  return condition_wait(id, deadline,
                        [&](const timespec* until) { return real_wait(cond, mutex, id, until); });
}

}  // extern "C"
