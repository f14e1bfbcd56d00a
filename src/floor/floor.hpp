// The system-call floor: a seccomp-bpf filter installed in the root program before it starts and
// inherited by every process and thread of the tree, whatever it is linked with (glibc, musl, Go,
// a raw syscall()). The preload library interposes libc; the floor is what holds beneath it.
//
// What it catches (x86-64; a process that makes a system call of another ABI, i386 or x32, gets
// ENOSYS for it, so no call goes around the rules below):
//
//   connect, and sendto with a destination address
//       notify: the supervisor (Warden) reads the address from the caller's memory and lets the
//       call through when the policy allows it: every family but IPv4 and IPv6; tapedeck's LLM
//       proxy on loopback; an allowed endpoint (--allow, the LLM upstream when recording, the
//       nameservers of /etc/resolv.conf on port 53); a loopback listener that a process of the
//       tree itself opened (a test suite's own server). Anything else fails with ECONNREFUSED,
//       as a refused connection would, and the supervisor says so in one line on stderr.
//   io_uring_setup
//       ENOSYS: io_uring's operations are not system calls and would pass any filter; runtimes
//       fall back to epoll and plain reads.
//
// Who answers: the supervisor's serving thread, one notification at a time (Warden::serve_one
// when Warden::fd() is readable). A caller may assume that a notification whose process died
// before the answer is dropped without wedging the loop, and that an allowed call then runs in
// the kernel exactly as it would have without the floor.
//
// Not caught yet, stated rather than hidden: sendmsg and sendmmsg with a destination address (an
// unconnected UDP socket); the clock reads, sleeps and files of programs the preload library does
// not reach (Go, static binaries), which the next part of this room is for.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct seccomp_notif;
struct seccomp_notif_resp;

namespace tapedeck::floor {

// An address the tree may connect to; port 0 is every port.
struct Endpoint {
  int family = 0;  // AF_INET or AF_INET6
  uint8_t address[16] = {};
  uint16_t port = 0;
};

struct NetworkPolicy {
  uint16_t proxy_port = 0;  // tapedeck's LLM proxy, on loopback; 0 when there is none
  std::vector<Endpoint> allowed;
};

// The nameservers of /etc/resolv.conf (or `path`), on port 53: name lookups stay possible.
std::vector<Endpoint> nameservers(const std::string& path = "/etc/resolv.conf");

// The filter as a BPF program, built before fork (by libseccomp) so that the child only has to
// install it.
class Filter {
 public:
  Filter();  // throws std::runtime_error when libseccomp cannot build it
  // In the child, between fork and exec (async-signal-safe): no_new_privs when not root, then
  // the filter. Returns the descriptor notifications arrive on, or -1 with errno set.
  int install() const noexcept;

 private:
  std::vector<sock_filter> program_;
};

// The supervisor's side: answers the notifications of one tree.
class Warden {
 public:
  // Takes `listener` (closed with the warden). `report` receives each one-line denial.
  Warden(int listener, NetworkPolicy policy, pid_t root,
         std::function<void(const std::string&)> report);
  ~Warden();
  Warden(const Warden&) = delete;
  Warden& operator=(const Warden&) = delete;

  int fd() const { return listener_; }
  // Answers one notification; call when fd() is readable. Never throws.
  void serve_one();
  uint64_t denied() const { return denied_; }

 private:
  // 0 to let the call through, else the errno it fails with.
  int decide(const seccomp_notif& request);
  bool tree_listens_on(int family, uint16_t port) const;

  int listener_;
  NetworkPolicy policy_;
  pid_t root_;
  std::function<void(const std::string&)> report_;
  seccomp_notif* request_ = nullptr;
  seccomp_notif_resp* response_ = nullptr;
  uint64_t denied_ = 0;
};

}  // namespace tapedeck::floor
