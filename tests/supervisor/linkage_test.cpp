// What a program is linked with decides who serves it (the preload or the floor): read from the
// ELF headers alone, and never fooled into a crash by a file that only looks like a program.
#include <gtest/gtest.h>

#include <fstream>

#include "supervisor/supervisor.hpp"
#include "test_support.hpp"

namespace tapedeck::supervisor {
namespace {

namespace fs = std::filesystem;

TEST(Linkage, ADynamicProgramAndAScriptAreTheLibrarysToServe) {
  EXPECT_EQ(linkage_of("/bin/sh"), Linkage::glibc_dynamic);
  testing::TempDir dir;
  std::ofstream(dir / "script.sh") << "#!/bin/sh\necho hi\n";
  EXPECT_EQ(linkage_of(dir / "script.sh"), Linkage::glibc_dynamic);
}

TEST(Linkage, AScriptRunByAStaticInterpreterIsStatic) {
  const fs::path busybox = "/bin/busybox";
  if (!fs::exists(busybox) || linkage_of(busybox) != Linkage::static_binary) {
    GTEST_SKIP() << "no static busybox here (busybox-static)";
  }
  testing::TempDir dir;
  std::ofstream(dir / "script") << "#!" << busybox.string() << " sh\necho hi\n";
  EXPECT_EQ(linkage_of(dir / "script"), Linkage::static_binary);
}

TEST(Linkage, TruncatedOrMissingFilesAreNotStaticPrograms) {
  testing::TempDir dir;
  std::string header;
  {
    std::ifstream in("/bin/sh", std::ios::binary);
    header.resize(100);  // the ELF header and no more: no program or section headers to read
    in.read(header.data(), static_cast<std::streamsize>(header.size()));
  }
  std::ofstream(dir / "cut", std::ios::binary) << header;
  EXPECT_EQ(linkage_of(dir / "cut"), Linkage::glibc_dynamic);
  std::ofstream(dir / "empty") << "";
  EXPECT_EQ(linkage_of(dir / "empty"), Linkage::glibc_dynamic);
  EXPECT_EQ(linkage_of(dir / "missing"), Linkage::glibc_dynamic);
  std::ofstream(dir / "self") << "#!" << (dir / "self").string() << "\n";
  EXPECT_EQ(linkage_of(dir / "self"), Linkage::glibc_dynamic);  // no endless recursion
  std::ofstream(dir / "a") << "#!" << (dir / "b").string() << "\n";
  std::ofstream(dir / "b") << "#!" << (dir / "a").string() << "\n";
  EXPECT_EQ(linkage_of(dir / "a"), Linkage::glibc_dynamic);
}

}  // namespace
}  // namespace tapedeck::supervisor
