// `tapedeck scan`: every credential-shaped string on a tape and in its sidecar, reported by
// record, place and rule with a fingerprint, never the value: for a pre-commit hook or a CI step.
#include <fmt/core.h>

#include <filesystem>
#include <map>
#include <set>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tape/atomic_file.hpp"
#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::cli {

namespace {

namespace fs = std::filesystem;

struct ScanOptions {
  std::string in;
  bool json = false;
  bool redact = false;
};

struct Hit {
  std::string where;  // "seq 12 llm_call response", "sidecar entry 1a2b…"
  std::string rule;
  std::string fingerprint;
};

// `known`: the values of a stopped scrub's journal, found whatever their shape.
void scan_bytes(std::string_view bytes, const std::string& where,
                const std::vector<std::string>& known, std::vector<Hit>& hits) {
  for (const secrets::Finding& finding : secrets::find(bytes, known)) {
    hits.push_back({where, std::string(finding.rule),
                    secrets::fingerprint(bytes.substr(finding.offset, finding.length))});
  }
}

int run_scan(const ScanOptions& options);

// scan --redact: scrubs the tape in place, then scans it again (what a scrub cannot reach, such
// as a sidecar entry no record names, is still reported).
int run_redact(const ScanOptions& options) {
  if (pack::is_packed_tape(options.in)) {
    throw std::runtime_error(options.in +
                             ": a packed tape holds no credential (pack refuses one); scan it "
                             "without --redact");
  }
  const secrets::ScrubReport report = secrets::scrub_tape(options.in);
  fmt::print(stderr,
             "tapedeck scan --redact: {} credential(s) redacted; {} payload(s) or sidecar "
             "entr(ies) rewritten, {} old entr(ies) removed\n",
             report.credentials, report.rewritten, report.removed);
  ScanOptions again = options;
  again.redact = false;
  return run_scan(again);
}

int run_scan(const ScanOptions& options) {
  if (options.redact) return run_redact(options);
  auto reader = TapeReader::open(options.in);
  const std::vector<std::string> pending = secrets::pending_scrub(options.in);
  warn_if_scrub_stopped(options.in, pending);
  std::vector<Hit> hits;
  std::map<std::string, std::string> named;  // sidecar entry -> the first record naming it
  {
    // The header's command line, and the manifest's copy of it beside the tape.
    const Header& header = reader->header();
    std::string command = header.script_path.value_or("");
    for (const std::string& arg : header.argv) command += " " + arg;
    scan_bytes(command, "header command line", pending, hits);
    if (auto manifest = detail::read_file(suite::manifest_path_for(options.in))) {
      scan_bytes(*manifest, suite::manifest_path_for(options.in).filename().string(), pending,
                 hits);
    }
  }
  while (const Record* next = reader->read()) {
    const Record& record = *next;
    const std::string at = fmt::format("seq {} {}", record.seq, kind_name(record.kind));
    for_each_payload(record.kind, [&](const Payload& payload) {
      if (!payload.in_cas()) scan_bytes(payload.text, at + " payload", pending, hits);
    });
    for_each_reference(record.kind,
                       [&](const std::string& name, std::optional<uint64_t>, Reference reference) {
                         named.try_emplace(name, at + " " + std::string(to_string(reference)));
                       });
    std::visit(
        [&](const auto& k) {
          using K = std::decay_t<decltype(k)>;
          if constexpr (std::is_same_v<K, kind::ProcessSpawn>) {
            std::string command = k.program;
            for (const std::string& arg : k.args) command += " " + arg;
            scan_bytes(command, at + " command line", pending, hits);
          } else if constexpr (std::is_same_v<K, kind::Unknown>) {
            scan_bytes(k.raw_json, at, pending, hits);
          }
        },
        record.kind);
  }
  warn_if_torn(*reader);
  // Every sidecar entry, named by a record or not (file bytes, kept LLM requests, leftovers).
  const fs::path sidecar = cas_dir_for(options.in);
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(sidecar, error)) {
    const std::string name = entry.path().filename().string();
    if (!is_valid_cas_name(name)) continue;
    const std::optional<std::string> bytes = detail::read_file(entry.path());
    if (!bytes) throw std::runtime_error(entry.path().string() + ": unreadable");
    const auto by = named.find(name);
    scan_bytes(*bytes,
               (by != named.end() ? by->second + ", " : std::string()) + "sidecar entry " +
                   short_hash(name),
               pending, hits);
  }

  if (options.json) {
    std::string out = "{\"tape\":" + json_string(options.in) + ",\"findings\":[";
    for (size_t i = 0; i < hits.size(); ++i) {
      out += fmt::format(R"({}{{"where":{},"rule":{},"fingerprint":{}}})", i ? "," : "",
                         json_string(hits[i].where), json_string(hits[i].rule),
                         json_string(hits[i].fingerprint));
    }
    fmt::print("{}]}}\n", out);
  } else {
    for (const Hit& hit : hits) {
      fmt::print("{}: {} (fingerprint {})\n", hit.where, hit.rule, hit.fingerprint);
    }
    fmt::print("{}: {}\n", options.in,
               hits.empty() ? "no credential found"
                            : fmt::format("{} credential-shaped string(s) found", hits.size()));
  }
  return hits.empty() ? 0 : 1;
}

}  // namespace

void add_scan(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ScanOptions>();
  CLI::App* cmd =
      app.add_subcommand("scan", "Report every credential-shaped string on a tape and its sidecar");
  cmd->footer(
      "Reads TAPE and every entry of its sidecar (TAPE.cas) and reports each string shaped like\n"
      "a credential (OpenAI, Anthropic, AWS, GitHub, Slack, Google, Stripe keys, JWTs, private\n"
      "keys, Authorization values, credential lines of .env files): the record and place, the\n"
      "rule, and a fingerprint (the first 12 hex digits of its BLAKE3), never the value.\n"
      "Exit 0 when clean, 1 when something was found, 2 when the tape cannot be read.\n"
      "--redact scrubs the tape in place first: every credential becomes a fixed marker, each\n"
      "sidecar entry that held one is rewritten under its new hash and the records follow, the\n"
      "tape is replaced atomically; sidecar entries no record names that hold one are removed;\n"
      "then it is scanned again. A scrub a kill stopped (its journal TAPE.scrub is there) is\n"
      "reported, its values as known-credential; --redact finishes it.\n\n"
      "Examples:\n"
      "  tapedeck scan run.tape\n"
      "  git diff --cached --name-only -- '*.tape' | xargs -r -n1 tapedeck scan   # pre-commit\n"
      "  tapedeck scan run.tape --json\n"
      "  tapedeck scan --redact old.tape          # scrub a tape recorded before redaction");
  cmd->add_option("TAPE", options->in, "The tape")->required();
  cmd->add_flag("--json", options->json, "One JSON object with every finding");
  cmd->add_flag("--redact", options->redact,
                "Scrub the tape in place first (atomically), then scan it again");
  cmd->callback([options, &exit_code] { exit_code = run_scan(*options); });
}

}  // namespace tapedeck::cli
