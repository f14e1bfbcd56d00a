// tapedeck scan --redact's engine: a tape written with credentials on it (as before redaction by
// shape) is scrubbed in place, every place a credential can be, and stays a whole tape.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tapedeck/cas.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/tape.hpp"
#include "test_support.hpp"

namespace tapedeck::secrets {
namespace {

namespace fs = std::filesystem;

// Every byte under `path` (the tape, or each file of its sidecar), concatenated.
std::string everything_in(const fs::path& tape) {
  std::string all = testing::read_file(tape);
  for (const auto& entry : fs::directory_iterator(cas_dir_for(tape))) {
    all += testing::read_file(entry.path());
  }
  return all;
}

TEST(Scrub, EveryPlaceACredentialCanBeIsRedactedAndTheTapeStaysWhole) {
  testing::TempDir tmp;
  const fs::path path = tmp / "leaky.tape";
  // Built here, not written in the source: a key of the OpenAI project shape.
  const std::string key = "sk-proj-" + std::string(24, 'Q') + "x9" + std::string(22, 'Z');
  Tape tape(Header::current());
  auto add = [&](RecordKind kind) { testing::append_record(tape, std::move(kind)); };
  auto keep = [&](const std::string& bytes) {
    const std::string hash = content_hash(bytes);
    tape.cas_entries()[hash] = bytes;
    return hash;
  };
  const std::string env_file = "OPENAI_API_KEY=" + key + "\nMODEL=x\n";
  add(kind::FileRead{".env", keep(env_file), env_file.size()});
  add(kind::LlmCall{content_hash("{}"), tape.add_payload(R"({"echo":")" + key + R"("})")});
  add(kind::LlmCall{content_hash("[]"), tape.add_payload(std::string(70000, 'a') + key)});
  add(kind::ProcessSpawn{"/bin/echo", {key}, ".", 0, 1, tape.add_payload(key + "\n"), {}});
  extension::ProgramOutcome outcome;
  const std::string printed = "the key is " + key + "\n";
  outcome.stdout_hash = keep(printed);
  outcome.stdout_size = printed.size();
  outcome.stderr_hash = keep("");
  add(extension::outcome_record(outcome));
  add(kind::ClockSleep{5});
  tape.persist(path);
  ASSERT_NE(everything_in(path).find(key), std::string::npos);

  const ScrubReport report = scrub_tape(path);
  EXPECT_GE(report.credentials, 6u);
  EXPECT_GE(report.rewritten, 5u);
  EXPECT_GE(report.removed, 3u);  // the old file bytes, CAS payload and printed output
  EXPECT_EQ(everything_in(path).find(key), std::string::npos);
  EXPECT_EQ(everything_in(path).find(key.substr(8, 24)), std::string::npos);

  // Whole: every reference is there under its name; the records say what they said, redacted.
  const Tape scrubbed = Tape::load(path);
  ASSERT_EQ(scrubbed.records.size(), 6u);
  for (const Record& record : scrubbed.records) {
    for_each_reference(record.kind, [&](const std::string& name, std::optional<uint64_t> length,
                                        Reference reference) {
      if (reference == Reference::llm_request) return;  // digests only here
      EXPECT_EQ(cas::check_entry(cas_dir_for(path), name, length).problem, cas::Problem::none)
          << name;
    });
  }
  const auto& read = std::get<kind::FileRead>(scrubbed.records[0].kind);
  EXPECT_EQ(cas::read_entry(cas_dir_for(path), read.content_hash),
            "OPENAI_API_KEY=" + std::string(kRedacted) + "\nMODEL=x\n");
  EXPECT_NE(
      scrubbed.resolve(std::get<kind::LlmCall>(scrubbed.records[1].kind).response).find(kRedacted),
      std::string::npos);
  EXPECT_EQ(std::get<kind::ProcessSpawn>(scrubbed.records[3].kind).args[0], kRedacted);
  EXPECT_TRUE(
      extension::program_outcome(std::get<kind::Unknown>(scrubbed.records[4].kind)).has_value());
  EXPECT_EQ(scrubbed.records[5], tape.records[5]);  // nothing to do: untouched

  // Again: nothing left to do, and the tape is left as it is.
  const std::string before = testing::read_file(path);
  EXPECT_EQ(scrub_tape(path).credentials, 0u);
  EXPECT_EQ(testing::read_file(path), before);
}

TEST(Scrub, AScrubAKillStoppedIsFinishedFromItsJournal) {
  testing::TempDir tmp;
  const fs::path path = tmp / "stopped.tape";
  const std::string token = "tdk" + std::string(20, 'q') + "7x" + std::string(14, 'v');
  ASSERT_TRUE(find(token).empty());  // no shape: only the journal can find it again
  Tape tape(Header::current());
  const std::string source = "ask('" + token + "')\n";
  tape.cas_entries()[content_hash(source)] = source;
  testing::append_record(tape, kind::FileRead{"agent.py", content_hash(source), source.size()});
  tape.persist(path);
  // An entry the stopped scrub had already replaced, no longer named, still holding the token.
  const std::string old_output = "printed " + token + "\n";
  std::ofstream(cas_dir_for(path) / content_hash(old_output)) << old_output;
  note_pending_scrub(path, {token});
  EXPECT_EQ(fs::status(scrub_journal_for(path)).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(pending_scrub(path), std::vector<std::string>{token});

  const ScrubReport report = scrub_tape(path);  // no value given: the journal's
  EXPECT_EQ(report.credentials, 1u);
  EXPECT_EQ(report.removed, 2u);  // the file's old bytes and the leftover entry
  EXPECT_EQ(everything_in(path).find(token), std::string::npos);
  EXPECT_FALSE(fs::exists(scrub_journal_for(path)));
  EXPECT_TRUE(pending_scrub(path).empty());
}

TEST(Scrub, ATapeThatCannotBeReadGetsNoJournal) {
  testing::TempDir tmp;
  const fs::path path = tmp / "missing.tape";
  EXPECT_THROW(scrub_tape(path, {"tdk" + std::string(20, 'q')}), TapeError);
  EXPECT_FALSE(fs::exists(scrub_journal_for(path)));
}

TEST(Scrub, AJournalThatIsNotOneIsNamedByFileAndLine) {
  testing::TempDir tmp;
  const fs::path path = tmp / "t.tape";
  std::ofstream(scrub_journal_for(path)) << "tapedeck scrub journal 1\n7464\nnot-hex\n";
  try {
    pending_scrub(path);
    FAIL() << "a malformed journal was read";
  } catch (const TapeError& error) {
    EXPECT_EQ(error.file(), scrub_journal_for(path).string());
    EXPECT_EQ(error.line(), 3u);
  }
  std::ofstream(scrub_journal_for(path)) << "something else\n";
  EXPECT_THROW(pending_scrub(path), TapeError);
}

}  // namespace
}  // namespace tapedeck::secrets
