// Which of a Go program's monotonic clock reads are the program's own.
//
// Go's runtime reads CLOCK_MONOTONIC for itself all the time (the scheduler, timers, sysmon),
// from every thread, through one function (runtime.nanotime1): a floor that sees only the system
// call cannot tell those reads from the program's time.Since(t). What tells them apart is the
// caller. The package time reaches the runtime's clock through runtime.nanotime (linked to
// time.runtimeNano) and nowhere else; its callers are time.Since, time.Until, time.init
// (startNano, from which a Time's monotonic reading counts) and the timers (time.when).
//
// So, at the root's exec stop (hide_vdso), runtime.nanotime's body is replaced by one that makes
// the system call itself and passes its caller's return address as the call's third argument
// (clock_gettime ignores it): a notification whose instruction pointer lies in runtime.nanotime
// is a read of the package time, and its third argument says which function asked. The new body
// keeps the old one's stack shape (16 bytes taken by its first instruction, given back by the
// last two), so that the runtime's tracebacks through it stay right.
//
// Only a binary whose symbol table names these functions (not stripped with -s) and whose
// runtime.nanotime has the shape this expects (Go 1.17 and later on amd64: the register ABI, a
// 16-byte frame) is patched; anything else keeps the runtime's own reads untaped.
//
// The same stop makes runtime.cputicks read 0 (GoClockSites::patches), for a replay whose map
// orders are every replay's.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tapedeck::floor {

struct AddressRange {
  uint64_t start = 0;
  uint64_t end = 0;
  // Of a function whose clock reads are the program's: the lane they are taped in (see
  // ClockRead::lane), a name of static storage.
  std::string_view lane = {};
  bool holds(uint64_t address) const { return address >= start && address < end; }
};

// A function's body replaced in the process's text, as long as the old one.
struct TextPatch {
  std::string function;   // its symbol
  uint64_t address = 0;   // as linked
  std::string original;   // its bytes in the file
  std::string body;       // the new bytes
  std::string otherwise;  // what stays untaped when it cannot be written
};

struct GoClockSites {
  AddressRange nanotime;                    // runtime.nanotime, as linked
  AddressRange time_now;                    // time.now: time.Now()'s two reads, made itself
  std::vector<AddressRange> program_reads;  // time.Since, time.Until, time.init*
  // runtime.nanotime's (when it has the shape expected), and runtime.cputicks': the CPU's
  // timestamp counter (RDTSC), which seeds each thread's fastrand (map iteration order, select's
  // choice) beside AT_RANDOM's bytes, reads 0 (no system call could serve it).
  std::vector<TextPatch> patches;
  bool position_independent = false;  // ET_DYN: every address moves by the load bias
  uint64_t entry = 0;                 // e_entry, to find that bias from AT_ENTRY

  // Whether runtime.nanotime's reads name their caller.
  bool patchable() const {
    for (const TextPatch& patch : patches) {
      if (patch.function == "runtime.nanotime") return true;
    }
    return false;
  }
};

// Reads `program`'s ELF symbol table and the bytes of the functions to patch (at most
// kMostTextPatches). Never throws; a program that is not Go, is stripped or has another shape
// gives no patches.
GoClockSites go_clock_sites(const std::string& program);

// How far process `pid`'s image was moved from its link-time addresses (0 unless
// position-independent; its auxiliary vector's AT_ENTRY against e_entry).
uint64_t load_bias(pid_t pid, const GoClockSites& sites);
// The same from the AT_ENTRY value the process's auxiliary vector holds.
uint64_t load_bias(uint64_t at_entry, const GoClockSites& sites);

// How writing one patch went, as plain data (it crosses the set-up channel; see hide_vdso).
struct TextPatchResult {
  enum class Outcome : uint8_t { written, unreadable, elsewhere, unwritable };
  Outcome outcome = Outcome::written;
  int error = 0;  // errno of the failed read or write
};
constexpr size_t kMostTextPatches = 4;
using TextPatchResults = std::array<TextPatchResult, kMostTextPatches>;

// The patches, written into `pid`'s text (stopped under ptrace) with its image moved by `bias`.
// Async-signal-safe: it allocates nothing (a pid namespace's init, forked from the threaded
// supervisor, runs it). False when one was not written; `results` says which and why.
bool patch_go_clock(pid_t pid, const GoClockSites& sites, uint64_t bias, TextPatchResults& results);
// For each patch not written: what failed and what stays untaped for it ("; " between them).
std::string describe_patch_failures(const GoClockSites& sites, const TextPatchResults& results);

// Whether a clock_gettime notification at `instruction_pointer` whose third argument is
// `caller` is the program's read (time.Now, or time.Since, time.Until, time.init through the
// patched runtime.nanotime) or the runtime's (timers); not_package_time for any other (the
// runtime's nanotime1). Addresses as the process sees them; `bias` from load_bias().
enum class GoClockRead { not_package_time, program, runtime };
GoClockRead classify_go_clock_read(const GoClockSites& sites, uint64_t bias,
                                   uint64_t instruction_pointer, uint64_t caller);
// For a read classify_go_clock_read calls the program's: the lane it is taped in, the function
// of the package time that made it ("time.now", "time.Since", "time.Until", "time.init"), so that
// a replay hands each its own values whichever goroutine reads first; else empty.
std::string_view go_clock_lane(const GoClockSites& sites, uint64_t bias,
                               uint64_t instruction_pointer, uint64_t caller);

}  // namespace tapedeck::floor
