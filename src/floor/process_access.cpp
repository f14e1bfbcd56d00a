#include "floor/process_access.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tapedeck::floor {

bool read_memory(pid_t pid, uint64_t where, void* bytes, size_t size) {
  iovec local{bytes, size};
  iovec remote{reinterpret_cast<void*>(where), size};
  return ::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(size);
}

bool write_memory(pid_t pid, uint64_t where, const void* bytes, size_t size) {
  iovec local{const_cast<void*>(bytes), size};
  iovec remote{reinterpret_cast<void*>(where), size};
  return ::process_vm_writev(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(size);
}

bool read_string(pid_t pid, uint64_t where, std::string& out) {
  out.clear();
  while (out.size() < 4096) {
    char chunk[256];
    const uint64_t at = where + out.size();
    const size_t size = std::min<uint64_t>(sizeof chunk, 4096 - at % 4096);
    if (!read_memory(pid, at, chunk, size)) return false;
    const void* zero = std::memchr(chunk, 0, size);
    if (zero != nullptr) {
      out.append(chunk, static_cast<size_t>(static_cast<const char*>(zero) - chunk));
      return true;
    }
    out.append(chunk, size);
  }
  return false;
}

std::string absolute_path(pid_t pid, int folder, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  const std::string proc = "/proc/" + std::to_string(pid);
  const std::string base =
      folder == AT_FDCWD ? link_of(proc + "/cwd") : link_of(proc + "/fd/" + std::to_string(folder));
  if (base.empty() || base.front() != '/') return {};
  return (std::filesystem::path(base) / path).lexically_normal().string();
}

std::string link_of(const std::string& path) {
  char target[4096];
  const ssize_t size = ::readlink(path.c_str(), target, sizeof target);
  return size > 0 ? std::string(target, static_cast<size_t>(size)) : std::string();
}

pid_t process_of(pid_t tid) {
  std::ifstream status("/proc/" + std::to_string(tid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("Tgid:")) return static_cast<pid_t>(std::stol(line.substr(5)));
  }
  return 0;
}

namespace {

// The thread's id in its own pid namespace: the last of /proc's NSpid (0 when it is gone).
pid_t inner_tid(const std::filesystem::path& task) {
  std::ifstream status(task / "status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("NSpid:")) continue;
    const size_t last = line.find_last_of(" \t");
    return last == std::string::npos ? 0 : static_cast<pid_t>(std::stol(line.substr(last + 1)));
  }
  return 0;
}

}  // namespace

bool threads_asleep(pid_t process, const std::vector<pid_t>& except, Numbering numbering) {
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(process) + "/task", error)) {
    std::ifstream stat(task.path() / "stat");
    const std::string text((std::istreambuf_iterator<char>(stat)),
                           std::istreambuf_iterator<char>());
    const size_t name_end = text.rfind(')');  // the command may hold spaces and parentheses
    if (name_end == std::string::npos || name_end + 2 >= text.size()) continue;  // gone
    const char state = text[name_end + 2];
    if (state == 'S' || state == 'Z') continue;
    if (except.empty()) return false;
    const pid_t tid = numbering == Numbering::here
                          ? static_cast<pid_t>(std::stol(task.path().filename().string()))
                          : inner_tid(task.path());
    if (std::find(except.begin(), except.end(), tid) == except.end()) return false;
  }
  return !error || error == std::errc::no_such_file_or_directory;  // gone: it runs no more
}

std::vector<pid_t> tree_of(pid_t root) {
  std::vector<pid_t> tree{root};
  for (size_t i = 0; i < tree.size(); ++i) {
    const std::string tasks = "/proc/" + std::to_string(tree[i]) + "/task";
    DIR* folder = ::opendir(tasks.c_str());
    if (folder == nullptr) continue;
    while (const dirent* task = ::readdir(folder)) {
      if (task->d_name[0] == '.') continue;
      std::ifstream children(tasks + "/" + task->d_name + "/children");
      pid_t child;
      while (children >> child) tree.push_back(child);
    }
    ::closedir(folder);
  }
  return tree;
}

Lineage lineage_of(pid_t pid) {
  Lineage lineage;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("PPid:")) lineage.parent = static_cast<pid_t>(std::stol(line.substr(5)));
    if (line.starts_with("TracerPid:")) {
      lineage.tracer = static_cast<pid_t>(std::stol(line.substr(10)));
      break;  // listed after PPid
    }
  }
  return lineage;
}

std::vector<TcpSocket> tcp_sockets() {
  std::vector<TcpSocket> sockets;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the heading
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode;
      const size_t local_colon = local.rfind(':');
      const size_t remote_colon = remote.rfind(':');
      const size_t queue_colon = queues.find(':');
      if (local_colon == std::string::npos || remote_colon == std::string::npos ||
          queue_colon == std::string::npos) {
        continue;
      }
      TcpSocket socket;
      socket.local_port =
          static_cast<uint16_t>(std::stoul(local.substr(local_colon + 1), nullptr, 16));
      socket.remote_port =
          static_cast<uint16_t>(std::stoul(remote.substr(remote_colon + 1), nullptr, 16));
      socket.listening = state == "0A";    // TCP_LISTEN
      socket.established = state == "01";  // TCP_ESTABLISHED
      socket.send_queue = std::stoull(queues.substr(0, queue_colon), nullptr, 16);
      socket.receive_queue = std::stoull(queues.substr(queue_colon + 1), nullptr, 16);
      socket.inode = inode;
      sockets.push_back(std::move(socket));
    }
  }
  return sockets;
}

std::vector<TcpSocket> tcp_sockets_on(uint16_t port) {
  std::vector<TcpSocket> sockets = tcp_sockets();
  std::erase_if(sockets, [port](const TcpSocket& socket) { return socket.local_port != port; });
  return sockets;
}

// Reading /proc/net/tcp walks the kernel's whole connection table (about 8 ms here): the
// tree's own sockets are asked instead, through copies of their descriptors.
bool connecting(const std::vector<pid_t>& processes) {
  for (const pid_t process : processes) {
    const std::string fds = "/proc/" + std::to_string(process) + "/fd";
    DIR* folder = ::opendir(fds.c_str());
    if (folder == nullptr) continue;
    int handle = -1;  // a pidfd, opened at the first socket
    bool found = false;
    while (const dirent* entry = ::readdir(folder)) {
      if (entry->d_name[0] == '.') continue;
      if (!link_of(fds + "/" + entry->d_name).starts_with("socket:")) continue;
      if (handle < 0) handle = static_cast<int>(::syscall(SYS_pidfd_open, process, 0));
      if (handle < 0) break;
      const int copy =
          static_cast<int>(::syscall(SYS_pidfd_getfd, handle, std::atoi(entry->d_name), 0));
      if (copy < 0) continue;
      tcp_info info{};
      socklen_t size = sizeof info;
      found = ::getsockopt(copy, IPPROTO_TCP, TCP_INFO, &info, &size) == 0 &&
              info.tcpi_state == TCP_SYN_SENT;
      ::close(copy);
      if (found) break;
    }
    if (handle >= 0) ::close(handle);
    ::closedir(folder);
    if (found) return true;
  }
  return false;
}

std::string command_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name.empty() ? "?" : name;
}

}  // namespace tapedeck::floor
