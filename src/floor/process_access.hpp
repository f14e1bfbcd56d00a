// What the floor reads of, and writes to, a process it serves: its memory (process_vm_readv /
// process_vm_writev, which need no ptrace stop) and what /proc says of it and of the sockets.
// Internal to tapedeck (the LLM proxy reads the sockets too).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tapedeck::floor {

bool read_memory(pid_t pid, uint64_t where, void* bytes, size_t size);
bool write_memory(pid_t pid, uint64_t where, const void* bytes, size_t size);
// A zero-terminated string of at most 4096 bytes (read a page at most at a time: it may end
// just before an unmapped page).
bool read_string(pid_t pid, uint64_t where, std::string& out);
// `path` as process `pid` names it, made absolute: relative to `folder` (AT_FDCWD: its working
// folder, else one of its descriptors) and lexically normal. Empty when the base is unknown.
std::string absolute_path(pid_t pid, int folder, const std::string& path);
// A symbolic link's target ("" when it cannot be read): /proc/PID/cwd, /proc/PID/fd/N.
std::string link_of(const std::string& path);
// The process (thread group) thread `tid` belongs to; 0 when it is gone.
pid_t process_of(pid_t tid);
// Whether every thread of process `process` but those in `except` is asleep: state S (waiting
// for an event) or Z in /proc. A runnable thread (R), one in the disk's wait (D) or one stopped
// counts as awake; a process gone, as asleep. `except` is numbered as this process sees threads,
// or as their own pid namespace does (what gettid answered them).
enum class Numbering { here, own_namespace };
bool threads_asleep(pid_t process, const std::vector<pid_t>& except, Numbering numbering);
// Process `root` and every process below it, from the kernel's lists of each thread's children.
std::vector<pid_t> tree_of(pid_t root);
// The parent of process `pid` and the process tracing it (ptrace), from one read of its status;
// 0 for none, both 0 when it is gone.
struct Lineage {
  pid_t parent = 0;
  pid_t tracer = 0;
};
Lineage lineage_of(pid_t pid);
// The TCP sockets (IPv4 and IPv6) of this network namespace, as /proc/net/tcp and tcp6 list them.
struct TcpSocket {
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  bool listening = false;
  bool established = false;    // both ends open (a side the peer closed is in CLOSE_WAIT)
  uint64_t send_queue = 0;     // bytes sent and not acknowledged yet
  uint64_t receive_queue = 0;  // bytes not read yet; for a listener, connections not accepted
  std::string inode;
};
std::vector<TcpSocket> tcp_sockets();
// Those bound to local `port`.
std::vector<TcpSocket> tcp_sockets_on(uint16_t port);
// Whether one of `processes` is making a TCP connection (its socket's SYN sent, not yet
// answered; on a loaded machine the loopback may take milliseconds to finish the handshake): a
// wait for it to open is not over.
bool connecting(const std::vector<pid_t>& processes);
// The process's command name, for messages ("?" when it is gone).
std::string command_of(pid_t pid);

}  // namespace tapedeck::floor
