// The rule a replay reads the program's code by: what is code by default, the root command's
// script, and --data / --code globs over it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "supervisor/code_rule.hpp"
#include "test_support.hpp"

namespace tapedeck::supervisor {
namespace {

namespace fs = std::filesystem;

class CodeRuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(workspace_ / "bin");
    for (const char* name : {"bin/agent", "run", "input.txt", "agent.py"}) {
      std::ofstream(workspace_ / name) << "x\n";
    }
  }
  CodeRule rule(std::vector<std::string> command, std::vector<std::string> code = {},
                std::vector<std::string> data = {}) {
    return CodeRule(command, workspace_.path(), workspace_.path(), std::move(code),
                    std::move(data));
  }
  testing::TempDir workspace_;
};

TEST_F(CodeRuleTest, SourcesAndPackagesAreCodeByDefault) {
  const CodeRule plain = rule({"python3", "agent.py"});
  for (const char* path :
       {"agent.py", "pkg/mod.py", "lib/x.pth", "app.mjs", "src/index.ts", "run.sh",
        "node_modules/openai/package.json", "node_modules/openai/data/table.json",
        ".venv/lib/python3.13/site-packages/httpx/_api.txt", "package.json", "sub/Makefile"}) {
    EXPECT_TRUE(plain.is_code(path)) << path;
  }
  for (const char* path : {"input.txt", "tasks.json", "notes/plan.md", ".env", "data/py",
                           "agent.py.txt", "my_node_modules/x.txt"}) {
    EXPECT_FALSE(plain.is_code(path)) << path;
  }
}

TEST_F(CodeRuleTest, TheRootCommandsScriptIsCode) {
  // An interpreter's first argument naming a workspace file, past its options.
  EXPECT_EQ(rule({"python3", "-u", "-X", "dev", "run", "input.txt"}).script(), "run");
  EXPECT_TRUE(rule({"bash", "run"}).is_code("run"));
  EXPECT_FALSE(rule({"bash", "run"}).is_code("input.txt"));
  // The program itself, named by a path.
  EXPECT_EQ(rule({"./bin/agent", "input.txt"}).script(), "bin/agent");
  EXPECT_EQ(rule({(workspace_ / "run").string()}).script(), "run");
  // No script: code given inline, a module, or a program that is no interpreter.
  EXPECT_EQ(rule({"python3", "-c", "print(1)", "run"}).script(), "");
  EXPECT_EQ(rule({"python3", "-m", "run"}).script(), "");
  EXPECT_EQ(rule({"cat", "run"}).script(), "");
  EXPECT_EQ(rule({"python3", "/etc/hostname"}).script(), "");
  EXPECT_TRUE(rule({"python3.13", "run"}).is_code("run"));
}

TEST_F(CodeRuleTest, ASubprocesssScriptIsCodeToo) {
  CodeRule plain = rule({"npm", "run", "agent"});
  EXPECT_FALSE(plain.is_code("bin/agent"));
  plain.add_command({"./agent", "input.txt"}, workspace_ / "bin");
  plain.add_command({"sh", "run"}, workspace_.path());
  plain.add_command({"cat", "input.txt"}, workspace_.path());  // no interpreter: no script
  EXPECT_TRUE(plain.is_code("bin/agent"));
  EXPECT_TRUE(plain.is_code("run"));
  EXPECT_FALSE(plain.is_code("input.txt"));
}

TEST_F(CodeRuleTest, GlobsOverrideDataFirst) {
  const CodeRule globbed =
      rule({"python3", "agent.py"}, {"prompts/*", "input.txt"}, {"repo/*", "prompts/draft.txt"});
  EXPECT_TRUE(globbed.is_code("input.txt"));
  EXPECT_TRUE(globbed.is_code("prompts/system.txt"));
  EXPECT_FALSE(globbed.is_code("prompts/draft.txt"));  // --data wins over --code
  EXPECT_FALSE(globbed.is_code("repo/src/main.py"));   // and over the default
  EXPECT_EQ(globbed.globs_say("repo/a/b.py"), CodeRule::Said::data);
  EXPECT_EQ(globbed.globs_say("prompts/a"), CodeRule::Said::code);
  EXPECT_EQ(globbed.globs_say("agent.py"), CodeRule::Said::nothing);
  // A replay goes by the recording's mark unless a glob decides the path.
  EXPECT_TRUE(globbed.is_code("notes.txt", true));
  EXPECT_FALSE(globbed.is_code("agent.py", false));
  EXPECT_FALSE(globbed.is_code("repo/a/b.py", true));
  EXPECT_TRUE(globbed.is_code("prompts/a", false));
}

TEST(GlobMatches, StarCrossesFoldersAndATrailingSlashIsAFolder) {
  EXPECT_TRUE(glob_matches("*.py", "a/b/c.py"));
  EXPECT_TRUE(glob_matches("src/", "src/x/y.txt"));
  EXPECT_FALSE(glob_matches("src/", "srcs/x"));
  EXPECT_TRUE(glob_matches("data/*.json", "data/x/y.json"));
  EXPECT_FALSE(glob_matches("data/*.json", "other/data/y.json"));
  EXPECT_TRUE(glob_matches("inputs/[ab].txt", "inputs/a.txt"));
}

}  // namespace
}  // namespace tapedeck::supervisor
