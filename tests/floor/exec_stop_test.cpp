// The root's exec stop (floor::hide_vdso): the auxiliary vector rewritten, text patched where the
// load bias puts it, and nothing allocated on the way (a pid namespace's init runs it in a child
// forked from the threaded supervisor, where an allocation may wait forever for a lock another
// thread held at the fork). Its own executable: it counts operator new for the whole process.
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "floor/floor.hpp"
#include "floor/go_clock.hpp"

namespace {
std::atomic<long> allocations{0};
}  // namespace

// (GCC pairs a replaced operator new with the free of an inlined replaced delete: both are ours.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* memory = std::malloc(size == 0 ? 1 : size)) return memory;
  throw std::bad_alloc();
}
void* operator new[](size_t size) {
  return operator new(size);
}
void operator delete(void* memory) noexcept {
  std::free(memory);
}
void operator delete[](void* memory) noexcept {
  std::free(memory);
}
void operator delete(void* memory, size_t) noexcept {
  std::free(memory);
}
void operator delete[](void* memory, size_t) noexcept {
  std::free(memory);
}

namespace tapedeck::floor {
namespace {

constexpr const char* kProgram = "/bin/true";

// A child of this process stopped at its exec of `kProgram` (PTRACE_TRACEME), its stdout in
// `out` when given, where ld.so prints the auxiliary vector it was given (LD_SHOW_AUXV).
pid_t stopped_at_exec(int out = -1) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (out >= 0) ::dup2(out, STDOUT_FILENO);
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    char show[] = "LD_SHOW_AUXV=1";
    char* env[] = {out >= 0 ? show : nullptr, nullptr};
    char* argv[] = {const_cast<char*>("true"), nullptr};
    ::execve(kProgram, argv, env);
    ::_exit(127);
  }
  return pid;
}

int exit_code_of(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

std::string auxv_shown(bool hide) {
  int out[2];
  EXPECT_EQ(::pipe(out), 0);
  const pid_t pid = stopped_at_exec(out[1]);
  ::close(out[1]);
  if (hide) {
    const ExecStopPlan plan;
    const ExecStopReport report = hide_vdso(pid, plan);
    EXPECT_EQ(report.failure, ExecStopReport::Failure::none) << describe(report, plan);
  } else {
    int status = 0;
    ::waitpid(pid, &status, __WALL);
    ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  }
  std::string shown;
  char buffer[4096];
  for (ssize_t got; (got = ::read(out[0], buffer, sizeof buffer)) > 0;) shown.append(buffer, got);
  ::close(out[0]);
  ::waitpid(pid, nullptr, 0);
  return shown;
}

TEST(ExecStop, HidingTheVdsoTakesItOutOfTheAuxiliaryVector) {
  const std::string before = auxv_shown(false);
  ASSERT_NE(before.find("AT_PAGESZ"), std::string::npos) << before;
  ASSERT_NE(before.find("AT_SYSINFO_EHDR"), std::string::npos) << before;
  const std::string after = auxv_shown(true);
  EXPECT_NE(after.find("AT_PAGESZ"), std::string::npos) << after;  // the rest is intact
  EXPECT_EQ(after.find("AT_SYSINFO_EHDR"), std::string::npos) << after;
}

TEST(ExecStop, AProcessNotStoppedAtItsExecIsReportedAndWorded) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  const ExecStopPlan plan;
  const ExecStopReport report = hide_vdso(pid, plan);
  EXPECT_EQ(report.failure, ExecStopReport::Failure::not_stopped);
  EXPECT_NE(describe(report, plan).find("did not stop at its exec"), std::string::npos)
      << describe(report, plan);
}

// `size` bytes of `program` at its entry point, and that entry as linked.
std::string bytes_at_entry(const char* program, size_t size, Elf64_Ehdr& header) {
  const int fd = ::open(program, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::pread(fd, &header, sizeof header, 0) != sizeof header) return {};
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  const auto table = static_cast<ssize_t>(segments.size() * sizeof(Elf64_Phdr));
  std::string bytes(size, '\0');
  bool found = false;
  if (::pread(fd, segments.data(), table, static_cast<off_t>(header.e_phoff)) == table) {
    for (const Elf64_Phdr& segment : segments) {
      if (segment.p_type != PT_LOAD || header.e_entry < segment.p_vaddr ||
          header.e_entry + size > segment.p_vaddr + segment.p_filesz) {
        continue;
      }
      const auto at = static_cast<off_t>(segment.p_offset + (header.e_entry - segment.p_vaddr));
      found = ::pread(fd, bytes.data(), size, at) == static_cast<ssize_t>(size);
    }
  }
  ::close(fd);
  return found ? bytes : std::string();
}

// exit(42), in as many bytes as a patch of /bin/true's entry takes (12: not a multiple of a word).
const std::string kExit42{
    "\xBF\x2A\x00\x00\x00"  // mov edi, 42
    "\xB8\x3C\x00\x00\x00"  // mov eax, SYS_exit
    "\x0F\x05",             // syscall
    12};

GoClockSites entry_patch(const std::string& original, const Elf64_Ehdr& header) {
  GoClockSites sites;
  sites.position_independent = header.e_type == ET_DYN;
  sites.entry = header.e_entry;
  sites.patches.push_back(
      TextPatch{"the entry point", header.e_entry, original, kExit42, "it runs as it is"});
  return sites;
}

// The patch lands where the image was loaded (AT_ENTRY's bias), and the stop allocates nothing.
TEST(ExecStop, ATextPatchIsWrittenWhereTheImageWasLoadedWithNothingAllocated) {
  Elf64_Ehdr header{};
  const std::string original = bytes_at_entry(kProgram, kExit42.size(), header);
  ASSERT_EQ(original.size(), kExit42.size()) << "cannot read " << kProgram << "'s entry point";
  const GoClockSites sites = entry_patch(original, header);
  ExecStopPlan plan;
  plan.go_clock = &sites;
  plan.replaces_random = true;
  const pid_t pid = stopped_at_exec();
  const long before = allocations.load();
  const ExecStopReport report = hide_vdso(pid, plan);
  const long allocated = allocations.load() - before;
  EXPECT_EQ(allocated, 0) << "the exec stop allocated";
  EXPECT_EQ(report.failure, ExecStopReport::Failure::none) << describe(report, plan);
  EXPECT_FALSE(report.patches_failed) << describe(report, plan);
  EXPECT_EQ(exit_code_of(pid), 42);  // it ran the patch, not true
}

TEST(ExecStop, APatchWhoseBytesAreNotThereIsLeftOutAndNamed) {
  Elf64_Ehdr header{};
  std::string original = bytes_at_entry(kProgram, kExit42.size(), header);
  ASSERT_EQ(original.size(), kExit42.size());
  original[3] = static_cast<char>(original[3] ^ 0x5A);  // not what the file holds there
  const GoClockSites sites = entry_patch(original, header);
  ExecStopPlan plan;
  plan.go_clock = &sites;
  const pid_t pid = stopped_at_exec();
  const ExecStopReport report = hide_vdso(pid, plan);
  EXPECT_EQ(report.failure, ExecStopReport::Failure::none);
  EXPECT_TRUE(report.patches_failed);
  EXPECT_EQ(report.patches[0].outcome, TextPatchResult::Outcome::elsewhere);
  EXPECT_EQ(describe(report, plan),
            "the entry point is not where the program's symbol table puts it: it runs as it is");
  EXPECT_EQ(exit_code_of(pid), 0);  // true, untouched
}

TEST(ExecStop, APatchWhereNothingIsMappedIsLeftOutAndNamed) {
  Elf64_Ehdr header{};
  const std::string original = bytes_at_entry(kProgram, kExit42.size(), header);
  ASSERT_EQ(original.size(), kExit42.size());
  GoClockSites sites = entry_patch(original, header);
  sites.position_independent = false;  // no bias: the link-time address of a PIE is unmapped
  sites.patches[0].address = 0x10;
  ExecStopPlan plan;
  plan.go_clock = &sites;
  const pid_t pid = stopped_at_exec();
  const ExecStopReport report = hide_vdso(pid, plan);
  EXPECT_EQ(report.failure, ExecStopReport::Failure::none);
  EXPECT_EQ(report.patches[0].outcome, TextPatchResult::Outcome::unreadable);
  EXPECT_EQ(describe(report, plan), "reading the entry point: " +
                                        std::string(std::strerror(EFAULT)) + ": it runs as it is");
  EXPECT_EQ(exit_code_of(pid), 0);
}

}  // namespace
}  // namespace tapedeck::floor
