#include "supervisor/output_capture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "tape/content_hash.hpp"

namespace tapedeck::supervisor {

struct OutputCapture::Relay {
  int read_fd = -1;   // the pipe's read end, or the terminal's master side
  int original = -1;  // where the output was going
  int wake[2] = {-1, -1};
  CapturedOutput output;
  detail::ContentHasher hasher;
  std::thread thread;
  std::atomic<bool> done{false};

  ~Relay() {
    for (int fd : {read_fd, original, wake[0], wake[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }

  void run() {
    char buffer[1 << 16];
    while (true) {
      pollfd ready[2] = {{read_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
      if (::poll(ready, 2, -1) < 0 && errno != EINTR) break;
      if (ready[1].revents != 0) break;  // told to stop
      if (ready[0].revents == 0) continue;
      const ssize_t got = ::read(read_fd, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;  // end of stream; a terminal's master reads EIO once every slave closed
      for (ssize_t at = 0; at < got;) {
        const ssize_t wrote = ::write(original, buffer + at, static_cast<size_t>(got - at));
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) break;  // the original went away: keep capturing regardless
        at += wrote;
      }
      hasher.update(std::string_view(buffer, static_cast<size_t>(got)));
      const size_t room = CapturedOutput::kKeptBytes - output.head.size();
      output.head.append(buffer, std::min(room, static_cast<size_t>(got)));
      output.size += static_cast<uint64_t>(got);
    }
    output.content_hash = hasher.finish();
    output.complete = output.size == output.head.size();
    done = true;
  }
};

OutputCapture::OutputCapture() {
  for (int index = 0; index < 2; ++index) {
    const int fd = index + 1;
    auto relay = std::make_unique<Relay>();
    relay->original = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (relay->original < 0) continue;  // closed: the program gets it closed too
    if (::isatty(fd)) {
      // A terminal stays one: a pseudo-terminal with the real one's settings and size, output
      // passed through as written (the real terminal does its own newline translation).
      relay->read_fd = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (relay->read_fd < 0 || ::grantpt(relay->read_fd) != 0 || ::unlockpt(relay->read_fd) != 0) {
        throw std::runtime_error(std::string("a terminal for the program: ") +
                                 std::strerror(errno));
      }
      write_end_[index] = ::open(::ptsname(relay->read_fd), O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (write_end_[index] < 0) {
        throw std::runtime_error(std::string("a terminal for the program: ") +
                                 std::strerror(errno));
      }
      termios settings{};
      if (::tcgetattr(fd, &settings) == 0) {
        settings.c_oflag &= ~static_cast<tcflag_t>(OPOST);
        ::tcsetattr(write_end_[index], TCSANOW, &settings);
      }
      winsize size{};
      if (::ioctl(fd, TIOCGWINSZ, &size) == 0) ::ioctl(write_end_[index], TIOCSWINSZ, &size);
    } else {
      int ends[2];
      if (::pipe2(ends, O_CLOEXEC) != 0) {
        throw std::runtime_error(std::string("a pipe for the program's output: ") +
                                 std::strerror(errno));
      }
      relay->read_fd = ends[0];
      write_end_[index] = ends[1];
    }
    if (::pipe2(relay->wake, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    Relay* raw = relay.get();
    relay->thread = std::thread([raw] { raw->run(); });
    relays_[index] = std::move(relay);
  }
}

OutputCapture::~OutputCapture() {
  finish(std::chrono::milliseconds(0));
  for (int& fd : write_end_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void OutputCapture::started() {
  for (int& fd : write_end_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

void OutputCapture::finish(std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& relay : relays_) {
    if (!relay || !relay->thread.joinable()) continue;
    while (!relay->done && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const char stop = 's';
    if (!relay->done) {
      ssize_t ignored = ::write(relay->wake[1], &stop, 1);
      (void)ignored;
    }
    relay->thread.join();
  }
}

const CapturedOutput& OutputCapture::stdout_output() const {
  static const CapturedOutput kNone{};
  return relays_[0] ? relays_[0]->output : kNone;
}

const CapturedOutput& OutputCapture::stderr_output() const {
  static const CapturedOutput kNone{};
  return relays_[1] ? relays_[1]->output : kNone;
}

}  // namespace tapedeck::supervisor
