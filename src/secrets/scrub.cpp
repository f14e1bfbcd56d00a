// Scrubbing a tape that was written with credentials on it (before tapedeck redacted by shape,
// or by another writer): every place a credential can be is redacted, every sidecar entry that
// held one is rewritten under the hash of its redacted bytes and the records naming it follow,
// and the tape is replaced atomically. Old entries go only once the new tape is in place.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>

#include "tape/atomic_file.hpp"
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

namespace {

constexpr std::string_view kJournalHeading = "tapedeck scrub journal 1";

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.empty() || hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int high = digit(hex[i]), low = digit(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high << 4 | low);
  }
  return out;
}

// Every name the records of `tape` give the sidecar.
std::set<std::string> names_in(const Tape& tape) {
  std::set<std::string> named;
  for (const Record& record : tape.records) {
    for_each_reference(record.kind,
                       [&](const std::string& name, auto, auto) { named.insert(name); });
  }
  return named;
}

}  // namespace

std::vector<std::filesystem::path> leftover_credential_entries(
    const std::filesystem::path& path, const std::function<bool(const std::string&)>& named,
    const std::vector<std::string>& known) {
  std::vector<std::filesystem::path> out;
  std::error_code listing;
  for (std::filesystem::directory_iterator it(cas_dir_for(path), listing), end;
       !listing && it != end; it.increment(listing)) {
    const std::string name = it->path().filename().string();
    if (!is_valid_cas_name(name) || named(name)) continue;
    const std::optional<std::string> bytes = detail::read_file(it->path());
    if (bytes && !find(*bytes, known).empty()) out.push_back(it->path());
  }
  return out;
}

std::filesystem::path scrub_journal_for(const std::filesystem::path& tape) {
  return std::filesystem::path(tape.string() + ".scrub");
}

void note_pending_scrub(const std::filesystem::path& tape, const std::vector<std::string>& values) {
  std::string text = std::string(kJournalHeading) + "\n";
  for (const std::string& value : values) {
    if (!value.empty()) text += to_hex(value) + "\n";
  }
  detail::AtomicFile journal(scrub_journal_for(tape));
  if (::fchmod(journal.fd(), 0600) != 0) detail::throw_errno(journal.temp_path(), "chmod");
  journal.write(text);
  journal.commit();
}

std::vector<std::string> pending_scrub(const std::filesystem::path& tape) {
  const std::filesystem::path path = scrub_journal_for(tape);
  std::string text;
  if (!detail::read_file(path, text)) {
    if (errno == ENOENT) return {};
    detail::throw_errno(path, "read");
  }
  std::vector<std::string> values;
  uint64_t line = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view content = std::string_view(text).substr(at, end - at);
    ++line;
    at = end + 1;
    if (line == 1) {
      if (content != kJournalHeading) {
        throw TapeError(path.string(), line, "not a tapedeck scrub journal");
      }
      continue;
    }
    std::optional<std::string> value = from_hex(content);
    if (!value) throw TapeError(path.string(), line, "not a hex-encoded value");
    values.push_back(std::move(*value));
  }
  if (line == 0) throw TapeError(path.string(), 0, "empty scrub journal");
  return values;
}

ScrubReport scrub_tape(const std::filesystem::path& path, const std::vector<std::string>& known) {
  std::vector<std::string> values = pending_scrub(path);
  const size_t journaled = values.size();
  for (const std::string& value : known) {
    if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
  }
  Tape tape = Tape::load(path);  // a tape that cannot be read gets no journal
  // Written down before the first byte changes: a value with no shape cannot be found again.
  if (values.size() > journaled) note_pending_scrub(path, values);

  Scrubber scrubber(tape, values);
  for (Record& record : tape.records) scrubber.record(record);
  ScrubReport report = scrubber.report();
  if (report.credentials > 0) tape.persist(path);  // the new entries first, then the tape

  // The entries no record names now that hold a credential (those an earlier scrub, stopped by
  // a kill, left among them), and those this scrub replaced.
  const std::set<std::string> named = names_in(tape);
  const auto is_named = [&](const std::string& name) { return named.contains(name); };
  std::error_code ignored;
  for (const std::filesystem::path& entry : leftover_credential_entries(path, is_named, values)) {
    if (std::filesystem::remove(entry, ignored)) ++report.removed;
  }
  for (const std::string& name : scrubber.replaced()) {
    if (!named.contains(name) && std::filesystem::remove(cas_dir_for(path) / name, ignored)) {
      ++report.removed;
    }
  }
  // Last: until here a kill leaves the journal, and the next repair finishes the job.
  if (std::filesystem::remove(scrub_journal_for(path), ignored)) {
    detail::fsync_directory(std::filesystem::absolute(path).parent_path());
  }
  return report;
}

}  // namespace tapedeck::secrets
