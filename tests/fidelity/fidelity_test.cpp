#include "tapedeck/fidelity.hpp"

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace tapedeck::fidelity {
namespace {

// A small run: every kind, both phases, a finalize-phase clock read.
Tape run() {
  Tape tape(Header::current());
  auto add = [&](RecordKind kind, Phase phase = Phase::user_script) {
    Record record;
    record.seq = tape.records.size();
    record.phase = phase;
    record.virtual_time_ms = 1000 + static_cast<int64_t>(record.seq) * 10;
    record.monotonic_ms = static_cast<int64_t>(record.seq) * 10;
    record.kind = std::move(kind);
    tape.records.push_back(std::move(record));
  };
  add(kind::ClockRead{ClockSource::wall, 1000});
  add(kind::LlmCall{"digest-1", Payload{Payload::Storage::inline_text, "answer-hash", "hi", 0}});
  add(kind::ClockSleep{250});
  add(kind::FileRead{"src/a.c", "hash-a", 10});
  add(kind::ProcessSpawn{"make",
                         {"test"},
                         "/w",
                         0,
                         320,
                         Payload{Payload::Storage::inline_text, "out", "ok", 0},
                         Payload{Payload::Storage::inline_text, "err", "", 0}});
  add(kind::FileWrite{"out/report.md", "hash-r", 8});
  add(kind::ClockRead{ClockSource::monotonic, 77}, Phase::runtime_finalize);
  add(kind::FileWrite{"state.json", "hash-s", 2}, Phase::runtime_finalize);
  return tape;
}

std::vector<std::string> categories(const Report& report) {
  std::vector<std::string> out;
  for (const auto& d : report.divergences) out.push_back(d.category);
  return out;
}

TEST(Fidelity, IdenticalRunsAgreeInEveryMode) {
  for (Mode mode : {Mode::byte_identical, Mode::semantic, Mode::outcome, Mode::phase_aware}) {
    Report report = compare(run(), run(), mode);
    EXPECT_TRUE(report.identical()) << to_string(mode);
    EXPECT_EQ(report.score, 1.0);
    EXPECT_EQ(report.recorded_records, 8u);
    EXPECT_EQ(report.replay_records, 8u);
  }
}

TEST(Fidelity, AChangedPromptIsOneDigestDivergenceAtItsSeq) {
  Tape replay = run();
  std::get<kind::LlmCall>(replay.records[1].kind).request_digest = "digest-2";
  Report report = compare(run(), replay, Mode::byte_identical);
  ASSERT_EQ(report.divergences.size(), 1u);
  EXPECT_EQ(report.divergences[0].seq, 1u);
  EXPECT_EQ(report.divergences[0].category, "llm_request_digest");
  EXPECT_NE(report.divergences[0].message.find("digest-1"), std::string::npos);
  EXPECT_NE(report.divergences[0].message.find("digest-2"), std::string::npos);
  EXPECT_NE(report.divergences[0].replay_line.find("digest-2"), std::string::npos);
  EXPECT_DOUBLE_EQ(report.score, 1.0 - 1.0 / 8.0);
}

// An event loop's waits that timed out are timing in semantic mode, as clock reads are: a fast
// replay may wait fewer times. A sleep the program asked for is not.
TEST(Fidelity, WaitsThatTimedOutAreTimingButSleepsAreNot) {
  auto with = [](std::vector<RecordKind> between) {
    Tape tape = run();
    auto at = tape.records.begin() + 3;  // after the sleep, before the file read
    for (RecordKind& kind : between) {
      Record record;
      record.kind = std::move(kind);
      at = tape.records.insert(at, std::move(record)) + 1;
    }
    for (size_t i = 0; i < tape.records.size(); ++i) tape.records[i].seq = i;
    return tape;
  };
  const Tape recorded = with({kind::ClockSleep{100, true}, kind::ClockRead{ClockSource::wall, 5},
                              kind::ClockSleep{100, true}});
  const Report fewer = compare(recorded, with({kind::ClockSleep{98, true}}), Mode::semantic);
  EXPECT_TRUE(fewer.identical()) << (fewer.divergences.empty() ? "" : fewer.divergences[0].message);
  EXPECT_EQ(fewer.unmatched_clock_reads, 2u);
  EXPECT_FALSE(
      compare(recorded, with({kind::ClockSleep{100, true}}), Mode::byte_identical).identical());
  // A sleep it asked for gates, and so does taking one for the other.
  EXPECT_FALSE(compare(with({kind::ClockSleep{100}}), with({}), Mode::semantic).identical());
  EXPECT_FALSE(
      compare(with({kind::ClockSleep{100}}), with({kind::ClockSleep{100, true}}), Mode::semantic)
          .identical());
}

TEST(Fidelity, TimeDriftCountsOnlyWhereTheModeSaysSo) {
  Tape replay = run();
  for (Record& record : replay.records) {
    record.virtual_time_ms += 5;
    record.monotonic_ms += 3;
  }
  std::get<kind::ProcessSpawn>(replay.records[4].kind).duration_ms = 999;
  Report strict = compare(run(), replay, Mode::byte_identical);
  EXPECT_EQ(strict.divergences.size(), 8u);
  EXPECT_EQ(strict.divergences[0].category, "virtual_time_drift");
  EXPECT_NE(strict.divergences[0].message.find("also monotonic_drift"), std::string::npos);
  EXPECT_TRUE(compare(run(), replay, Mode::semantic).identical());
  // phase-aware: user_script records strict, runtime_finalize ones semantic.
  Report phased = compare(run(), replay, Mode::phase_aware);
  EXPECT_EQ(phased.divergences.size(), 6u);
}

TEST(Fidelity, EveryFieldHasItsCategory) {
  Tape replay = run();
  std::get<kind::LlmCall>(replay.records[1].kind).response.content_hash = "other";
  std::get<kind::ClockSleep>(replay.records[2].kind).duration_ms = 1;
  std::get<kind::FileRead>(replay.records[3].kind).content_hash = "changed";
  std::get<kind::ProcessSpawn>(replay.records[4].kind).exit_code = 2;
  replay.records[5].phase = Phase::runtime_finalize;
  replay.records[7].kind = kind::FileDelete{"state.json"};
  EXPECT_EQ(
      categories(compare(run(), replay, Mode::semantic)),
      (std::vector<std::string>{"llm_response_hash", "clock_sleep_duration", "file_content_hash",
                                "process_exit_code", "phase_mismatch", "kind_mismatch"}));
  Tape args = run();
  auto& spawn = std::get<kind::ProcessSpawn>(args.records[4].kind);
  spawn.args = {"test", "-j2"};
  spawn.cwd.reset();
  spawn.stdout_payload.content_hash = "x";
  Report report = compare(run(), args, Mode::semantic);
  ASSERT_EQ(report.divergences.size(), 1u);
  EXPECT_EQ(report.divergences[0].category, "process_args");
  EXPECT_NE(report.divergences[0].message.find("also process_cwd"), std::string::npos);
  EXPECT_NE(report.divergences[0].message.find("also process_stdout_hash"), std::string::npos);
}

TEST(Fidelity, MissingRecordsOnEitherSide) {
  Tape shorter = run();
  shorter.records.resize(6);
  Report report = compare(run(), shorter, Mode::byte_identical);
  EXPECT_EQ(categories(report),
            (std::vector<std::string>{"missing_in_replay", "missing_in_replay"}));
  EXPECT_EQ(report.divergences[0].seq, 6u);
  Report reverse = compare(shorter, run(), Mode::byte_identical);
  EXPECT_EQ(categories(reverse),
            (std::vector<std::string>{"missing_in_recorded", "missing_in_recorded"}));
  EXPECT_EQ(reverse.recorded_records, 6u);
}

TEST(Fidelity, PhaseAwareIgnoresFinalizeClockReads) {
  Tape replay = run();
  replay.records.erase(replay.records.begin() + 6);  // the finalize clock read is gone
  EXPECT_TRUE(compare(run(), replay, Mode::phase_aware).identical());
  EXPECT_FALSE(compare(run(), replay, Mode::byte_identical).identical());
}

TEST(Fidelity, SemanticTakesClockValuesAndPollingAsTiming) {
  // A runtime that waited less in the replay read the clock fewer times, and got other values.
  Tape recorded = run();
  recorded.records.insert(
      recorded.records.begin() + 1,
      Record{1, Phase::user_script, 0, 0, kind::ClockRead{ClockSource::wall, 7}});
  Tape replay = run();
  std::get<kind::ClockRead>(replay.records[0].kind).value_ms += 40;
  Report semantic = compare(recorded, replay, Mode::semantic);
  EXPECT_TRUE(semantic.identical());
  EXPECT_EQ(semantic.unmatched_clock_reads, 1u);
  EXPECT_EQ(categories(compare(recorded, replay, Mode::phase_aware)).front(), "clock_read_value");
  // Another thread's read of the other clock came first this time.
  Tape reordered = run();
  std::get<kind::ClockRead>(reordered.records[0].kind).source = ClockSource::monotonic;
  EXPECT_TRUE(compare(run(), reordered, Mode::semantic).identical());
  EXPECT_EQ(categories(compare(run(), reordered, Mode::byte_identical)),
            std::vector<std::string>{"clock_read_source"});
  // Reading the clock where the recording did something else is still a divergence.
  Tape other = run();
  other.records[3].kind = kind::ClockRead{ClockSource::wall, 1};
  EXPECT_FALSE(compare(run(), other, Mode::semantic).identical());
}

TEST(Fidelity, OutcomeComparesTheEndStateOnly) {
  Tape replay = run();
  // Same end state reached differently: an extra read, and a write later overwritten.
  replay.records.insert(replay.records.begin() + 3,
                        Record{99, Phase::user_script, 0, 0, kind::FileRead{"x", "h", 1}});
  EXPECT_TRUE(compare(run(), replay, Mode::outcome).identical());

  Tape different = run();
  std::get<kind::FileWrite>(different.records[5].kind).content_hash = "other";
  std::get<kind::ProcessSpawn>(different.records[4].kind).exit_code = 1;
  different.records.push_back(Record{8, Phase::user_script, 0, 0, kind::LlmCall{"d", Payload{}}});
  different.records.push_back(Record{9, Phase::user_script, 0, 0, kind::FileDelete{"state.json"}});
  Report report = compare(run(), different, Mode::outcome);
  EXPECT_EQ(categories(report),
            (std::vector<std::string>{"outcome_files", "outcome_files", "outcome_exit_code",
                                      "outcome_llm_calls"}));
  EXPECT_EQ(report.score, 0.0);
}

TEST(Fidelity, ReadersAndTapesGiveTheSameReport) {
  testing::TempDir tmp;
  Tape replay = run();
  std::get<kind::FileRead>(replay.records[3].kind).path = "src/b.c";
  run().persist(tmp / "a.tape");
  replay.persist(tmp / "b.tape");
  auto left = TapeReader::open(tmp / "a.tape");
  auto right = TapeReader::open(tmp / "b.tape");
  Report streamed = compare(*left, *right, Mode::byte_identical);
  Report in_memory = compare(run(), replay, Mode::byte_identical);
  ASSERT_EQ(streamed.divergences.size(), 1u);
  EXPECT_EQ(streamed.divergences[0].category, "file_path");
  EXPECT_EQ(streamed.divergences[0].message, in_memory.divergences[0].message);
  EXPECT_EQ(streamed.score, in_memory.score);
}

TEST(Fidelity, ModeNames) {
  EXPECT_EQ(parse_mode("byte-identical"), Mode::byte_identical);
  EXPECT_EQ(parse_mode("phase-aware"), Mode::phase_aware);
  EXPECT_EQ(parse_mode("outcome"), Mode::outcome);
  EXPECT_FALSE(parse_mode("fuzzy").has_value());
  EXPECT_EQ(to_string(Mode::semantic), "semantic");
}

}  // namespace
}  // namespace tapedeck::fidelity

namespace tapedeck::fidelity {
namespace {

// Reads a thread pool made between two writes: `reads` in the order given, clock reads among them.
Tape reads_between_writes(const std::vector<std::pair<std::string, std::string>>& reads) {
  Tape tape(Header::current());
  auto add = [&](RecordKind kind) { testing::append_record(tape, std::move(kind)); };
  add(kind::FileWrite{"before.txt", "hash-before", 1});
  for (const auto& [path, hash] : reads) {
    add(kind::ClockRead{ClockSource::monotonic, 5});
    add(kind::FileRead{path, hash, 3});
  }
  add(kind::FileWrite{"after.txt", "hash-after", 1});
  return tape;
}

TEST(Fidelity, ReadsNothingOrdersCompareAsASetInSemanticMode) {
  const Tape recorded = reads_between_writes({{"a.js", "ha"}, {"b.js", "hb"}, {"c.js", "hc"}});
  const Tape replay = reads_between_writes({{"c.js", "hc"}, {"a.js", "ha"}, {"b.js", "hb"}});
  EXPECT_TRUE(compare(recorded, replay, Mode::semantic).identical());
  // Byte-identical stays strict: the order is a difference there.
  EXPECT_FALSE(compare(recorded, replay, Mode::byte_identical).identical());
}

TEST(Fidelity, AReadOfAnotherFileOrOtherBytesStillDivergesNamingIt) {
  const Tape recorded = reads_between_writes({{"a.js", "ha"}, {"b.js", "hb"}});
  Report other_file =
      compare(recorded, reads_between_writes({{"b.js", "hb"}, {"z.js", "hz"}}), Mode::semantic);
  ASSERT_EQ(other_file.divergences.size(), 2u);
  EXPECT_EQ(other_file.divergences[0].category, "file_read_set");
  EXPECT_NE(other_file.divergences[0].message.find("\"a.js\""), std::string::npos);
  EXPECT_NE(other_file.divergences[0].message.find("by the recording"), std::string::npos);
  EXPECT_NE(other_file.divergences[1].message.find("\"z.js\""), std::string::npos);
  EXPECT_NE(other_file.divergences[1].message.find("by the replay"), std::string::npos);

  Report other_bytes = compare(
      recorded, reads_between_writes({{"b.js", "hb"}, {"a.js", "CHANGED"}}), Mode::semantic);
  ASSERT_EQ(other_bytes.divergences.size(), 1u);
  EXPECT_EQ(other_bytes.divergences[0].category, "file_content_hash");
  EXPECT_NE(other_bytes.divergences[0].message.find(
                "file_content_hash of \"a.js\": recorded \"ha\", replay \"CHANGED\""),
            std::string::npos)
      << other_bytes.divergences[0].message;

  Report read_twice =
      compare(recorded, reads_between_writes({{"a.js", "ha"}, {"b.js", "hb"}, {"a.js", "ha"}}),
              Mode::semantic);
  ASSERT_EQ(read_twice.divergences.size(), 1u);
  EXPECT_NE(read_twice.divergences[0].message.find("1 time(s) more by the replay"),
            std::string::npos);
}

TEST(Fidelity, TwoRecordingsSeedsAreNoiseInSemanticModeOnly) {
  Tape recorded = reads_between_writes({{"a.js", "ha"}});
  Tape other = recorded;
  Record seed;
  seed.kind = kind::Unknown{"entropy", R"({"kind":"entropy","seed":"aa"})"};
  recorded.records.insert(recorded.records.begin(), seed);
  seed.kind = kind::Unknown{"entropy", R"({"kind":"entropy","seed":"bb"})"};
  other.records.insert(other.records.begin(), seed);
  EXPECT_TRUE(compare(recorded, other, Mode::semantic).identical());
  EXPECT_EQ(categories(compare(recorded, other, Mode::byte_identical)),
            std::vector<std::string>{"unknown_kind_content"});
  // Any other kind this version does not know still gates.
  std::get<kind::Unknown>(other.records[0].kind).name = "something_else";
  EXPECT_FALSE(compare(recorded, other, Mode::semantic).identical());
}

TEST(Fidelity, EffectsOnOtherPathsCommuteButOnePathsKeepTheirOrder) {
  // tar: the child it forked opens the archive while tar reads its inputs, either first.
  Tape recorded = reads_between_writes({{"a.js", "ha"}});
  Tape replay = reads_between_writes({});
  Record late_read;
  late_read.kind = kind::FileRead{"a.js", "ha", 3};
  replay.records.push_back(late_read);
  replay.records.back().seq = replay.records.size() - 1;
  EXPECT_TRUE(compare(recorded, replay, Mode::semantic).identical());
  EXPECT_FALSE(compare(recorded, replay, Mode::byte_identical).identical());
  // after.txt read before it was written, in the replay: its bytes then were the old ones.
  Tape read_first = reads_between_writes({});
  read_first.records.insert(read_first.records.end() - 1, Record{});
  read_first.records[read_first.records.size() - 2].kind = kind::FileRead{"after.txt", "old", 1};
  Tape read_after = reads_between_writes({});
  read_after.records.push_back(Record{});
  read_after.records.back().kind = kind::FileRead{"after.txt", "old", 1};
  for (Tape* tape : {&read_first, &read_after}) {
    for (size_t i = 0; i < tape->records.size(); ++i) tape->records[i].seq = i;
  }
  const Report swapped = compare(read_first, read_after, Mode::semantic);
  ASSERT_EQ(swapped.divergences.size(), 2u);
  EXPECT_EQ(swapped.divergences[0].category, "kind_mismatch");  // read where the write was
  EXPECT_NE(swapped.divergences[0].message.find(
                "kind_mismatch of \"after.txt\": recorded file_read, replay file_write"),
            std::string::npos)
      << swapped.divergences[0].message;
}

// The program's code read with other bytes (a read marked `code`): semantic and outcome note it
// and pass; the strict modes still count it. Data read with other bytes stays a divergence.
TEST(Fidelity, ChangedCodeIsANoteAndChangedDataADivergence) {
  Tape recorded = run();
  Tape edited = run();
  std::get<kind::FileRead>(recorded.records[3].kind).code = true;
  auto& now = std::get<kind::FileRead>(edited.records[3].kind);
  now.code = true;
  now.content_hash = "hash-a-commented";
  now.len_bytes = 24;
  for (Mode mode : {Mode::semantic, Mode::outcome}) {
    const Report report = compare(recorded, edited, mode);
    EXPECT_TRUE(report.identical()) << to_string(mode);
    ASSERT_EQ(report.notes.size(), 1u) << to_string(mode);
    EXPECT_EQ(report.notes[0],
              "code changed since the recording: src/a.c (recorded hash-a, now hash-a-comme)");
  }
  EXPECT_EQ(categories(compare(recorded, edited, Mode::byte_identical)),
            std::vector<std::string>{"file_content_hash"});
  Tape data_changed = run();
  std::get<kind::FileRead>(data_changed.records[3].kind).content_hash = "hash-b";
  const Report data = compare(run(), data_changed, Mode::semantic);
  EXPECT_EQ(categories(data), std::vector<std::string>{"file_content_hash"});
  EXPECT_TRUE(data.notes.empty());
}

// The score weighs what the run consumed and did, not its clock reads: a replay that stopped
// halfway through a recording of many clock reads scores about a half, not 1.
TEST(Fidelity, AReplayStoppedHalfwayScoresAboutAHalf) {
  Tape recorded(Header::current());
  for (uint64_t i = 0; i < 1000; ++i) {
    Record record;
    record.seq = recorded.records.size();
    if (i % 100 == 0) {
      record.kind = kind::FileWrite{"f" + std::to_string(i), "h", 1};
    } else {
      record.kind = kind::ClockRead{ClockSource::monotonic, static_cast<int64_t>(i)};
    }
    recorded.records.push_back(record);
  }
  Tape stopped(Header::current());
  stopped.records.assign(recorded.records.begin(), recorded.records.begin() + 500);
  const Report report = compare(recorded, stopped, Mode::semantic);
  EXPECT_EQ(report.divergences.size(), 5u);
  EXPECT_DOUBLE_EQ(report.score, 0.5);
}

// A pipeline's members run at the same time and are taped as they end, in either order: a run
// of subprocesses with nothing else between them compares as a set in semantic mode, each
// matched by its command; byte-identical keeps the order; one the replay did not run is named;
// across any other record the order still gates.
namespace {
kind::ProcessSpawn spawn_of(std::string program) {
  return kind::ProcessSpawn{
      program,  {}, ".", 0, 5, Payload{Payload::Storage::inline_text, "h-" + program, program, 0},
      Payload{}};
}
Tape tape_of(std::vector<RecordKind> kinds) {
  Tape tape(Header::current());
  for (RecordKind& kind : kinds) {
    Record record;
    record.seq = tape.records.size();
    record.kind = std::move(kind);
    tape.records.push_back(std::move(record));
  }
  return tape;
}
}  // namespace

TEST(Fidelity, SubprocessesSideBySideCompareAsASetInSemanticMode) {
  // `ls | wc -l`, then `sort | uniq | head` (sort's change to the workspace goes with it), then
  // a file read, then `date`.
  const Tape recorded =
      tape_of({spawn_of("ls"), kind::ClockRead{}, spawn_of("wc"), spawn_of("sort"),
               kind::FileWrite{"out", "h", 1, true}, spawn_of("uniq"), spawn_of("head"),
               kind::FileRead{"x", "h", 1}, spawn_of("date")});
  const Tape replay = tape_of({spawn_of("wc"), spawn_of("ls"), spawn_of("head"), spawn_of("sort"),
                               kind::FileWrite{"out", "h", 1, true}, spawn_of("uniq"),
                               kind::FileRead{"x", "h", 1}, spawn_of("date")});
  const Report semantic = compare(recorded, replay, Mode::semantic);
  EXPECT_TRUE(semantic.identical()) << semantic.divergences.front().message;
  EXPECT_DOUBLE_EQ(semantic.score, 1.0);
  EXPECT_FALSE(compare(recorded, replay, Mode::byte_identical).identical());

  // The replay did not run `ls`: named, and the rest still matches.
  Tape dropped = replay;
  dropped.records.erase(dropped.records.begin() + 1);
  const Report missing = compare(recorded, dropped, Mode::semantic);
  ASSERT_EQ(missing.divergences.size(), 1u);
  EXPECT_EQ(missing.divergences[0].category, "process_set");
  EXPECT_NE(missing.divergences[0].message.find("`ls`"), std::string::npos)
      << missing.divergences[0].message;

  // A subprocess's changed output is a divergence of its own fields, wherever it came.
  Tape changed = replay;
  std::get<kind::ProcessSpawn>(changed.records[2].kind).stdout_payload.content_hash = "other";
  const Report output = compare(recorded, changed, Mode::semantic);
  ASSERT_EQ(output.divergences.size(), 1u);
  EXPECT_EQ(output.divergences[0].category, "process_stdout_hash");

  // One only the replay ran, among the others: named where it stands, the others still match.
  Tape extra = replay;
  Record more;
  more.kind = spawn_of("extra");
  extra.records.insert(extra.records.begin() + 1, more);
  for (size_t i = 0; i < extra.records.size(); ++i) extra.records[i].seq = i;
  const Report added = compare(recorded, extra, Mode::semantic);
  ASSERT_EQ(added.divergences.size(), 1u) << added.divergences.front().message;
  EXPECT_NE(added.divergences[0].message.find("extra"), std::string::npos);

  // A subprocess moved across a file read is out of order.
  const Tape moved = tape_of({spawn_of("a"), kind::FileRead{"x", "h", 1}, spawn_of("b")});
  const Tape across = tape_of({spawn_of("b"), kind::FileRead{"x", "h", 1}, spawn_of("a")});
  EXPECT_FALSE(compare(moved, across, Mode::semantic).identical());
}
}  // namespace
}  // namespace tapedeck::fidelity
