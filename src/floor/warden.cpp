// The floor's notifications, answered by the supervisor: the network policy for every binary.
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "floor/floor.hpp"
#include "floor/process_access.hpp"

namespace tapedeck::floor {

namespace {

bool parse_address(const std::string& text, Endpoint& out) {
  if (::inet_pton(AF_INET, text.c_str(), out.address) == 1) {
    out.family = AF_INET;
    return true;
  }
  if (::inet_pton(AF_INET6, text.c_str(), out.address) == 1) {
    out.family = AF_INET6;
    return true;
  }
  return false;
}

// An address from the caller, as (family, 16 address bytes, port); a v4-mapped IPv6 address is
// the IPv4 address it maps.
struct Target {
  int family = 0;
  uint8_t address[16] = {};
  uint16_t port = 0;
  bool loopback() const {
    if (family == AF_INET) return address[0] == 127;
    static const uint8_t kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::memcmp(address, kLoopback6, 16) == 0;
  }
  std::string text() const {
    char host[INET6_ADDRSTRLEN] = "?";
    ::inet_ntop(family, address, host, sizeof host);
    return (family == AF_INET6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" +
           std::to_string(port);
  }
};

// 0 when read; else the errno: EFAULT (the caller's own bad pointer or length, which the kernel
// will answer as it always does), or why the supervisor could not look.
int read_target(pid_t pid, uint64_t where, uint64_t length, Target& out) {
  sockaddr_storage address{};
  const size_t size = std::min<uint64_t>(length, sizeof address);
  iovec local{&address, size};
  iovec remote{reinterpret_cast<void*>(where), size};
  if (size < sizeof(sa_family_t)) return EFAULT;
  const ssize_t got = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (got < 0) return errno;
  if (got != static_cast<ssize_t>(size)) return EFAULT;
  out.family = address.ss_family;
  if (address.ss_family == AF_INET && size >= sizeof(sockaddr_in)) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    std::memcpy(out.address, &in.sin_addr, 4);
    out.port = ntohs(in.sin_port);
  } else if (address.ss_family == AF_INET6 && size >= sizeof(sockaddr_in6)) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    out.port = ntohs(in6.sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      out.family = AF_INET;
      std::memcpy(out.address, in6.sin6_addr.s6_addr + 12, 4);
    } else {
      std::memcpy(out.address, &in6.sin6_addr, 16);
    }
  }
  return 0;
}

bool matches(const Endpoint& rule, const Target& target) {
  const size_t size = target.family == AF_INET ? 4 : 16;
  return rule.family == target.family && std::memcmp(rule.address, target.address, size) == 0 &&
         (rule.port == 0 || rule.port == target.port);
}

// The inodes of the sockets listening on `port` (TCP, both families).
std::set<std::string> listening_inodes(uint16_t port) {
  std::set<std::string> inodes;
  for (const TcpSocket& socket : tcp_sockets_on(port)) {
    if (socket.listening) inodes.insert(socket.inode);
  }
  return inodes;
}

}  // namespace

std::vector<Endpoint> nameservers(const std::string& path) {
  std::vector<Endpoint> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword, address;
    if (!(words >> keyword >> address) || keyword != "nameserver") continue;
    Endpoint endpoint;
    endpoint.port = 53;
    if (parse_address(address.substr(0, address.find('%')), endpoint)) out.push_back(endpoint);
  }
  return out;
}

Warden::Warden(int listener, NetworkPolicy policy, pid_t root,
               std::function<void(const std::string&)> report, Services* services, Runtime runtime)
    : listener_(listener),
      policy_(std::move(policy)),
      root_(root),
      report_(std::move(report)),
      services_(services),
      runtime_(runtime) {
  // Kernels since 6.6 can wake the notifying thread on the supervisor's CPU when it is
  // answered, which halves a round trip; older ones refuse the flag (nothing changes).
  constexpr unsigned long kSetFlags = _IOW('!', 4, uint64_t);  // SECCOMP_IOCTL_NOTIF_SET_FLAGS
  constexpr uint64_t kSyncWakeUp = 1;                          // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
  ::ioctl(listener_, kSetFlags, kSyncWakeUp);
  if (seccomp_notify_alloc(&request_, &response_) != 0) {
    ::close(listener_);
    throw std::runtime_error("the system-call floor: cannot allocate its notifications");
  }
}

Warden::~Warden() {
  release_parked_waits();
  if (request_ != nullptr) seccomp_notify_free(request_, response_);
  if (listener_ >= 0) ::close(listener_);
}

bool Warden::tree_listens_on(int family, uint16_t port) const {
  (void)family;  // a listener on the wildcard address of either family takes both
  const std::set<std::string> inodes = listening_inodes(port);
  if (inodes.empty()) return false;
  for (pid_t pid : tree_of(root_)) {
    const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
    DIR* folder = ::opendir(fds.c_str());
    if (folder == nullptr) continue;
    bool found = false;
    while (const dirent* entry = ::readdir(folder)) {
      char target[64];
      const ssize_t size = ::readlinkat(dirfd(folder), entry->d_name, target, sizeof target - 1);
      if (size <= 8) continue;
      target[size] = '\0';
      // "socket:[12345]"
      if (std::strncmp(target, "socket:[", 8) == 0 &&
          inodes.contains(std::string(target + 8, static_cast<size_t>(size) - 9))) {
        found = true;
        break;
      }
    }
    ::closedir(folder);
    if (found) return true;
  }
  return false;
}

namespace {

// A policed call: connect, or a send that may name where it goes.
bool is_policed(int nr) {
  return nr == __NR_connect || nr == __NR_sendto || nr == __NR_sendmsg || nr == __NR_sendmmsg;
}

const char* call_name(int nr) {
  switch (nr) {
    case __NR_connect:
      return "connect";
    case __NR_sendto:
      return "sendto";
    case __NR_sendmsg:
      return "sendmsg";
    default:
      return "sendmmsg";
  }
}

// The most messages of one sendmmsg the kernel takes (UIO_MAXIOV); it sends no more.
constexpr uint64_t kMostMessages = 1024;

// Where the call sends: the address (pointer, length) of each destination it names; none for a
// send on a connected socket (its connect was policed). False when the message headers cannot be
// read: the caller's bad pointer, which the kernel answers (EFAULT).
bool destinations_of(const seccomp_notif& request,
                     std::vector<std::pair<uint64_t, uint64_t>>& out) {
  const pid_t pid = static_cast<pid_t>(request.pid);
  const auto& args = request.data.args;
  switch (request.data.nr) {
    case __NR_connect:
      out.emplace_back(args[1], args[2]);
      return true;
    case __NR_sendto:
      out.emplace_back(args[4], args[5]);
      return true;
    case __NR_sendmsg: {
      msghdr header{};
      if (!read_memory(pid, args[1], &header, sizeof header)) return false;
      if (header.msg_name != nullptr && header.msg_namelen != 0) {
        out.emplace_back(reinterpret_cast<uint64_t>(header.msg_name), header.msg_namelen);
      }
      return true;
    }
    default: {  // sendmmsg
      std::vector<mmsghdr> headers(std::min<uint64_t>(args[2], kMostMessages));
      if (headers.empty()) return true;
      if (!read_memory(pid, args[1], headers.data(), headers.size() * sizeof(mmsghdr))) {
        return false;
      }
      for (const mmsghdr& message : headers) {
        if (message.msg_hdr.msg_name != nullptr && message.msg_hdr.msg_namelen != 0) {
          out.emplace_back(reinterpret_cast<uint64_t>(message.msg_hdr.msg_name),
                           message.msg_hdr.msg_namelen);
        }
      }
      return true;
    }
  }
}

}  // namespace

int Warden::decide(const seccomp_notif& request) {
  const pid_t pid = static_cast<pid_t>(request.pid);
  const char* call = call_name(static_cast<int>(request.data.nr));
  std::vector<std::pair<uint64_t, uint64_t>> destinations;
  if (!destinations_of(request, destinations)) return 0;  // EFAULT from the kernel
  std::vector<Target> targets;
  for (const auto& [where, length] : destinations) {
    Target target;
    if (const int unread = read_target(pid, where, length, target)) {
      // The caller's bad pointer: the kernel answers (EFAULT). Anything else keeps the
      // supervisor from seeing where the call goes, so it does not go (the floor fails closed).
      if (unread == EFAULT || unread == ESRCH) return 0;
      ++denied_;
      if (report_) {
        report_("network denied: a " + std::string(call) + " by " + command_of(pid) +
                " whose address the supervisor could not read (" + std::strerror(unread) + ")");
      }
      return ECONNREFUSED;
    }
    targets.push_back(target);
  }
  // The process may have died and its pid been reused while its memory was read.
  if (seccomp_notify_id_valid(listener_, request.id) != 0) return 0;
  auto allowed = [this](const Target& target) {
    if (target.family != AF_INET && target.family != AF_INET6) return true;  // Unix sockets, …
    if (target.loopback() && policy_.proxy_port != 0 && target.port == policy_.proxy_port) {
      return true;
    }
    for (const Endpoint& rule : policy_.allowed) {
      if (matches(rule, target)) return true;
    }
    return target.loopback() && tree_listens_on(target.family, target.port);
  };
  for (const Target& target : targets) {
    if (allowed(target)) continue;
    ++denied_;
    if (report_) {
      report_("network denied: " + std::string(call) + " to " + target.text() + " by " +
              command_of(pid) + " (pid " + std::to_string(pid) +
              "; the testbench denies by default; allow it with --allow HOST[:PORT])");
    }
    return ECONNREFUSED;  // a sendmmsg with one destination denied sends none of its messages
  }
  return 0;
}

void Warden::serve_one() {
  std::memset(request_, 0, sizeof *request_);
  if (seccomp_notify_receive(listener_, request_) != 0) return;  // its process died meanwhile
  std::memset(response_, 0, sizeof *response_);
  response_->id = request_->id;
  if (!is_policed(static_cast<int>(request_->data.nr))) {
    answered_ = false;
    clock_answer_ = {};
    if (serve_call(*request_, *response_) && !answered_ &&
        seccomp_notify_respond(listener_, response_) != 0 && errno == ENOENT &&
        clock_answer_.nr != 0) {
      undelivered_clocks_[static_cast<pid_t>(request_->pid)] = clock_answer_;
    }
    return;
  }
  const int error = decide(*request_);
  if (error == 0) {
    response_->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  } else {
    response_->error = -error;
  }
  seccomp_notify_respond(listener_, response_);  // ENOENT: the process died; nothing to do
}

}  // namespace tapedeck::floor
