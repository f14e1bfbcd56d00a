// A loopback HTTP proxy in front of the LLM axis, for programs that call an LLM over HTTP on
// their own (OpenAI- and Anthropic-style SDKs pointed at it with OPENAI_BASE_URL,
// ANTHROPIC_BASE_URL, …). Record relays each POST to the upstream (same path) and streams
// server-sent events through as they arrive; replay answers from the tape, event by event,
// without any network. The client's credential headers are relayed upstream and never recorded.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <optional>

#include "tapedeck/faults.hpp"
#include "tapedeck/testbench.hpp"

namespace tapedeck {

class LlmProxy {
 public:
  // Listens on 127.0.0.1 (the first of Hooks::preferred_ports free, else an ephemeral port) and
  // relays to `upstream_base` (scheme://host[:port], a path prefix allowed). The session must
  // have the LLM axis enabled.
  struct Hooks {
    // Every request a replay's tape does not hold (the client gets a 500 naming it as well).
    std::function<void(const ReplayMiss& miss)> on_replay_miss;
    // When a request starts being handled, and when it is done with (served or refused).
    std::function<void()> on_call_started;
    std::function<void()> on_call_finished;
    // After each call the session served (its record made), before the client has all of it.
    std::function<void()> on_call_served;
    // Replay: the fault to inject for a request with this digest, if any (faults.hpp).
    std::function<std::optional<Fault>(const std::string& digest)> fault_for;
    // A fault is about to reach the client (its llm_fault record made).
    std::function<void(const Fault&)> on_fault_injected;
    // Replay: let `ms` of the program's time pass (slow@MS between a stream's events).
    std::function<void(uint64_t ms)> pass_time;
    // Replay: wait (a little) for the program to be done with what it was handed: a stream ends
    // once it is, as an upstream's end comes after its last event.
    std::function<void()> before_stream_end;
    // Ports to listen on, tried in order before an ephemeral one: a replay that listens where
    // its recording did gives the program the same base URL to print.
    std::vector<uint16_t> preferred_ports;
  };
  LlmProxy(Session& session, std::string upstream_base, Hooks hooks = {});
  ~LlmProxy();  // stops serving
  LlmProxy(const LlmProxy&) = delete;
  LlmProxy& operator=(const LlmProxy&) = delete;

  uint16_t port() const;
  // http://127.0.0.1:PORT
  std::string base_url() const;
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tapedeck
