// Credentials by shape (src/secrets): a corpus of synthetic credentials, generated here (none is a
// real key), in every format the rules know, planted in plain text, .env lines, JSON and nested
// JSON: every one is found, with its rule, and redacted; ordinary text is left alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tapedeck/secrets.hpp"

namespace tapedeck::secrets {
namespace {

class Corpus {
 public:
  explicit Corpus(uint32_t seed) : random_(seed) {}
  std::string chars(const std::string& alphabet, size_t count) {
    std::string out;
    for (size_t i = 0; i < count; ++i) out += alphabet[random_() % alphabet.size()];
    return out;
  }
  std::string alnum(size_t count) { return chars(kAlnum, count); }
  std::string upper_digits(size_t count) { return chars(kUpperDigits, count); }
  std::string url_safe(size_t count) { return chars(kAlnum + "_-", count); }
  std::string base64(size_t count) { return chars(kAlnum + "+/", count); }

 private:
  const std::string kAlnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const std::string kUpperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937 random_;
};

struct Planted {
  std::string credential;  // the bytes that must go
  std::string text;        // where it stands
  std::string rule;
};

std::vector<Planted> corpus() {
  std::vector<Planted> out;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    Corpus c(seed);
    auto plant = [&](const std::string& rule, const std::string& credential,
                     const std::string& before, const std::string& after) {
      out.push_back({credential, before + credential + after, rule});
    };
    plant("openai-api-key", "sk-" + c.alnum(48), "key = ", "\n");
    plant("openai-api-key", "sk-proj-" + c.url_safe(64), "{\"note\": \"", "\"}");
    plant("anthropic-api-key", "sk-ant-api03-" + c.url_safe(90), "x-api-key: ", "\r\n");
    plant("aws-access-key-id", "AKIA" + c.upper_digits(16), "aws_access_key_id = ", "\n");
    plant("aws-secret-access-key", c.base64(40), "aws_secret_access_key = ", "\n");
    plant("github-token", "ghp_" + c.alnum(36), "token ", " end");
    plant("github-fine-grained-token", "github_pat_" + c.alnum(22) + "_" + c.alnum(59),
          "pat=", ";");
    plant("slack-token", "xoxb-" + c.chars("0123456789", 12) + "-" + c.alnum(24), "slack ", ".");
    plant("google-api-key", "AIza" + c.url_safe(35), "?key=", "&q=1");
    plant("stripe-live-key", "sk_live_" + c.alnum(24), "stripe: ", "\n");
    plant("jwt", "eyJ" + c.url_safe(20) + ".eyJ" + c.url_safe(30) + "." + c.url_safe(43),
          "cookie: session=", "\n");
    const std::string pem = "PRIVATE KEY-----";  // split: this file holds no key block itself
    plant("private-key",
          "-----BEGIN RSA " + pem + "\n" + c.base64(64) + "\n" + c.base64(64) + "\n-----END RSA " +
              pem,
          "key file:\n", "\n");
    plant("authorization-header", c.url_safe(32), "Authorization: Bearer ", "\r\n");
    plant("dotenv-credential", c.alnum(24), "DATABASE_PASSWORD=", "\n");
    plant("json-credential", c.alnum(20), R"({"outer": {"client_secret": ")", R"("}})");
  }
  return out;
}

TEST(Secrets, EveryPlantedCredentialIsFoundByItsRule) {
  const std::vector<Planted> planted = corpus();
  ASSERT_GE(planted.size(), 30u);
  for (const Planted& p : planted) {
    const std::vector<Finding> found = find(p.text);
    ASSERT_EQ(found.size(), 1u) << p.rule << ": " << p.text;
    EXPECT_EQ(p.text.substr(found[0].offset, found[0].length), p.credential) << p.rule;
    // sk-ant- keys are sk- keys too; either rule may name it, the bytes are what matter.
    if (p.rule != "anthropic-api-key") {
      EXPECT_EQ(found[0].rule, p.rule) << p.text;
    }
  }
}

TEST(Secrets, RedactionLeavesNoByteOfTheCredentialAndKeepsJsonValid) {
  for (const Planted& p : corpus()) {
    std::string text = p.text;
    EXPECT_EQ(redact(text), 1u) << p.rule;
    EXPECT_EQ(text.find(p.credential), std::string::npos) << p.rule;
    EXPECT_NE(text.find(kRedacted), std::string::npos) << p.rule;
  }
  // Put together here, so that this file holds no credential-shaped string itself.
  std::string json = R"({"messages":[{"role":"user","content":"my key is sk-)" +
                     std::string(48, 'a') + R"("}],"api_key":")" + std::string("abcdefgh") +
                     "12345678\"}";
  EXPECT_EQ(redact(json), 2u);
  EXPECT_EQ(json, R"({"messages":[{"role":"user","content":"my key is )" + std::string(kRedacted) +
                      R"("}],"api_key":")" + std::string(kRedacted) + "\"}");
  EXPECT_EQ(redact(json), 0u);  // a redacted text scans clean
}

TEST(Secrets, AllInOneDocumentEachIsFoundOnce) {
  std::string document;
  size_t count = 0;
  for (const Planted& p : corpus()) {
    document += p.text + "\n";
    ++count;
  }
  EXPECT_EQ(find(document).size(), count);
}

TEST(Secrets, OrdinaryTextAndJsonAreLeftAlone) {
  const std::string ordinary =
      R"({"model":"gpt-4o","max_tokens":256,"temperature":0.2,"messages":[{"role":"user",)"
      R"("content":"Summarise the task list: sk-ip the tests, ask-me later"}],"stream":true,)"
      R"("usage":{"prompt_tokens":12,"completion_tokens":40},"tokenizer":"cl100k_base"})"
      "\nexport PATH=/usr/local/bin:/usr/bin\nTOKEN_COUNT=12\nPASSWORD_MIN_LENGTH=8\n"
      "Authorization: see the docs\n";
  EXPECT_TRUE(find(ordinary).empty()) << find(ordinary)[0].rule;
}

// A configuration that names the variable its credential comes from holds no credential; a value
// that only starts like one still counts.
TEST(Secrets, AReferenceToAnEnvironmentVariableIsNotACredential) {
  const std::string config =
      R"({"mcpServers":{"github":{"env":{"GITHUB_PERSONAL_ACCESS_TOKEN":"${GITHUB_TOKEN}"}},)"
      R"("api":{"headers":{"api_key":"$MY_API_TOKEN"}}}})";
  EXPECT_TRUE(find(config).empty()) << find(config)[0].rule;
  for (const std::string value : {"$MY_TOKEN-and-more", "${UNCLOSED_NAME", "$9starts_with_digit"}) {
    const std::string text = R"({"token":")" + value + R"("})";
    EXPECT_EQ(find(text).size(), 1u) << text;
  }
}

TEST(Secrets, FingerprintsNameAValueWithoutShowingIt) {
  EXPECT_EQ(fingerprint("sk-secret-value").size(), 12u);
  EXPECT_EQ(fingerprint("a"), fingerprint("a"));
  EXPECT_NE(fingerprint("a"), fingerprint("b"));
}

}  // namespace
}  // namespace tapedeck::secrets

namespace tapedeck::secrets {
namespace {

// Zero findings, file by file, under `root` (files of the given extensions, up to `budget`
// bytes in all); returns the bytes scanned.
size_t expect_clean(const std::filesystem::path& root, const std::vector<std::string>& extensions,
                    size_t budget, bool skip_packages = false) {
  size_t scanned = 0;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(root, error);
       it != std::filesystem::recursive_directory_iterator() && scanned < budget;
       it.increment(error)) {
    const std::filesystem::path& path = it->path();
    const std::string name = path.string();
    if (name.find("/build/") != std::string::npos || name.find("/.git/") != std::string::npos ||
        name.find("/test/") != std::string::npos ||
        (skip_packages && name.find("/node_modules/") != std::string::npos)) {
      // build outputs; test suites that carry sample keys on purpose; the packages the tests
      // install, whose documentation shows sample tokens ("a-very-secret-token", Gemini CLI's)
      continue;
    }
    if (!it->is_regular_file(error) || std::find(extensions.begin(), extensions.end(),
                                                 path.extension().string()) == extensions.end()) {
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    scanned += bytes.size();
    for (const Finding& finding : find(bytes)) {
      ADD_FAILURE() << path << ": " << finding.rule << " at " << finding.offset << ": "
                    << bytes.substr(finding.offset, std::min<size_t>(finding.length, 40));
    }
  }
  return scanned;
}

TEST(Secrets, TheProjectsOwnTreeHasNoFinding) {
  const size_t scanned = expect_clean(
      TAPEDECK_SOURCE_DIR,
      {".cpp", ".hpp", ".c", ".h", ".md", ".sh", ".py", ".mjs", ".txt", ".json", ".cmake", ".html"},
      size_t{64} << 20, /*skip_packages=*/true);
  EXPECT_GT(scanned, size_t{500} << 10);
}

TEST(Secrets, TenMegabytesOfOrdinaryTextAndJsonHaveNoFinding) {
  // Python's standard library and the npm packages the tests install: code, prose, JSON.
  size_t scanned = expect_clean("/usr/lib/python3.11", {".py", ".txt", ".json"}, size_t{8} << 20);
  scanned += expect_clean(std::string(TAPEDECK_SOURCE_DIR) + "/tests/proxy/node_modules",
                          {".js", ".mjs", ".json", ".md", ".ts"}, size_t{4} << 20);
  EXPECT_GE(scanned, size_t{10} << 20);
}

}  // namespace
}  // namespace tapedeck::secrets
