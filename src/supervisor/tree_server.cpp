#include "supervisor/tree_server.hpp"

#include <sys/eventfd.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tapedeck::supervisor {

TreeServer::TreeServer(std::string socket_path) : socket_path_(std::move(socket_path)) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof address.sun_path) {
    throw std::runtime_error("the run folder's path is too long for a Unix socket: " +
                             socket_path_ + " (set TMPDIR to a shorter folder)");
  }
  std::strcpy(address.sun_path, socket_path_.c_str());
  listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0 ||
      ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener_, 128) != 0) {
    throw std::runtime_error("cannot listen on " + socket_path_ + ": " + std::strerror(errno));
  }
  // wake() ends serve()'s wait at once: a run's end is not held up by the poll's timeout.
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  also_poll(wake_fd_, [this] {
    uint64_t count = 0;
    ssize_t ignored = ::read(wake_fd_, &count, sizeof count);
    (void)ignored;
  });
}

void TreeServer::wake() {
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

TreeServer::~TreeServer() {
  for (Connection& connection : connections_) ::close(connection.fd);
  if (listener_ >= 0) ::close(listener_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void TreeServer::also_poll(int fd, std::function<void()> on_ready) {
  if (fd >= 0) others_.emplace_back(fd, std::move(on_ready));
}

void TreeServer::set_ticker(std::function<int()> next_ms, std::function<void()> tick) {
  next_tick_ms_ = std::move(next_ms);
  tick_ = std::move(tick);
}

void TreeServer::set_root(pid_t pid) {
  std::lock_guard lock(mutex_);
  root_ = pid;
}

void TreeServer::serve(const std::atomic<bool>& root_exited, std::chrono::milliseconds grace) {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (true) {
    if (root_exited.load() && !deadline) deadline = std::chrono::steady_clock::now() + grace;
    if (deadline && (connections_.empty() || std::chrono::steady_clock::now() > *deadline)) {
      break;
    }
    std::vector<pollfd> fds;
    fds.push_back({listener_, POLLIN, 0});
    for (const auto& [fd, _] : others_) fds.push_back({fd, POLLIN, 0});
    for (const Connection& connection : connections_) fds.push_back({connection.fd, POLLIN, 0});
    const int tick_in = next_tick_ms_ ? next_tick_ms_() : -1;
    const int ready = ::poll(fds.data(), fds.size(), tick_in >= 0 ? std::min(tick_in, 50) : 50);
    if (tick_in >= 0) tick_();
    if (ready <= 0) continue;
    if (fds[0].revents & POLLIN) accept_one();
    for (size_t i = 0; i < others_.size(); ++i) {
      if (fds[1 + i].revents & POLLIN) {
        others_[i].second();
      } else if (fds[1 + i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
        others_[i].first = -1;  // hung up (poll ignores it from now on): no busy loop
      }
    }
    const size_t first = 1 + others_.size();
    for (size_t i = first; i < fds.size(); ++i) {
      Connection& connection = connections_[i - first];
      // drain() may have read it, or closed it, since the poll.
      if (fds[i].revents == 0 || connection.fd < 0) continue;
      if (receive(connection) == Received::closed) close_connection(connection);
    }
    std::erase_if(connections_, [](const Connection& c) { return c.fd < 0; });
  }
}

void TreeServer::drain(const std::function<bool(const Connection&)>& which) {
  while (true) {
    pollfd waiting{listener_, POLLIN, 0};
    if (::poll(&waiting, 1, 0) != 1 || (waiting.revents & POLLIN) == 0) break;
    const size_t before = connections_.size();
    accept_one();
    if (connections_.size() == before) break;
  }
  // By index: a frame handled here may drain (and accept) again.
  for (size_t i = 0; i < connections_.size(); ++i) {
    Connection& connection = connections_[i];
    if (connection.fd < 0 || connection.receiving) continue;
    if (connection.heard && !which(connection)) continue;
    while (connection.fd >= 0) {
      const Received received = receive(connection);
      if (received == Received::closed) close_connection(connection);
      if (received != Received::frames || !which(connection)) break;
    }
  }
}

bool TreeServer::someone_waiting(const Connection& asking) {
  std::vector<pollfd> fds;
  fds.push_back({listener_, POLLIN, 0});
  for (const Connection& connection : connections_) {
    if (connection.fd < 0 || &connection == &asking) continue;
    if (!connection.pending.empty()) return true;  // a frame begun, the rest on its way
    fds.push_back({connection.fd, POLLIN, 0});
  }
  if (::poll(fds.data(), fds.size(), 0) <= 0) return false;
  return std::any_of(fds.begin(), fds.end(), [](const pollfd& fd) { return fd.revents != 0; });
}

void TreeServer::close_connection(Connection& connection) {
  ::close(connection.fd);
  connection.fd = -1;
}

void TreeServer::accept_one() {
  const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  Connection connection;
  connection.fd = fd;
  ucred credentials{};
  socklen_t size = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0) {
    connection.pid = credentials.pid;
    std::lock_guard lock(mutex_);
    pids_.insert(credentials.pid);
  }
  connections_.push_back(std::move(connection));
}

pid_t TreeServer::root() {
  std::lock_guard lock(mutex_);
  return root_;
}

TreeServer::Received TreeServer::receive(Connection& connection) {
  char buffer[1 << 16];
  const ssize_t got = ::recv(connection.fd, buffer, sizeof buffer, MSG_DONTWAIT);
  if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
    return Received::nothing;
  }
  if (got <= 0) {
    std::lock_guard lock(mutex_);
    pids_.erase(connection.pid);
    return Received::closed;
  }
  connection.pending.append(buffer, static_cast<size_t>(got));
  struct Receiving {
    Connection& connection;
    explicit Receiving(Connection& c) : connection(c) { connection.receiving = true; }
    ~Receiving() { connection.receiving = false; }
  } receiving(connection);
  size_t at = 0;
  while (connection.pending.size() - at >= wire::kHeaderBytes) {
    const uint32_t length = wire::load_length(connection.pending.data() + at);
    if (length < 1 || length > wire::kMaxFrameBytes) return Received::closed;  // not one of ours
    if (connection.pending.size() - at < 4 + length) break;
    const auto op = static_cast<uint8_t>(connection.pending[at + 4]);
    const std::string_view body(connection.pending.data() + at + wire::kHeaderBytes, length - 1);
    handler_(connection, static_cast<wire::Op>(op), body);
    connection.heard = true;
    at += 4 + length;
  }
  connection.pending.erase(0, at);
  return Received::frames;
}

void TreeServer::answer(const Connection& connection, wire::Reply reply, const std::string& body) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(reply));
  frame += body;
  wire::store_length(frame.data(), frame.size());
  std::string_view rest = frame;
  while (!rest.empty()) {
    const ssize_t sent = ::send(connection.fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return;  // the process is gone; its end of stream closes the connection
    rest.remove_prefix(static_cast<size_t>(sent));
  }
}

void TreeServer::answer_miss(const Connection& connection, const std::string& message,
                             const std::string& wanted, const std::string& recorded) {
  stop_tree(message, wanted, recorded);
  std::string body;
  wire::put_bytes(body, message);
  answer(connection, wire::Reply::miss, body);
}

void TreeServer::stop_tree(const std::string& message, const std::string& wanted,
                           const std::string& recorded) {
  std::lock_guard lock(mutex_);
  if (!miss_) {
    miss_ = message;
    miss_values_ = {wanted, recorded};
  }
  for (pid_t pid : pids_) ::kill(pid, SIGKILL);
  if (root_ > 0) ::kill(root_, SIGKILL);
}

std::optional<std::string> TreeServer::miss() {
  std::lock_guard lock(mutex_);
  return miss_;
}

std::pair<std::string, std::string> TreeServer::miss_values() {
  std::lock_guard lock(mutex_);
  return miss_values_;
}

}  // namespace tapedeck::supervisor
