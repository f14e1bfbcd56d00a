// Faults a replay injects where the recording had none (`tapedeck replay --fault SPEC`): an
// agent's bad days tested from a good recording. A spec is TARGET=EFFECT:
//
//   targets   llm#N            the N-th LLM call of the recording (1-based); its first request is
//                              faulted, a retry of it is served the recorded answer
//             llm#*            every LLM request, retries included
//             process#N, process:NAME#N, file:PATH   (parsed; not injected yet)
//   effects   an HTTP status   400..599: the provider's error body (OpenAI's or Anthropic's shape,
//                              from the request's path), with `retry-after: 1` for 429, 503, 529
//             timeout          the connection stays silent until the client gives up
//             reset            the connection closes before the answer's body
//             cut@K            a streamed answer ends after its first K events
//             slow@MS          each event of a streamed answer MS milliseconds later than it
//                              came in the recording, on the program's clock (replay time)
//             exit:CODE, signal:NAME (processes), enoent, eacces, eio (files)
//
// The replay's tape records each injected fault as an `llm_fault` record (what the program saw),
// so fidelity and the view show where the faulted run went its own way.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tapedeck {

struct Fault {
  enum class Target { llm, process, file };
  enum class Effect { http_status, timeout, reset, cut, slow, exit, signal, enoent, eacces, eio };
  Target target = Target::llm;
  std::optional<uint64_t> nth;  // 1-based; empty: every one (llm#*), or a file
  std::string name;             // process:NAME, file:PATH
  Effect effect = Effect::http_status;
  int64_t value = 0;  // the status, K, MS, exit code or signal number
  std::string spec;   // as given
};

// What is wrong with a spec, in one line that quotes it.
class FaultSpecError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Throws FaultSpecError.
Fault parse_fault(std::string_view spec);

// Which LLM requests of a replay to fault. `recorded_digests`: the request digest of every LLM
// call of the recording, in tape order (llm#N names the N-th).
class LlmFaults {
 public:
  LlmFaults(std::vector<Fault> faults, std::vector<std::string> recorded_digests);
  // The fault for a request with this digest, if any. An llm#N fault is used once: the request
  // that repeats it (a retry) is served.
  std::optional<Fault> take(const std::string& digest);
  bool empty() const { return faults_.empty(); }

 private:
  std::vector<Fault> faults_;
  std::vector<std::string> recorded_digests_;
  std::vector<bool> used_;
  std::map<std::string, uint64_t> arrivals_;  // requests seen so far, by digest
};

}  // namespace tapedeck
