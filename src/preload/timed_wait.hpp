// A wait with a timeout, the same in every hook that makes one (wait_hooks.cpp: poll, select,
// epoll; sync_wait_hooks.cpp: semaphores and condition variables).
//
// Record: a wait that timed out is the program's sleep as much as a sleep is, and is taped as
// one (Event::waited: a clock_sleep of its timeout, stamped where it ended). A wait that
// something ended is not taped: what ended it is (an answer, a subprocess's output, another
// thread's post).
// Replay: the wait first looks whether it would end at once (the same call with no timeout).
// If not, the supervisor says whether to skip it: at once when the recording's wait timed out at
// this point (its sleep is the recording's next record), otherwise once the rest of the tree is
// idle and no sooner deadline is pending (TreeEffects::timed_wait). A skipped wait is answered
// "timed out" and costs no wall time. Until then it waits for real, in slices, asking again after
// each, so that what ends it (an answer, another thread's post) still can. One that times out
// for real is taped as in a recording.
// The skip is told to the supervisor as a timeout (Event::waited) after a last look, so that an
// answer that arrived while it was asked is not passed over.
#pragma once

#include <unistd.h>

#include <cstdint>

#include "preload/interposer.hpp"
#include "preload/trace.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

// Whether a wait of `ms` is worth taping: a wait with a timeout, made by the program.
inline bool timed(int64_t ms) {
  return ms > 0 && recording_or_replaying();
}

// A wait that timed out (for real, or skipped in replay), in either mode: taped as the program's
// sleep. A replay's thread goes on only once the supervisor has taken it: it moves the clock to
// the stretch of reads the recording made after the wait, which this thread is about to read
// (told without an answer, the reads after the timer fired took the stretch before it, or a
// value past it: a Node timer of 500 ms read the wall clock 2 to 4 ms late).
inline void note_timed_out(uint64_t ms) {
  HookScope scope;
  queue_of_thread(Event::waited, static_cast<int64_t>(ms), thread_key());
  if (config.mode == Mode::replay) {
    settle_with_supervisor();
  } else {
    sync_with_supervisor();
  }
}

// Replay: the supervisor's word on a wait of `ms` that found nothing ready, or on a sleep of `ms`
// (which it tapes when it answers ok; a sleep orders the tree's effects as a request does).
inline Reply ask_about_wait(uint64_t ms, bool sleep = false) {
  HookScope scope;
  char buffer[48];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::timed_wait));
  tapedeck::wire::put_int(frame, ms);
  tapedeck::wire::put_int(frame, static_cast<int32_t>(gettid()));
  tapedeck::wire::put_int(frame, wait_ends_ms(ms));
  tapedeck::wire::put_int(frame, static_cast<uint8_t>(sleep ? 1 : 0));
  tapedeck::wire::put_int(frame, thread_key());
  Answer answer;
  if (!ask(frame, answer, /*settle=*/sleep)) return Reply::wait;
  return answer.reply;
}

// While an LLM call is under way or another thread of the tree runs, the supervisor answers
// `busy` (or `hold`); the caller then waits this long for real and asks again.
constexpr uint64_t kSliceMs = 20;
// A held wait (Reply::hold: the answer of an LLM call ends it) times out for real no sooner than
// this long past its own length: a client that stopped reading its answer must not hang the
// replay.
constexpr uint64_t kHeldAtMostMs = 2000;

// A wait of `ms` milliseconds. `wait(t)` makes the real call with a timeout of t ms (0: only
// look) and answers > 0 when the wait ended (something ready, a post, a signal), 0 when it timed
// out, < 0 on an error. Record: made as asked, and taped when it timed out. Replay: see above.
template <typename Wait>
int timed_wait(uint64_t ms, Wait&& wait) {
  struct Forget {
    ~Forget() { forget_real_wait(); }
  } forget;
  if (config.mode != Mode::replay) {
    flush_held_read();  // (a read held back must not cross the wait: the stretch may end in it)
    const int result = wait(ms);
    TAPEDECK_TRACE("wait %llu: %s", static_cast<unsigned long long>(ms),
                   result == 0 ? "timed out" : "ended");
    if (result == 0) note_timed_out(ms);
    return result;
  }
  uint64_t waited = 0;
  struct Over {  // a wait asked about and not skipped is over: the supervisor hears at once
    bool asked = false;
    ~Over() {
      if (asked) tell_wait_over();
    }
  } over;
  for (;;) {
    int ready = wait(0);
    if (ready != 0) return ready;
    const Reply reply = ask_about_wait(ms);
    over.asked = reply != Reply::ok && reply != Reply::wait;
    TAPEDECK_TRACE("wait %llu after %llu: %s", static_cast<unsigned long long>(ms),
                   static_cast<unsigned long long>(waited),
                   reply == Reply::ok     ? "ok"
                   : reply == Reply::busy ? "busy"
                   : reply == Reply::hold ? "hold"
                                          : "wait");
    if (reply == Reply::ok) {
      // Once more: an answer the proxy finished while it was asked is readable by now.
      if ((ready = wait(0)) != 0) return ready;
      note_timed_out(ms);  // the supervisor tapes the recording's sleep and steps past it
      skip_clock(ms);
      return 0;
    }
    const bool held = reply == Reply::hold && waited < ms + kHeldAtMostMs;
    const uint64_t left = waited < ms ? ms - waited : 0;
    if (!held && (reply != Reply::busy || left <= kSliceMs)) {
      const int result = wait(left);
      TAPEDECK_TRACE("wait %llu: waited out %s", static_cast<unsigned long long>(ms),
                     result == 0 ? "timed out" : "ended");
      if (result == 0) {  // a real timeout: taped as in a recording, the clock at its deadline
        note_timed_out(ms);
        skip_clock(ms);
      }
      return result;
    }
    const int result = wait(kSliceMs);
    if (result != 0) return result;
    waited += kSliceMs;
  }
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
