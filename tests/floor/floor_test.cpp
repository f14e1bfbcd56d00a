// The system-call floor (src/floor): which calls its filter lets through, which it fails, which it
// hands to the warden, and what the warden answers, malformed and racing notifications included.
// Each case forks a child that installs the filter, hands the notification descriptor back and
// runs a scenario; the test serves the child's notifications with a Warden until it exits.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "floor/floor.hpp"

namespace tapedeck::floor {
namespace {

// A TCP listener on loopback that counts the connections it was offered.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), size), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { ::close(fd_); }
  uint16_t port() const { return port_; }
  int accepted() {
    int count = 0;
    for (int fd; (fd = ::accept(fd_, nullptr, nullptr)) >= 0; ++count) ::close(fd);
    return count;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

sockaddr_in loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// The errno of a raw connect (0 when it connected): no libc wrapper between it and the floor.
int raw_connect(uint16_t port, int type = SOCK_STREAM) {
  const int fd = ::socket(AF_INET, type, 0);
  const sockaddr_in address = loopback(port);
  const long result = ::syscall(SYS_connect, fd, &address, sizeof address);
  const int error = result == 0 ? 0 : errno;
  ::close(fd);
  return error;
}

struct Outcome {
  int exit_code = -1;   // the scenario's (an errno, or 0)
  uint64_t denied = 0;  // what the warden denied
  std::vector<std::string> reports;
};

// Runs `scenario` in a child under the floor; the warden (with `policy`) serves it, starting after
// `hold` (notifications wait meanwhile). The child's exit code is what the scenario returns.
Outcome under_floor(const std::function<int()>& scenario, NetworkPolicy policy = {},
                    std::chrono::milliseconds hold = std::chrono::milliseconds(0)) {
  const Filter filter;
  int channel[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The test's own listeners are not the tree's: a forked child would hold them too.
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != channel[1]) ::close(fd);
    }
    const int listener = filter.install();
    if (listener < 0) ::_exit(200);
    char control[CMSG_SPACE(sizeof(int))] = {};
    char tag = 'F';
    iovec part{&tag, 1};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &listener, sizeof listener);
    if (::sendmsg(channel[1], &message, 0) != 1) ::_exit(201);
    ::close(listener);
    ::_exit(scenario());
  }
  ::close(channel[1]);
  char control[CMSG_SPACE(sizeof(int))] = {};
  char tag = 0;
  iovec part{&tag, 1};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  EXPECT_EQ(::recvmsg(channel[0], &message, 0), 1);
  ::close(channel[0]);
  int listener = -1;
  std::memcpy(&listener, CMSG_DATA(CMSG_FIRSTHDR(&message)), sizeof listener);
  Outcome outcome;
  Warden warden(listener, std::move(policy), pid,
                [&outcome](const std::string& line) { outcome.reports.push_back(line); });
  std::this_thread::sleep_for(hold);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    pollfd ready{warden.fd(), POLLIN, 0};
    if (::poll(&ready, 1, 20) > 0 && (ready.revents & POLLIN)) warden.serve_one();
  }
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  outcome.denied = warden.denied();
  return outcome;
}

TEST(Floor, OrdinaryCallsPassUntouched) {
  const Outcome outcome = under_floor([] {
    const int fd = ::open("/dev/null", O_WRONLY);
    const bool ok = fd >= 0 && ::write(fd, "x", 1) == 1 && ::getpid() > 0;
    return ok ? 0 : 1;
  });
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.denied, 0u);
}

TEST(Floor, IoUringIsRefusedAsIfTheKernelHadNone) {
  const Outcome outcome = under_floor([] {
    const long result = ::syscall(SYS_io_uring_setup, 8, nullptr);
    return result == -1 ? errno : 0;
  });
  EXPECT_EQ(outcome.exit_code, ENOSYS);
}

TEST(Floor, AConnectNobodyAllowedIsRefusedAndNeverReachesTheListener) {
  Listener listener;
  const uint16_t port = listener.port();
  const Outcome outcome = under_floor([port] { return raw_connect(port); });
  EXPECT_EQ(outcome.exit_code, ECONNREFUSED);
  EXPECT_EQ(outcome.denied, 1u);
  EXPECT_EQ(listener.accepted(), 0);
  ASSERT_EQ(outcome.reports.size(), 1u);
  EXPECT_NE(outcome.reports[0].find("connect to 127.0.0.1:" + std::to_string(port)),
            std::string::npos);
  EXPECT_NE(outcome.reports[0].find("--allow"), std::string::npos);
}

TEST(Floor, AnAllowedEndpointAndTheProxyPortConnect) {
  Listener allowed;
  Listener proxy;
  NetworkPolicy policy;
  Endpoint endpoint;
  endpoint.family = AF_INET;
  const uint8_t loopback_bytes[4] = {127, 0, 0, 1};
  std::memcpy(endpoint.address, loopback_bytes, 4);
  endpoint.port = allowed.port();
  policy.allowed.push_back(endpoint);
  policy.proxy_port = proxy.port();
  const uint16_t a = allowed.port();
  const uint16_t p = proxy.port();
  const Outcome outcome =
      under_floor([a, p] { return raw_connect(a) == 0 && raw_connect(p) == 0 ? 0 : 1; }, policy);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(allowed.accepted(), 1);
  EXPECT_EQ(proxy.accepted(), 1);
}

TEST(Floor, AListenerTheTreeOpenedItselfIsInternal) {
  const Outcome outcome = under_floor([] {
    Listener own;  // opened by the process under the floor
    return raw_connect(own.port()) == 0 && own.accepted() == 1 ? 0 : 1;
  });
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.denied, 0u);
}

TEST(Floor, UnixSocketsAndConnectedSendsPass) {
  const Outcome outcome = under_floor([] {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) != 0) return 1;
    const int unix_fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un nowhere{};
    nowhere.sun_family = AF_UNIX;
    std::strcpy(nowhere.sun_path, "/nonexistent/tapedeck-floor-test");
    // Let through to the kernel, which answers as it would have (no such socket).
    const bool unix_answered =
        ::connect(unix_fd, reinterpret_cast<sockaddr*>(&nowhere), sizeof nowhere) == -1 &&
        errno == ENOENT;
    return unix_answered && ::send(pair[0], "x", 1, 0) == 1 ? 0 : 1;
  });
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.denied, 0u);
}

TEST(Floor, ASendtoWithAnAddressIsPolicedLikeAConnect) {
  Listener unused;
  const uint16_t port = unused.port();
  const Outcome outcome = under_floor([port] {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    const sockaddr_in address = loopback(port);
    const long sent = ::syscall(SYS_sendto, fd, "x", 1, 0, &address, sizeof address);
    return sent == -1 ? errno : 0;
  });
  EXPECT_EQ(outcome.exit_code, ECONNREFUSED);
  EXPECT_EQ(outcome.denied, 1u);
}

TEST(Floor, AnAddressThatCannotBeReadIsLeftToTheKernel) {
  const Outcome outcome = under_floor([] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const long result =
        ::syscall(SYS_connect, fd, reinterpret_cast<void*>(uintptr_t{1}), sizeof(sockaddr_in));
    return result == -1 ? errno : 0;
  });
  EXPECT_EQ(outcome.exit_code, EFAULT);
  EXPECT_EQ(outcome.denied, 0u);
}

// A process killed while its connect waits for the warden: the notification is gone when the
// warden reads it, and the next process's is answered all the same.
TEST(Floor, AProcessThatDiesWhileItsNotificationWaitsDoesNotWedgeTheWarden) {
  Listener listener;
  const uint16_t port = listener.port();
  const Outcome outcome = under_floor(
      [port] {
        const pid_t doomed = ::fork();
        if (doomed == 0) ::_exit(raw_connect(port));  // waits: the warden holds off
        ::usleep(100'000);
        ::kill(doomed, SIGKILL);
        ::waitpid(doomed, nullptr, 0);
        return raw_connect(port);
      },
      {}, std::chrono::milliseconds(400));
  EXPECT_EQ(outcome.exit_code, ECONNREFUSED);
  EXPECT_GE(outcome.denied, 1u);
  EXPECT_EQ(listener.accepted(), 0);
}

TEST(Floor, NameserversComeFromResolvConfOnPort53) {
  char path[] = "/tmp/tapedeck-resolv-XXXXXX";
  const int fd = ::mkstemp(path);
  const std::string text = "# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nsearch x\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  const std::vector<Endpoint> servers = nameservers(path);
  ::unlink(path);
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0].family, AF_INET);
  EXPECT_EQ(servers[0].port, 53);
  EXPECT_EQ(servers[0].address[3], 53);
  EXPECT_EQ(servers[1].family, AF_INET6);
}

}  // namespace
}  // namespace tapedeck::floor
