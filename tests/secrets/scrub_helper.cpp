// Drives scrub_kill_test.py: writes a tape on which a value of no credential shape sits in every
// place a scrub reaches, and scrubs such a tape of it (what a run's late scrub does), so that the
// test can kill the scrub at any point.
//
//   scrub_helper make TAPE VALUE N   N groups of records holding VALUE (command line, a printed
//                                     output in the sidecar, a file's bytes) and one without it
//   scrub_helper journal TAPE VALUE  notes VALUE in TAPE's scrub journal
//   scrub_helper scrub TAPE VALUE    notes VALUE in TAPE's scrub journal, prints "scrubbing",
//                                     scrubs TAPE of VALUE, prints "done"
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tapedeck/error.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/tape.hpp"

namespace {

using namespace tapedeck;

void append(Tape& tape, RecordKind kind) {
  Record record;
  record.seq = tape.records.size();
  record.kind = std::move(kind);
  tape.records.push_back(std::move(record));
}

// About `size` bytes of ordinary text, different for each `n`, with `value` in the middle.
std::string text_holding(const std::string& value, size_t size, size_t n) {
  std::string out;
  while (out.size() < size / 2) out += "line " + std::to_string(n) + " of the output\n";
  out += "token " + value + "\n";
  while (out.size() < size) out += "and more of it, " + std::to_string(n) + "\n";
  return out;
}

int make(const std::string& path, const std::string& value, size_t groups) {
  Tape tape(Header::current());
  for (size_t n = 0; n < groups; ++n) {
    append(tape, kind::ProcessSpawn{"/usr/bin/tool",
                                    {"--token", value},
                                    ".",
                                    0,
                                    1,
                                    tape.add_payload(text_holding(value, 16 * 1024, n)),
                                    tape.add_payload("")});
    const std::string file = text_holding(value, 8 * 1024, n + groups);
    const std::string hash = content_hash(file);
    tape.cas_entries()[hash] = file;
    append(tape, kind::FileRead{"notes-" + std::to_string(n) + ".txt", hash, file.size()});
    append(tape,
           kind::LlmCall{content_hash(std::to_string(n)),
                         tape.add_payload(std::string(6000, static_cast<char>('a' + n % 26)))});
  }
  tape.persist(path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "make" && argc == 5)
      return make(argv[2], argv[3], std::strtoull(argv[4], nullptr, 10));
    if (command == "journal" && argc == 4) {
      secrets::note_pending_scrub(argv[2], {argv[3]});
      return 0;
    }
    if (command == "scrub" && argc == 4) {
      // As a recording does when it learns the value (Recorder::add_secret), before its scrub.
      secrets::note_pending_scrub(argv[2], {argv[3]});
      std::printf("scrubbing\n");
      std::fflush(stdout);
      const secrets::ScrubReport report = secrets::scrub_tape(argv[2], {argv[3]});
      std::printf("done %llu\n", static_cast<unsigned long long>(report.credentials));
      return 0;
    }
  } catch (const TapeError& error) {
    std::fprintf(stderr, "scrub_helper: %s\n", error.what());
    return 2;
  }
  std::fprintf(stderr,
               "usage: scrub_helper make TAPE VALUE N | journal TAPE VALUE | scrub TAPE VALUE\n");
  return 2;
}
