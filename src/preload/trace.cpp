#include "preload/trace.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

int trace_fd = -1;
constexpr int kTraceFdFloor = 900;

void open_trace() {
  const char* prefix = getenv("TAPEDECK_TRACE");
  if (prefix == nullptr || prefix[0] == '\0') return;
  if (trace_fd >= 0) ensure(real.close, "close")(trace_fd);
  char path[kPathMax];
  snprintf(path, sizeof path, "%s.%d", prefix, static_cast<int>(getpid()));
  trace_fd = ensure(real.open, "open")(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  // Far above the descriptors a program hands its children: a forked child opens its trace
  // before its exec, and a low one became the IPC descriptor Node's child_process puts there
  // (dup2 onto 3): the trace's lines went down Node's IPC channel, and its parent failed.
  if (trace_fd >= 0 && trace_fd < kTraceFdFloor) {
    const int high = fcntl(trace_fd, F_DUPFD_CLOEXEC, kTraceFdFloor);
    if (high >= 0) {
      ensure(real.close, "close")(trace_fd);
      trace_fd = high;
    }
  }
}

void trace_line(const char* format, ...) {
  char line[256];
  timespec now{};
  ensure(real.clock_gettime, "clock_gettime")(CLOCK_MONOTONIC, &now);
  int length = snprintf(line, sizeof line, "%lld %d ",
                        static_cast<long long>(now.tv_sec) * 1'000'000 + now.tv_nsec / 1000,
                        static_cast<int>(gettid()));
  va_list arguments;
  va_start(arguments, format);
  length +=
      vsnprintf(line + length, sizeof line - static_cast<size_t>(length) - 1, format, arguments);
  va_end(arguments);
  if (length > static_cast<int>(sizeof line) - 1) length = sizeof line - 1;
  line[length++] = '\n';
  ensure(real.write, "write")(trace_fd, line, static_cast<size_t>(length));
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
