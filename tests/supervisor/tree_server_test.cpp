// The supervisor's socket server: a subprocess's end is told by its parent on another
// connection, and what the subprocess sent before it ended must be handled first.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "supervisor/tree_server.hpp"
#include "test_support.hpp"

namespace tapedeck::supervisor {
namespace {

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "cannot connect to " << path;
  }
  return fd;
}

void send_frame(int fd, wire::Op op, uint64_t value) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(op));
  wire::put_int(frame, value);
  wire::store_length(frame.data(), frame.size());
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
}

// The parent's connection is accepted (and its report read) before the child's: the server
// accepts one connection per look. Without drain() the child's frames would come after it.
TEST(TreeServerTest, DrainHandlesAnEndedSubprocessBeforeItsParentsReport) {
  testing::TempDir folder;
  TreeServer server((folder.path() / "s").string());
  std::vector<std::string> handled;  // by the serving thread; read after it is joined
  std::atomic<size_t> frames = 0;
  server.set_handler([&](const Connection& connection, wire::Op op, std::string_view body) {
    wire::Cursor cursor(body);
    const auto value = cursor.take_int<uint64_t>();
    if (op == wire::Op::hello) {
      connection.spawn = value;
      return;
    }
    if (op == wire::Op::spawn_done) {
      server.drain([value](const Connection& other) { return other.spawn == value; });
    }
    handled.push_back(std::to_string(connection.spawn) + ":" + std::to_string(value));
    ++frames;
  });

  // All of it is sent before the server looks: the child (spawn 7) has ended.
  const int parent = connect_to(server.socket_path());
  send_frame(parent, wire::Op::spawn_done, 7);
  const int child = connect_to(server.socket_path());
  send_frame(child, wire::Op::hello, 7);
  send_frame(child, wire::Op::sync, 1);
  send_frame(child, wire::Op::sync, 2);
  ::close(child);
  const int other = connect_to(server.socket_path());  // someone else's, still running
  send_frame(other, wire::Op::sync, 3);

  std::atomic<bool> root_exited = false;
  std::thread serving([&] { server.serve(root_exited, std::chrono::seconds(30)); });
  while (frames.load() < 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::close(parent);
  ::close(other);
  root_exited = true;
  server.wake();
  serving.join();

  ASSERT_EQ(handled.size(), 4u);
  const auto at = [&](const char* frame) {
    return std::find(handled.begin(), handled.end(), frame) - handled.begin();
  };
  EXPECT_LT(at("7:1"), at("7:2"));
  EXPECT_LT(at("7:2"), at("0:7")) << "the child's frames came after its parent's report";
  EXPECT_LT(at("0:3"), 4);
}

}  // namespace
}  // namespace tapedeck::supervisor
