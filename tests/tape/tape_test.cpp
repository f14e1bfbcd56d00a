// Whole tapes: the payload rule, persist/load, resolve, and format_tape.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/tape.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

TEST(PayloadRule, InlineUpToTheLimitWhenUtf8) {
  std::map<std::string, std::string> cas;
  Payload at_limit = make_payload(std::string(kMaxInlineBytes, 'a'), cas);
  EXPECT_FALSE(at_limit.in_cas());
  EXPECT_EQ(at_limit.len_bytes(), kMaxInlineBytes);
  Payload over = make_payload(std::string(kMaxInlineBytes + 1, 'b'), cas);
  EXPECT_TRUE(over.in_cas());
  EXPECT_EQ(over.cas_len_bytes, kMaxInlineBytes + 1);
  Payload binary = make_payload(std::string("\xff\xfe\x00\x80x", 5), cas);
  EXPECT_TRUE(binary.in_cas());
  EXPECT_EQ(cas.size(), 2u);
  EXPECT_EQ(cas.at(binary.content_hash), std::string("\xff\xfe\x00\x80x", 5));
  Payload empty = make_payload("", cas);
  EXPECT_FALSE(empty.in_cas());
  EXPECT_EQ(empty.content_hash, content_hash(""));
  // A duplicate lands once.
  make_payload(std::string(kMaxInlineBytes + 1, 'b'), cas);
  EXPECT_EQ(cas.size(), 2u);
}

TEST(PayloadRule, Utf8ValidationMatchesRust) {
  EXPECT_TRUE(is_valid_utf8("plain ascii, long enough for the word loop"));
  EXPECT_TRUE(is_valid_utf8("é 中文 🎉"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_valid_utf8("abc\xe4\xb8"));       // cut short
  EXPECT_FALSE(is_valid_utf8("\x80"));
}

TEST(PayloadRule, AStringThatIsNotUtf8IsTapedWithAReplacementCharacterPerStrayByte) {
  EXPECT_EQ(utf8_lossy("plain é"), "plain é");
  EXPECT_EQ(utf8_lossy("a\xff"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(utf8_lossy("\xe4\xb8"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // cut short: each byte
  // A file name of any bytes (CPython's test_os makes one) must leave a tape every reader takes.
  const std::string name = "dir-\xe0/\xe0\xf2\xc9\x98";
  Record record;
  record.kind = kind::FileWrite{name, content_hash(""), 0};
  const std::string line = encode_record_line(record);
  EXPECT_TRUE(is_valid_utf8(line)) << line;
  EXPECT_NE(line.find("dir-\xEF\xBF\xBD/"), std::string::npos) << line;
  TempDir tmp;
  Tape tape(Header::current(1700000000000, "s.harn", {"a"}));
  tape.records.push_back(record);
  tape.persist(tmp / "names.tape");
  const Tape loaded = Tape::load(tmp / "names.tape");
  ASSERT_EQ(loaded.records.size(), 1u);
  EXPECT_EQ(std::get<kind::FileWrite>(loaded.records[0].kind).path, utf8_lossy(name));
}

Tape sample_tape() {
  Tape tape(Header::current(1700000000000, "s.harn", {"a"}));
  auto add = [&](RecordKind kind, Phase phase = Phase::user_script) {
    Record record;
    record.seq = tape.records.size();
    record.phase = phase;
    record.virtual_time_ms = 1700000000000 + static_cast<int64_t>(record.seq);
    record.monotonic_ms = static_cast<int64_t>(record.seq);
    record.kind = std::move(kind);
    tape.records.push_back(std::move(record));
  };
  add(kind::ClockRead{ClockSource::wall, 5});
  add(kind::LlmCall{"digest", tape.add_payload(std::string(9000, 'x'))});
  add(kind::ProcessSpawn{"/bin/cat",
                         {},
                         std::nullopt,
                         0,
                         1,
                         tape.add_payload("out"),
                         tape.add_payload(std::string("\xff\x00", 2))},
      Phase::runtime_finalize);
  add(kind::Unknown{"future", R"({"kind":"future","v":2})"});
  return tape;
}

TEST(Tape, PersistThenLoadGivesTheSameTape) {
  TempDir tmp;
  Tape tape = sample_tape();
  tape.persist(tmp / "run.tape");
  EXPECT_TRUE(std::filesystem::is_directory(tmp / "run.tape.cas"));

  Tape loaded = Tape::load(tmp / "run.tape");
  EXPECT_EQ(loaded.header, tape.header);
  ASSERT_EQ(loaded.records, tape.records);
  const auto& llm = std::get<kind::LlmCall>(loaded.records[1].kind);
  EXPECT_EQ(loaded.resolve(llm.response), std::string(9000, 'x'));
  const auto& spawn = std::get<kind::ProcessSpawn>(loaded.records[2].kind);
  EXPECT_EQ(loaded.resolve(spawn.stdout_payload), "out");
  EXPECT_EQ(loaded.resolve(spawn.stderr_payload), std::string("\xff\x00", 2));

  // Nothing but the tape and its sidecar is left in the folder.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"run.tape", "run.tape.cas"}));
}

TEST(Tape, ResolveRefusesCorruptMissingAndMisnamedEntries) {
  TempDir tmp;
  sample_tape().persist(tmp / "run.tape");
  Tape loaded = Tape::load(tmp / "run.tape");
  const Payload& response = std::get<kind::LlmCall>(loaded.records[1].kind).response;
  write_file(tmp / "run.tape.cas" / response.content_hash, "corrupt");
  EXPECT_THROW(loaded.resolve(response), TapeError);
  std::filesystem::remove(tmp / "run.tape.cas" / response.content_hash);
  EXPECT_THROW(loaded.resolve(response), TapeError);
  Payload misnamed{Payload::Storage::cas, "../run.tape", "", 3};
  EXPECT_THROW(loaded.resolve(misnamed), TapeError);
}

TEST(Tape, PersistReplacesAtomicallyAndFailsCleanly) {
  TempDir tmp;
  write_file(tmp / "run.tape", "old contents\n");
  sample_tape().persist(tmp / "run.tape");
  EXPECT_EQ(Tape::load(tmp / "run.tape").records.size(), 4u);

  // A parent that is a file: a clear error, nothing created.
  write_file(tmp / "not_a_dir", "x");
  try {
    sample_tape().persist(tmp / "not_a_dir" / "run.tape");
    FAIL() << "persist into a file's path succeeded";
  } catch (const TapeError& error) {
    EXPECT_NE(std::string(error.what()).find("not_a_dir"), std::string::npos);
  }
  EXPECT_EQ(read_file(tmp / "not_a_dir"), "x");
}

TEST(Tape, PersistingALoadedTapeElsewhereCarriesItsCas) {
  TempDir tmp;
  sample_tape().persist(tmp / "a.tape");
  Tape loaded = Tape::load(tmp / "a.tape");
  loaded.persist(tmp / "sub" / "b.tape");
  EXPECT_EQ(read_file(tmp / "a.tape"), read_file(tmp / "sub" / "b.tape"));
  Tape again = Tape::load(tmp / "sub" / "b.tape");
  const Payload& response = std::get<kind::LlmCall>(again.records[1].kind).response;
  EXPECT_EQ(again.resolve(response).size(), 9000u);
}

TEST(FormatTape, InPlaceAndElsewhere) {
  TempDir tmp;
  sample_tape().persist(tmp / "a.tape");
  const std::string canonical = read_file(tmp / "a.tape");
  // Same file: rewritten with the same bytes.
  FormatReport same = format_tape(tmp / "a.tape", tmp / "a.tape");
  EXPECT_EQ(same.records, 4u);
  EXPECT_EQ(same.cas_already_present, 2u);
  EXPECT_EQ(read_file(tmp / "a.tape"), canonical);
  // Another folder: entries hard-linked.
  FormatReport moved = format_tape(tmp / "a.tape", tmp / "out" / "b.tape");
  EXPECT_EQ(moved.cas_linked, 2u);
  EXPECT_EQ(read_file(tmp / "out" / "b.tape"), canonical);
  // A missing entry is reported, not fatal.
  const Tape loaded = Tape::load(tmp / "a.tape");
  const Payload& response = std::get<kind::LlmCall>(loaded.records[1].kind).response;
  std::filesystem::remove(tmp / "a.tape.cas" / response.content_hash);
  FormatReport missing = format_tape(tmp / "a.tape", tmp / "c.tape");
  EXPECT_EQ(missing.cas_missing, std::vector<std::string>{response.content_hash});
}

TEST(FormatTape, ABadInputLeavesNoOutput) {
  TempDir tmp;
  write_file(tmp / "bad.tape", testing::kHeaderLine + "{\"type\":\"record\",\"seq\":0,\n");
  EXPECT_THROW(format_tape(tmp / "bad.tape", tmp / "out.tape"), TapeError);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.tape"));
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(tmp.path()))
    ++files;
  EXPECT_EQ(files, 1u);  // no temporary file either
}

}  // namespace
}  // namespace tapedeck
