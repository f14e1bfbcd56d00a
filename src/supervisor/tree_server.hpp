// The supervisor's side of the wire (preload/wire.hpp): a Unix socket every process of the tree
// connects to, served by one thread in a poll loop that hands each whole frame to the handler,
// in the order each process sent them. It also knows the tree's processes (by their peer
// credentials), so that a replay that meets what the tape does not hold can stop them all.
//
// Other descriptors the serving thread must watch (the workspace's inotify queue) are polled in
// the same loop: everything the tree does is handled by one thread, in one order.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "preload/wire.hpp"

namespace tapedeck::supervisor {

struct Connection {
  int fd = -1;
  pid_t pid = 0;
  // The subprocess whose process this is (wire::Op::hello; 0: the root's tree), set by its
  // first frame.
  mutable uint64_t spawn = 0;
  std::string pending;     // bytes received, not yet a whole frame
  bool heard = false;      // a frame of it has been handled
  bool receiving = false;  // its frames are being handled (drain() leaves it be)
};

class TreeServer {
 public:
  using Handler = std::function<void(const Connection&, wire::Op, std::string_view body)>;

  // Listens at `socket_path` (throws when it cannot).
  explicit TreeServer(std::string socket_path);
  ~TreeServer();
  TreeServer(const TreeServer&) = delete;
  TreeServer& operator=(const TreeServer&) = delete;

  void set_handler(Handler handler) { handler_ = std::move(handler); }
  // Another descriptor to watch: `on_ready` runs on the serving thread when it is readable.
  void also_poll(int fd, std::function<void()> on_ready);
  // Something on the serving thread that wants to run in `next_ms()` milliseconds (-1: not
  // now): the loop wakes for it and calls `tick`.
  void set_ticker(std::function<int()> next_ms, std::function<void()> tick);
  const std::string& socket_path() const { return socket_path_; }
  void set_root(pid_t pid);
  // The tree's root: the program, or the init of its pid namespace (any thread may ask).
  pid_t root();

  // Serves until the root has exited and every connection closed (or `grace` passed since).
  void serve(const std::atomic<bool>& root_exited, std::chrono::milliseconds grace);
  // Makes serve() look at root_exited now rather than at its next poll timeout.
  void wake();
  // Handles now what the connections `which` picks have sent and this server has not read yet,
  // so that it comes before the frame being handled. For a process that has ended, that is
  // everything it sent: its writes were done before its parent could tell of its end. Connections
  // not yet accepted or not yet heard from are read too (their first frame names their spawn).
  void drain(const std::function<bool(const Connection&)>& which);

  // Whether a process other than `asking`'s has sent what this server has not handled yet, or is
  // waiting to be accepted: a thread blocked on its answer sleeps, yet is not idle.
  bool someone_waiting(const Connection& asking);

  void answer(const Connection& connection, wire::Reply reply, const std::string& body = {});
  // The tape does not hold what this process asked for: the tree is stopped, the process told.
  // (`wanted`, `recorded`: the input whole and the nearest recorded one, for --json.)
  void answer_miss(const Connection& connection, const std::string& message,
                   const std::string& wanted = {}, const std::string& recorded = {});
  // A replay met an input the tape does not hold: remember why (the first reason), stop the
  // whole tree. Any thread may call it.
  void stop_tree(const std::string& message, const std::string& wanted = {},
                 const std::string& recorded = {});
  std::optional<std::string> miss();
  // The first miss's input and the recorded one nearest to it, whole (empty when not known).
  std::pair<std::string, std::string> miss_values();

 private:
  void accept_one();
  enum class Received { frames, nothing, closed };
  // Reads what is there, without waiting, and handles every whole frame.
  Received receive(Connection& connection);
  void close_connection(Connection& connection);

  std::string socket_path_;
  int listener_ = -1;
  int wake_fd_ = -1;
  Handler handler_;
  // A deque: drain() accepts while a frame of another connection is handled, and the handler's
  // reference to that one must stay good.
  std::deque<Connection> connections_;
  std::vector<std::pair<int, std::function<void()>>> others_;
  std::function<int()> next_tick_ms_;
  std::function<void()> tick_;

  std::mutex mutex_;  // the fields below: other threads (the LLM proxy's) stop the tree too
  std::set<pid_t> pids_;
  pid_t root_ = 0;
  std::optional<std::string> miss_;
  std::pair<std::string, std::string> miss_values_;
};

}  // namespace tapedeck::supervisor
