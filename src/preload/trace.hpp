// A trace of the replay's timing decisions, for a developer chasing a replay that serves another
// time than the recording's: TAPEDECK_TRACE=PREFIX makes every process of the tree append one
// line per clock read, wait and sleep to PREFIX.<pid>: the real monotonic time in µs, the thread,
// what it did and what it was answered (the stretch a read took from, the value, whether it was
// past the stretch's recorded reads). Off (one load and a branch) unless the variable is set.
#pragma once

#include <cstdarg>

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

extern int trace_fd;  // -1: off

// Opens PREFIX.<pid> when TAPEDECK_TRACE is set; again in a forked child (its own file).
void open_trace();
void trace_line(const char* format, ...) __attribute__((format(printf, 1, 2)));

#define TAPEDECK_TRACE(...)                                                               \
  do {                                                                                    \
    if (::tapedeck::preload::trace_fd >= 0) ::tapedeck::preload::trace_line(__VA_ARGS__); \
  } while (0)

}  // namespace tapedeck::preload
#pragma GCC visibility pop
