// Waits with a timeout: poll, ppoll, select, pselect, epoll_wait, epoll_pwait. An event loop
// (asyncio, libuv) sleeps in them: `asyncio.sleep(1)` is an epoll_wait that times out.
//
// Record: a wait that timed out is the program's sleep as much as a sleep is, and is taped as
// one (Event::waited: a clock_sleep of its timeout, stamped where it ended). A wait that
// something ended is not taped: what ended it is (an answer, a subprocess's output).
// Replay: the wait first looks whether anything is ready (the same call with no timeout). If
// not, the supervisor says whether the recording's wait timed out at this point (its sleep is
// the recording's next record); then the wait is answered "timed out" at once and costs no wall
// time. Otherwise it waits for real: what ended the recording's wait is still to come (while an
// LLM call is under way, in slices, asking again after each). One that times out for real is
// taped as in a recording.
// The skip is told to the supervisor as a timeout (Event::waited) after a last look, so that an
// answer that arrived while it was asked is not passed over.
// Waits with no timeout, or none to speak of (zero, a negative one), pass straight through.
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include <cstdint>

#include "preload/clock_units.hpp"
#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

namespace {

// Whether a wait of `ms` is worth taping: a wait with a timeout, made by the program.
bool timed(int64_t ms) {
  return ms > 0 && recording_or_replaying();
}

// A wait that timed out for real, in either mode: taped as the program's sleep.
void note_timed_out(uint64_t ms) {
  HookScope scope;
  queue_event(Event::waited, static_cast<int64_t>(ms));
  sync_with_supervisor();
}

// Replay: the supervisor's word on a wait of `ms` that found nothing ready.
Reply ask_about_wait(uint64_t ms) {
  HookScope scope;
  char buffer[32];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::timed_wait));
  tapedeck::wire::put_int(frame, ms);
  Answer answer;
  if (!ask(frame, answer, /*settle=*/false)) return Reply::wait;
  return answer.reply;
}

// A wait of `ms` milliseconds; `wait(t)` makes the real call with a timeout of t ms (0: only
// look) and answers what it answers. Record: made as asked, and taped when it timed out.
// Replay: see the heading.
template <typename Wait>
int timed_wait(uint64_t ms, Wait&& wait) {
  if (config.mode != Mode::replay) {
    const int result = wait(ms);
    if (result == 0) note_timed_out(ms);
    return result;
  }
  constexpr uint64_t kSliceMs = 20;  // while an LLM call is under way
  uint64_t waited = 0;
  for (;;) {
    int ready = wait(0);
    if (ready != 0) return ready;
    const Reply reply = ask_about_wait(ms);
    if (reply == Reply::ok) {
      // Once more: an answer the proxy finished while it was asked is readable by now.
      if ((ready = wait(0)) != 0) return ready;
      note_timed_out(ms);  // the supervisor tapes the recording's sleep and steps past it
      if (config.clock_map != nullptr) tapedeck::preload::advance(*config.clock_map, ms);
      return 0;
    }
    const uint64_t left = ms - waited;
    if (reply != Reply::busy || left <= kSliceMs) {
      const int result = wait(left);
      if (result == 0) note_timed_out(ms);  // a real timeout: taped as in a recording
      return result;
    }
    const int result = wait(kSliceMs);
    if (result != 0) return result;
    waited += kSliceMs;
  }
}

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

}  // namespace

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int poll(struct pollfd* fds, nfds_t count, int timeout) {
  auto* real_poll = ensure(real.poll, "poll");
  if (!timed(timeout)) return real_poll(fds, count, timeout);
  return timed_wait(static_cast<uint64_t>(timeout),
                    [&](uint64_t ms) { return real_poll(fds, count, static_cast<int>(ms)); });
}

int ppoll(struct pollfd* fds, nfds_t count, const struct timespec* timeout, const sigset_t* mask) {
  auto* real_ppoll = ensure(real.ppoll, "ppoll");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
  if (!timed(ms)) return real_ppoll(fds, count, timeout, mask);
  return timed_wait(static_cast<uint64_t>(ms), [&](uint64_t wait_ms) {
    // The whole wait as asked, to the nanosecond; a part of it in whole milliseconds.
    const timespec part = wait_ms == static_cast<uint64_t>(ms) ? *timeout : span_of(wait_ms);
    return real_ppoll(fds, count, &part, mask);
  });
}

int select(int count, fd_set* reads, fd_set* writes, fd_set* errors, struct timeval* timeout) {
  auto* real_select = ensure(real.select, "select");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
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
}

int pselect(int count, fd_set* reads, fd_set* writes, fd_set* errors,
            const struct timespec* timeout, const sigset_t* mask) {
  auto* real_pselect = ensure(real.pselect, "pselect");
  const int64_t ms = timeout == nullptr ? -1 : static_cast<int64_t>(ms_of(*timeout));
  if (!timed(ms)) return real_pselect(count, reads, writes, errors, timeout, mask);
  DescriptorSets sets(reads, writes, errors);
  return timed_wait(static_cast<uint64_t>(ms), [&](uint64_t wait_ms) {
    sets.restore();
    const timespec part = wait_ms == static_cast<uint64_t>(ms) ? *timeout : span_of(wait_ms);
    return real_pselect(count, reads, writes, errors, &part, mask);
  });
}

int epoll_wait(int epoll, struct epoll_event* events, int most, int timeout) {
  auto* real_wait = ensure(real.epoll_wait, "epoll_wait");
  if (!timed(timeout)) return real_wait(epoll, events, most, timeout);
  return timed_wait(static_cast<uint64_t>(timeout), [&](uint64_t ms) {
    return real_wait(epoll, events, most, static_cast<int>(ms));
  });
}

int epoll_pwait(int epoll, struct epoll_event* events, int most, int timeout,
                const sigset_t* mask) {
  auto* real_wait = ensure(real.epoll_pwait, "epoll_pwait");
  if (!timed(timeout)) return real_wait(epoll, events, most, timeout, mask);
  return timed_wait(static_cast<uint64_t>(timeout), [&](uint64_t ms) {
    return real_wait(epoll, events, most, static_cast<int>(ms), mask);
  });
}

}  // extern "C"
