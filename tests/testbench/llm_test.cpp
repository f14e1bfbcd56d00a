// The LLM axis against a stand-in OpenAI-style server on loopback (cpp-httplib): record,
// streaming, replay with the server gone, misses, credentials, and the network policy.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "tapedeck/fidelity.hpp"
#include "tapedeck/llm_proxy.hpp"
#include "tapedeck/testbench.hpp"
#include "test_support.hpp"
#include "testbench/stop_listening.hpp"

namespace tapedeck {
namespace {

using testing::TempDir;
constexpr int64_t kStart = 1'700'000'000'000;
const std::string kKey = "sk-test-SECRET-0123456789";

class StandInLlm {
 public:
  StandInLlm() {
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& request, httplib::Response& response) {
                   ++hits_;
                   last_auth_ = request.get_header_value("Authorization");
                   const int n = ++answers_;
                   if (request.body.find("\"stream\":true") != std::string::npos) {
                     response.set_chunked_content_provider(
                         "text/event-stream", [n](size_t, httplib::DataSink& sink) {
                           for (int i = 0; i < 3; ++i) {
                             const std::string event = "data: {\"n\":" + std::to_string(n) +
                                                       ",\"part\":" + std::to_string(i) + "}\n\n";
                             sink.write(event.data(), event.size());
                             std::this_thread::sleep_for(std::chrono::milliseconds(5));
                           }
                           sink.write("data: [DONE]\n\n", 14);
                           sink.done();
                           return true;
                         });
                     return;
                   }
                   response.set_content(R"({"choices":[{"message":{"content":"answer )" +
                                            std::to_string(n) + R"("}}]})",
                                        "application/json");
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    // Bound already: connections queue in the backlog until the listener thread accepts them.
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~StandInLlm() { stop(); }
  void stop() { tapedeck::detail::stop_listening(server_, thread_); }
  std::string endpoint() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/v1/chat/completions";
  }
  int hits() const { return hits_; }
  std::string last_auth() const { return last_auth_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> hits_{0};
  std::atomic<int> answers_{0};
  std::string last_auth_;
};

LlmOptions options_for(const StandInLlm& server) {
  LlmOptions options;
  options.endpoint = server.endpoint();
  options.api_key = kKey;
  return options;
}

std::string prompt(const std::string& text, bool stream = false) {
  return R"({"model":"m","messages":[{"role":"user","content":")" + text + R"("}])" +
         (stream ? R"(,"stream":true)" : "") + "}";
}

TEST(LlmDigest, CanonicalFormIgnoresOrderSpacingAndVolatileFields) {
  const std::string a =
      R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5})";
  const std::string b = R"( { "temperature" : 0.5, "messages":[{"content":"hi","role":"user"}],
                              "model":"m", "user":"alice", "metadata":{"run":7} } )";
  EXPECT_EQ(llm_request_digest(a), llm_request_digest(b));
  EXPECT_EQ(llm_canonical_request(b),
            R"({"messages":[{"content":"hi","role":"user"}],"model":"m","temperature":0.5})");
  EXPECT_NE(llm_request_digest(a), llm_request_digest(prompt("hello")));
  EXPECT_EQ(llm_request_digest(a), content_hash(llm_canonical_request(a)));
  EXPECT_THROW(llm_request_digest("not json"), std::invalid_argument);
}

TEST(LlmDigest, OnlyATopLevelStreamTrueAsksForAStream) {
  EXPECT_TRUE(llm_request_streams(R"({ "stream" : true, "model":"m"})"));
  EXPECT_FALSE(llm_request_streams(R"({"stream":false})"));
  EXPECT_FALSE(llm_request_streams(R"({"model":"m","tools":[{"stream":true}]})"));
  EXPECT_FALSE(llm_request_streams(R"({"stream":"true"})"));
  EXPECT_FALSE(llm_request_streams("not json"));
}

TEST(Llm, RecordsThenReplaysWithTheServerGone) {
  TempDir tmp;
  StandInLlm server;
  {
    auto session = Testbench::recording(tmp / "run.tape")
                       .paused_clock(kStart)
                       .llm(options_for(server))
                       .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                       .start();
    EXPECT_NE(session->llm().call(prompt("one")).body.find("answer 1"), std::string::npos);
    EXPECT_NE(session->llm().call(prompt("one")).body.find("answer 2"), std::string::npos);
    session->finalize();
  }
  EXPECT_EQ(server.hits(), 2);
  EXPECT_EQ(server.last_auth(), "Bearer " + kKey);
  const Tape recorded = Tape::load(tmp / "run.tape");
  ASSERT_EQ(recorded.records.size(), 2u);
  const auto& call = std::get<kind::LlmCall>(recorded.records[1].kind);
  EXPECT_EQ(call.request_digest, llm_request_digest(prompt("one")));
  EXPECT_NE(recorded.resolve(call.response).find("answer 2"), std::string::npos);
  // The canonical request sits in the sidecar under its digest, for replay misses to compare.
  EXPECT_EQ(testing::read_file(tmp / "run.tape.cas" / call.request_digest),
            llm_canonical_request(prompt("one")));
  server.stop();
  // The credential reached the server, never the tape or its sidecar.
  EXPECT_EQ(testing::read_file(tmp / "run.tape").find("SECRET"), std::string::npos);
  for (const auto& entry : std::filesystem::directory_iterator(tmp / "run.tape.cas")) {
    EXPECT_EQ(testing::read_file(entry.path()).find("SECRET"), std::string::npos);
  }

  // The same request twice: its recordings in order. No network at all.
  auto session = Testbench::replaying(tmp / "run.tape", tmp / "replay.tape")
                     .llm(options_for(server))
                     .network(NetworkPolicy::deny_all())
                     .start();
  EXPECT_NE(session->llm().call(prompt("one")).body.find("answer 1"), std::string::npos);
  EXPECT_NE(session->llm().call(prompt("one")).body.find("answer 2"), std::string::npos);
  try {
    session->llm().call(prompt("won"));
    FAIL() << "an unrecorded request was served";
  } catch (const ReplayMiss& miss) {
    const std::string message = miss.what();
    EXPECT_NE(message.find(llm_request_digest(prompt("won"))), std::string::npos) << message;
    EXPECT_NE(message.find("differs at byte"), std::string::npos) << message;
    EXPECT_EQ(miss.wanted, llm_canonical_request(prompt("won")));  // whole, for --json
    EXPECT_EQ(miss.recorded, llm_canonical_request(prompt("one")));
    EXPECT_NE(message.find("\"content\":\"won\""), std::string::npos) << message;
    EXPECT_NE(message.find("\"content\":\"one\""), std::string::npos) << message;
  }
  // The replay's tape holds the two calls served, not the miss.
  Tape replayed = session->finalize();
  ASSERT_EQ(replayed.records.size(), 2u);
  EXPECT_EQ(std::get<kind::LlmCall>(replayed.records[1].kind).request_digest,
            llm_request_digest(prompt("one")));
}

TEST(Llm, StreamsAreRecordedWholeAndReplayedEventByEvent) {
  TempDir tmp;
  StandInLlm server;
  std::vector<std::string> live, replayed;
  {
    auto session = Testbench::recording(tmp / "run.tape")
                       .llm(options_for(server))
                       .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                       .start();
    session->llm().call(prompt("s", true), [&](std::string_view e) { live.emplace_back(e); });
  }
  server.stop();
  ASSERT_EQ(live.size(), 4u);
  EXPECT_EQ(live[3], "data: [DONE]\n\n");
  auto session = Testbench::replaying(tmp / "run.tape").llm(options_for(server)).start();
  const LlmResponse response =
      session->llm().call(prompt("s", true), [&](std::string_view e) { replayed.emplace_back(e); });
  EXPECT_EQ(replayed, live);
  std::string whole;
  for (const std::string& event : live) whole += event;
  EXPECT_EQ(response.body, whole);
}

TEST(Llm, ADeniedHostFailsFastNamingTheRules) {
  TempDir tmp;
  StandInLlm server;
  auto session = Testbench::recording(tmp / "run.tape")
                     .llm(options_for(server))
                     .network(NetworkPolicy::deny_all().allow("api.openai.com"))
                     .start();
  try {
    session->llm().call(prompt("x"));
    FAIL() << "the call went out";
  } catch (const NetworkDenied& denied) {
    EXPECT_NE(std::string(denied.what()).find("api.openai.com"), std::string::npos);
  }
  EXPECT_EQ(server.hits(), 0);
  EXPECT_TRUE(session->finalize().records.empty());
}

TEST(LlmProxy, RefusalsComeBackAsHttpErrors) {
  TempDir tmp;
  auto session = Testbench::recording(tmp / "run.tape")
                     .llm(LlmOptions{})
                     .network(NetworkPolicy::deny_all())
                     .start();
  LlmProxy proxy(*session, "http://127.0.0.1:9");
  httplib::Client client("127.0.0.1", proxy.port());
  auto garbage = client.Post("/v1/chat/completions", "garbage", "application/json");
  ASSERT_TRUE(garbage);
  EXPECT_EQ(garbage->status, 400);
  EXPECT_NE(garbage->body.find("tapedeck_bad_request"), std::string::npos) << garbage->body;
  auto denied = client.Post("/v1/chat/completions", prompt("x"), "application/json");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_NE(denied->body.find("127.0.0.1:9"), std::string::npos) << denied->body;
  proxy.stop();
  EXPECT_TRUE(session->finalize().records.empty());
}

TEST(LlmProxy, ListensOnTheFirstPreferredPortThatNoOneElseHas) {
  TempDir tmp;
  auto first = Testbench::recording(tmp / "first.tape").llm(LlmOptions{}).start();
  auto second = Testbench::recording(tmp / "second.tape").llm(LlmOptions{}).start();
  // A port free now, found by listening on it once.
  uint16_t free_port = 0;
  {
    LlmProxy probe(*first, "http://127.0.0.1:9");
    free_port = probe.port();
  }
  LlmProxy::Hooks hooks;
  hooks.preferred_ports = {free_port, static_cast<uint16_t>(free_port + 1)};
  LlmProxy proxy(*first, "http://127.0.0.1:9", hooks);
  EXPECT_EQ(proxy.port(), free_port);
  // Another proxy preferring the same port (a replay of the same tape beside it) does not share
  // it: its next choice, or else any port.
  LlmProxy beside(*second, "http://127.0.0.1:9", hooks);
  EXPECT_NE(beside.port(), free_port);
  httplib::Client client("127.0.0.1", proxy.port());
  EXPECT_EQ(client.Post("/v1/chat/completions", "garbage", "application/json")->status, 400);
}

TEST(LlmProxy, HooksHearOfEveryCallServedAndEveryMiss) {
  TempDir tmp;
  StandInLlm server;
  const std::string upstream = server.endpoint().substr(0, server.endpoint().find("/v1/"));
  std::atomic<int> served{0};
  std::mutex misses_mutex;  // the hooks run on the proxy's threads
  std::vector<std::string> misses;
  LlmProxy::Hooks hooks;
  hooks.on_call_served = [&] { ++served; };
  hooks.on_replay_miss = [&](const ReplayMiss& miss) {
    std::lock_guard lock(misses_mutex);
    misses.push_back(miss.what());
  };
  {
    auto session = Testbench::recording(tmp / "run.tape")
                       .llm(LlmOptions{})
                       .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                       .start();
    LlmProxy proxy(*session, upstream, hooks);
    httplib::Client client("127.0.0.1", proxy.port());
    ASSERT_EQ(client.Post("/v1/chat/completions", prompt("a"), "application/json")->status, 200);
    ASSERT_EQ(client.Post("/v1/chat/completions", prompt("b", true), "text/event-stream")->status,
              200);
    proxy.stop();
    session->finalize();
  }
  EXPECT_EQ(served.load(), 2);
  EXPECT_TRUE(misses.empty());
  server.stop();

  auto replay = Testbench::replaying(tmp / "run.tape").llm(LlmOptions{}).start();
  LlmProxy proxy(*replay, "http://upstream.invalid", hooks);
  httplib::Client client("127.0.0.1", proxy.port());
  EXPECT_EQ(client.Post("/v1/chat/completions", prompt("a"), "application/json")->status, 200);
  EXPECT_EQ(served.load(), 3);
  EXPECT_EQ(client.Post("/v1/chat/completions", prompt("never asked"), "application/json")->status,
            500);
  std::lock_guard lock(misses_mutex);
  ASSERT_EQ(misses.size(), 1u);
  EXPECT_NE(misses[0].find("does not hold"), std::string::npos) << misses[0];
  EXPECT_EQ(served.load(), 3);
}

// Every axis under a paused clock, recorded, replayed offline, judged by the oracle.
void agent(Session& session, const std::string& question) {
  session.clock().now_ms();
  const std::string source = session.files().read("main.c");
  const std::string answer =
      session.llm().call(prompt(question + " " + std::to_string(source.size()))).body;
  session.clock().sleep_ms(10'000);
  session.files().write("report.md", "# " + answer + "\n");
  session.processes().run("sh", {"-c", "echo built"});
  session.clock().monotonic_ms();
}

TEST(Testbench, EndToEndEveryAxisRecordedReplayedAndJudged) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "work");
  testing::write_file(tmp / "work" / "main.c", "int main() { return 0; }\n");
  StandInLlm server;
  auto bench = [&](Testbench builder) {
    return builder.paused_clock(kStart)
        .overlay(tmp / "work")
        .subprocesses(std::chrono::seconds(20))
        .llm(options_for(server));
  };
  {
    auto session = bench(Testbench::recording(tmp / "run.tape"))
                       .network(NetworkPolicy::deny_all().allow("127.0.0.1"))
                       .start();
    agent(*session, "fix it");
  }
  server.stop();  // replay needs no upstream
  {
    auto session = bench(Testbench::replaying(tmp / "run.tape", tmp / "replay.tape")).start();
    agent(*session, "fix it");
  }
  auto judge = [&](const char* replay, fidelity::Mode mode) {
    auto left = TapeReader::open(tmp / "run.tape");
    auto right = TapeReader::open(tmp / replay);
    return fidelity::compare(*left, *right, mode);
  };
  const fidelity::Report same = judge("replay.tape", fidelity::Mode::byte_identical);
  EXPECT_TRUE(same.identical()) << (same.divergences.empty() ? "" : same.divergences[0].message);
  EXPECT_EQ(same.recorded_records, 7u);

  // One changed prompt, replayed on (served in order): exactly one llm_request_digest
  // divergence, at the LLM call's seq.
  {
    auto changed = options_for(server);
    changed.on_miss = LlmOptions::OnMiss::serve_next_in_order;
    auto session =
        bench(Testbench::replaying(tmp / "run.tape", tmp / "changed.tape")).llm(changed).start();
    agent(*session, "break it");
  }
  const fidelity::Report diverged = judge("changed.tape", fidelity::Mode::byte_identical);
  ASSERT_EQ(diverged.divergences.size(), 1u);
  EXPECT_EQ(diverged.divergences[0].category, "llm_request_digest");
  EXPECT_EQ(diverged.divergences[0].seq, 2u);
}

}  // namespace
}  // namespace tapedeck
