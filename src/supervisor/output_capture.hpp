// What the root program prints, kept for the run's outcome while it still reaches the terminal,
// file or pipe it was going to.
//
// For each of stdout and stderr the program gets, in place of the descriptor it would have had,
// the write end of a relay: a pseudo-terminal when the original is a terminal (so that isatty()
// stays true, with the terminal's window size and settings, output passed through unchanged), a
// pipe otherwise. A thread copies everything to the original descriptor as it comes, hashing it
// (BLAKE3, the tape's content hash) and keeping the first bytes. stdout and stderr keep a relay
// each even when they go to one file (a terminal, `2>&1`), so that the outcome does not depend
// on how a run was invoked; a line on each written at the same instant may then swap there.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace tapedeck::supervisor {

struct CapturedOutput {
  std::string content_hash;  // of everything written
  uint64_t size = 0;
  std::string head;       // the first bytes (at most kKeptBytes)
  bool complete = false;  // head is the whole output
  static constexpr size_t kKeptBytes = 1 << 20;
};

class OutputCapture {
 public:
  // Relays for this process's stdout and stderr (throws when a pipe or terminal cannot be had).
  OutputCapture();
  ~OutputCapture();
  OutputCapture(const OutputCapture&) = delete;
  OutputCapture& operator=(const OutputCapture&) = delete;

  // What the program gets as its descriptors 1 and 2 (dup2'd in the child before exec).
  int program_stdout() const { return write_end_[0]; }
  int program_stderr() const { return write_end_[1]; }
  // The program has the write ends: the supervisor's copies are closed (end of stream can come).
  void started();
  // Waits for the end of the output, at most `grace` (a background process of the tree may keep
  // the descriptors open), and stops relaying.
  void finish(std::chrono::milliseconds grace);
  const CapturedOutput& stdout_output() const;
  const CapturedOutput& stderr_output() const;

 private:
  struct Relay;
  std::unique_ptr<Relay> relays_[2];
  int write_end_[2] = {-1, -1};
};

}  // namespace tapedeck::supervisor
