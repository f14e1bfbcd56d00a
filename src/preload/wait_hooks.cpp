// Waits with a timeout on descriptors: poll, ppoll, select, pselect, epoll_wait, epoll_pwait.
// An event loop (asyncio, libuv) sleeps in them: `asyncio.sleep(1)` is an epoll_wait that times
// out. How such a wait is taped and replayed: timed_wait.hpp. Waits with no timeout, or none to
// speak of (zero, a negative one), pass straight through. Any wait that may block (all but a
// zero timeout) marks the thread's next clock read as the start of a loop's turn
// (note_woke_from_wait).
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>

#include <cstdint>

#include "preload/clock_units.hpp"
#include "preload/interposer.hpp"
#include "preload/timed_wait.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

namespace {

uint64_t ms_of(const timespec& timeout) {
  return clock_units::ceil_ms(timeout);
}

uint64_t ms_of(const timeval& timeout) {
  return clock_units::ceil_ms(timespec{timeout.tv_sec, timeout.tv_usec * 1000});
}

timespec span_of(uint64_t ms) {
  return timespec{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
}

timeval interval_of(uint64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000) * 1000};
}

// select's sets as the program gave them, put back before each call.
class DescriptorSets {
 public:
  DescriptorSets(fd_set* reads, fd_set* writes, fd_set* errors) : sets_{reads, writes, errors} {
    for (int i = 0; i < 3; ++i) {
      if (sets_[i] != nullptr) kept_[i] = *sets_[i];
    }
  }
  void restore() {
    for (int i = 0; i < 3; ++i) {
      if (sets_[i] != nullptr) *sets_[i] = kept_[i];
    }
  }

 private:
  fd_set* sets_[3];
  fd_set kept_[3];
};

// Makes `call`, a wait of `ms` (negative: none). When the wait may have blocked, the real time it
// took is forgotten, and on the process's main thread, whose loop is the program's (asyncio's,
// Node's), its next clock read starts a turn. A runtime's own loops on other threads (Node's
// delayed-task thread) wake at other moments in a replay: counted as turns, they moved the main
// loop's reads.
template <typename Call>
int waking(int64_t ms, Call&& call) {
  const int result = call();
  if (ms != 0 && recording_or_replaying()) {
    forget_real_wait();
    if (gettid() == getpid()) note_woke_from_wait();
  }
  return result;
}

}  // namespace

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int poll(struct pollfd* fds, nfds_t count, int timeout) {
  auto* real_poll = ensure(real.poll, "poll");
  return waking(timeout, [&] {
    if (!timed(timeout)) return real_poll(fds, count, timeout);
    return timed_wait(static_cast<uint64_t>(timeout),
                      [&](uint64_t ms) { return real_poll(fds, count, static_cast<int>(ms)); });
  });
}

int ppoll(struct pollfd* fds, nfds_t count, const struct timespec* timeout, const sigset_t* mask) {
  auto* real_ppoll = ensure(real.ppoll, "ppoll");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
  return waking(ms, [&] {
    if (!timed(ms)) return real_ppoll(fds, count, timeout, mask);
    return timed_wait(static_cast<uint64_t>(ms), [&](uint64_t wait_ms) {
      // The whole wait as asked, to the nanosecond; a part of it in whole milliseconds.
      const timespec part = wait_ms == static_cast<uint64_t>(ms) ? *timeout : span_of(wait_ms);
      return real_ppoll(fds, count, &part, mask);
    });
  });
}

int select(int count, fd_set* reads, fd_set* writes, fd_set* errors, struct timeval* timeout) {
  auto* real_select = ensure(real.select, "select");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
  return waking(ms, [&] {
    if (!timed(ms)) return real_select(count, reads, writes, errors, timeout);
    // Each look changes the sets: the wait starts from them as they were.
    DescriptorSets sets(reads, writes, errors);
    const timeval asked = *timeout;
    const int result = timed_wait(static_cast<uint64_t>(ms), [&](uint64_t wait_ms) {
      sets.restore();
      *timeout = wait_ms == static_cast<uint64_t>(ms) ? asked : interval_of(wait_ms);
      return real_select(count, reads, writes, errors, timeout);
    });
    if (result == 0) *timeout = timeval{};  // as after a timeout
    return result;
  });
}

int pselect(int count, fd_set* reads, fd_set* writes, fd_set* errors,
            const struct timespec* timeout, const sigset_t* mask) {
  auto* real_pselect = ensure(real.pselect, "pselect");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
  return waking(ms, [&] {
    if (!timed(ms)) return real_pselect(count, reads, writes, errors, timeout, mask);
    DescriptorSets sets(reads, writes, errors);
    return timed_wait(static_cast<uint64_t>(ms), [&](uint64_t wait_ms) {
      sets.restore();
      const timespec part = wait_ms == static_cast<uint64_t>(ms) ? *timeout : span_of(wait_ms);
      return real_pselect(count, reads, writes, errors, &part, mask);
    });
  });
}

int epoll_wait(int epoll, struct epoll_event* events, int most, int timeout) {
  auto* real_wait = ensure(real.epoll_wait, "epoll_wait");
  return waking(timeout, [&] {
    if (!timed(timeout)) return real_wait(epoll, events, most, timeout);
    return timed_wait(static_cast<uint64_t>(timeout), [&](uint64_t ms) {
      return real_wait(epoll, events, most, static_cast<int>(ms));
    });
  });
}

int epoll_pwait(int epoll, struct epoll_event* events, int most, int timeout,
                const sigset_t* mask) {
  auto* real_wait = ensure(real.epoll_pwait, "epoll_pwait");
  return waking(timeout, [&] {
    if (!timed(timeout)) return real_wait(epoll, events, most, timeout, mask);
    return timed_wait(static_cast<uint64_t>(timeout), [&](uint64_t ms) {
      return real_wait(epoll, events, most, static_cast<int>(ms), mask);
    });
  });
}

}  // extern "C"
