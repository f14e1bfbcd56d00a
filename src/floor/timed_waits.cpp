// Runtime::go, replay: a timed epoll wait is where Go's runtime sleeps until its next timer.
// It is held while other notifications are served; when its grace is over with nothing ready
// on its epoll set, no call of the program in between and every other thread asleep, it is
// answered with no events and the runtime's clock moves by its timeout (see floor.hpp).
#include <errno.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <seccomp.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "floor/floor.hpp"
#include "floor/process_access.hpp"

namespace tapedeck::floor {

namespace {

int64_t now_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1'000'000;
}

void respond(int listener, uint64_t id, bool skip) {
  seccomp_notif_resp response{};
  response.id = id;
  response.flags = skip ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;  // skipped: 0 events
  seccomp_notify_respond(listener, &response);                   // ENOENT: the thread is gone
}

}  // namespace

// A request on its way to the LLM proxy that it has not taken yet (a connection not accepted,
// bytes not read): the wait is for its answer. Or a connection process `process` is still
// making: the wait is for it to open (on a loaded machine the loopback handshake may take longer
// than a wait's grace, and a dial's deadline passed in the skip).
bool Warden::network_in_motion(pid_t process) const {
  if (policy_.proxy_port != 0) {
    for (const TcpSocket& socket : tcp_sockets_on(policy_.proxy_port)) {
      if (socket.receive_queue != 0) return true;
    }
  }
  return connecting({process});
}

bool Warden::park_wait(const seccomp_notif& request, seccomp_notif_resp& response) {
  response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  const auto timeout = static_cast<int>(request.data.args[3] & 0xffffffff);
  if (timeout <= 0 || !services_->waits_are_virtual()) return true;
  // A copy of the epoll descriptor: polling it says whether events are ready, consuming none.
  const auto pid = static_cast<pid_t>(request.pid);
  // pidfd_open takes a process, not one of its threads; the threads share its descriptors.
  const pid_t process = process_of(pid);
  if (process == 0) return true;
  const int handle = static_cast<int>(::syscall(SYS_pidfd_open, process, 0));
  if (handle < 0) return true;
  const int epoll = static_cast<int>(
      ::syscall(SYS_pidfd_getfd, handle, static_cast<int>(request.data.args[0]), 0));
  ::close(handle);
  if (epoll < 0) return true;
  parked_.push_back({request.id, pid, process, epoll, timeout, now_ms()});
  return false;
}

void Warden::release_parked_waits() {
  for (const ParkedWait& wait : parked_) {
    respond(listener_, wait.id, false);
    if (services_ != nullptr) services_->wait_runs(wait.pid);
    ::close(wait.epoll);
  }
  parked_.clear();
}

int Warden::next_tick_ms() const {
  if (parked_.empty()) return -1;
  int64_t soonest = INT64_MAX;
  for (const ParkedWait& wait : parked_) soonest = std::min(soonest, wait.since_ms + kGraceMs);
  return static_cast<int>(std::clamp<int64_t>(soonest - now_ms(), 0, kGraceMs));
}

void Warden::tick() {
  const int64_t now = now_ms();
  std::erase_if(parked_, [&](ParkedWait& wait) {
    pollfd ready{wait.epoll, POLLIN, 0};
    const bool events = ::poll(&ready, 1, 0) != 0;
    if (!events && now < wait.since_ms + kGraceMs) return false;  // still in its grace
    bool skip = false;
    if (!events && seccomp_notify_id_valid(listener_, wait.id) == 0 &&
        !network_in_motion(wait.process)) {
      // A runtime's housekeeping thread (Go's sysmon) wakes every few milliseconds: a few looks.
      if (!threads_asleep(wait.process, {wait.pid}, Numbering::here) && ++wait.looks < 4) {
        wait.since_ms = now;
        return false;
      }
      skip =
          wait.looks < 4 && services_->skip_wait(wait.pid, static_cast<uint64_t>(wait.timeout_ms));
    }
    respond(listener_, wait.id, skip);
    if (!skip) services_->wait_runs(wait.pid);
    ::close(wait.epoll);
    return true;
  });
}

}  // namespace tapedeck::floor
