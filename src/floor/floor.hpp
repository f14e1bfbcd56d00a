// The system-call floor: a seccomp-bpf filter installed in the root program before it starts and
// inherited by every process and thread of the tree, whatever it is linked with (glibc, musl, Go,
// a raw syscall()). The preload library interposes libc; the floor is what holds beneath it.
//
// It has two reaches, chosen per run from what the root program is (see Reach):
//
// Reach::network, for a root the preload library serves (dynamically linked to glibc):
//
//   connect, sendto with a destination address, sendmsg and sendmmsg
//       notify (sendmsg and sendmmsg always: their destination is behind a pointer); the
//       supervisor (Warden) reads each destination from the caller's memory (none: a connected
//       socket's send, let through) and lets the
//       call through when the policy allows it: every family but IPv4 and IPv6; tapedeck's LLM
//       proxy on loopback; an allowed endpoint (--allow, the LLM upstream when recording, the
//       nameservers of /etc/resolv.conf on port 53); a loopback listener that a process of the
//       tree itself opened (a test suite's own server). Anything else fails with ECONNREFUSED,
//       as a refused connection would, and the supervisor says so in one line on stderr.
//   io_uring_setup
//       ENOSYS: io_uring's operations are not system calls and would pass any filter; runtimes
//       fall back to epoll and plain reads.
//
// Reach::whole, for a root the preload cannot serve (statically linked, or Go, which makes its
// system calls itself): everything above, and
//
//   clock_gettime (wall and monotonic clocks), gettimeofday, time
//       notify: answered with the value the tape holds (record: the real clock, cut to the
//       millisecond as the tape keeps it; replay: the recorded value), written into the caller's
//       memory. The root's exec is stopped once (ptrace) so that its auxiliary vector no longer
//       names the vDSO (hide_vdso): its libc or runtime then reads the clock with the system call.
//   nanosleep, clock_nanosleep; poll, ppoll, select, pselect6 on no descriptor (Runtime::plain)
//       notify: taped as a sleep; record lets it run, replay answers at once (the waits: 0, no
//       time left).
//   execve, execveat
//       notify: an exec of an executable file is redirected to the wrapper Services names (the
//       exec shim: the subprocess is taped, or replayed without running), by taking the caller
//       under ptrace for the moment it takes (exec_redirect.cpp): a page is mapped in the caller
//       for the wrapper's argv (a vfork child's parent keeps that page: 4 KiB per subprocess).
//   open, openat (openat2: ENOSYS, so that callers fall back to openat)
//       notify: a workspace file about to be read is served as the preload's would be (replay
//       puts the recorded bytes in the view first); one opened to be written is taped once its
//       bytes are final:
//   getrandom
//       notify: answered with the next bytes of the process's deterministic stream (the
//       preload's entropy axis: one seed on the tape, nothing per draw); the root's AT_RANDOM
//       bytes come from it too (hide_vdso), and an open of /dev/urandom or /dev/random is
//       answered with a memory file of the next megabyte of it (reads past it find its end).
//   unlink, unlinkat (not AT_REMOVEDIR)
//       notify: a file that is there is taped as deleted, then the call runs.
//   rename, renameat, renameat2
//       notify: made by the supervisor in the process's view of the files (/proc/PID/root), the
//       result answered, and taped as the preload's report of a rename is.
//   close
//       notify: the descriptor's file, if the process opened it to write, is taped as it is
//       (files still open when the run ends are taped then).
//
// Runtime::go, for a Go root in Reach::whole: Go's runtime reads the monotonic clock on its own
// (the scheduler, timers, sysmon) from several threads, in an order no two runs repeat, and
// sleeps with nanosleep only in sysmon. So: a read of CLOCK_REALTIME and the CLOCK_MONOTONIC
// read the same thread makes next are the program's time.Now(); a read that runtime.nanotime
// makes for time.Since, time.Until or time.init is the program's too (go_clock.hpp: the root's
// runtime.nanotime is patched at its exec stop to say who asked); both are taped and replayed as
// above; its runtime.cputicks is patched to read 0 (the main goroutine's first map order is
// every replay's).
// Any other monotonic read is the runtime's, untaped (record: the real clock; replay: a
// clock that starts from the program's and moves a microsecond a read and by every wait the
// replay skips); nanosleep runs untaped;
//   epoll_wait, epoll_pwait with a timeout
//       notify (replay): the runtime parks there until its next timer (time.Sleep). The wait is
//       held (other notifications are served meanwhile); when for a short grace (kGraceMs)
//       nothing became ready on its epoll set, the program made no call but the runtime's clock
//       reads, every other thread of the process sleeps and no request to the LLM proxy or TCP
//       handshake is under way, it is skipped: answered with no
//       events, the runtime's clock moved by its timeout, so the timer fires at once. Otherwise
//       it runs in the kernel, and the runtime's clock keeps at least the real pace.
//
// Only the root's own processes are served (those running the root's program image): a
// subprocess it execs is let through untaped. In Reach::network, calls made from a program's own
// code (below kOwnCodeBelow) have the whole reach's rules too, served for the processes of a
// static program the warden follows (follow_exec: exec'd in place of a preloaded process) and
// let through for every other. Who answers: the supervisor's serving thread, one
// notification at a time (Warden::serve_one when Warden::fd() is readable). A caller may assume
// that a notification whose process died before the answer is dropped without wedging the loop,
// and that a call let through then runs in the kernel exactly as it would have without the floor.
//
// Not caught yet, stated rather than hidden: in Reach::whole, folders made and removed, links,
// and waits with a timeout on descriptors or futexes (but Runtime::go's epoll waits): futex, and
// poll, select and epoll on descriptors, take real time (a preloaded program's are the preload's:
// wait_hooks.cpp, sync_wait_hooks.cpp).
#pragma once

#include <linux/filter.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "floor/go_clock.hpp"

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

enum class Reach { network, whole };

// In Reach::network, calls made from code mapped below this address are a program's own, and
// the filter holds its whole reach for them (Warden::follow_exec): the kernel loads executables
// low (a static one at its fixed address, a position-independent one near 0x555555554000);
// shared libraries, libc among them, and the vDSO lie above, in the mapping area under the
// stack. A static-pie program (no interpreter) is loaded in that area too, unless it runs with
// the legacy layout, which tapedeck-exec gives it (wire::kLegacyLayoutVariable); one loaded
// there anyway cannot be told from a library, and is not served.
constexpr uint64_t kOwnCodeBelow = 0x7e00'0000'0000;
enum class Runtime { plain, go };

// The filter as a BPF program, built before fork (by libseccomp) so that the child only has to
// install it.
class Filter {
 public:
  // Throws std::runtime_error when libseccomp cannot build it, or when `holes` names a call
  // Reach::whole does not serve.
  // `holes`: served calls left out (Reach::whole only), so that a test can make a program
  // escape the floor on purpose and see it named and kept off the workspace; never the
  // network's calls. What escapes through them: escapes_through().
  explicit Filter(Reach reach = Reach::network, Runtime runtime = Runtime::plain,
                  const std::set<std::string>& holes = {});
  Reach reach() const { return reach_; }
  // In the child, between fork and exec (async-signal-safe): no_new_privs when not root, then
  // the filter. Returns the descriptor notifications arrive on, or -1 with errno set.
  int install() const noexcept;

 private:
  Reach reach_;
  std::vector<sock_filter> program_;
};

// What a program's calls through `holes` (served calls left out of the filter) take past the
// tape, in words: "clock reads", "file reads and writes", …; empty for no holes.
std::string escapes_through(const std::set<std::string>& holes);

// What is done to the root at its exec stop (hide_vdso), all of it prepared before the
// supervisor forks: in a pid namespace the stop is handled by the namespace's init, a child of
// the threaded supervisor, which must not allocate (another thread may have held the allocator's
// lock at the fork: the child would wait for it forever).
struct ExecStopPlan {
  std::array<unsigned char, 16> startup_random{};
  bool replaces_random = false;            // AT_RANDOM's bytes become startup_random
  const GoClockSites* go_clock = nullptr;  // a Go program's patches (go_clock.hpp), or none
};

// What the exec stop did, as plain data: it crosses the set-up channel, and describe() words it
// in the supervisor.
struct ExecStopReport {
  enum class Failure : uint8_t {
    none,
    not_stopped,        // the process did not stop at its exec
    stopped_by_signal,  // it stopped with signal `error` before its exec
    registers,          // its registers could not be read (errno `error`)
    stack,              // its stack could not be read
    random_bytes,       // its AT_RANDOM bytes could not be written
    auxv_write,         // AT_SYSINFO_EHDR could not be turned into AT_IGNORE
    auxv_missing,       // no auxiliary vector was found
  };
  Failure failure = Failure::none;
  int error = 0;
  uint64_t entry = 0;           // the program's entry point (AT_ENTRY), where it was loaded
  bool patches_failed = false;  // `patches` says which and why
  TextPatchResults patches{};
};

// The root program, stopped by ptrace at its exec (PTRACE_TRACEME before execve): its auxiliary
// vector's AT_SYSINFO_EHDR entry becomes AT_IGNORE, so neither libc nor Go's runtime finds the
// vDSO and every clock read is a system call the floor sees; its AT_RANDOM bytes become the
// plan's; a Go program's runtime.nanotime and cputicks are patched (go_clock.hpp). Detaches in
// every case. Async-signal-safe.
ExecStopReport hide_vdso(pid_t pid, const ExecStopPlan& plan);
// What failed at the exec stop and what goes untaped for it; empty when nothing failed.
std::string describe(const ExecStopReport& report, const ExecStopPlan& plan);

// What Reach::whole calls are answered with: the supervisor's tape, behind an interface so that
// the floor knows nothing of records. Called on the serving thread only.
class Services {
 public:
  virtual ~Services() = default;
  // A clock read by the served process `pid`: the value to give it, in milliseconds since the
  // clock's epoch. `real_ms` is the clock's real value, cut to the millisecond; `lane`, the lane
  // it is taped in (empty: none; see ClockRead::lane).
  virtual int64_t clock_read(pid_t pid, bool wall, int64_t real_ms, std::string_view lane) = 0;
  // The lane of the clock reads of the `rank`-th thread (in creation order, 0 the main thread)
  // of `process`, a thread group of a plain runtime; empty when the run keeps no thread lanes.
  virtual std::string thread_lane(pid_t process, uint32_t rank) = 0;
  // A sleep of `ms`: true when the caller should not sleep (replay).
  virtual bool sleep(pid_t pid, uint64_t ms) = 0;
  // The file calls below name the calling thread `pid` and its `thread_rank` (thread_lane's).
  // `path` (absolute, as the process names it) is about to be opened: to read when `writes` is
  // false; else to write, reading it too when `reads_too`. 0 to let it through; else the errno
  // it fails with: EIO when the tape cannot serve it (the tree is being stopped), or the one a
  // replay's --fault file:PATH injects.
  virtual int open(pid_t pid, uint32_t thread_rank, const std::string& path, bool writes,
                   bool reads_too) = 0;
  // Runtime::go: a monotonic read by the runtime itself, in nanoseconds (never taped).
  virtual int64_t runtime_clock_ns(pid_t pid, int64_t real_ns) = 0;
  // Runtime::go: whether waits may be skipped at all (replay); then, one with nothing ready
  // after the grace, of `ms`: true when the runtime's clock moved by it and the wait is skipped.
  virtual bool waits_are_virtual() const = 0;
  virtual bool skip_wait(pid_t pid, uint64_t ms) = 0;
  // A held wait runs in the kernel after all (something is ready, or the program is at work):
  // from now the runtime's clock keeps at least the real pace, until a wait is skipped.
  virtual void wait_runs(pid_t pid) = 0;
  // `size` bytes of randomness for `process` (a thread group): its next bytes of the run's
  // deterministic stream, the same in record and replay.
  // `thread_rank`: the drawing thread's place in the process's creation order (0: the main
  // thread, or not known); a run that gives each thread a stream of its own draws from its.
  virtual std::string entropy(pid_t process, uint32_t thread_rank, size_t size) = 0;
  // The 16 bytes the root's auxiliary vector offers as AT_RANDOM (libc's stack guard, Go's
  // fastrand seed: its map iteration order), from the same seed; empty: the kernel's stay.
  virtual std::string startup_random() = 0;
  // `path` (absolute; a file, not a folder) is about to be deleted by a served process.
  virtual void deleting(pid_t pid, uint32_t thread_rank, const std::string& path) = 0;
  // The floor renamed `from` to `to` (absolute) for a served process.
  virtual void renamed(pid_t pid, uint32_t thread_rank, const std::string& from,
                       const std::string& to) = 0;
  // A served process is about to close a descriptor naming `path` (absolute, as the process
  // sees it): a file it opened to write is final.
  virtual void closing(pid_t pid, uint32_t thread_rank, const std::string& path) = 0;
  // What an exec by a served process runs instead: the wrapper's path and its first arguments,
  // followed by the program's absolute path and the argv the process gave.
  virtual std::vector<std::string> exec_wrapper() = 0;
};

// The supervisor's side: answers the notifications of one tree.
class Warden {
 public:
  // Takes `listener` (closed with the warden). `report` receives each one-line denial.
  // `services` (may be null: Reach::network) answers the calls of Reach::whole, which are
  // served only for processes running the same program image as `root` at construction.
  Warden(int listener, NetworkPolicy policy, pid_t root,
         std::function<void(const std::string&)> report, Services* services = nullptr,
         Runtime runtime = Runtime::plain);
  // How long a skippable wait is given for something to become ready before it is skipped.
  static constexpr int kGraceMs = 5;
  ~Warden();
  Warden(const Warden&) = delete;
  Warden& operator=(const Warden&) = delete;

  int fd() const { return listener_; }
  // The root runs the program to serve already (it will not exec it): for tests that fork.
  void root_runs_its_program() { program_pid_ = root_; }
  // Reach::network: process `pid` of the preloaded tree is about to exec `program` in place of
  // itself, a program the preload cannot reach (static); from that exec on, it and its forks
  // running that image are served as a static root is (the filter's whole reach holds for calls
  // made from a program's own code). No init stops that exec, so the warden does when it lets
  // it through, doing there what hide_vdso does for a root with `plan`.
  void follow_exec(pid_t pid, const ExecStopPlan& plan, std::string program);
  // The tree's filter has the network's reach (a preloaded root): the root's own calls are not
  // served, only those of the processes follow_exec names. (Default: the whole reach.)
  void serve_followed_only() { filter_reach_ = Reach::network; }
  // The programs follow_exec named that are served, and a line for each that is not, with why.
  const std::vector<std::string>& followed() const { return followed_programs_; }
  const std::vector<std::string>& not_followed() const { return not_followed_; }
  // Answers one notification; call when fd() is readable. Never throws.
  void serve_one();
  // Runtime::go: in how many milliseconds tick() wants to run (-1: no wait is held), and the
  // decision on the held waits whose grace is over.
  int next_tick_ms() const;
  void tick();
  uint64_t denied() const { return denied_; }

 private:
  // 0 to let the call through, else the errno it fails with.
  int decide(const seccomp_notif& request);
  bool tree_listens_on(int family, uint16_t port) const;
  // Reach::whole (served_calls.cpp): fills response_ for a clock, sleep or open notification.
  // False when the notification is held (answered later).
  bool serve_call(const seccomp_notif& request, seccomp_notif_resp& response);
  bool served(pid_t pid) const;
  void answer_clock(const seccomp_notif& request, seccomp_notif_resp& response);
  void deliver_clock(const seccomp_notif& request, seccomp_notif_resp& response, int64_t ns);
  void answer_sleep(const seccomp_notif& request, seccomp_notif_resp& response);
  void answer_quiet_wait(const seccomp_notif& request, seccomp_notif_resp& response);
  // A sleep of `ms` by `pid`: taped; true when it is skipped (replay).
  bool pass_sleep(pid_t pid, uint64_t ms);
  void answer_open(const seccomp_notif& request, seccomp_notif_resp& response);
  void answer_exec(const seccomp_notif& request, seccomp_notif_resp& response);
  void answer_close(const seccomp_notif& request, seccomp_notif_resp& response);
  void answer_random(const seccomp_notif& request, seccomp_notif_resp& response);
  bool serve_entropy_file(const seccomp_notif& request, uint64_t flags);
  static constexpr size_t kEntropyFileBytes = 1 << 20;
  void answer_unlink(const seccomp_notif& request, seccomp_notif_resp& response);
  void answer_rename(const seccomp_notif& request, seccomp_notif_resp& response);
  // timed_waits.cpp: holds a timed wait (answers nothing yet) or lets it through.
  bool park_wait(const seccomp_notif& request, seccomp_notif_resp& response);
  void release_parked_waits();
  bool network_in_motion(pid_t process) const;
  // exec_redirect.cpp: true when the exec now runs the wrapper (the notification is void);
  // false to let it through as it is (`why` says what failed, empty when nothing did).
  bool redirect_exec(const seccomp_notif& request, std::string& why);
  // A thread's place in its process's creation order (0: the main thread): threads are ranked
  // as the floor first meets them, with every thread of the process alive then that it has not
  // ranked, in the order of their ids (a pid namespace hands them out in creation order).
  uint32_t thread_rank(pid_t tid);
  // Runtime::plain's thread_rank; 0 for Go's (its threads are the runtime's, not the program's).
  uint32_t rank_of(pid_t tid) { return runtime_ == Runtime::plain ? thread_rank(tid) : 0; }
  std::map<pid_t, std::map<pid_t, uint32_t>> thread_ranks_;  // per process, per thread
  // follow_exec: lets the announced exec through, stopped at its end (the notification
  // answered), and serves the image it runs from then on.
  void stop_followed_exec(const seccomp_notif& request, seccomp_notif_resp& response);
  // Whether `pid` runs `image` (dev, inode) and is not below the exec wrapper, up to `program`.
  bool runs_served_image(pid_t pid, const struct stat& running, dev_t device, ino_t inode,
                         pid_t program) const;
  struct FollowedExec {
    ExecStopPlan plan;
    std::string program;
  };
  std::map<pid_t, FollowedExec> announced_execs_;
  Reach filter_reach_ = Reach::whole;
  struct FollowedImage {
    pid_t program_pid;
    dev_t device;
    ino_t inode;
  };
  std::vector<FollowedImage> followed_images_;
  std::vector<std::string> followed_programs_;
  std::vector<std::string> not_followed_;

  int listener_;
  NetworkPolicy policy_;
  pid_t root_;
  std::function<void(const std::string&)> report_;
  seccomp_notif* request_ = nullptr;
  seccomp_notif_resp* response_ = nullptr;
  uint64_t denied_ = 0;
  Services* services_ = nullptr;
  Runtime runtime_ = Runtime::plain;
  bool answered_ = false;  // the notification being served was answered already (ADDFD)
  // Runtime::go: the waits held, with a copy of each one's epoll descriptor.
  struct ParkedWait {
    uint64_t id;
    pid_t pid;
    pid_t process;  // pid's
    int epoll;
    int timeout_ms;
    int64_t since_ms;
    int looks = 0;
  };
  std::vector<ParkedWait> parked_;
  // Runtime::go: threads whose CLOCK_REALTIME read makes their next monotonic read a program's.
  std::set<pid_t> reading_time_now_;
  // A clock read's answer, kept in case its thread never gets it: a signal that interrupts the
  // wait for it voids the notification, and the kernel restarts the call (Go's preemption
  // signal does, to a thread whose read waits more than 10 ms). Its restart is answered the
  // same, untaped, so that the tape holds each read the program made once.
  struct UndeliveredClock {
    int nr = 0;
    uint64_t ip = 0;
    uint64_t args[2] = {0, 0};
    int64_t ns = 0;
  };
  UndeliveredClock clock_answer_;
  std::map<pid_t, UndeliveredClock> undelivered_clocks_;
  // Runtime::go: the root image's runtime.nanotime and its callers, and where the image lies.
  GoClockSites go_clock_;
  uint64_t go_clock_bias_ = 0;
  // Runtime::go: a monotonic clock_gettime that is the runtime's own, not the program's.
  bool runtime_clock_read(const seccomp_notif& request) const;
  pid_t program_pid_ = 0;  // the process that exec'd the program (the tree's first exec)
  dev_t root_device_ = 0;  // the program's image, whose processes are served
  ino_t root_inode_ = 0;
  // The exec wrapper's image (taken with the program's): a process below it is a subprocess.
  dev_t wrapper_device_ = 0;
  ino_t wrapper_inode_ = 0;
  // The last value each clock gave the tree: an absolute-deadline sleep lasts from here.
  int64_t last_seen_ms_[2] = {0, 0};
  // Processes whose exec could not be redirected: their restarted exec runs as it is.
  std::set<pid_t> not_redirected_;
};

}  // namespace tapedeck::floor
