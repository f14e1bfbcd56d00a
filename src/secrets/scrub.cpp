// Scrubbing a tape that was written with credentials on it (before tapedeck redacted by shape,
// or by another writer): every place a credential can be is redacted, every sidecar entry that
// held one is rewritten under the hash of its redacted bytes and the records naming it follow,
// and the tape is replaced atomically. Old entries go only once the new tape is in place.
#include <set>

#include "tapedeck/cas.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::secrets {

namespace {

class Scrubber {
 public:
  Scrubber(Tape& tape, const std::vector<std::string>& known) : tape_(tape), known_(known) {}

  void record(Record& record) {
    std::visit([&](auto& k) { scrub(k); }, record.kind);
  }
  ScrubReport& report() { return report_; }
  const std::set<std::string>& replaced() const { return replaced_; }

 private:
  // Every known value, then every credential shape.
  size_t redact(std::string& bytes) const {
    return redact_values(bytes, known_) + secrets::redact(bytes);
  }

  void text(std::string& value) { report_.credentials += redact(value); }

  void payload(Payload& payload) {
    std::string bytes = tape_.resolve(payload);
    const size_t found = redact(bytes);
    if (found == 0) return;
    report_.credentials += found;
    if (payload.in_cas()) replaced_.insert(payload.content_hash);
    payload = tape_.add_payload(std::move(bytes));
    ++report_.rewritten;
  }

  // A sidecar entry a record names by hash (file bytes, printed output): redacted, it is kept
  // under its new hash, which the caller puts in the record.
  bool entry(std::string& hash, uint64_t& length) {
    std::string bytes;
    try {
      bytes = cas::read_entry(tape_.cas_dir(), hash);
    } catch (const TapeError&) {
      return false;  // not kept (a reference tape's digest): nothing there to hold a credential
    }
    const size_t found = redact(bytes);
    if (found == 0) return false;
    report_.credentials += found;
    replaced_.insert(hash);
    hash = content_hash(bytes);
    length = bytes.size();
    tape_.cas_entries()[hash] = std::move(bytes);
    ++report_.rewritten;
    return true;
  }

  void scrub(kind::LlmCall& call) {
    payload(call.response);
    // The request kept for a miss's diff is named by its digest, which replay matching needs:
    // one that held a credential is dropped, not renamed.
    try {
      std::string request = cas::read_entry(tape_.cas_dir(), call.request_digest);
      if (const size_t found = redact(request)) {
        report_.credentials += found;
        replaced_.insert(call.request_digest);
      }
    } catch (const TapeError&) {
    }
  }
  void scrub(kind::ProcessSpawn& spawn) {
    text(spawn.program);
    for (std::string& arg : spawn.args) text(arg);
    payload(spawn.stdout_payload);
    payload(spawn.stderr_payload);
  }
  void scrub(kind::FileRead& read) { entry(read.content_hash, read.len_bytes); }
  void scrub(kind::FileWrite& write) { entry(write.content_hash, write.len_bytes); }
  void scrub(kind::Unknown& unknown) {
    if (auto outcome = extension::program_outcome(unknown)) {
      const bool out = entry(outcome->stdout_hash, outcome->stdout_size);
      const bool err = entry(outcome->stderr_hash, outcome->stderr_size);
      if (out || err) unknown = extension::outcome_record(*outcome);
      return;
    }
    text(unknown.raw_json);  // the marker keeps a JSON string a JSON string
  }
  void scrub(kind::ClockRead&) {}
  void scrub(kind::ClockSleep&) {}
  void scrub(kind::FileDelete&) {}

  Tape& tape_;
  const std::vector<std::string>& known_;
  ScrubReport report_;
  std::set<std::string> replaced_;  // sidecar entries that held a credential
};

}  // namespace

ScrubReport scrub_tape(const std::filesystem::path& path, const std::vector<std::string>& known) {
  Tape tape = Tape::load(path);
  Scrubber scrubber(tape, known);
  for (Record& record : tape.records) scrubber.record(record);
  ScrubReport report = scrubber.report();
  if (report.credentials == 0) return report;
  tape.persist(path);  // the new entries first, then the tape, atomically
  // The entries that held a credential, now named by no record (a kill before this point leaves
  // them: `tapedeck scan` still finds them, and scrubbing again removes them).
  std::set<std::string> still_named;
  for (const Record& record : tape.records) {
    for_each_reference(record.kind,
                       [&](const std::string& name, auto, auto) { still_named.insert(name); });
  }
  std::error_code ignored;
  for (const std::string& name : scrubber.replaced()) {
    if (still_named.contains(name)) continue;
    std::filesystem::remove(cas_dir_for(path) / name, ignored);
    ++report.removed;
  }
  return report;
}

}  // namespace tapedeck::secrets
