#include "tapedeck/faults.hpp"

#include "tapedeck/codec.hpp"

#include <charconv>
#include <csignal>
#include <cstring>

namespace tapedeck {

namespace {

[[noreturn]] void refuse(std::string_view spec, const std::string& why) {
  throw FaultSpecError("--fault '" + std::string(spec) + "': " + why);
}

// A whole decimal number in [low, high], or nullopt.
std::optional<int64_t> number(std::string_view text, int64_t low, int64_t high) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty() || value < low ||
      value > high) {
    return std::nullopt;
  }
  return value;
}

int signal_number(std::string_view name) {
  if (name.rfind("SIG", 0) == 0) name.remove_prefix(3);
  static constexpr std::pair<std::string_view, int> kSignals[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ABRT", SIGABRT},
      {"KILL", SIGKILL}, {"SEGV", SIGSEGV}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
      {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"BUS", SIGBUS}};
  for (const auto& [known, number] : kSignals) {
    if (known == name) return number;
  }
  return 0;
}

void parse_target(std::string_view spec, std::string_view target, Fault& fault) {
  auto nth_after = [&](std::string_view text, std::string_view what) {
    if (text == "*") return std::optional<uint64_t>();
    const std::optional<int64_t> n = number(text, 1, INT64_MAX);
    if (!n)
      refuse(spec, std::string(what) + "#N needs N a whole number from 1 (or *), got '" +
                       std::string(text) + "'");
    return std::optional<uint64_t>(static_cast<uint64_t>(*n));
  };
  if (target.rfind("llm#", 0) == 0) {
    fault.target = Fault::Target::llm;
    fault.nth = nth_after(target.substr(4), "llm");
  } else if (target.rfind("process#", 0) == 0) {
    fault.target = Fault::Target::process;
    fault.nth = nth_after(target.substr(8), "process");
  } else if (target.rfind("process:", 0) == 0) {
    fault.target = Fault::Target::process;
    const size_t hash = target.rfind('#');
    if (hash == std::string_view::npos || hash <= 8) {
      refuse(spec, "process:NAME#N needs a program name and #N (the N-th spawn of NAME)");
    }
    fault.name = std::string(target.substr(8, hash - 8));
    fault.nth = nth_after(target.substr(hash + 1), "process:NAME");
  } else if (target.rfind("file:", 0) == 0) {
    fault.target = Fault::Target::file;
    fault.name = std::string(target.substr(5));
    if (fault.name.empty()) refuse(spec, "file:PATH needs a workspace path");
  } else {
    refuse(spec, "unknown target '" + std::string(target) +
                     "' (llm#N, llm#*, process#N, process:NAME#N, file:PATH)");
  }
}

void parse_effect(std::string_view spec, std::string_view effect, Fault& fault) {
  using Effect = Fault::Effect;
  auto with_number = [&](std::string_view prefix, Effect kind, int64_t low, int64_t high,
                         std::string_view meaning) {
    const std::optional<int64_t> n = number(effect.substr(prefix.size()), low, high);
    if (!n) {
      refuse(spec, std::string(prefix) + " needs " + std::string(meaning) + ", got '" +
                       std::string(effect.substr(prefix.size())) + "'");
    }
    fault.effect = kind;
    fault.value = *n;
  };
  if (const std::optional<int64_t> status = number(effect, 100, 999)) {
    if (*status < 400 || *status > 599) {
      refuse(spec, "an HTTP status fault is an error status, 400 to 599");
    }
    fault.effect = Effect::http_status;
    fault.value = *status;
  } else if (effect == "timeout") {
    fault.effect = Effect::timeout;
  } else if (effect == "reset") {
    fault.effect = Effect::reset;
  } else if (effect.rfind("cut@", 0) == 0) {
    with_number("cut@", Effect::cut, 0, INT64_MAX, "a number of events from 0");
  } else if (effect.rfind("slow@", 0) == 0) {
    with_number("slow@", Effect::slow, 1, 3'600'000, "milliseconds from 1");
  } else if (effect.rfind("exit:", 0) == 0) {
    with_number("exit:", Effect::exit, 0, 255, "an exit code from 0 to 255");
  } else if (effect.rfind("signal:", 0) == 0) {
    const int number = signal_number(effect.substr(7));
    if (number == 0) refuse(spec, "unknown signal '" + std::string(effect.substr(7)) + "'");
    fault.effect = Effect::signal;
    fault.value = number;
  } else if (effect == "enoent" || effect == "eacces" || effect == "eio") {
    fault.effect = effect == "enoent"   ? Effect::enoent
                   : effect == "eacces" ? Effect::eacces
                                        : Effect::eio;
  } else {
    refuse(spec, "unknown effect '" + std::string(effect) +
                     "' (an HTTP status, timeout, reset, cut@K, slow@MS, exit:CODE, "
                     "signal:NAME, enoent, eacces, eio)");
  }
}

}  // namespace

Fault parse_fault(std::string_view spec) {
  const size_t equals = spec.find('=');
  if (equals == std::string_view::npos) refuse(spec, "expected TARGET=EFFECT");
  Fault fault;
  fault.spec = std::string(spec);
  parse_target(spec, spec.substr(0, equals), fault);
  const std::string_view effect = spec.substr(equals + 1);
  parse_effect(spec, effect, fault);
  using Effect = Fault::Effect;
  const bool for_llm = fault.effect == Effect::http_status || fault.effect == Effect::timeout ||
                       fault.effect == Effect::reset || fault.effect == Effect::cut ||
                       fault.effect == Effect::slow;
  const bool for_process = fault.effect == Effect::exit || fault.effect == Effect::signal;
  const bool fits = fault.target == Fault::Target::llm       ? for_llm
                    : fault.target == Fault::Target::process ? for_process
                                                             : !for_llm && !for_process;
  if (!fits) {
    refuse(spec, "effect '" + std::string(effect) + "' does not apply to " +
                     (fault.target == Fault::Target::llm       ? "an LLM call"
                      : fault.target == Fault::Target::process ? "a subprocess"
                                                               : "a file"));
  }
  return fault;
}

LlmFaults::LlmFaults(std::vector<Fault> faults, std::vector<std::string> recorded_digests)
    : faults_(std::move(faults)),
      recorded_digests_(std::move(recorded_digests)),
      used_(faults_.size(), false) {}

std::optional<Fault> LlmFaults::take(const std::string& digest) {
  const uint64_t arrival = ++arrivals_[digest];  // this request's arrival among equal ones
  for (size_t i = 0; i < faults_.size(); ++i) {
    const Fault& fault = faults_[i];
    if (fault.target != Fault::Target::llm) continue;
    if (!fault.nth) return fault;  // llm#*: every request
    if (used_[i] || *fault.nth > recorded_digests_.size()) continue;
    const uint64_t index = *fault.nth - 1;
    if (recorded_digests_[index] != digest) continue;
    // The N-th call is the k-th recorded call with its digest: fault that digest's k-th arrival.
    uint64_t occurrence = 0;
    for (uint64_t j = 0; j <= index; ++j) occurrence += recorded_digests_[j] == digest;
    if (arrival != occurrence) continue;
    used_[i] = true;
    // The retry comes back as the same arrival: count it as not having arrived yet.
    --arrivals_[digest];
    return fault;
  }
  return std::nullopt;
}

ProcessFaults::ProcessFaults(std::vector<Fault> faults)
    : faults_(std::move(faults)), used_(faults_.size(), false) {}

std::optional<Fault> ProcessFaults::take(std::string_view program) {
  const std::string_view name = program.substr(program.rfind('/') + 1);  // npos + 1 == 0
  const uint64_t spawn = ++spawns_;
  const uint64_t of_name = ++spawns_of_[std::string(name)];
  for (size_t i = 0; i < faults_.size(); ++i) {
    const Fault& fault = faults_[i];
    if (fault.target != Fault::Target::process || used_[i] || !fault.nth) continue;
    const bool hit =
        fault.name.empty() ? *fault.nth == spawn : fault.name == name && *fault.nth == of_name;
    if (!hit) continue;
    used_[i] = true;
    return fault;
  }
  return std::nullopt;
}

kind::Unknown fault_record(std::string_view kind, const Fault& fault, std::string_view field,
                           std::string_view value) {
  return kind::Unknown{std::string(kind), R"({"kind":)" + json_string(kind) + R"(,"fault":)" +
                                              json_string(fault.spec) + "," + json_string(field) +
                                              ":" + json_string(value) + "}"};
}

std::optional<Fault> file_fault_for(const std::vector<Fault>& faults, std::string_view path) {
  auto plain = [](std::string_view text) {
    while (text.starts_with("./")) text.remove_prefix(2);
    return text;
  };
  for (const Fault& fault : faults) {
    if (fault.target == Fault::Target::file && plain(fault.name) == plain(path)) return fault;
  }
  return std::nullopt;
}

}  // namespace tapedeck
