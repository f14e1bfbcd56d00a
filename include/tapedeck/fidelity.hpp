// The fidelity oracle: compares a recorded tape with a replay's, step by step, and names every
// record where they diverge.
//
// Modes:
//   byte_identical  every field of every record, seq and both clocks included
//   semantic        what the run consumed and did, in order, with time as drift: seq, virtual
//                   and monotonic stamps and process durations may differ, and a stretch of
//                   clock reads and timed-out waits (waited clock_sleeps) between two other
//                   records is timing as a whole (runtimes poll the clock while they wait, from
//                   several threads, and a fast replay waits less): its values, sources and
//                   length may differ, the difference in length counted in
//                   unmatched_clock_reads. Content hashes, digests, paths, args gate.
//   outcome         only the end state: the final set of files written (path -> content hash),
//                   the exit code of the last subprocess, the number of LLM calls
//   phase_aware     user_script records strict (every field but seq), runtime_finalize records
//                   semantic, and runtime_finalize clock reads ignored
// Records are aligned by position (after phase_aware drops the ignored clock reads); a record one
// side has and the other lacks is missing_in_replay / missing_in_recorded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tapedeck/codec.hpp"
#include "tapedeck/tape.hpp"

namespace tapedeck::fidelity {

enum class Mode { byte_identical, semantic, outcome, phase_aware };
std::optional<Mode> parse_mode(std::string_view text);  // "byte-identical", "semantic", …
std::string_view to_string(Mode mode);

struct Divergence {
  uint64_t seq = 0;      // the recorded record's seq (the replay's, for missing_in_recorded)
  std::string category;  // the first differing field, e.g. llm_request_digest
  std::string message;   // both sides' values, and any further fields that differ
  // The two records' canonical lines (without '\n'); empty on the side that has none, and for
  // outcome divergences.
  std::string recorded_line;
  std::string replay_line;
};

struct Report {
  Mode mode = Mode::semantic;
  uint64_t recorded_records = 0;
  uint64_t replay_records = 0;
  std::vector<Divergence> divergences;  // in record order (outcome: files, exit code, LLM calls)
  // What is no divergence but a user should know, semantic and outcome modes: the program's
  // code changed between the runs ("code changed since the recording: agent.py (recorded …,
  // now …)"), read from file_read records marked `code`. What the changed code then did
  // differently is the verdict.
  std::vector<std::string> notes;
  // Records that matched their counterpart, counted among the ones the mode weighs (semantic:
  // all but clock reads and timed-out waits, which are timing).
  uint64_t matched_records = 0;
  uint64_t unmatched_clock_reads = 0;  // semantic: extra clock reads (and timed-out waits) one
                                       // side made (see above)
  // matched_records / the larger side's weighed records (1 when both have none): a replay that
  // stopped halfway scores about 0.5 however many clock reads either side made; outcome: 1 or 0.
  double score = 1.0;

  bool identical() const { return divergences.empty(); }
};

// Compares two tapes read in lockstep: memory stays flat whatever their size (outcome mode keeps
// the set of files written).
Report compare(TapeReader& recorded, TapeReader& replay, Mode mode);
Report compare(const Tape& recorded, const Tape& replay, Mode mode);

}  // namespace tapedeck::fidelity
