// Runs the LLM proxy under a testbench session for the SDK tests:
//   proxy_helper record TAPE UPSTREAM_BASE    records through the proxy
//   proxy_helper replay TAPE EMIT_TAPE        answers from TAPE, network closed
// Prints "port N" once listening, serves until its standard input closes, then finalizes.
#include <cstdio>
#include <iostream>
#include <string>

#include "tapedeck/llm_proxy.hpp"
#include "tapedeck/testbench.hpp"

using namespace tapedeck;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: proxy_helper record TAPE UPSTREAM_BASE | replay TAPE EMIT_TAPE\n");
    return 2;
  }
  const std::string mode = argv[1];
  try {
    std::unique_ptr<Session> session;
    std::string upstream = "http://upstream.invalid";
    if (mode == "record") {
      upstream = argv[3];
      session = Testbench::recording(argv[2])
                    .paused_clock(1'700'000'000'000)
                    .llm(LlmOptions{})
                    .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                    .start();
    } else {
      session = Testbench::replaying(argv[2], std::string(argv[3])).llm(LlmOptions{}).start();
    }
    LlmProxy proxy(*session, upstream);
    std::printf("port %u\n", proxy.port());
    std::fflush(stdout);
    std::string ignored;
    while (std::getline(std::cin, ignored)) {
    }
    proxy.stop();
    session->finalize();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "proxy_helper: %s\n", error.what());
    return 1;
  }
  return 0;
}
