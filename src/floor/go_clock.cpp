// Go's package-time clock reads, told from the runtime's own (see go_clock.hpp).
#include "floor/go_clock.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "floor/elf_file.hpp"

namespace tapedeck::floor {

namespace {

// (A function these patch is tens of bytes.)
constexpr size_t kLongestPatch = 4096;

struct OwnedFd {
  int fd;
  ~OwnedFd() {
    if (fd >= 0) ::close(fd);
  }
};

// runtime.nanotime as Go 1.17+ compiles it on amd64 begins by taking its 16-byte frame and ends
// by giving it back and returning.
constexpr std::array<uint8_t, 4> kTakeFrame{0x48, 0x83, 0xEC, 0x10};                 // sub rsp, 16
constexpr std::array<uint8_t, 5> kGiveFrameAndReturn{0x48, 0x83, 0xC4, 0x10, 0xC3};  // add; ret

// The new body between those two: clock_gettime(CLOCK_MONOTONIC, rsp) with the caller's return
// address in rdx, then the nanoseconds in rax (the register ABI's result).
// (One instruction a line.)
// clang-format off
constexpr std::array<uint8_t, 36> kReadClock{
    0x48, 0x8B, 0x54, 0x24, 0x10,               // mov rdx, [rsp+16]  (the return address)
    0xBF, 0x01, 0x00, 0x00, 0x00,               // mov edi, CLOCK_MONOTONIC
    0x48, 0x89, 0xE6,                           // mov rsi, rsp
    0xB8, SYS_clock_gettime, 0x00, 0x00, 0x00,  // mov eax, SYS_clock_gettime
    0x0F, 0x05,                                 // syscall
    0x48, 0x8B, 0x04, 0x24,                     // mov rax, [rsp]     (tv_sec)
    0x48, 0x69, 0xC0, 0x00, 0xCA, 0x9A, 0x3B,   // imul rax, rax, 1000000000
    0x48, 0x03, 0x44, 0x24, 0x08,               // add rax, [rsp+8]   (tv_nsec)
};
// clang-format on
static_assert(SYS_clock_gettime < 0x100, "one byte of the mov's immediate");
constexpr uint8_t kNop = 0x90;

// The new body for an old one of `original`'s bytes, or empty when its shape is not the one
// expected (its frame taken first and given back last, room for the read between).
std::string patch_for(const std::string& original) {
  const size_t size = original.size();
  if (size < kTakeFrame.size() + kReadClock.size() + kGiveFrameAndReturn.size()) return {};
  if (original.compare(0, kTakeFrame.size(), std::string(kTakeFrame.begin(), kTakeFrame.end())) !=
          0 ||
      original.compare(size - kGiveFrameAndReturn.size(), kGiveFrameAndReturn.size(),
                       std::string(kGiveFrameAndReturn.begin(), kGiveFrameAndReturn.end())) != 0) {
    return {};
  }
  std::string patch(kTakeFrame.begin(), kTakeFrame.end());
  patch.append(kReadClock.begin(), kReadClock.end());
  patch.append(size - patch.size() - kGiveFrameAndReturn.size(), static_cast<char>(kNop));
  patch.append(kGiveFrameAndReturn.begin(), kGiveFrameAndReturn.end());
  return patch;
}

// runtime.cputicks (assembly, ABI0: its result on the stack) ends by storing it and returning.
constexpr std::array<uint8_t, 6> kStoreTicksAndReturn{0x48, 0x89, 0x44, 0x24, 0x08, 0xC3};
constexpr std::array<uint8_t, 8> kNoTicks{
    0x31, 0xC0,                    // xor eax, eax
    0x48, 0x89, 0x44, 0x24, 0x08,  // mov [rsp+8], rax
    0xC3,                          // ret
};
constexpr uint8_t kTrap = 0xCC;

std::string ticks_patch_for(const std::string& original) {
  const std::string_view code(original);
  const bool reads_counter = code.find("\x0f\x31") != std::string_view::npos ||
                             code.find("\x0f\x01\xf9") != std::string_view::npos;
  if (!reads_counter ||
      code.find(std::string_view(reinterpret_cast<const char*>(kStoreTicksAndReturn.data()),
                                 kStoreTicksAndReturn.size())) == std::string_view::npos ||
      original.size() < kNoTicks.size()) {
    return {};
  }
  std::string patch(kNoTicks.begin(), kNoTicks.end());
  patch.append(original.size() - patch.size(), static_cast<char>(kTrap));
  return patch;
}

// `size` bytes of the file at link-time `address`, from the code section that holds them.
std::string code_at(int fd, const std::vector<Elf64_Shdr>& sections, uint64_t address,
                    uint64_t size) {
  for (const Elf64_Shdr& code : sections) {
    if ((code.sh_flags & SHF_EXECINSTR) == 0 || code.sh_type != SHT_PROGBITS ||
        address < code.sh_addr || address + size > code.sh_addr + code.sh_size) {
      continue;
    }
    std::string bytes(size, '\0');
    if (!read_at(fd, bytes.data(), size, code.sh_offset + (address - code.sh_addr))) return {};
    return bytes;
  }
  return {};
}

// The lane of a function whose reads are the program's (empty: it is not one).
std::string_view program_reader_lane(std::string_view name) {
  if (name == "time.Since") return "time.Since";
  if (name == "time.Until") return "time.Until";
  if (name == "time.init" || name.starts_with("time.init.")) return "time.init";
  return {};
}

}  // namespace

GoClockSites go_clock_sites(const std::string& program) {
  GoClockSites sites;
  const OwnedFd file{::open(program.c_str(), O_RDONLY | O_CLOEXEC)};
  Elf64_Ehdr header;
  if (file.fd < 0 || !read_at(file.fd, &header, sizeof header, 0) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_machine != EM_X86_64 || header.e_shentsize != sizeof(Elf64_Shdr) ||
      header.e_shnum == 0 || header.e_shnum > 4096) {
    return sites;
  }
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  if (!read_at(file.fd, sections.data(), sections.size() * sizeof(Elf64_Shdr), header.e_shoff)) {
    return sites;
  }
  const Elf64_Shdr* symbols = nullptr;
  for (const Elf64_Shdr& section : sections) {
    if (section.sh_type == SHT_SYMTAB) symbols = &section;
  }
  // (A symbol table beyond 256 MiB is not a program this reads.)
  constexpr uint64_t kLargest = uint64_t{256} << 20;
  if (symbols == nullptr || symbols->sh_link >= sections.size() ||
      symbols->sh_entsize != sizeof(Elf64_Sym) || symbols->sh_size > kLargest ||
      sections[symbols->sh_link].sh_size > kLargest) {
    return sites;
  }
  const Elf64_Shdr& names_section = sections[symbols->sh_link];
  std::vector<Elf64_Sym> table(symbols->sh_size / sizeof(Elf64_Sym));
  std::string names(names_section.sh_size, '\0');
  if (!read_at(file.fd, table.data(), table.size() * sizeof(Elf64_Sym), symbols->sh_offset) ||
      !read_at(file.fd, names.data(), names.size(), names_section.sh_offset)) {
    return sites;
  }
  AddressRange cputicks;
  for (const Elf64_Sym& symbol : table) {
    if (ELF64_ST_TYPE(symbol.st_info) != STT_FUNC || symbol.st_name >= names.size()) continue;
    const std::string_view name(names.c_str() + symbol.st_name);
    AddressRange range{symbol.st_value, symbol.st_value + symbol.st_size};
    if (name == "runtime.nanotime") {
      sites.nanotime = range;
    } else if (name == "time.now") {
      range.lane = "time.now";
      sites.time_now = range;
    } else if (name == "runtime.cputicks" || name == "runtime.cputicks.abi0") {
      cputicks = range;
    } else if (const std::string_view lane = program_reader_lane(name); !lane.empty()) {
      range.lane = lane;
      sites.program_reads.push_back(range);
    }
  }
  sites.position_independent = header.e_type == ET_DYN;
  sites.entry = header.e_entry;
  const uint64_t nanotime_size = sites.nanotime.end - sites.nanotime.start;
  if (nanotime_size > 0 && nanotime_size <= kLongestPatch && !sites.program_reads.empty()) {
    TextPatch patch{"runtime.nanotime",
                    sites.nanotime.start,
                    code_at(file.fd, sections, sites.nanotime.start, nanotime_size),
                    {},
                    "time.Since and time.Until are not taped"};
    patch.body = patch.original.empty() ? std::string() : patch_for(patch.original);
    if (!patch.body.empty()) sites.patches.push_back(std::move(patch));
  }
  const uint64_t cputicks_size = cputicks.end - cputicks.start;
  if (cputicks_size > 0 && cputicks_size <= kLongestPatch) {
    TextPatch patch{"runtime.cputicks",
                    cputicks.start,
                    code_at(file.fd, sections, cputicks.start, cputicks_size),
                    {},
                    "its map iteration order is not replayed"};
    patch.body = ticks_patch_for(patch.original);
    if (!patch.body.empty()) sites.patches.push_back(std::move(patch));
  }
  return sites;
}

uint64_t load_bias(uint64_t at_entry, const GoClockSites& sites) {
  return sites.position_independent ? at_entry - sites.entry : 0;
}

uint64_t load_bias(pid_t pid, const GoClockSites& sites) {
  if (!sites.position_independent) return 0;
  const OwnedFd auxv{
      ::open(("/proc/" + std::to_string(pid) + "/auxv").c_str(), O_RDONLY | O_CLOEXEC)};
  if (auxv.fd < 0) return 0;
  Elf64_auxv_t entry;
  for (uint64_t at = 0; read_at(auxv.fd, &entry, sizeof entry, at); at += sizeof entry) {
    if (entry.a_type == AT_NULL) break;
    if (entry.a_type == AT_ENTRY) return load_bias(entry.a_un.a_val, sites);
  }
  return 0;
}

bool patch_go_clock(pid_t pid, const GoClockSites& sites, uint64_t bias,
                    TextPatchResults& results) {
  // No /proc here (a pid namespace's /proc may be the host's) and nothing allocated: the text is
  // read with process_vm_readv and written with ptrace, which may write a read-only mapping (a
  // private copy of the page: the file is untouched).
  bool all = true;
  const size_t count = std::min(sites.patches.size(), kMostTextPatches);
  for (size_t i = 0; i < count; ++i) {
    const TextPatch& patch = sites.patches[i];
    TextPatchResult& result = results[i];
    result = {};
    const uint64_t address = patch.address + bias;
    const size_t size = patch.original.size();
    std::array<char, kLongestPatch> found;
    iovec local{found.data(), size};
    iovec remote{reinterpret_cast<void*>(address), size};
    if (size < sizeof(uint64_t) || size > found.size() || patch.body.size() != size) {
      result = {TextPatchResult::Outcome::elsewhere, 0};
    } else if (const ssize_t got = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
               got != static_cast<ssize_t>(size)) {
      result = {TextPatchResult::Outcome::unreadable, got < 0 ? errno : EFAULT};  // short: unmapped
    } else if (std::memcmp(found.data(), patch.original.data(), size) != 0) {
      result = {TextPatchResult::Outcome::elsewhere, 0};  // not where the symbol table says
    } else {
      // Word by word; a last partial word overlaps the one before it (its bytes already new).
      for (size_t at = 0; at < size; at += sizeof(uint64_t)) {
        const size_t from = std::min(at, size - sizeof(uint64_t));
        uint64_t word;
        std::memcpy(&word, patch.body.data() + from, sizeof word);
        if (::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(address + from),
                     reinterpret_cast<void*>(word)) != 0) {
          result = {TextPatchResult::Outcome::unwritable, errno};
          break;
        }
      }
    }
    all = all && result.outcome == TextPatchResult::Outcome::written;
  }
  return all;
}

std::string describe_patch_failures(const GoClockSites& sites, const TextPatchResults& results) {
  std::string why;
  const size_t count = std::min(sites.patches.size(), kMostTextPatches);
  for (size_t i = 0; i < count; ++i) {
    const TextPatch& patch = sites.patches[i];
    std::string failure;
    switch (results[i].outcome) {
      case TextPatchResult::Outcome::written:
        continue;
      case TextPatchResult::Outcome::unreadable:
        failure = "reading " + patch.function + ": " + std::strerror(results[i].error);
        break;
      case TextPatchResult::Outcome::elsewhere:
        failure = patch.function + " is not where the program's symbol table puts it";
        break;
      case TextPatchResult::Outcome::unwritable:
        failure = "writing " + patch.function + ": " + std::strerror(results[i].error);
        break;
    }
    why += (why.empty() ? "" : "; ") + failure + ": " + patch.otherwise;
  }
  return why;
}

namespace {

// The function of the package time whose read this is (time.now itself, or time.Since,
// time.Until, time.init through the patched runtime.nanotime); null for any other read.
const AddressRange* program_reader(const GoClockSites& sites, uint64_t bias,
                                   uint64_t instruction_pointer, uint64_t caller) {
  if (sites.time_now.holds(instruction_pointer - bias)) return &sites.time_now;
  if (!sites.patchable() || !sites.nanotime.holds(instruction_pointer - bias)) return nullptr;
  for (const AddressRange& reader : sites.program_reads) {
    if (reader.holds(caller - bias)) return &reader;
  }
  return nullptr;
}

}  // namespace

GoClockRead classify_go_clock_read(const GoClockSites& sites, uint64_t bias,
                                   uint64_t instruction_pointer, uint64_t caller) {
  if (program_reader(sites, bias, instruction_pointer, caller) != nullptr) {
    return GoClockRead::program;
  }
  if (!sites.patchable() || !sites.nanotime.holds(instruction_pointer - bias)) {
    return GoClockRead::not_package_time;
  }
  return GoClockRead::runtime;
}

std::string_view go_clock_lane(const GoClockSites& sites, uint64_t bias,
                               uint64_t instruction_pointer, uint64_t caller) {
  const AddressRange* reader = program_reader(sites, bias, instruction_pointer, caller);
  return reader != nullptr ? reader->lane : std::string_view();
}

}  // namespace tapedeck::floor
