#include "tapedeck/testbench.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tapedeck/fidelity.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::TempDir;
constexpr int64_t kStart = 1'700'000'000'000;

TEST(Network, DenyByDefaultAndTheThreeRuleShapes) {
  NetworkPolicy policy = NetworkPolicy::deny_all();
  EXPECT_FALSE(policy.allowing_rule("example.com", 443));
  policy.allow("api.openai.com").allow("*.anthropic.com").allow("localhost:8080");
  EXPECT_EQ(policy.allowing_rule("API.openai.com", 443), "api.openai.com");
  EXPECT_EQ(policy.allowing_rule("eu.api.anthropic.com", 443), "*.anthropic.com");
  EXPECT_FALSE(policy.allowing_rule("anthropic.com", 443));  // *.domain: subdomains only
  EXPECT_FALSE(policy.allowing_rule("evilanthropic.com", 443));
  EXPECT_EQ(policy.allowing_rule("localhost", 8080), "localhost:8080");
  EXPECT_FALSE(policy.allowing_rule("localhost", 8081));
  EXPECT_NO_THROW(policy.require("https://api.openai.com/v1/chat/completions"));
  EXPECT_NO_THROW(policy.require("http://user:secret@localhost:8080/x"));
  try {
    policy.require("https://example.com:8443/path");
    FAIL() << "a host outside the allowlist passed";
  } catch (const NetworkDenied& denied) {
    const std::string message = denied.what();
    EXPECT_NE(message.find("example.com:8443"), std::string::npos) << message;
    EXPECT_NE(message.find("*.anthropic.com"), std::string::npos) << message;
  }
  EXPECT_THROW(NetworkPolicy::deny_all().require("https://anywhere.dev"), NetworkDenied);
  EXPECT_THROW(policy.allow("bad:port"), std::invalid_argument);
  EXPECT_THROW(policy.allow("*.*.x"), std::invalid_argument);
  EXPECT_THROW(policy.allow(""), std::invalid_argument);
}

TEST(Network, RulesParseAndAUrlNamesTheRuleThatAllowsIt) {
  const NetworkPolicy::Rule wild = NetworkPolicy::parse("*.Anthropic.com");
  EXPECT_EQ(wild.host, "anthropic.com");
  EXPECT_TRUE(wild.subdomains);
  EXPECT_FALSE(wild.port);
  const NetworkPolicy::Rule v6 = NetworkPolicy::parse("[::1]:8080");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 8080);
  EXPECT_THROW(NetworkPolicy::parse("localhost:99999"), std::invalid_argument);
  EXPECT_THROW(NetworkPolicy::parse("localhost:0"), std::invalid_argument);

  EXPECT_EQ(NetworkPolicy::rule_for("https://api.openai.com/v1"), "api.openai.com:443");
  EXPECT_EQ(NetworkPolicy::rule_for("http://key@127.0.0.1:8080/x"), "127.0.0.1:8080");
  EXPECT_EQ(NetworkPolicy::rule_for("http://[::1]/"), "[::1]:80");
  EXPECT_THROW(NetworkPolicy::rule_for("garbage"), NetworkDenied);
  NetworkPolicy policy = NetworkPolicy::deny_all();
  policy.allow(NetworkPolicy::rule_for("http://[::1]:9/"));
  EXPECT_NO_THROW(policy.require("http://[::1]:9/v1"));
  EXPECT_THROW(policy.require("http://[::1]:10/v1"), NetworkDenied);
}

// The host under test: reads the clock, sleeps, runs subprocesses.
struct HostRun {
  int64_t wall = 0, mono = 0, later = 0;
  ProcessResult first, second, big;
};

HostRun host(Session& session) {
  HostRun run;
  run.wall = session.clock().now_ms();
  session.clock().sleep_ms(10'000);  // ten virtual seconds
  run.mono = session.clock().monotonic_ms();
  run.first = session.processes().run("sh", {"-c", "echo out; echo err >&2; exit 3"});
  run.second = session.processes().run("sh", {"-c", "echo out; echo err >&2; exit 3"});
  run.big = session.processes().run("sh", {"-c", "head -c 6000 /dev/zero | tr '\\0' y; pwd"},
                                    std::string("/tmp"));
  run.later = session.clock().now_ms();
  return run;
}

TEST(Testbench, RecordThenReplayServesEveryInputAndTheTapesMatch) {
  TempDir tmp;
  HostRun recorded;
  {
    auto session = Testbench::recording(tmp / "run.tape")
                       .paused_clock(kStart)
                       .subprocesses(std::chrono::seconds(20))
                       .describe("host", {"--task", "x"})
                       .start();
    EXPECT_EQ(active_recorder().get(), &session->recorder());
    recorded = host(*session);
    session->finalize();
  }
  EXPECT_EQ(active_recorder(), nullptr);  // the session restored the previous state
  EXPECT_EQ(recorded.wall, kStart);
  EXPECT_EQ(recorded.mono, 10'000);
  EXPECT_EQ(recorded.later, kStart + 10'000);
  EXPECT_EQ(recorded.first.exit_code, 3);
  EXPECT_EQ(recorded.first.stdout_bytes, "out\n");
  EXPECT_EQ(recorded.first.stderr_bytes, "err\n");
  EXPECT_EQ(recorded.big.stdout_bytes, std::string(6000, 'y') + "/tmp\n");

  Tape tape = Tape::load(tmp / "run.tape");
  ASSERT_EQ(tape.records.size(), 7u);
  EXPECT_TRUE(std::get<kind::ProcessSpawn>(tape.records[5].kind).stdout_payload.in_cas());

  const auto wall_before = std::chrono::steady_clock::now();
  HostRun replayed;
  {
    auto session = Testbench::replaying(tmp / "run.tape", tmp / "replay.tape")
                       .subprocesses(std::chrono::seconds(20))
                       .start();
    replayed = host(*session);
    session->finalize();
  }
  // The ten-second sleep cost no wall time: far under what it stood for.
  EXPECT_LT(std::chrono::steady_clock::now() - wall_before, std::chrono::seconds(5));
  EXPECT_EQ(replayed.wall, recorded.wall);
  EXPECT_EQ(replayed.later, recorded.later);
  EXPECT_EQ(replayed.first.stdout_bytes, recorded.first.stdout_bytes);
  EXPECT_EQ(replayed.big.stdout_bytes, recorded.big.stdout_bytes);
  EXPECT_EQ(replayed.big.duration_ms, recorded.big.duration_ms);

  auto left = TapeReader::open(tmp / "run.tape");
  auto right = TapeReader::open(tmp / "replay.tape");
  fidelity::Report report = fidelity::compare(*left, *right, fidelity::Mode::byte_identical);
  EXPECT_TRUE(report.identical()) << (report.divergences.empty() ? ""
                                                                 : report.divergences[0].message);
}

TEST(Testbench, ReplayDoesNotSpawn) {
  TempDir tmp;
  const auto marker = tmp / "spawned";
  {
    auto session =
        Testbench::recording(tmp / "run.tape").paused_clock(kStart).subprocesses().start();
    session->processes().run("touch", {marker.string()});
  }
  std::filesystem::remove(marker);
  auto session = Testbench::replaying(tmp / "run.tape").subprocesses().start();
  EXPECT_EQ(session->processes().run("touch", {marker.string()}).exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(marker));  // served from the tape, not run
}

TEST(Testbench, AStreamingSessionIsOnDiskBeforeItEndsAndTakesSubprocessesRunElsewhere) {
  TempDir tmp;
  const auto tape = tmp / "run.tape";
  auto session = Testbench::recording(tape).paused_clock(kStart).subprocesses().stream().start();
  session->clock().sleep_ms(5);
  ProcessResult ran;
  ran.exit_code = 3;
  ran.stdout_bytes = "built\n";
  ran.duration_ms = 12;
  session->processes().record_finished("make", {"all"}, ".", ran);
  session->recorder().flush();
  EXPECT_EQ(Tape::load(tape).records.size(), 2u);  // a run killed now keeps both
  session->finish();
  const Tape written = Tape::load(tape);
  ASSERT_EQ(written.records.size(), 2u);
  const auto& spawn = std::get<kind::ProcessSpawn>(written.records[1].kind);
  EXPECT_EQ(spawn.program, "make");
  EXPECT_EQ(spawn.exit_code, 3);
  EXPECT_EQ(written.resolve(spawn.stdout_payload), "built\n");

  // Replay serves it like any recorded subprocess; a replay cannot record one run elsewhere.
  auto replay = Testbench::replaying(tape).subprocesses().start();
  ASSERT_NE(replay->recorded_tape(), nullptr);
  EXPECT_EQ(replay->processes().run("make", {"all"}, ".").exit_code, 3);
  EXPECT_THROW(replay->processes().record_finished("make", {}, ".", ran), std::logic_error);
  EXPECT_THROW(session->processes().record_unheld("make", {}, ".", ran), std::logic_error);
}

// A coding agent's shell command runs to kilobytes: the miss shows where the nearest recorded
// one differs, with a little of each around it, not both whole (they come whole with the miss).
TEST(Testbench, AMissOnALongCommandShowsWhereItDiffersNotTheWholeOfIt) {
  TempDir tmp;
  const std::string head(3000, 'x');
  const std::string recorded_script = head + " snapshot-1796524370056 " + head;
  const std::string replayed_script = head + " snapshot-1796524370154 " + head;
  {
    auto session =
        Testbench::recording(tmp / "run.tape").paused_clock(kStart).subprocesses().start();
    session->processes().run("sh", {"-c", recorded_script}, std::string("/tmp"));
  }
  auto session = Testbench::replaying(tmp / "run.tape").subprocesses().start();
  try {
    session->processes().run("sh", {"-c", replayed_script}, std::string("/tmp"));
    FAIL() << "an unrecorded subprocess was served";
  } catch (const ReplayMiss& miss) {
    const std::string message = miss.what();
    EXPECT_LT(message.size(), 800u) << message;
    // (`sh -c `, the 3000 bytes, ` snapshot-1796524370`: 3027 bytes alike.)
    EXPECT_NE(message.find("at byte 3027:"), std::string::npos) << message;
    EXPECT_NE(message.find("recorded: …xxxxxxxxxxxxxxxxxxxx snapshot-1796524370056 xxx"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("replay:   …xxxxxxxxxxxxxxxxxxxx snapshot-1796524370154 xxx"),
              std::string::npos)
        << message;
    EXPECT_NE(miss.wanted.find(replayed_script), std::string::npos);
    EXPECT_NE(miss.recorded.find(recorded_script), std::string::npos);
  }
}

TEST(Testbench, FirstDifferenceNamesTheByteAndShowsBothSides) {
  EXPECT_EQ(first_difference("abcdef", "abcxef"),
            "at byte 3:\n  recorded: abcdef\n  replay:   abcxef");
  EXPECT_EQ(first_difference("same", "same"), "at byte 4:\n  recorded: same\n  replay:   same");
  EXPECT_EQ(abbreviated("short"), "short");
  EXPECT_EQ(abbreviated(std::string(200, 'a'), 10), "aaaaaaaaaa… (200 bytes)");
}

TEST(Testbench, AnUnknownTupleIsALoudMissNamingTheNearest) {
  TempDir tmp;
  {
    auto session =
        Testbench::recording(tmp / "run.tape").paused_clock(kStart).subprocesses().start();
    session->processes().run("git", {"status", "--short"}, std::string("/tmp"));
  }
  auto session = Testbench::replaying(tmp / "run.tape").subprocesses().start();
  try {
    session->processes().run("git", {"status", "--long"}, std::string("/tmp"));
    FAIL() << "an unrecorded subprocess was served";
  } catch (const ReplayMiss& miss) {
    const std::string message = miss.what();
    EXPECT_NE(message.find("`git status --long` in /tmp"), std::string::npos) << message;
    EXPECT_NE(message.find("nearest recorded: `git status --short` in /tmp"), std::string::npos)
        << message;
  }
  session->processes().run("git", {"status", "--short"}, std::string("/tmp"));
  // The same tuple a second time: the tape held it once.
  EXPECT_THROW(session->processes().run("git", {"status", "--short"}, std::string("/tmp")),
               ReplayMiss);
  // Only what was served is on the replay's tape.
  Tape replayed = session->finalize();
  ASSERT_EQ(replayed.records.size(), 1u);
  EXPECT_EQ(std::get<kind::ProcessSpawn>(replayed.records[0].kind).args,
            (std::vector<std::string>{"status", "--short"}));
}

TEST(Testbench, ClockReadsBeyondTheTapeOrOfTheWrongSourceMiss) {
  TempDir tmp;
  {
    auto session = Testbench::recording(tmp / "run.tape").paused_clock(kStart).start();
    session->clock().now_ms();
  }
  auto session = Testbench::replaying(tmp / "run.tape").start();
  try {
    session->clock().monotonic_ms();
    FAIL();
  } catch (const ReplayMiss& miss) {
    EXPECT_NE(std::string(miss.what()).find("wall clock read"), std::string::npos) << miss.what();
  }
  auto again = Testbench::replaying(tmp / "run.tape").start();
  EXPECT_EQ(again->clock().now_ms(), kStart);
  EXPECT_THROW(again->clock().now_ms(), ReplayMiss);
}

// A replay runs on a paused clock, but its records are stamped in the recording's time: the
// k-th record other than a clock read with the recording's k-th stamps, so a replay that did
// what the recording did is stamped alike (the time the recording spent between its inputs
// included), and past the recording time moves on by the replay's own sleeps.
TEST(Testbench, AReplayIsStampedInTheRecordingsTime) {
  TempDir tmp;
  auto work = [](Session& session, bool recording) {
    session.clock().now_ms();
    if (recording) std::this_thread::sleep_for(std::chrono::milliseconds(60));  // not taped
    session.clock().sleep_ms(20);
    session.clock().monotonic_ms();
    session.clock().sleep_ms(30);
  };
  {
    auto session = Testbench::recording(tmp / "run.tape").start();  // the real clock
    work(*session, true);
    session->finalize();
  }
  {
    auto session = Testbench::replaying(tmp / "run.tape", tmp / "replay.tape").start();
    work(*session, false);
    session->clock().sleep_ms(500);  // past the recording
    session->finalize();
  }
  const Tape recorded = Tape::load(tmp / "run.tape");
  const Tape replayed = Tape::load(tmp / "replay.tape");
  ASSERT_EQ(recorded.records.size(), 4u);
  ASSERT_EQ(replayed.records.size(), 5u);
  for (size_t i : {1u, 3u}) {  // the sleeps
    EXPECT_EQ(replayed.records[i].virtual_time_ms, recorded.records[i].virtual_time_ms) << i;
    EXPECT_EQ(replayed.records[i].monotonic_ms, recorded.records[i].monotonic_ms) << i;
  }
  EXPECT_GE(recorded.records[1].monotonic_ms, 80);  // the untaped 60 ms are in the stamps
  EXPECT_EQ(replayed.records[4].virtual_time_ms, recorded.records[3].virtual_time_ms + 500);
}

TEST(Testbench, AdvanceMovesVirtualTimeWithoutARecord) {
  TempDir tmp;
  auto session = Testbench::recording(tmp / "run.tape").paused_clock(kStart).start();
  session->clock().advance_ms(1500);
  EXPECT_EQ(session->clock().now_ms(), kStart + 1500);
  session->clock().sleep_ms(500);
  EXPECT_EQ(session->clock().monotonic_ms(), 2000);
  Tape tape = session->finalize();
  ASSERT_EQ(tape.records.size(), 3u);  // two reads and the sleep; the advance left no record
  EXPECT_EQ(tape.records[1].virtual_time_ms, kStart + 2000);
}

TEST(Testbench, ASubprocessPastItsTimeoutIsKilled) {
  TempDir tmp;
  auto session = Testbench::recording(tmp / "run.tape")
                     .paused_clock(kStart)
                     .subprocesses(std::chrono::milliseconds(200))
                     .start();
  const auto before = std::chrono::steady_clock::now();
  try {
    session->processes().run("sleep", {"30"});
    FAIL() << "no timeout";
  } catch (const ProcessTimeout& timeout) {
    EXPECT_NE(std::string(timeout.what()).find("200 ms timeout"), std::string::npos);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(10));
  EXPECT_THROW(session->processes().run("/no/such/program", {}), std::runtime_error);
  Tape tape = session->finalize();
  EXPECT_TRUE(tape.records.empty());  // nothing is recorded for a run that never completed
}

TEST(Testbench, AxesAreOptIn) {
  TempDir tmp;
  auto session = Testbench::recording(tmp / "run.tape").start();
  EXPECT_THROW(session->processes(), std::logic_error);
  EXPECT_THROW(session->network().require("https://example.com"), NetworkDenied);
}

}  // namespace
}  // namespace tapedeck

namespace tapedeck {
namespace {

TEST(Overlay, CopyOnWriteRecordedAndDiffed) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "work" / "src");
  testing::write_file(tmp / "work" / "src" / "a.c", "int a;\nint b;\nint c;\n");
  testing::write_file(tmp / "work" / "old.txt", "going away\n");
  auto session =
      Testbench::recording(tmp / "run.tape").paused_clock(kStart).overlay(tmp / "work").start();
  Overlay& files = session->files();
  EXPECT_EQ(files.read("src/a.c"), "int a;\nint b;\nint c;\n");
  files.write("src/a.c", "int a;\nint B;\nint c;\n");
  files.write("new/notes.md", "# notes\n");
  files.remove("old.txt");
  // Later reads see the layer; the worktree is untouched.
  EXPECT_EQ(files.read("./src/a.c"), "int a;\nint B;\nint c;\n");
  EXPECT_FALSE(files.exists("old.txt"));
  EXPECT_TRUE(files.exists("new/notes.md"));
  EXPECT_EQ(testing::read_file(tmp / "work" / "src" / "a.c"), "int a;\nint b;\nint c;\n");
  EXPECT_TRUE(std::filesystem::exists(tmp / "work" / "old.txt"));
  EXPECT_THROW(files.read("old.txt"), std::runtime_error);
  EXPECT_THROW(files.read("../run.tape"), std::runtime_error);  // never outside the worktree
  EXPECT_THROW(files.write("/etc/passwd", "x"), std::runtime_error);

  const std::string diff = files.diff();
  EXPECT_NE(
      diff.find(
          "--- a/src/a.c\n+++ b/src/a.c\n@@ -1,3 +1,3 @@\n int a;\n-int b;\n+int B;\n int c;\n"),
      std::string::npos)
      << diff;
  EXPECT_NE(diff.find("--- /dev/null\n+++ b/new/notes.md\n@@ -0,0 +1,1 @@\n+# notes\n"),
            std::string::npos)
      << diff;
  EXPECT_NE(diff.find("--- a/old.txt\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-going away\n"),
            std::string::npos)
      << diff;
  EXPECT_EQ(files.changed_paths(),
            (std::vector<std::string>{"new/notes.md", "old.txt", "src/a.c"}));

  Tape tape = session->finalize();
  std::vector<std::string> kinds;
  for (const Record& record : tape.records) kinds.emplace_back(kind_name(record.kind));
  EXPECT_EQ(kinds, (std::vector<std::string>{"file_read", "file_write", "file_write", "file_delete",
                                             "file_read"}));
  const auto& read = std::get<kind::FileRead>(tape.records[0].kind);
  EXPECT_EQ(read.path, "src/a.c");
  EXPECT_EQ(read.content_hash, content_hash("int a;\nint b;\nint c;\n"));
  EXPECT_EQ(read.len_bytes, 21u);
}

TEST(Overlay, ApplyOrDiscard) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "work");
  testing::write_file(tmp / "work" / "keep.txt", "v1\n");
  testing::write_file(tmp / "work" / "drop.txt", "bye\n");
  {
    auto session = Testbench::recording(tmp / "a.tape").overlay(tmp / "work").start();
    session->files().write("keep.txt", "v2\n");
    session->files().discard();
    EXPECT_EQ(session->files().diff(), "");
    EXPECT_EQ(testing::read_file(tmp / "work" / "keep.txt"), "v1\n");
  }
  auto session = Testbench::recording(tmp / "b.tape").overlay(tmp / "work").start();
  session->files().write("keep.txt", "v2\n");
  session->files().write("deep/new.txt", "n\n");
  session->files().remove("drop.txt");
  session->files().apply();
  EXPECT_EQ(testing::read_file(tmp / "work" / "keep.txt"), "v2\n");
  EXPECT_EQ(testing::read_file(tmp / "work" / "deep" / "new.txt"), "n\n");
  EXPECT_FALSE(std::filesystem::exists(tmp / "work" / "drop.txt"));
  EXPECT_TRUE(session->files().changed_paths().empty());
}

TEST(Overlay, ReplayWritesStayInTheLayer) {
  TempDir tmp;
  std::filesystem::create_directories(tmp / "work");
  testing::write_file(tmp / "work" / "in.txt", "input\n");
  auto run = [&](Session& session) {
    const std::string input = session.files().read("in.txt");
    session.files().write("out.txt", input + "processed\n");
  };
  {
    auto session =
        Testbench::recording(tmp / "run.tape").paused_clock(kStart).overlay(tmp / "work").start();
    run(*session);
  }
  auto session =
      Testbench::replaying(tmp / "run.tape", tmp / "replay.tape").overlay(tmp / "work").start();
  run(*session);
  session->finalize();
  EXPECT_FALSE(std::filesystem::exists(tmp / "work" / "out.txt"));
  auto left = TapeReader::open(tmp / "run.tape");
  auto right = TapeReader::open(tmp / "replay.tape");
  EXPECT_TRUE(fidelity::compare(*left, *right, fidelity::Mode::byte_identical).identical());
}

}  // namespace
}  // namespace tapedeck
