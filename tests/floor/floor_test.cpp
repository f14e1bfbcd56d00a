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
#include <spawn.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "floor/floor.hpp"
#include "floor/process_access.hpp"

extern char** environ;

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
                    std::chrono::milliseconds hold = std::chrono::milliseconds(0),
                    Services* services = nullptr, const std::set<std::string>& holes = {}) {
  const Filter filter(services != nullptr ? Reach::whole : Reach::network, Runtime::plain, holes);
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
    // Its number, for the test to take with pidfd_getfd (as the supervisor does: a sendmsg
    // would wait for a warden that does not hold the listener yet); then the word to go on.
    char go = 0;
    if (::write(channel[1], &listener, sizeof listener) != sizeof listener ||
        ::read(channel[1], &go, 1) != 1) {
      ::_exit(201);
    }
    ::close(listener);
    ::_exit(scenario());
  }
  ::close(channel[1]);
  int number = -1;
  EXPECT_EQ(::read(channel[0], &number, sizeof number), static_cast<ssize_t>(sizeof number));
  const int process = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  const int listener = static_cast<int>(::syscall(SYS_pidfd_getfd, process, number, 0));
  EXPECT_GE(listener, 0) << std::strerror(errno);
  ::close(process);
  EXPECT_EQ(::write(channel[0], "g", 1), 1);
  ::close(channel[0]);
  Outcome outcome;
  Warden warden(
      listener, std::move(policy), pid,
      [&outcome](const std::string& line) { outcome.reports.push_back(line); }, services);
  warden.root_runs_its_program();  // the scenario runs in the fork itself
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

// A UDP socket on loopback that counts the datagrams that reached it.
class Receiver {
 public:
  Receiver() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    socklen_t size = sizeof address;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), size), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
  }
  ~Receiver() { ::close(fd_); }
  uint16_t port() const { return port_; }
  int received() {
    int count = 0;
    for (char byte; ::recv(fd_, &byte, 1, 0) >= 0; ++count) {
    }
    return count;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

TEST(Floor, ASendmsgOrSendmmsgNamingADestinationIsPolicedAndNothingArrives) {
  Receiver receiver;
  const uint16_t port = receiver.port();
  const Outcome outcome = under_floor([port] {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in address = loopback(port);
    char byte = 'x';
    iovec data{&byte, 1};
    msghdr message{};
    message.msg_name = &address;
    message.msg_namelen = sizeof address;
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    const bool sendmsg_refused =
        ::syscall(SYS_sendmsg, fd, &message, 0) == -1 && errno == ECONNREFUSED;
    // Two messages, the first to no address (a connected socket's), the second to the receiver:
    // none is sent.
    mmsghdr messages[2]{};
    messages[0].msg_hdr.msg_iov = &data;
    messages[0].msg_hdr.msg_iovlen = 1;
    messages[1].msg_hdr = message;
    const bool sendmmsg_refused =
        ::syscall(SYS_sendmmsg, fd, messages, 2, 0) == -1 && errno == ECONNREFUSED;
    // A send that names no destination goes to the kernel (here: not connected, so it says so).
    msghdr unaddressed{};
    unaddressed.msg_iov = &data;
    unaddressed.msg_iovlen = 1;
    const bool left_to_kernel =
        ::syscall(SYS_sendmsg, fd, &unaddressed, 0) == -1 && errno == EDESTADDRREQ;
    // Headers the caller cannot read: the kernel's EFAULT, as ever.
    const bool fault = ::syscall(SYS_sendmsg, fd, reinterpret_cast<void*>(uintptr_t{8}), 0) == -1 &&
                       errno == EFAULT;
    return (sendmsg_refused ? 0 : 1) | (sendmmsg_refused ? 0 : 2) | (left_to_kernel ? 0 : 4) |
           (fault ? 0 : 8);
  });
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.denied, 2u);
  EXPECT_EQ(receiver.received(), 0);
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

// ---- Reach::whole: the calls served for a program the preload cannot reach -------------------

// Services that answer fixed values and remember what they were asked.
struct FakeServices : Services {
  int64_t wall_ms = 1'700'000'123'456;
  int64_t monotonic_ms = 42'000;
  bool skip_sleeps = true;
  int open_error = 0;              // what open() answers: 0 lets it through
  std::vector<std::string> reads;  // "wall" / "monotonic"
  std::vector<uint64_t> sleeps;
  std::vector<std::string> opens;  // "r PATH", "w PATH", "rw PATH"
  std::vector<std::string> closed;

  std::vector<std::string> lanes;  // each read's lane
  int64_t clock_read(pid_t, bool wall, int64_t, std::string_view lane) override {
    reads.push_back(wall ? "wall" : "monotonic");
    lanes.emplace_back(lane);
    return wall ? wall_ms : monotonic_ms;
  }
  std::string thread_lane(pid_t, uint32_t rank) override {
    return rank == 0 ? std::string() : "t" + std::to_string(rank);
  }
  bool sleep(pid_t, uint64_t ms) override {
    sleeps.push_back(ms);
    return skip_sleeps;
  }
  int open(pid_t, uint32_t, const std::string& path, bool writes, bool reads_too) override {
    opens.push_back(std::string(!writes ? "r " : reads_too ? "rw " : "w ") + path);
    return open_error;
  }
  void closing(pid_t, uint32_t, const std::string& path) override { closed.push_back(path); }
  void deleting(pid_t, uint32_t, const std::string& path) override { deleted.push_back(path); }
  void renamed(pid_t, uint32_t, const std::string& from, const std::string& to) override {
    moves.push_back(from + " -> " + to);
  }
  std::vector<std::string> deleted;
  std::vector<std::string> moves;
  std::vector<std::string> exec_wrapper() override { return {"/bin/echo", "wrapped"}; }
  int64_t runtime_clock_ns(pid_t, int64_t real_ns) override { return real_ns; }
  bool waits_are_virtual() const override { return false; }
  bool skip_wait(pid_t, uint64_t) override { return false; }
  void wait_runs(pid_t) override {}
  std::vector<uint32_t> draws;  // each draw's thread rank
  std::string entropy(pid_t, uint32_t thread_rank, size_t size) override {
    draws.push_back(thread_rank);
    return std::string(size, 'r');
  }
  std::string startup_random() override { return {}; }
};

TEST(FloorWhole, ClockReadsGetTheServicesValuesWrittenIntoTheCaller) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        timespec wall{}, monotonic{}, cpu{};
        timeval tv{};
        time_t seconds = 0;
        // Raw calls: the vDSO would answer clock_gettime without a system call.
        if (::syscall(SYS_clock_gettime, CLOCK_REALTIME, &wall) != 0) return 1;
        if (wall.tv_sec != 1'700'000'123 || wall.tv_nsec != 456'000'000) return 2;
        if (::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &monotonic) != 0) return 3;
        if (monotonic.tv_sec != 42 || monotonic.tv_nsec != 0) return 4;
        if (::syscall(SYS_gettimeofday, &tv, nullptr) != 0 || tv.tv_sec != 1'700'000'123 ||
            tv.tv_usec != 456'000) {
          return 5;
        }
        if (::syscall(SYS_time, &seconds) != 1'700'000'123 || seconds != 1'700'000'123) return 6;
        // CPU time is the process's own: not served.
        if (::syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &cpu) != 0) return 7;
        // A bad pointer is the caller's: EFAULT, as the kernel would say.
        const long bad = ::syscall(SYS_clock_gettime, CLOCK_REALTIME, reinterpret_cast<void*>(8));
        return bad == -1 && errno == EFAULT ? 0 : 8;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.reads,
            (std::vector<std::string>{"wall", "monotonic", "wall", "wall", "wall"}));
}

// A thread's lane is its place in its process's creation order, not the order threads first
// read: runtimes read from several threads in whatever order they run.
TEST(FloorWhole, EachThreadReadsInTheLaneOfItsPlaceInCreationOrder) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        int first_may_read[2], second_may_read[2];
        if (::pipe(first_may_read) != 0 || ::pipe(second_may_read) != 0) return 1;
        auto reader = [](int may_read, int then_tell) {
          char go = 0;
          if (::read(may_read, &go, 1) != 1) return;
          timespec now{};
          ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now);
          char random[4];
          ::syscall(SYS_getrandom, random, sizeof random, 0);
          if (then_tell >= 0 && ::write(then_tell, "g", 1) != 1) return;
        };
        // Made first, reads second; made second, reads first; then the main thread.
        std::thread first(reader, first_may_read[0], -1);
        std::thread second(reader, second_may_read[0], first_may_read[1]);
        if (::write(second_may_read[1], "g", 1) != 1) return 2;
        second.join();
        first.join();
        timespec now{};
        ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now);
        return 0;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.lanes, (std::vector<std::string>{"t2", "t1", ""}));
  EXPECT_EQ(services.draws, (std::vector<uint32_t>{2, 1}));
}

TEST(FloorWhole, SleepsAreTapedAndSkippedWhenTheServicesSaySo) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        const timespec ten_seconds{10, 0};
        if (::syscall(SYS_nanosleep, &ten_seconds, nullptr) != 0) return 1;
        // An absolute deadline lasts from the last value the clock gave: 42 s + 1.5 s.
        timespec now{};
        ::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &now);
        const timespec deadline{43, 500'000'000};
        if (::syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr)) {
          return 2;
        }
        // The next deadline of a periodic loop that reads no clock between: one more second.
        const timespec next{44, 500'000'000};
        if (::syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr)) {
          return 3;
        }
        // An invalid duration is the kernel's to refuse.
        const timespec invalid{0, 2'000'000'000};
        const long refused = ::syscall(SYS_nanosleep, &invalid, nullptr);
        return refused == -1 && errno == EINVAL ? 0 : 4;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);  // it would still be asleep had the floor let it through
  EXPECT_EQ(services.sleeps, (std::vector<uint64_t>{10'000, 1'500, 1'000}));
}

TEST(FloorWhole, WaitsOnNoDescriptorAreSleepsAndWaitsOnOnePassUntouched) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        if (::syscall(SYS_poll, nullptr, 0, 10'000) != 0) return 1;
        timespec span{10, 1};  // a nanosecond past 10 s: 10,001 ms
        if (::syscall(SYS_ppoll, nullptr, 0, &span, nullptr, 8) != 0) return 2;
        if (span.tv_sec != 0 || span.tv_nsec != 0) return 3;  // no time left, as after a timeout
        timeval interval{2, 500'000};
        if (::syscall(SYS_select, 0, nullptr, nullptr, nullptr, &interval) != 0) return 4;
        if (interval.tv_sec != 0 || interval.tv_usec != 0) return 5;
        span = timespec{3, 0};
        if (::syscall(SYS_pselect6, 0, nullptr, nullptr, nullptr, &span, nullptr) != 0) return 6;
        // select adds microseconds past a second up, as the kernel does: 1.5 s.
        interval = timeval{0, 1'500'000};
        if (::syscall(SYS_select, 0, nullptr, nullptr, nullptr, &interval) != 0) return 7;
        // Not sleeps: a poll on a descriptor (a pipe with a byte in it), none with no timeout
        // to speak of, and a select the kernel refuses.
        int ends[2];
        if (::pipe(ends) != 0 || ::write(ends[1], "x", 1) != 1) return 8;
        pollfd ready{ends[0], POLLIN, 0};
        if (::syscall(SYS_poll, &ready, 1, 10'000) != 1) return 9;
        if (::syscall(SYS_poll, nullptr, 0, 0) != 0) return 11;
        timeval invalid{0, -1};
        const long refused = ::syscall(SYS_select, 0, nullptr, nullptr, nullptr, &invalid);
        return refused == -1 && errno == EINVAL ? 0 : 10;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);  // it would still be asleep had the floor let them through
  EXPECT_EQ(services.sleeps, (std::vector<uint64_t>{10'000, 10'001, 2'500, 3'000, 1'500}));
}

TEST(FloorWhole, ASleepTheServicesKeepRunsInTheKernel) {
  FakeServices services;
  services.skip_sleeps = false;
  const Outcome outcome = under_floor(
      [] {
        const timespec short_nap{0, 30'000'000};
        const auto before = std::chrono::steady_clock::now();
        if (::syscall(SYS_nanosleep, &short_nap, nullptr) != 0) return 1;
        return std::chrono::steady_clock::now() - before >= std::chrono::milliseconds(30) ? 0 : 2;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.sleeps, (std::vector<uint64_t>{30}));
}

// A folder of its own for a test, removed with it.
struct ScratchFolder {
  ScratchFolder() {
    char name[] = "/tmp/tapedeck-floor-XXXXXX";
    path = ::mkdtemp(name);
  }
  ~ScratchFolder() { std::filesystem::remove_all(path); }
  std::string path;
};

TEST(FloorWhole, OpensNameTheAbsolutePathAndWhetherTheyWrite) {
  const ScratchFolder scratch;
  const std::string& folder = scratch.path;
  FakeServices services;
  const Outcome outcome = under_floor(
      [folder] {
        if (::chdir(folder.c_str()) != 0) return 1;
        const int created = static_cast<int>(
            ::syscall(SYS_openat, AT_FDCWD, "made.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644));
        if (created < 0) return 2;
        ::close(created);
        const int read_only = static_cast<int>(::syscall(SYS_open, "./made.txt", O_RDONLY));
        if (read_only < 0) return 3;
        ::close(read_only);
        const int dir = ::open(folder.c_str(), O_DIRECTORY | O_RDONLY);  // not a file: passes
        const int both = static_cast<int>(::syscall(SYS_openat, dir, "made.txt", O_RDWR));
        if (both < 0) return 4;
        ::close(both);
        // openat2 would go around these rules: it is refused, and callers fall back to openat.
        const long two = ::syscall(SYS_openat2, AT_FDCWD, "made.txt", nullptr, 0);
        if (two != -1 || errno != ENOSYS) return 5;
        const long bad = ::syscall(SYS_openat, AT_FDCWD, reinterpret_cast<void*>(8), O_RDONLY);
        return bad == -1 && errno == EFAULT ? 0 : 6;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.opens,
            (std::vector<std::string>{"w " + folder + "/made.txt", "r " + folder + "/made.txt",
                                      "rw " + folder + "/made.txt"}));
  // Each close names its file (a write is taped once its file is closed).
  EXPECT_EQ(std::count(services.closed.begin(), services.closed.end(), folder + "/made.txt"), 3);
}

TEST(FloorWhole, RenamesAreMadeForTheProcessAndDeletesTapedBeforeTheyRun) {
  const ScratchFolder scratch;
  const std::string& folder = scratch.path;
  FakeServices services;
  const Outcome outcome = under_floor(
      [folder] {
        if (::chdir(folder.c_str()) != 0) return 1;
        ::close(::open("a", O_WRONLY | O_CREAT, 0644));
        if (::syscall(SYS_renameat2, AT_FDCWD, "a", AT_FDCWD, "b", 0) != 0) return 2;
        if (::access("b", F_OK) != 0 || ::access("a", F_OK) == 0) return 3;
        // A rename that fails says why, as the kernel would.
        const long missing = ::syscall(SYS_rename, "no-such-file", "c");
        if (missing != -1 || errno != ENOENT) return 4;
        if (::syscall(SYS_unlinkat, AT_FDCWD, "b", 0) != 0) return 5;
        ::mkdir("sub", 0755);
        if (::syscall(SYS_unlinkat, AT_FDCWD, "sub", AT_REMOVEDIR) != 0) return 6;  // not taped
        const long gone = ::syscall(SYS_unlink, "b");  // not there: not taped
        return gone == -1 && errno == ENOENT ? 0 : 7;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.moves, (std::vector<std::string>{folder + "/a -> " + folder + "/b"}));
  EXPECT_EQ(services.deleted, (std::vector<std::string>{folder + "/b"}));
}

TEST(FloorWhole, RandomnessComesFromTheServicesForEveryByteAsked) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        char drawn[64];
        if (::syscall(SYS_getrandom, drawn, sizeof drawn, 0) != sizeof drawn) return 1;
        if (std::string(drawn, sizeof drawn) != std::string(sizeof drawn, 'r')) return 2;
        const long bad = ::syscall(SYS_getrandom, reinterpret_cast<void*>(8), 16, 0);
        return bad == -1 && errno == EFAULT ? 0 : 3;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
}

TEST(FloorWhole, AnOpenFailsWithTheErrnoTheServicesAnswer) {
  // EIO: the tape cannot serve it (the tree is being stopped); EACCES: a replay's --fault.
  for (const int error : {EIO, EACCES, ENOENT}) {
    FakeServices services;
    services.open_error = error;
    const Outcome outcome = under_floor(
        [error] {
          const long fd = ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
          return fd == -1 && errno == error ? 0 : 1;
        },
        {}, std::chrono::milliseconds(0), &services);
    EXPECT_EQ(outcome.exit_code, 0) << std::strerror(error);
  }
}

TEST(FloorWhole, ACallLeftOutAsAHolePassesUnservedAndTheRestStayServed) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        const long fd = ::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
        if (fd < 0) return 1;
        ::close(static_cast<int>(fd));
        timespec now{};
        return ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now) == 0 ? 0 : 2;
      },
      {}, std::chrono::milliseconds(0), &services, {"openat"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_TRUE(services.opens.empty());  // the hole: the open never reached the services
  EXPECT_EQ(services.reads, (std::vector<std::string>{"wall"}));
  EXPECT_EQ(escapes_through({"openat", "open", "nanosleep"}), "file reads and writes, sleeps");
  EXPECT_THROW(Filter(Reach::whole, Runtime::plain, {"connect"}), std::runtime_error);
}

TEST(FloorWhole, AnotherProgramTheRootExecsIsNotServed) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        timespec now{};
        ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now);  // the root's: served
        const pid_t child = ::fork();
        if (child == 0) {
          // A subprocess: its reads and sleeps are its own (cat reads a file, sleeps nothing).
          ::execl("/bin/sh", "sh", "-c", "cat /etc/hostname > /dev/null",
                  static_cast<char*>(nullptr));
          ::_exit(127);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.reads.size(), 1u);
  EXPECT_TRUE(services.opens.empty()) << services.opens.front();
}

// Services whose first clock read signals the reader before it is answered: the signal voids
// the notification, and the kernel restarts the call (SA_RESTART) as a new one.
struct InterruptingServices : FakeServices {
  int64_t clock_read(pid_t pid, bool wall, int64_t real_ms, std::string_view lane) override {
    if (reads.empty()) {
      ::kill(pid, SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the handler runs meanwhile
    }
    return FakeServices::clock_read(pid, wall, real_ms, lane);
  }
};

volatile sig_atomic_t signalled = 0;

TEST(FloorWhole, AClockReadWhoseAnswerASignalVoidedIsAnsweredAgainButReadOnce) {
  InterruptingServices services;
  const Outcome outcome = under_floor(
      [] {
        struct sigaction handler {};
        handler.sa_handler = [](int) { signalled = 1; };
        handler.sa_flags = SA_RESTART;
        ::sigaction(SIGUSR1, &handler, nullptr);
        timespec wall{};
        if (::syscall(SYS_clock_gettime, CLOCK_REALTIME, &wall) != 0) return 1;
        if (signalled != 1) return 2;  // (else the test did not test the restart)
        return wall.tv_sec == 1'700'000'123 && wall.tv_nsec == 456'000'000 ? 0 : 3;
      },
      {}, std::chrono::milliseconds(0), &services);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(services.reads, std::vector<std::string>{"wall"});  // taped once
}

TEST(FloorWhole, AProcessThatDiesWhileItsClockReadWaitsDoesNotWedgeTheWarden) {
  FakeServices services;
  const Outcome outcome = under_floor(
      [] {
        const pid_t child = ::fork();
        if (child == 0) {
          timespec now{};
          ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now);  // waits: the warden holds
          ::_exit(0);
        }
        ::usleep(50'000);
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        timespec now{};
        return ::syscall(SYS_clock_gettime, CLOCK_REALTIME, &now) == 0 ? 0 : 1;
      },
      {}, std::chrono::milliseconds(200), &services);
  EXPECT_EQ(outcome.exit_code, 0);
}

// What `spawn` (run in a served process) printed to its stdout, a file (under_floor's child
// keeps no inherited descriptor but its own).
std::string output_of(const std::function<void()>& spawn, FakeServices& services, int& exit_code) {
  char path[] = "/tmp/tapedeck-floor-out-XXXXXX";
  ::close(::mkstemp(path));
  const std::string file = path;
  const Outcome outcome = under_floor(
      [&spawn, &file] {
        const int fd = ::open(file.c_str(), O_WRONLY | O_TRUNC);
        ::dup2(fd, STDOUT_FILENO);
        spawn();
        return 0;
      },
      {}, std::chrono::milliseconds(0), &services);
  exit_code = outcome.exit_code;
  for (const std::string& report : outcome.reports) ADD_FAILURE() << report;
  std::ifstream in(file);
  std::string shown((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(path);
  return shown;
}

// What a forked child's exec of `path` as `argv0 arg` printed, under the floor.
std::string forked_exec_output(const char* path, const char* argv0, const char* arg) {
  FakeServices services;
  int exit_code = -1;
  const std::string shown = output_of(
      [&] {
        const pid_t child = ::fork();
        if (child == 0) {
          ::execl(path, argv0, arg, static_cast<char*>(nullptr));
          ::_exit(127);
        }
        ::waitpid(child, nullptr, 0);
      },
      services, exit_code);
  EXPECT_EQ(exit_code, 0);
  return shown;
}

TEST(FloorWhole, AnExecRunsTheWrapperWithTheProgramAndItsArgv) {
  EXPECT_EQ(forked_exec_output("/bin/true", "true", "an argument"),
            "wrapped /bin/true true an argument\n");
}

TEST(FloorWhole, AVforkedExecIsRedirectedWithoutTouchingTheParentsMemory) {
  FakeServices services;
  int exit_code = -1;
  const std::string spawned = output_of(
      [] {
        // posix_spawn: glibc's child shares the parent's memory (CLONE_VM | CLONE_VFORK).
        char program[] = "/bin/true";
        char first[] = "true";
        char second[] = "kept";
        char* argv[] = {first, second, nullptr};
        pid_t child = 0;
        if (::posix_spawn(&child, program, nullptr, nullptr, argv, environ) != 0) ::_exit(1);
        ::waitpid(child, nullptr, 0);
        // The parent's own strings and array are as they were.
        const bool intact = std::string(program) == "/bin/true" && argv[0] == first &&
                            argv[1] == second && argv[2] == nullptr &&
                            std::string(second) == "kept";
        if (!intact) ::_exit(2);
      },
      services, exit_code);
  EXPECT_EQ(exit_code, 0);
  EXPECT_EQ(spawned, "wrapped /bin/true true kept\n");
}

TEST(FloorWhole, AProgramThatExecsItselfThroughProcSelfExeIsNamedByItsImage) {
  EXPECT_EQ(
      forked_exec_output("/proc/self/exe", "applet", "arg"),
      "wrapped " + std::filesystem::read_symlink("/proc/self/exe").string() + " applet arg\n");
}

TEST(FloorWhole, AnExecOfWhatIsNotThereFailsAsTheKernelWouldSay) {
  FakeServices services;
  int exit_code = -1;
  output_of(
      [] {
        const pid_t child = ::fork();
        if (child == 0) {
          ::execl("/no/such/program", "x", static_cast<char*>(nullptr));
          ::_exit(errno == ENOENT ? 0 : 1);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ::_exit(3);
      },
      services, exit_code);
  EXPECT_EQ(exit_code, 0);
}

TEST(GoClock, AProgramThatIsNotGoHasNothingToPatch) {
  const GoClockSites sites = go_clock_sites("/proc/self/exe");
  EXPECT_FALSE(sites.patchable());
  EXPECT_EQ(sites.time_now.end, 0u);
  EXPECT_FALSE(go_clock_sites("/nonexistent/program").patchable());
  TextPatchResults results;
  EXPECT_TRUE(patch_go_clock(::getpid(), sites, 0, results));  // nothing to do
  EXPECT_TRUE(describe_patch_failures(sites, results).empty());
}

TEST(GoClock, ReadsAreToldApartByWhereTheyAreMadeAndWhoAsked) {
  GoClockSites sites;
  sites.nanotime = {0x1000, 0x102e};
  sites.time_now = {0x2000, 0x20e7};
  sites.time_now.lane = "time.now";
  sites.program_reads = {{0x3000, 0x30a6, "time.Since"}, {0x4000, 0x40a6, "time.Until"}};
  sites.patches.push_back(TextPatch{"runtime.nanotime", 0x1000, {}, {}, {}});
  const uint64_t bias = 0x5550000;
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x2050, 0), GoClockRead::program);
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x1016, bias + 0x3014),
            GoClockRead::program);  // time.Since
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x1016, bias + 0x4040),
            GoClockRead::program);
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x1016, bias + 0x30a6),
            GoClockRead::runtime);  // just past time.Since: a timer's
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x9000, bias + 0x3014),
            GoClockRead::not_package_time);  // nanotime1
  EXPECT_EQ(classify_go_clock_read(sites, 0, bias + 0x1016, bias + 0x3014),
            GoClockRead::not_package_time);  // the image placed elsewhere
  // Each of the program's reads is taped in the lane of the function that made it.
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x2050, 0), "time.now");
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x1016, bias + 0x3014), "time.Since");
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x1016, bias + 0x4040), "time.Until");
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x1016, bias + 0x30a6), "");  // a timer's
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x9000, bias + 0x3014), "");
  sites.patches.clear();  // not patched: runtime.nanotime makes no call of its own
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x1016, bias + 0x3014),
            GoClockRead::not_package_time);
  EXPECT_EQ(go_clock_lane(sites, bias, bias + 0x1016, bias + 0x3014), "");
  EXPECT_EQ(classify_go_clock_read(sites, bias, bias + 0x2050, 0), GoClockRead::program);
}

}  // namespace
}  // namespace tapedeck::floor

// A connection still being made (its SYN unanswered: the listener's accept queue is full, so
// the kernel drops it) is found among the process's own sockets; once none is, nothing is.
TEST(ProcessAccess, AConnectionMidHandshakeIsFoundAmongTheProcesssSockets) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), size), 0);
  ASSERT_EQ(::listen(listener, 0), 0);  // room for one unaccepted connection
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &size), 0);
  EXPECT_FALSE(tapedeck::floor::connecting({::getpid()}));
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) {
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address);
    clients.push_back(client);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(tapedeck::floor::connecting({::getpid()}));
  for (const int client : clients) ::close(client);
  EXPECT_FALSE(tapedeck::floor::connecting({::getpid()}));
  ::close(listener);
}
