// Stopping a cpp-httplib server that a thread runs with listen_after_bind(): a stop() that comes
// before the thread has entered its accept loop is lost, and join() then waits forever (seen under
// load: a server made and dropped at once). So wait, briefly, until it is running first.
#pragma once

#include <httplib.h>

#include <chrono>
#include <thread>

namespace tapedeck::detail {

inline void stop_listening(httplib::Server& server, std::thread& thread) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (thread.joinable() && !server.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  server.stop();
  if (thread.joinable()) thread.join();
}

}  // namespace tapedeck::detail
