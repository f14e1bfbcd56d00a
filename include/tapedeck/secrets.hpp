// Credentials recognised by their shape, before any byte reaches a tape.
//
// The rules cover the formats public detector rule sets (gitleaks, trufflehog) document: OpenAI
// (sk-, sk-proj-), Anthropic (sk-ant-), AWS access key ids and secret keys, GitHub tokens (ghp_,
// gho_, ghu_, ghs_, ghr_, github_pat_), Slack (xox?-), Google API keys (AIza), Stripe live keys,
// JWTs, PEM private-key blocks, the value of an Authorization header, and KEY=value lines of
// .env-style files (and JSON string fields) whose key names a credential. One pass over the
// bytes finds which rules match (Vectorscan); only the rules that did are run again (RE2) for
// their spans.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace tapedeck::secrets {

struct Finding {
  size_t offset = 0;  // of the credential itself in the bytes scanned
  size_t length = 0;
  std::string_view rule;  // e.g. "openai-api-key"
};

// What a redacted credential reads as: valid UTF-8, and inside a JSON string, still JSON.
inline constexpr std::string_view kRedacted = "[redacted by tapedeck]";

// The rules compile on their first use, which takes tens of milliseconds (Vectorscan's
// database): a caller that knows it will scan can have that done now, on a thread of its choice.
// Safe to call from any thread, any number of times.
void prepare();

// Every credential-shaped string in `bytes`, in order, not overlapping.
std::vector<Finding> find(std::string_view bytes);

// What a known value (a credential learned as such, whatever its shape) is reported as.
inline constexpr std::string_view kKnownCredentialRule = "known-credential";

// Every credential-shaped string in `bytes` and every occurrence of the `known` values, in
// order, not overlapping.
std::vector<Finding> find(std::string_view bytes, const std::vector<std::string>& known);

// `bytes` with every credential-shaped string replaced by kRedacted; the number replaced.
size_t redact(std::string& bytes);
// `bytes` with every occurrence of the `known` values (credentials whatever their shape)
// replaced by kRedacted; the number replaced.
size_t redact_values(std::string& bytes, const std::vector<std::string>& known);

// What scrub_tape did: credentials redacted, sidecar entries and payloads rewritten under new
// hashes, old entries removed.
struct ScrubReport {
  uint64_t credentials = 0;
  uint64_t rewritten = 0;
  uint64_t removed = 0;
};

// Redacts every credential-shaped string, and every one of `known` (values learned as
// credentials, whatever their shape) and of a pending scrub journal (below), on the tape at
// `path` and in the sidecar entries its records name (payloads, file bytes, printed output; a
// kept LLM request that held one is removed), rewriting the entries under their new hashes and
// the tape atomically; then removes the sidecar entries no record names that hold a credential,
// and last the journal. Throws TapeError when the tape cannot be read or written.
ScrubReport scrub_tape(const std::filesystem::path& path,
                       const std::vector<std::string>& known = {});

// The sidecar entries of the tape at `path` that no record names (`named` says which are) and
// that hold a credential, by shape or one of `known`: what a stopped scrub leaves behind.
std::vector<std::filesystem::path> leftover_credential_entries(
    const std::filesystem::path& path, const std::function<bool(const std::string&)>& named,
    const std::vector<std::string>& known);

// The scrub journal, the write-ahead log that makes a scrub of values with no known shape safe
// against a kill. Such a value can be found again only if it is written down: before a scrub
// starts (and as soon as a recording learns a credential after bytes holding it may be on disk)
// the values are written to TAPE.scrub, whole or not at all, readable by the owner only; the
// tape's sidecar holds them at that moment anyway. scrub_tape removes the journal last, once no
// byte of them is left. A kill in between leaves it: `tapedeck verify --repair` and `scan
// --redact` finish the scrub from it, `verify` warns of it and `scan` reports its values.
std::filesystem::path scrub_journal_for(const std::filesystem::path& tape);
// Writes (replaces) the journal of `tape` with `values`.
void note_pending_scrub(const std::filesystem::path& tape, const std::vector<std::string>& values);
// The values of a pending scrub of `tape`; none when it has no journal. Throws TapeError naming
// the journal and line when it cannot be read.
std::vector<std::string> pending_scrub(const std::filesystem::path& tape);

// A short fingerprint of a credential (the first 12 hex digits of its BLAKE3): a report names
// which value it found without printing it.
std::string fingerprint(std::string_view credential);

}  // namespace tapedeck::secrets
