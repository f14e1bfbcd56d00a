// Faults a replay injects where the recording had none (`tapedeck replay --fault SPEC`): an
// agent's bad days tested from a good recording. A spec is TARGET=EFFECT:
//
//   targets   llm#N            the N-th LLM call of the recording (1-based); its first request is
//                              faulted, a retry of it is served the recorded answer
//             llm#*            every LLM request, retries included
//             process#N        the N-th subprocess the replay starts (1-based), as its parent
//                              sees it: the recorded output, then the fault's exit
//             process:NAME#N   the N-th start of the program named NAME (its file name)
//             file:PATH        every open of the workspace path PATH (relative to the
//                              workspace) that reads it: the open fails with the errno
//   effects   an HTTP status   400..599: the provider's error body (OpenAI's or Anthropic's shape,
//                              from the request's path), with `retry-after: 1` for 429, 503, 529
//             timeout          the connection stays silent until the client gives up
//             reset            the connection closes before the answer's body
//             cut@K            a streamed answer ends after its first K events
//             slow@MS          each event of a streamed answer MS milliseconds later than it
//                              came in the recording, on the program's clock (replay time)
//             exit:CODE, signal:NAME (processes), enoent, eacces, eio (files)
//
// The replay's tape records each injected fault as an `llm_fault`, `process_fault` or `file_fault`
// record (what the program saw),
// so fidelity and the view show where the faulted run went its own way.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tapedeck/tape.hpp"

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

// Which subprocesses of a replay to fault: each process fault strikes once.
class ProcessFaults {
 public:
  explicit ProcessFaults(std::vector<Fault> faults);
  // The fault for the subprocess the replay starts now (`program` as its parent named it: a
  // path or a bare name), if any. Called once per start, in the order they come.
  std::optional<Fault> take(std::string_view program);

 private:
  std::vector<Fault> faults_;
  std::vector<bool> used_;
  uint64_t spawns_ = 0;
  std::map<std::string, uint64_t> spawns_of_;  // by program name
};

// The record a struck fault leaves on the replay's tape, what the program saw: a record of kind
// `kind` ("llm_fault", "process_fault", "file_fault") naming the spec, and `field` = `value`
// saying where it struck (a request digest, a program, a path).
kind::Unknown fault_record(std::string_view kind, const Fault& fault, std::string_view field,
                           std::string_view value);

// The file fault for a read of the workspace path `path`, if any (file:PATH, "./" ignored).
std::optional<Fault> file_fault_for(const std::vector<Fault>& faults, std::string_view path);

}  // namespace tapedeck
