// The main job, end to end: an "agent" that reads the clock, reads its worktree, asks an LLM
// (streaming), sleeps, runs a subprocess and writes a report is recorded under the testbench
// against a stand-in LLM server on loopback, then replayed with the server stopped and the
// network closed. The two tapes are then judged by `tapedeck fidelity` (scripts/demo.sh).
//
// Usage: agent_demo OUT_DIR   (writes OUT_DIR/agent.tape and OUT_DIR/replay.tape)
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "tapedeck/error.hpp"
#include "tapedeck/testbench.hpp"

using namespace tapedeck;

namespace {

// An OpenAI-style chat endpoint that streams its answer as server-sent events.
class StandInLlm {
 public:
  StandInLlm() {
    server_.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& response) {
      response.set_chunked_content_provider(
          "text/event-stream", [](size_t, httplib::DataSink& sink) {
            for (const char* word : {"Run", " the", " tests", " first."}) {
              const std::string event =
                  std::string(R"(data: {"choices":[{"delta":{"content":")") + word + "\"}}]}\n\n";
              sink.write(event.data(), event.size());
            }
            sink.write("data: [DONE]\n\n", 14);
            sink.done();
            return true;
          });
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~StandInLlm() { stop(); }
  void stop() {
    // A stop() before the thread listens would be lost (and join() would wait forever).
    while (thread_.joinable() && !server_.is_running()) std::this_thread::yield();
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1/chat/completions";
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// The agent: the same code records and replays; only the session differs.
void agent(Session& session) {
  const int64_t started = session.clock().now_ms();
  const std::string source = session.files().read("src/main.c");
  int events = 0;  // the answer streams in as server-sent events, live or replayed
  session.llm().call(
      R"({"model":"stand-in","stream":true,"messages":[{"role":"user","content":"What next for main.c?"}]})",
      [&](std::string_view) { ++events; });
  session.clock().sleep_ms(3000);  // "waiting for CI": virtual under the testbench
  const ProcessResult lines =
      session.processes().run("wc", {"-l", "src/main.c"}, session.files().worktree().string());
  session.files().write("REPORT.md", "# Report\n\nmain.c: " + lines.stdout_bytes +
                                         "answer: " + std::to_string(events) + " events; took " +
                                         std::to_string(session.clock().now_ms() - started) +
                                         " ms\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: agent_demo OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const std::filesystem::path work = out / "work";
  std::filesystem::create_directories(work / "src");
  std::ofstream(work / "src" / "main.c") << "int main(void) {\n  return 0;\n}\n";
  try {
    StandInLlm llm;
    LlmOptions llm_options;
    llm_options.endpoint = llm.endpoint();
    llm_options.api_key = "sk-demo-never-on-tape";
    auto bench = [&](Testbench builder) {
      return builder.paused_clock(1'700'000'000'000)
          .overlay(work)
          .subprocesses(std::chrono::seconds(30))
          .llm(llm_options)
          .describe("examples/agent_demo.cpp", {"agent"});
    };

    auto recording = bench(Testbench::recording(out / "agent.tape"))
                         .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                         .start();
    agent(*recording);
    std::printf("recorded the agent: %zu records -> %s\n", recording->finalize().records.size(),
                (out / "agent.tape").c_str());
    std::printf("its changes, kept in the overlay (the worktree is untouched):\n%s",
                recording->files().diff().c_str());

    llm.stop();  // the replay needs no LLM: the tape holds every answer
    const auto before = std::chrono::steady_clock::now();
    auto replay = bench(Testbench::replaying(out / "agent.tape", out / "replay.tape"))
                      .network(NetworkPolicy::deny_all())
                      .start();
    agent(*replay);
    replay->finalize();
    const auto took =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - before);
    std::printf(
        "replayed offline with the network closed in %.1f ms (3 s of sleep were virtual) -> %s\n",
        took.count(), (out / "replay.tape").c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "agent_demo: %s\n", error.what());
    return 1;
  }
  return 0;
}
