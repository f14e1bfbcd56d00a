#include "tapedeck/recorder.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <thread>

namespace tapedeck {
namespace {

TEST(Recorder, SeqStartsAtZeroWithNoGaps) {
  Recorder recorder(Clock::paused_at(1000));
  recorder.record(kind::ClockSleep{1});
  recorder.record(kind::ClockSleep{2});
  recorder.record(kind::FileDelete{"x"});
  Tape tape = recorder.snapshot(Header::current());
  ASSERT_EQ(tape.records.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(tape.records[i].seq, i);
  EXPECT_EQ(std::get<kind::ClockSleep>(tape.records[1].kind).duration_ms, 2u);
  EXPECT_EQ(std::get<kind::FileDelete>(tape.records[2].kind).path, "x");
  EXPECT_EQ(recorder.record_count(), 3u);
}

TEST(Recorder, StampsVirtualAndMonotonicTimeFromThePausedClock) {
  auto clock = Clock::paused_at(1'700'000'000'000);
  clock->advance_ms(40);  // before the recorder starts: not part of its monotonic time
  Recorder recorder(clock);
  recorder.record(kind::ClockSleep{0});
  clock->sleep_ms(250);
  recorder.record(kind::ClockSleep{250});
  Tape tape = recorder.snapshot(Header::current());
  EXPECT_EQ(tape.records[0].virtual_time_ms, 1'700'000'000'040);
  EXPECT_EQ(tape.records[0].monotonic_ms, 0);
  EXPECT_EQ(tape.records[1].virtual_time_ms, 1'700'000'000'290);
  EXPECT_EQ(tape.records[1].monotonic_ms, 250);
}

// A span taped as it begins is stamped where it ends; a stamper (a replay's) overrides the
// clock's stamps for every record.
TEST(Recorder, ASpanTapedAsItBeginsIsStampedWhereItEndsAndAStamperDecides) {
  auto clock = Clock::paused_at(1'700'000'000'000);
  Recorder recorder(clock);
  recorder.record_ending_in(kind::ClockSleep{250}, 250);
  recorder.record(kind::ClockRead{ClockSource::wall, 1});
  Recorder stamped(clock);
  stamped.stamp_with([](const RecordKind& kind, Recorder::Stamps clock_stamps) {
    const bool read = std::holds_alternative<kind::ClockRead>(kind);
    return Recorder::Stamps{clock_stamps.virtual_time_ms + (read ? 7 : 9), read ? 70 : 90};
  });
  stamped.record(kind::ClockRead{ClockSource::wall, 1});
  stamped.record(kind::ClockSleep{5});
  Tape tape = recorder.snapshot(Header::current());
  EXPECT_EQ(tape.records[0].virtual_time_ms, 1'700'000'000'250);
  EXPECT_EQ(tape.records[0].monotonic_ms, 250);
  EXPECT_EQ(tape.records[1].virtual_time_ms, 1'700'000'000'000);  // the clock did not move
  Tape other = stamped.snapshot(Header::current());
  EXPECT_EQ(other.records[0].virtual_time_ms, 1'700'000'000'007);
  EXPECT_EQ(other.records[0].monotonic_ms, 70);
  EXPECT_EQ(other.records[1].virtual_time_ms, 1'700'000'000'009);
  EXPECT_EQ(other.records[1].monotonic_ms, 90);
}

TEST(Recorder, ThreadsRecordGapFreeAndKeepTheirOwnOrder) {
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 20'000;
  Recorder recorder(Clock::paused_at(0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        if (i % 3 == 0) {
          recorder.record(kind::FileRead{"t" + std::to_string(t), "h", i});
        } else {
          recorder.record(
              kind::ClockRead{ClockSource::wall, t * 1'000'000 + static_cast<int64_t>(i)});
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  Tape tape = recorder.snapshot(Header::current());
  ASSERT_EQ(tape.records.size(), kThreads * kPerThread);
  std::vector<int64_t> last(kThreads, -1);
  for (uint64_t seq = 0; seq < tape.records.size(); ++seq) {
    const Record& record = tape.records[seq];
    ASSERT_EQ(record.seq, seq);
    int thread;
    int64_t index;
    if (const auto* read = std::get_if<kind::ClockRead>(&record.kind)) {
      thread = static_cast<int>(read->value_ms / 1'000'000);
      index = read->value_ms % 1'000'000;
    } else {
      const auto& file = std::get<kind::FileRead>(record.kind);
      thread = file.path[1] - '0';
      index = static_cast<int64_t>(file.len_bytes);
    }
    ASSERT_GT(index, last[thread]) << "thread " << thread << " out of order at seq " << seq;
    last[thread] = index;
  }
}

TEST(Recorder, ASnapshotWhileThreadsRecordIsAGapFreePrefix) {
  // Bounded: an unbounded writer outruns snapshots on a slow (sanitized, shared) machine until
  // memory runs out.
  constexpr uint64_t kRecords = 300'000;
  Recorder recorder(Clock::paused_at(0));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint64_t i = 0; i < kRecords; ++i) recorder.record(kind::ClockSleep{i});
    done = true;
  });
  // How many records a snapshot holds, when they are seq 0..N-1 and each the writer's N-th.
  auto gap_free_prefix = [&]() -> std::optional<uint64_t> {
    Tape tape = recorder.snapshot(Header::current());
    for (uint64_t seq = 0; seq < tape.records.size(); ++seq) {
      if (tape.records[seq].seq != seq ||
          std::get<kind::ClockSleep>(tape.records[seq].kind).duration_ms != seq) {
        return std::nullopt;
      }
    }
    return tape.records.size();
  };
  while (!done.load()) ASSERT_TRUE(gap_free_prefix().has_value());
  writer.join();
  EXPECT_EQ(gap_free_prefix(), std::optional<uint64_t>(kRecords));
}

TEST(Recorder, PhaseGuardStampsAndRestores) {
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(0));
  RecorderGuard active = install_recorder(recorder);
  auto sleep = [](uint64_t ms) {
    with_active_recorder(
        [&](Recorder&) -> std::optional<RecordKind> { return kind::ClockSleep{ms}; });
  };
  sleep(1);
  {
    auto phase = enter_phase(Phase::runtime_finalize);
    ASSERT_TRUE(phase.has_value());
    sleep(2);
    {
      auto inner = enter_phase(Phase::user_script);
      sleep(3);
    }
    sleep(4);
  }
  sleep(5);
  Tape tape = recorder->snapshot(Header::current());
  std::vector<Phase> phases;
  for (const Record& record : tape.records) phases.push_back(record.phase);
  EXPECT_EQ(phases,
            (std::vector<Phase>{Phase::user_script, Phase::runtime_finalize, Phase::user_script,
                                Phase::runtime_finalize, Phase::user_script}));
}

TEST(Recorder, ActiveRecorderIsPerThreadAndNests) {
  EXPECT_EQ(active_recorder(), nullptr);
  EXPECT_FALSE(enter_phase(Phase::runtime_finalize).has_value());
  bool built = false;
  with_active_recorder([&](Recorder&) -> std::optional<RecordKind> {
    built = true;
    return std::nullopt;
  });
  EXPECT_FALSE(built);  // nothing recording: the builder never runs

  auto outer = std::make_shared<Recorder>(Clock::paused_at(0));
  auto inner = std::make_shared<Recorder>(Clock::paused_at(0));
  {
    RecorderGuard outer_guard = install_recorder(outer);
    EXPECT_EQ(active_recorder(), outer);
    {
      RecorderGuard inner_guard = install_recorder(inner);
      EXPECT_EQ(active_recorder(), inner);
      std::thread([] { EXPECT_EQ(active_recorder(), nullptr); }).join();
      // The builder can decline to record.
      with_active_recorder([](Recorder&) -> std::optional<RecordKind> { return std::nullopt; });
      with_active_recorder(
          [](Recorder&) -> std::optional<RecordKind> { return kind::ClockSleep{1}; });
    }
    EXPECT_EQ(active_recorder(), outer);
  }
  EXPECT_EQ(active_recorder(), nullptr);
  EXPECT_EQ(inner->record_count(), 1u);
  EXPECT_EQ(outer->record_count(), 0u);
}

TEST(Recorder, PayloadsSpillToTheSnapshotsCas) {
  Recorder recorder(Clock::paused_at(0));
  Payload big = recorder.payload_from_bytes(std::string(kMaxInlineBytes + 1, 'z'));
  Payload small = recorder.payload_from_bytes("tiny");
  std::thread([&] { recorder.payload_from_bytes(std::string(kMaxInlineBytes + 2, 'y')); }).join();
  recorder.record(kind::LlmCall{"d", big});
  Tape tape = recorder.snapshot(Header::current());
  EXPECT_TRUE(big.in_cas());
  EXPECT_FALSE(small.in_cas());
  EXPECT_EQ(tape.cas_entries().size(), 2u);  // both threads' spills
  EXPECT_EQ(tape.resolve(big), std::string(kMaxInlineBytes + 1, 'z'));
}

TEST(Recorder, ARecorderAtARecycledAddressStartsEmpty) {
  // Threads cache their shard per recorder; a new recorder must never inherit an old cache.
  for (int i = 0; i < 5; ++i) {
    auto recorder = std::make_unique<Recorder>(Clock::paused_at(0));
    recorder->record(kind::ClockSleep{static_cast<uint64_t>(i)});
    Tape tape = recorder->snapshot(Header::current());
    ASSERT_EQ(tape.records.size(), 1u);
    EXPECT_EQ(std::get<kind::ClockSleep>(tape.records[0].kind).duration_ms,
              static_cast<uint64_t>(i));
  }
}

TEST(Recorder, SecretsNeverReachAPayloadInlineOrInTheCas) {
  Recorder recorder(Clock::paused_at(0));
  recorder.add_secret("short");  // too short to tell from plain text: ignored
  recorder.add_secret("sk-live-0123456789");
  const Payload small =
      recorder.payload_from_bytes("key sk-live-0123456789, again sk-live-0123456789");
  EXPECT_EQ(small.text, "key [redacted by tapedeck], again [redacted by tapedeck]");
  EXPECT_EQ(small.content_hash, content_hash(small.text));
  const Payload plain = recorder.payload_from_bytes("a short answer");
  EXPECT_EQ(plain.text, "a short answer");

  const std::string big = std::string(5000, 'x') + "sk-live-0123456789";
  const Payload spilled = recorder.payload_from_bytes(big);
  ASSERT_TRUE(spilled.in_cas());
  recorder.record(kind::LlmCall{"d", spilled});
  Tape tape = recorder.snapshot(Header::current());
  const std::string kept = tape.cas_entries().at(spilled.content_hash);
  EXPECT_EQ(kept.find("sk-live"), std::string::npos);
  EXPECT_NE(kept.find("[redacted by tapedeck]"), std::string::npos);

  EXPECT_TRUE(recorder.holds_secret("... sk-live-0123456789 ..."));
  EXPECT_FALSE(recorder.holds_secret("nothing to hide, not even short"));
}

}  // namespace
}  // namespace tapedeck
