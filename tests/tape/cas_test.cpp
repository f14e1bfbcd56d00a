// The sidecar: names are checked before any path is built, writes are whole-or-nothing, present
// entries are left alone, and carrying prefers hard links.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tapedeck/cas.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/tape.hpp"
#include "test_support.hpp"

namespace tapedeck {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

ino_t inode_of(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_ino;
}

TEST(ContentHash, IsLowercaseHexBlake3) {
  // BLAKE3 of the empty input and of "abc", from the BLAKE3 reference test vectors.
  EXPECT_EQ(content_hash(""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
  EXPECT_EQ(content_hash("abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
  // Large inputs go through the SIMD paths; the hash must not depend on chunking.
  std::string big(1 << 20, 'z');
  EXPECT_EQ(content_hash(big).size(), 64u);
  EXPECT_TRUE(is_valid_cas_name(content_hash(big)));
}

TEST(CasNames, OnlySixtyFourLowercaseHex) {
  EXPECT_TRUE(is_valid_cas_name(std::string(64, 'a')));
  EXPECT_FALSE(is_valid_cas_name(std::string(63, 'a')));
  EXPECT_FALSE(is_valid_cas_name(std::string(65, 'a')));
  EXPECT_FALSE(is_valid_cas_name(std::string(64, 'A')));
  EXPECT_FALSE(is_valid_cas_name(std::string(62, 'a') + "/x"));
  EXPECT_FALSE(is_valid_cas_name("../../etc/passwd"));
  EXPECT_FALSE(is_valid_cas_name(""));
}

TEST(Cas, EscapingNamesAreRefusedBeforeAnyPathIsTouched) {
  TempDir tmp;
  const auto sidecar = tmp / "t.tape.cas";
  std::filesystem::create_directories(sidecar);
  write_file(tmp / "secret", "do not read");
  const std::string escape = "../secret";

  EXPECT_THROW(cas::read_entry(sidecar, escape), TapeError);
  EXPECT_THROW(cas::carry_entry(sidecar, tmp / "other.cas", escape), TapeError);
  EXPECT_THROW(cas::write_entries(sidecar, {{"../written", "x"}}), TapeError);
  EXPECT_FALSE(std::filesystem::exists(tmp / "written"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "other.cas"));
  cas::Check check = cas::check_entry(sidecar, escape, 11);
  EXPECT_EQ(check.problem, cas::Problem::invalid_name);
  EXPECT_EQ(read_file(tmp / "secret"), "do not read");
}

TEST(Cas, WriteThenReadChecksTheHash) {
  TempDir tmp;
  const auto sidecar = tmp / "x.cas";
  const std::string bytes(5000, 'b');
  const std::string name = content_hash(bytes);
  cas::write_entries(sidecar, {{name, bytes}});
  EXPECT_EQ(cas::read_entry(sidecar, name), bytes);
  EXPECT_EQ(cas::check_entry(sidecar, name, bytes.size()).problem, cas::Problem::none);
  EXPECT_EQ(cas::check_entry(sidecar, name, 1).problem, cas::Problem::length_mismatch);

  write_file(sidecar / name, "tampered");
  EXPECT_THROW(cas::read_entry(sidecar, name), TapeError);
  EXPECT_EQ(cas::check_entry(sidecar, name, 8).problem, cas::Problem::hash_mismatch);

  const std::string absent(64, 'e');
  EXPECT_EQ(cas::check_entry(sidecar, absent, 1).problem, cas::Problem::missing);
  try {
    cas::read_entry(sidecar, absent);
    FAIL();
  } catch (const TapeError& error) {
    EXPECT_NE(error.detail().find("missing"), std::string::npos);
  }
  // No temporary file is left beside the entries.
  for (const auto& entry : std::filesystem::directory_iterator(sidecar)) {
    EXPECT_TRUE(is_valid_cas_name(entry.path().filename().string())) << entry.path();
  }
}

TEST(Cas, PresentEntriesAreNotRewritten) {
  TempDir tmp;
  const auto sidecar = tmp / "x.cas";
  const std::string bytes = "payload";
  const std::string name = content_hash(bytes);
  cas::write_entries(sidecar, {{name, bytes}});
  const ino_t before = inode_of(sidecar / name);
  cas::write_entries(sidecar, {{name, bytes}});
  EXPECT_EQ(inode_of(sidecar / name), before);  // a rewrite would rename a new inode in
}

TEST(Cas, CarryHardLinksWithinAFileSystem) {
  TempDir tmp;
  const std::string bytes = "shared bytes";
  const std::string name = content_hash(bytes);
  cas::write_entries(tmp / "a.cas", {{name, bytes}});
  EXPECT_EQ(cas::carry_entry(tmp / "a.cas", tmp / "b.cas", name), cas::Carried::linked);
  EXPECT_EQ(inode_of(tmp / "a.cas" / name), inode_of(tmp / "b.cas" / name));
  EXPECT_EQ(cas::carry_entry(tmp / "a.cas", tmp / "b.cas", name), cas::Carried::already_present);
  EXPECT_THROW(cas::carry_entry(tmp / "a.cas", tmp / "b.cas", std::string(64, '0')), TapeError);
}

TEST(Cas, ACarrierWhoseSourceIsMissingSaysSoEveryTimeAndCarriesOnceItIsThere) {
  TempDir tmp;
  const std::string bytes = "late bytes";
  const std::string name = content_hash(bytes);
  cas::Carrier carrier(tmp / "a.cas", tmp / "b.cas");
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      carrier.carry(name);
      ADD_FAILURE() << "carried from a sidecar that is not there";
    } catch (const TapeError& error) {
      EXPECT_NE(std::string(error.what()).find("CAS entry missing"), std::string::npos)
          << error.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "b.cas")) << "made a target for nothing";
  cas::write_entries(tmp / "a.cas", {{name, bytes}});
  EXPECT_EQ(carrier.carry(name), cas::Carried::linked);
  EXPECT_EQ(carrier.carry(name), cas::Carried::already_present);
}

TEST(Cas, CarryCopiesAcrossFileSystems) {
  struct stat tmp_info {
  }, shm_info{};
  TempDir tmp;
  if (::stat("/dev/shm", &shm_info) != 0 || ::stat(tmp.path().c_str(), &tmp_info) != 0 ||
      shm_info.st_dev == tmp_info.st_dev) {
    GTEST_SKIP() << "no second file system to copy across";
  }
  const std::string bytes = "cross-device";
  const std::string name = content_hash(bytes);
  cas::write_entries(tmp / "a.cas", {{name, bytes}});
  const auto target =
      std::filesystem::path("/dev/shm") / ("tapedeck-test-" + std::to_string(::getpid()));
  EXPECT_EQ(cas::carry_entry(tmp / "a.cas", target, name), cas::Carried::copied);
  EXPECT_EQ(read_file(target / name), bytes);
  std::filesystem::remove_all(target);
}

}  // namespace
}  // namespace tapedeck
