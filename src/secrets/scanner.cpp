#include <hs/hs.h>
#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <memory>
#include <stdexcept>

#include "tapedeck/secrets.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::secrets {

namespace {

// Each rule's first capture group is the credential itself (what is redacted). The formats are
// facts from the public rule sets; the expressions are ours.
struct Rule {
  const char* name;
  const char* pattern;
};
constexpr Rule kRules[] = {
    {"anthropic-api-key", R"((sk-ant-[A-Za-z0-9_\-]{32,}))"},
    {"openai-api-key", R"((sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}))"},
    {"aws-access-key-id", R"(\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b)"},
    {"aws-secret-access-key",
     R"((?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b)"},
    {"github-token", R"(\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}))"},
    {"github-fine-grained-token", R"(\b(github_pat_[A-Za-z0-9_]{22,255}))"},
    {"slack-token", R"(\b(xox[baprs]-[A-Za-z0-9\-]{10,}))"},
    {"google-api-key", R"(\b(AIza[0-9A-Za-z_\-]{35}))"},
    {"stripe-live-key", R"(\b((?:sk|rk)_live_[0-9A-Za-z]{24,}))"},
    {"jwt", R"(\b(eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}))"},
    {"private-key",
     R"((-----BEGIN[ A-Z0-9]*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+-----END[ A-Z0-9]*PRIVATE KEY-----))"},
    {"authorization-header",
     R"((?i)authorization["']?\s*[:=]\s*["']?(?:bearer|basic|token)\s+([A-Za-z0-9._~+/=\-]{8,}))"},
    // .env files name their keys in capitals; code assigns lower-case names, calls things and
    // names dotted attributes (a JWT's dots are the jwt rule's).
    {"dotenv-credential",
     R"((?m)^[ \t]*(?:export[ \t]+)?[A-Z0-9_]*(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)[A-Z0-9_]*[ \t]*=[ \t]*["']?([^\s"'#$(){};,.<>\[\]]{8,})["']?[ \t]*$)"},
    {"json-credential",
     R"re((?i)"[a-z0-9_\-]*(?:api_?key|secret|token|password|passwd)"\s*:\s*"([^"\\]{8,})")re"},
};
constexpr size_t kRuleCount = sizeof kRules / sizeof kRules[0];

RE2::Options options() {
  RE2::Options out;
  out.set_encoding(RE2::Options::EncodingLatin1);  // bytes, not necessarily UTF-8
  out.set_log_errors(false);
  out.set_max_mem(64 << 20);
  return out;
}

// Which rules match is one pass of Vectorscan (Hyperscan's portable fork): its literal
// prefilters skip ordinary bytes at several GB/s, about ten times RE2::Set's DFA on the mixed
// benchmark tape. Vectorscan reports no captures, so only the rules that matched are run again
// with RE2 for the credential's span. Inputs past Vectorscan's 32-bit length use RE2::Set.
struct Compiled {
  hs_database_t* database = nullptr;
  RE2::Set any{options(), RE2::UNANCHORED};
  std::vector<std::unique_ptr<RE2>> each;
  Compiled() {
    std::vector<const char*> patterns;
    std::vector<unsigned> flags, ids;
    for (const Rule& rule : kRules) {
      std::string error;
      if (any.Add(rule.pattern, &error) < 0) {
        throw std::logic_error(std::string("secrets rule ") + rule.name + ": " + error);
      }
      each.push_back(std::make_unique<RE2>(rule.pattern, options()));
      patterns.push_back(rule.pattern);
      flags.push_back(HS_FLAG_SINGLEMATCH);  // whether a rule matched, not where: once is enough
      ids.push_back(static_cast<unsigned>(ids.size()));
    }
    if (!any.Compile()) throw std::logic_error("secrets rules: the set does not compile");
    hs_compile_error_t* error = nullptr;
    if (hs_compile_multi(patterns.data(), flags.data(), ids.data(),
                         static_cast<unsigned>(patterns.size()), HS_MODE_BLOCK, nullptr, &database,
                         &error) != HS_SUCCESS) {
      std::string message = std::string("secrets rule ") +
                            kRules[static_cast<size_t>(std::max(error->expression, 0))].name +
                            ": " + error->message;
      hs_free_compile_error(error);
      throw std::logic_error(message);
    }
  }
  ~Compiled() { hs_free_database(database); }
  Compiled(const Compiled&) = delete;
  Compiled& operator=(const Compiled&) = delete;
};

const Compiled& compiled() {
  static const Compiled rules;
  return rules;
}

// Vectorscan's scratch space belongs to one thread at a time.
struct Scratch {
  hs_scratch_t* space = nullptr;
  ~Scratch() { hs_free_scratch(space); }
};

// The indexes of the rules that match somewhere in `bytes`.
std::vector<int> rules_matching(std::string_view bytes) {
  const Compiled& rules = compiled();
  std::vector<int> matched;
  if (bytes.size() >= UINT_MAX) {
    rules.any.Match(re2::StringPiece(bytes.data(), bytes.size()), &matched);
    return matched;
  }
  thread_local Scratch scratch;
  if (scratch.space == nullptr && hs_alloc_scratch(rules.database, &scratch.space) != HS_SUCCESS) {
    throw std::bad_alloc();
  }
  auto on_match = [](unsigned id, unsigned long long, unsigned long long, unsigned,
                     void* context) -> int {
    static_cast<std::vector<int>*>(context)->push_back(static_cast<int>(id));
    return 0;
  };
  hs_scan(rules.database, bytes.data(), static_cast<unsigned>(bytes.size()), 0, scratch.space,
          on_match, &matched);
  return matched;
}

// In order of offset; where two findings overlap, the longer, and of two on the same bytes (sk-ant-
// is also sk-) the one found first (the earlier rule's).
std::vector<Finding> in_order_without_overlaps(std::vector<Finding> found) {
  std::stable_sort(found.begin(), found.end(), [](const Finding& a, const Finding& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.length > b.length;
  });
  std::vector<Finding> kept;
  for (const Finding& finding : found) {
    if (!kept.empty() && finding.offset < kept.back().offset + kept.back().length) continue;
    kept.push_back(finding);
  }
  return kept;
}

// A reference to an environment variable ("$API_TOKEN", "${GITHUB_TOKEN}"): a configuration that
// names where its credential comes from, not a credential (the dotenv rule never takes a `$`).
bool names_a_variable(std::string_view value) {
  if (!value.starts_with('$')) return false;
  value.remove_prefix(1);
  const bool braced = value.starts_with('{');
  if (braced) {
    if (!value.ends_with('}')) return false;
    value = value.substr(1, value.size() - 2);
  }
  if (value.empty() || std::isdigit(static_cast<unsigned char>(value.front()))) return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

}  // namespace

void prepare() {
  compiled();
}

std::vector<Finding> find(std::string_view bytes) {
  std::vector<Finding> out;
  const Compiled& rules = compiled();
  std::vector<int> matched = rules_matching(bytes);
  if (matched.empty()) return out;
  std::sort(matched.begin(), matched.end());
  for (int index : matched) {
    const RE2& rule = *rules.each[static_cast<size_t>(index)];
    re2::StringPiece rest(bytes.data(), bytes.size());
    re2::StringPiece credential;
    while (RE2::FindAndConsume(&rest, rule, &credential) && !credential.empty()) {
      // A value already redacted is not a credential (a redacted tape scans clean).
      const std::string_view value(credential.data(), credential.size());
      if (value.starts_with(kRedacted) || names_a_variable(value)) continue;
      out.push_back({static_cast<size_t>(credential.data() - bytes.data()), credential.size(),
                     kRules[static_cast<size_t>(index)].name});
    }
  }
  return in_order_without_overlaps(std::move(out));
}

std::vector<Finding> find(std::string_view bytes, const std::vector<std::string>& known) {
  std::vector<Finding> out = find(bytes);
  bool added = false;
  for (const std::string& value : known) {
    if (value.empty()) continue;
    for (size_t at = bytes.find(value); at != std::string_view::npos;
         at = bytes.find(value, at + value.size())) {
      out.push_back({at, value.size(), kKnownCredentialRule});
      added = true;
    }
  }
  return added ? in_order_without_overlaps(std::move(out)) : out;
}

size_t redact_values(std::string& bytes, const std::vector<std::string>& known) {
  size_t redacted = 0;
  for (const std::string& value : known) {
    if (value.empty()) continue;
    for (size_t at = bytes.find(value); at != std::string::npos;
         at = bytes.find(value, at + kRedacted.size())) {
      bytes.replace(at, value.size(), kRedacted);
      ++redacted;
    }
  }
  return redacted;
}

size_t redact(std::string& bytes) {
  const std::vector<Finding> findings = find(bytes);
  for (auto it = findings.rbegin(); it != findings.rend(); ++it) {
    bytes.replace(it->offset, it->length, kRedacted);
  }
  return findings.size();
}

std::string fingerprint(std::string_view credential) {
  return content_hash(credential).substr(0, 12);
}

}  // namespace tapedeck::secrets
