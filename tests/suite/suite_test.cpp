// The suite runner's report and manifest, without replaying anything: JUnit XML that a parser
// reads whatever a program printed, and manifests that survive a move and refuse bad fields.
#include <gtest/gtest.h>

#include <fstream>
#include <pugixml.hpp>

#include "tapedeck/error.hpp"
#include "tapedeck/suite.hpp"
#include "test_support.hpp"

namespace tapedeck::suite {
namespace {

namespace fs = std::filesystem;

CaseResult result_of(std::string tape, CaseResult::Status status, std::string message = {}) {
  CaseResult result;
  result.tape = tape;
  result.status = status;
  result.message = std::move(message);
  result.seconds = 0.25;
  return result;
}

TEST(JUnit, ReportsEachCaseAndCountsFailuresAndErrorsApart) {
  const std::vector<CaseResult> results = {
      result_of("tapes/a.tape", CaseResult::Status::passed),
      result_of("tapes/b.tape", CaseResult::Status::diverged, "first divergence at seq 4: x"),
      result_of("tapes/c.tape", CaseResult::Status::stopped, "replay stopped: a miss"),
      result_of("tapes/d.tape", CaseResult::Status::timed_out, "ran past 1 s"),
  };
  pugi::xml_document document;
  const std::string xml = junit_xml(results, "suite & co", 1.5);
  ASSERT_TRUE(document.load_string(xml.c_str())) << xml;
  const pugi::xml_node suites = document.child("testsuites");
  EXPECT_STREQ(suites.attribute("name").value(), "suite & co");
  EXPECT_EQ(suites.attribute("tests").as_int(), 4);
  EXPECT_EQ(suites.attribute("failures").as_int(), 2);
  EXPECT_EQ(suites.attribute("errors").as_int(), 1);
  std::vector<std::string> names;
  for (pugi::xml_node testcase : suites.child("testsuite").children("testcase")) {
    names.push_back(testcase.attribute("name").value());
    EXPECT_STREQ(testcase.attribute("classname").value(), "tapes");
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a.tape", "b.tape", "c.tape", "d.tape"}));
  const pugi::xml_node b = suites.child("testsuite").find_child_by_attribute("name", "b.tape");
  EXPECT_STREQ(b.child("failure").attribute("message").value(), "first divergence at seq 4: x");
  EXPECT_STREQ(b.child("failure").attribute("type").value(), "diverged");
  const pugi::xml_node d = suites.child("testsuite").find_child_by_attribute("name", "d.tape");
  EXPECT_TRUE(d.child("error")) << xml;
}

// A program's output is whatever it printed: colours, a NUL, bytes that are not UTF-8. XML 1.0
// cannot hold those even escaped; the report must still parse, and keep the readable text.
TEST(JUnit, AProgramsRawOutputNeverMakesTheReportUnparseable) {
  CaseResult result = result_of("t.tape", CaseResult::Status::diverged, "bell \x07 here");
  result.replay_stdout = std::string("\x1b[31mred\x1b[0m ok \xff\xfe tail \xc3\xa9 ") +
                         std::string(1, '\0') + " \xef\xbf\xbe" + " \xed\xa0\x80 <&>\"";
  const std::string xml = junit_xml({result}, "s", 0);
  pugi::xml_document document;
  ASSERT_TRUE(document.load_string(xml.c_str())) << xml;
  const std::string out =
      document.child("testsuites").child("testsuite").child("testcase").child_value("system-out");
  EXPECT_NE(out.find("red"), std::string::npos);
  EXPECT_NE(out.find("tail \xc3\xa9"), std::string::npos);  // valid UTF-8 kept as it was
  EXPECT_NE(out.find("<&>\""), std::string::npos);
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(out.find("\xff"), std::string::npos);
  EXPECT_EQ(out.find("\xef\xbf\xbe"), std::string::npos);  // U+FFFE
  EXPECT_EQ(out.find("\xed\xa0\x80"), std::string::npos);  // a surrogate
}

TEST(Manifest, PathsAreStoredRelativeSoAMovedSuiteStillFindsItsCode) {
  tapedeck::testing::TempDir dir;
  fs::create_directories(dir.path() / "suite/tapes");
  fs::create_directories(dir.path() / "suite/ws");
  const fs::path tape = dir.path() / "suite/tapes/run.tape";
  write_manifest(tape, {{"python3", "agent.py"},
                        dir.path() / "suite/ws",
                        dir.path() / "suite/ws",
                        fidelity::Mode::outcome});
  fs::rename(dir.path() / "suite", dir.path() / "moved");
  const Manifest read = read_manifest(dir.path() / "moved/tapes/run.tape");
  EXPECT_EQ(read.command, (std::vector<std::string>{"python3", "agent.py"}));
  EXPECT_EQ(fs::weakly_canonical(read.cwd), fs::weakly_canonical(dir.path() / "moved/ws"));
  EXPECT_EQ(read.workspace, read.cwd);
  EXPECT_EQ(read.mode, fidelity::Mode::outcome);
}

TEST(Manifest, BadFieldsAreRefusedNamingTheManifest) {
  tapedeck::testing::TempDir dir;
  const fs::path tape = dir.path() / "t.tape";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not a JSON object"},
      {R"({"tapedeck_manifest":2,"command":["x"],"cwd":".","workspace":"."})", "must be 1"},
      {R"({"tapedeck_manifest":1,"command":[],"cwd":".","workspace":"."})", "is empty"},
      {R"({"tapedeck_manifest":1,"command":[3],"cwd":".","workspace":"."})", "hold strings"},
      {R"({"tapedeck_manifest":1,"command":["x"],"workspace":"."})", "\"cwd\" must be a path"},
      {R"({"tapedeck_manifest":1,"command":["x"],"cwd":".","workspace":".","fidelity":"exact"})",
       "not a mode"},
  };
  EXPECT_THROW(read_manifest(tape), TapeError);  // none at all
  for (const auto& [text, expected] : cases) {
    std::ofstream(manifest_path_for(tape)) << text;
    try {
      read_manifest(tape);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const TapeError& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("t.tape.manifest"), std::string::npos);
    }
  }
}

TEST(FindTapes, FoldersAreSearchedInOrderAndSidecarsSkipped) {
  tapedeck::testing::TempDir dir;
  fs::create_directories(dir.path() / "b/run.tape.cas");
  fs::create_directories(dir.path() / "a");
  for (const char* name : {"b/2.tape", "a/1.tape", "b/run.tape.cas/x.tape", "a/notes.txt"}) {
    std::ofstream(dir.path() / name) << "";
  }
  const std::vector<fs::path> tapes = find_tapes({dir.path()});
  ASSERT_EQ(tapes.size(), 2u);
  EXPECT_EQ(tapes[0].filename(), "1.tape");
  EXPECT_EQ(tapes[1].filename(), "2.tape");
  EXPECT_THROW(find_tapes({dir.path() / "missing"}), TapeError);
}

}  // namespace
}  // namespace tapedeck::suite
