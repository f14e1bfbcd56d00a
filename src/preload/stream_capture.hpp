// A recorded subprocess's stdout and stderr run through pipes that tapedeck-exec's teller reads
// (passing the bytes on and keeping a copy). Shared by the preload's exec hook and the shim.
#pragma once

#include <fcntl.h>
#include <unistd.h>

namespace tapedeck::stream_capture {

struct Capture {
  int read_end = -1;
  int write_end = -1;
};

// `fd` moved above the standard streams (a process that closed stdin gets a pipe at 0 otherwise).
inline int above_standard(int fd, bool close_on_exec) {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = ::fcntl(fd, close_on_exec ? F_DUPFD_CLOEXEC : F_DUPFD, STDERR_FILENO + 1);
  ::close(fd);
  return moved;
}

// A pipe for standard stream `stream`; none (both -1) when the stream is closed here, so the
// subprocess gets it closed as it would natively. False when a pipe could not be made.
inline bool open_capture(int stream, bool close_on_exec, Capture& capture) {
  capture = {};
  if (::fcntl(stream, F_GETFD) < 0) return true;
  int ends[2];
  if (::pipe2(ends, close_on_exec ? O_CLOEXEC : 0) != 0) return false;
  capture.read_end = above_standard(ends[0], close_on_exec);
  capture.write_end = above_standard(ends[1], close_on_exec);
  return capture.read_end >= 0 && capture.write_end >= 0;
}

inline void close_end(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// In the subprocess: its stream becomes the pipe's write end.
inline void attach(Capture& capture, int stream) {
  if (capture.write_end < 0) return;
  ::dup2(capture.write_end, stream);
  close_end(capture.write_end);
}

}  // namespace tapedeck::stream_capture
