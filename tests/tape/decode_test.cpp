// The reader's rules, one line at a time: what it accepts like the reference reader, and what it
// refuses (with a message that names the field).
#include <gtest/gtest.h>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::kHeaderLine;

Record decode_one(const std::string& record_line) {
  auto reader = TapeReader::from_memory(kHeaderLine + record_line + "\n", "mem.tape");
  Record record;
  EXPECT_TRUE(reader->next(record));
  Record extra;
  EXPECT_FALSE(reader->next(extra));
  return record;
}

// The error message for a tape whose second line is `record_line`.
std::string refusal(const std::string& record_line) {
  try {
    auto reader = TapeReader::from_memory(kHeaderLine + record_line + "\n", "mem.tape");
    Record record;
    while (reader->next(record)) {
    }
  } catch (const TapeError& error) {
    EXPECT_EQ(error.file(), "mem.tape");
    EXPECT_EQ(error.line(), 2u);
    return error.detail();
  }
  ADD_FAILURE() << "accepted: " << record_line;
  return "";
}

TEST(Decode, FieldsInAnyOrderAndMissingPhase) {
  Record record = decode_one(
      R"({"kind":{"value_ms":7,"source":"monotonic","kind":"clock_read"},"monotonic_ms":2,"virtual_time_ms":3,"seq":9,"type":"record"})");
  EXPECT_EQ(record.seq, 9u);
  EXPECT_EQ(record.phase, Phase::user_script);
  EXPECT_EQ(record.virtual_time_ms, 3);
  EXPECT_EQ(record.monotonic_ms, 2);
  EXPECT_EQ(std::get<kind::ClockRead>(record.kind), (kind::ClockRead{ClockSource::monotonic, 7}));
}

TEST(Decode, UnknownFieldsAreIgnoredButMustBeJson) {
  Record record = decode_one(
      R"({"type":"record","seq":1,"extra":{"nested":[1,2,{"x":null}]},"virtual_time_ms":4,"monotonic_ms":5,"kind":{"kind":"clock_sleep","duration_ms":1,"also":true}})");
  EXPECT_EQ(std::get<kind::ClockSleep>(record.kind).duration_ms, 1u);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":1,"extra":[1,,2],"virtual_time_ms":4,"monotonic_ms":5,"kind":{"kind":"clock_sleep","duration_ms":1}})")
          .find("malformed JSON in field `extra`"),
      std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":1,"extra":{"a" 1},"virtual_time_ms":4,"monotonic_ms":5,"kind":{"kind":"clock_sleep","duration_ms":1}})")
          .find("extra"),
      std::string::npos);
}

TEST(Decode, EscapedKeysAreUnescaped) {
  Record record = decode_one(
      R"({"type":"record","s\u0065q":3,"virtual_time_ms":4,"monotonic_ms":5,"kind":{"kind":"file_delete","p\u0061th":"a\/b"}})");
  EXPECT_EQ(record.seq, 3u);
  EXPECT_EQ(std::get<kind::FileDelete>(record.kind).path, "a/b");
}

TEST(Decode, SurrogatePairsBecomeUtf8AndLoneSurrogatesAreRefused) {
  Record record = decode_one(
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"file_delete","path":"a\u00e9\ud83c\udf89"}})");
  EXPECT_EQ(std::get<kind::FileDelete>(record.kind).path, "aé🎉");
  refusal(
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"file_delete","path":"\ud83c"}})");
}

TEST(Decode, InvalidUtf8IsRefused) {
  refusal(
      "{\"type\":\"record\",\"seq\":0,\"virtual_time_ms\":1,\"monotonic_ms\":1,\"kind\":{\"kind\":"
      "\"file_delete\",\"path\":\"\xff\"}}");
}

TEST(Decode, UnknownKindIsKeptMinified) {
  Record record = decode_one(
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{ "x": [1, 2] ,"kind" : "brand_new", "s":"a b\n"} })");
  const auto& unknown = std::get<kind::Unknown>(record.kind);
  EXPECT_EQ(unknown.name, "brand_new");
  EXPECT_EQ(unknown.raw_json, R"({"x":[1,2],"kind":"brand_new","s":"a b\n"})");
  EXPECT_EQ(kind_name(record.kind), "brand_new");
}

TEST(Decode, PayloadShapes) {
  auto payload_of = [](const std::string& payload_json) {
    Record record = decode_one(
        R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"llm_call","request_digest":"d","response":)" +
        payload_json + "}}");
    return std::get<kind::LlmCall>(record.kind).response;
  };
  Payload inline_payload = payload_of(R"({"content_hash":"h","text":"t"})");
  EXPECT_FALSE(inline_payload.in_cas());
  EXPECT_EQ(inline_payload.text, "t");
  Payload cas_payload = payload_of(R"({"len_bytes":12,"content_hash":"h"})");
  EXPECT_TRUE(cas_payload.in_cas());
  EXPECT_EQ(cas_payload.cas_len_bytes, 12u);
  // Both: inline wins. A text that is not a string falls back to the CAS shape.
  EXPECT_FALSE(payload_of(R"({"content_hash":"h","text":"t","len_bytes":4})").in_cas());
  EXPECT_TRUE(payload_of(R"({"content_hash":"h","text":5,"len_bytes":4})").in_cas());
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"llm_call","request_digest":"d","response":{"content_hash":"h"}}})")
          .find("`response`"),
      std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"llm_call","request_digest":"d","response":{"text":"t"}}})")
          .find("content_hash"),
      std::string::npos);
}

TEST(Decode, ProcessSpawnCwdMissingOrNullReadsAsNone) {
  const std::string payloads =
      R"("stdout_payload":{"content_hash":"a","text":""},"stderr_payload":{"content_hash":"b","text":""})";
  Record missing = decode_one(
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"p","args":[],"exit_code":0,"duration_ms":0,)" +
      payloads + "}}");
  EXPECT_FALSE(std::get<kind::ProcessSpawn>(missing.kind).cwd.has_value());
  Record with_cwd = decode_one(
      R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"p","args":["x"],"cwd":"/w","exit_code":-2147483648,"duration_ms":0,)" +
      payloads + "}}");
  EXPECT_EQ(std::get<kind::ProcessSpawn>(with_cwd.kind).cwd, std::optional<std::string>("/w"));
  EXPECT_EQ(std::get<kind::ProcessSpawn>(with_cwd.kind).exit_code, -2147483647 - 1);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"p","args":[],"exit_code":2147483648,"duration_ms":0,)" +
          payloads + "}}")
          .find("`exit_code`"),
      std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":0,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"process_spawn","program":"p","args":[1],"exit_code":0,"duration_ms":0,)" +
          payloads + "}}")
          .find("`args`"),
      std::string::npos);
}

TEST(Decode, RefusalsNameWhatIsWrong) {
  const std::string base =
      R"("virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"clock_sleep","duration_ms":1})";
  EXPECT_NE(
      refusal(R"({"type":"record","seq":1,"seq":2,)" + base + "}").find("duplicate field `seq`"),
      std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record",)" + base + "}").find("missing field `seq`"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":18446744073709551616,)" + base + "}").find("`seq`"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":1e3,)" + base + "}").find("`seq`"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":1,)" + base + "}}").find("trailing"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":1,)" + base + "} {}").find("trailing"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":1,)" + base + "} x").find("not JSON"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"surprise","seq":1,)" + base + "}").find("unknown line type"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"seq":1,)" + base + "}").find("missing field `type`"), std::string::npos);
  EXPECT_NE(refusal(R"([1,2])").find("not a JSON object"), std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":1,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"duration_ms":1}})")
          .find("missing field `kind`"),
      std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":1,"virtual_time_ms":1,"monotonic_ms":1,"kind":{"kind":"clock_sleep","kind":"clock_sleep","duration_ms":1}})")
          .find("duplicate"),
      std::string::npos);
  EXPECT_NE(
      refusal(
          R"({"type":"record","seq":1,"virtual_time_ms":1,"monotonic_ms":1,"kind":"clock_sleep"})")
          .find("`kind` must be an object"),
      std::string::npos);
}

TEST(Decode, IntegerExtremesRoundTrip) {
  Record record = decode_one(
      R"({"type":"record","seq":18446744073709551615,"virtual_time_ms":-9223372036854775808,"monotonic_ms":9223372036854775807,"kind":{"kind":"clock_sleep","duration_ms":18446744073709551615}})");
  EXPECT_EQ(record.seq, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(record.virtual_time_ms, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(record.monotonic_ms, std::numeric_limits<int64_t>::max());
}

TEST(Decode, EveryKindSurvivesEncodeThenDecode) {
  std::vector<Record> records(8);
  records[0].kind = kind::ClockRead{ClockSource::wall, -1};
  records[1].kind = kind::ClockSleep{3};
  records[2].kind = kind::LlmCall{"d", Payload{Payload::Storage::cas, "h", "", 5}};
  records[3].kind = kind::FileRead{"a\"b", "h", 1};
  records[4].kind = kind::FileWrite{"w\n", "h", 2};
  records[5].kind = kind::FileDelete{"\x01"};
  records[6].kind = kind::ProcessSpawn{"p",
                                       {"a", "\\"},
                                       "c",
                                       1,
                                       2,
                                       Payload{Payload::Storage::inline_text, "x", "o", 0},
                                       Payload{Payload::Storage::cas, "y", "", 9}};
  records[7].kind = kind::Unknown{"z", R"({"kind":"z","q":{}})"};
  records[7].phase = Phase::runtime_finalize;
  std::string tape = kHeaderLine;
  for (size_t i = 0; i < records.size(); ++i) {
    records[i].seq = i;
    tape += encode_record_line(records[i]);
  }
  auto reader = TapeReader::from_memory(tape, "mem.tape");
  for (const Record& expected : records) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
}

// tapedeck's extensions: the pids a subprocess took and its place in the order subprocesses
// started, written only when known (a spawn without them keeps the reference's bytes), read back.
TEST(Decode, ASpawnKeepsThePidsItTookAndWhenItStarted) {
  Record counted;
  counted.kind = kind::ProcessSpawn{"/bin/sh", {"-c", "true"}, ".", 0, 3, {}, {}, 4, 7};
  Record plain;
  plain.seq = 1;
  plain.kind = kind::ProcessSpawn{"/bin/true", {}, std::nullopt, 0, 1, {}, {}};
  EXPECT_NE(encode_record_line(counted).find(R"(,"pids":4,"started":7})"), std::string::npos);
  EXPECT_EQ(encode_record_line(plain).find("pids"), std::string::npos);
  EXPECT_EQ(encode_record_line(plain).find("started"), std::string::npos);
  auto reader = TapeReader::from_memory(
      kHeaderLine + encode_record_line(counted) + encode_record_line(plain), "mem.tape");
  for (const Record& expected : {counted, plain}) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
}

// tapedeck's extension: a clock read's lane, written only when it has one (a read without keeps
// the reference's bytes), read back by both decoders, and refused when not a string.
TEST(Decode, AClockReadKeepsItsLane) {
  Record laned;
  laned.kind = kind::ClockRead{ClockSource::monotonic, 241869, "time.Since"};
  Record plain;
  plain.seq = 1;
  plain.kind = kind::ClockRead{ClockSource::wall, 1700000000000};
  EXPECT_NE(
      encode_record_line(laned).find(
          R"({"kind":"clock_read","source":"monotonic","value_ms":241869,"lane":"time.Since"})"),
      std::string::npos);
  EXPECT_EQ(encode_record_line(plain).find("lane"), std::string::npos);
  // Read in the order written and again after a laned one: a reused record loses its lane.
  auto reader = TapeReader::from_memory(kHeaderLine + encode_record_line(laned) +
                                            encode_record_line(plain) + encode_record_line(laned),
                                        "mem.tape");
  for (const Record& expected : {laned, plain, laned}) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
  // The full decoder (fields in another order) reads it too.
  auto reordered = TapeReader::from_memory(
      kHeaderLine +
          R"({"type":"record","seq":0,"phase":"user_script","virtual_time_ms":0,"monotonic_ms":0,)"
          R"("kind":{"lane":"time.now","kind":"clock_read","value_ms":5,"source":"wall"}})"
          "\n",
      "mem.tape");
  Record got;
  ASSERT_TRUE(reordered->next(got));
  EXPECT_EQ(std::get<kind::ClockRead>(got.kind).lane, "time.now");
  std::string bad = encode_record_line(laned);
  bad.replace(bad.find("\"time.Since\""), 12, "7");
  auto refused = TapeReader::from_memory(kHeaderLine + bad, "bad.tape");
  EXPECT_THROW(refused->next(got), TapeError);
}

// tapedeck's extension: a read of the program's code, written only when so (a data read keeps
// the reference's bytes), read back by both decoders (a reused record loses the mark), and
// refused when not a boolean.
TEST(Decode, ACodeReadKeepsItsMark) {
  Record code;
  code.kind = kind::FileRead{"agent.py", std::string(64, 'c'), 12, true};
  Record data;
  data.seq = 1;
  data.kind = kind::FileRead{"question.txt", std::string(64, 'd'), 7};
  EXPECT_NE(encode_record_line(code).find(R"("len_bytes":12,"code":true})"), std::string::npos);
  EXPECT_EQ(encode_record_line(data).find("code"), std::string::npos);
  auto reader = TapeReader::from_memory(
      kHeaderLine + encode_record_line(code) + encode_record_line(data) + encode_record_line(code),
      "mem.tape");
  for (const Record& expected : {code, data, code}) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
  auto reordered = TapeReader::from_memory(
      kHeaderLine +
          R"({"type":"record","seq":0,"phase":"user_script","virtual_time_ms":0,"monotonic_ms":0,)"
          R"("kind":{"code":true,"kind":"file_read","len_bytes":1,"content_hash":"h","path":"a.js"}})"
          "\n",
      "mem.tape");
  Record got;
  ASSERT_TRUE(reordered->next(got));
  EXPECT_TRUE(std::get<kind::FileRead>(got.kind).code);
  std::string bad = encode_record_line(code);
  bad.replace(bad.find("true"), 4, "\"yes\"");
  auto refused = TapeReader::from_memory(kHeaderLine + bad, "bad.tape");
  EXPECT_THROW(refused->next(got), TapeError);
}

// tapedeck's extension: a sleep that was a wait timing out, written only when so (a plain sleep
// keeps the reference's bytes), read back, and refused when not a boolean.
TEST(Decode, AWaitThatTimedOutKeepsItsMark) {
  Record waited;
  waited.kind = kind::ClockSleep{300, true};
  Record slept;
  slept.seq = 1;
  slept.kind = kind::ClockSleep{300};
  EXPECT_NE(
      encode_record_line(waited).find(R"({"kind":"clock_sleep","duration_ms":300,"waited":true})"),
      std::string::npos);
  EXPECT_EQ(encode_record_line(slept).find("waited"), std::string::npos);
  auto reader = TapeReader::from_memory(
      kHeaderLine + encode_record_line(waited) + encode_record_line(slept), "mem.tape");
  for (const Record& expected : {waited, slept}) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
  std::string bad = encode_record_line(waited);
  bad.replace(bad.find("true"), 4, "\"yes\"");
  auto refused = TapeReader::from_memory(kHeaderLine + bad, "bad.tape");
  Record got;
  EXPECT_THROW(refused->next(got), TapeError);
}

// tapedeck's extension: a workspace change a subprocess made. Written only when set (so every
// other file record keeps the reference's bytes), read back, and refused when not a boolean.
TEST(Decode, SubprocessChangesKeepTheirMark) {
  Record write;
  write.kind = kind::FileWrite{"out.txt", "h", 3, true, 0755};
  Record gone;
  gone.seq = 1;
  gone.kind = kind::FileDelete{"old.txt", true};
  Record plain;
  plain.seq = 2;
  plain.kind = kind::FileDelete{"x"};
  EXPECT_NE(encode_record_line(write).find(R"("len_bytes":3,"by_subprocess":true,"mode":493})"),
            std::string::npos);
  EXPECT_EQ(encode_record_line(plain).find("by_subprocess"), std::string::npos);
  auto reader = TapeReader::from_memory(kHeaderLine + encode_record_line(write) +
                                            encode_record_line(gone) + encode_record_line(plain),
                                        "mem.tape");
  for (const Record& expected : {write, gone, plain}) {
    Record got;
    ASSERT_TRUE(reader->next(got));
    EXPECT_EQ(got, expected) << encode_record_line(expected);
  }
  EXPECT_NE(refusal(R"({"type":"record","seq":0,"virtual_time_ms":0,"monotonic_ms":0,)"
                    R"("kind":{"kind":"file_delete","path":"a","by_subprocess":1}})")
                .find("by_subprocess"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"type":"record","seq":0,"virtual_time_ms":0,"monotonic_ms":0,)"
                    R"("kind":{"kind":"file_write","path":"a","content_hash":"h","len_bytes":1,)"
                    R"("by_subprocess":true,"mode":70000}})")
                .find("mode"),
            std::string::npos);
}

// tapedeck's extension: the thread whose call made a file record. Written last and only when
// set, read back for every file kind, and cleared on a reused record that lacks it.
TEST(Decode, FileRecordsKeepTheirThread) {
  Record read;
  read.kind = kind::FileRead{"in.txt", "h", 2, false, false, "t6"};
  Record write;
  write.seq = 1;
  write.kind = kind::FileWrite{"out.txt", "h", 3, true, 0644, "t1@5c0ffee1"};
  Record gone;
  gone.seq = 2;
  gone.kind = kind::FileDelete{"old.txt", false, false, "t7"};
  Record plain;
  plain.seq = 3;
  plain.kind = kind::FileRead{"in.txt", "h", 2};
  EXPECT_NE(encode_record_line(write).find(R"("mode":420,"thread":"t1@5c0ffee1"})"),
            std::string::npos);
  EXPECT_NE(encode_record_line(gone).find(R"("path":"old.txt","thread":"t7"})"), std::string::npos);
  EXPECT_EQ(encode_record_line(plain).find("thread"), std::string::npos);
  for (const bool canonical : {true, false}) {
    std::string text = kHeaderLine;
    for (const Record* record : {&read, &write, &gone, &plain}) {
      std::string line = encode_record_line(*record);
      // Not canonical: the same fields, the kind's first, so that the full decoder reads them.
      if (!canonical) line.replace(line.find(R"("kind":{)"), 8, R"("kind":{ )");
      text += line;
    }
    auto reader = TapeReader::from_memory(text, "mem.tape");
    for (const Record* expected : {&read, &write, &gone, &plain}) {
      Record got;
      ASSERT_TRUE(reader->next(got));
      EXPECT_EQ(got, *expected) << encode_record_line(*expected) << " canonical " << canonical;
    }
  }
  EXPECT_NE(refusal(R"({"type":"record","seq":0,"virtual_time_ms":0,"monotonic_ms":0,)"
                    R"("kind":{"kind":"file_delete","path":"a","thread":3}})")
                .find("thread"),
            std::string::npos);
}

TEST(Decode, HeaderDefaultsAndVersions) {
  auto reader =
      TapeReader::from_memory(R"({"version":0,"type":"header","harn_version":"old"})", "h.tape");
  EXPECT_EQ(reader->header().version, 0u);
  EXPECT_FALSE(reader->header().started_at_unix_ms.has_value());
  EXPECT_FALSE(reader->header().script_path.has_value());
  EXPECT_TRUE(reader->header().argv.empty());
  try {
    TapeReader::from_memory(R"({"type":"header","version":2,"harn_version":"x"})", "new.tape");
    FAIL() << "a newer version was accepted";
  } catch (const TapeError& error) {
    EXPECT_EQ(error.line(), 1u);
    EXPECT_NE(error.detail().find("version 2"), std::string::npos);
  }
  EXPECT_THROW(TapeReader::from_memory(
                   R"({"type":"header","version":4294967296,"harn_version":"x"})", "v.tape"),
               TapeError);
  EXPECT_THROW(TapeReader::from_memory(R"({"type":"header","harn_version":"x"})", "v.tape"),
               TapeError);
}

}  // namespace
}  // namespace tapedeck
