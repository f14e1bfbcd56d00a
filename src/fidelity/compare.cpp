#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <tuple>
#include <type_traits>

#include "tapedeck/fidelity.hpp"

#include "tapedeck/extensions.hpp"

namespace tapedeck::fidelity {

namespace {

// How much of a record a comparison looks at.
struct Level {
  bool seq;             // byte_identical only
  bool clocks;          // virtual_time_ms, monotonic_ms and the values clock reads gave
  bool process_timing;  // process_spawn duration_ms
  // The run's entropy seed: two recordings draw different randomness by design, as they read
  // other times; what the randomness changed (a path, some bytes) still shows where it lands.
  bool entropy_seed;
  // Code read with other bytes (file_read marked `code`) is a note, not a divergence.
  bool code_notes;
};
constexpr Level kByteIdentical{true, true, true, true, false};
constexpr Level kStrictButSeq{false, true, true, true, false};
constexpr Level kSemantic{false, false, false, false, true};

std::string code_note(const std::string& path, const std::string& recorded,
                      const std::string& replay) {
  return "code changed since the recording: " + path + " (recorded " + recorded.substr(0, 12) +
         ", now " + replay.substr(0, 12) + ")";
}

std::string shown_output(const std::string& hash, uint64_t size) {
  return std::to_string(size) + " bytes (" + hash.substr(0, 12) + ")";
}

struct FieldDiff {
  std::string_view category;
  std::string recorded;
  std::string replay;
};

std::string quoted(const std::string& text) {
  return "\"" + text + "\"";
}

template <typename T>
std::string show(const T& value) {
  if constexpr (std::is_same_v<T, std::string>) {
    return quoted(value);
  } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
    return value ? quoted(*value) : "null";
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + quoted(value[i]);
    return out + "]";
  } else {
    return std::to_string(value);
  }
}

class Differ {
 public:
  explicit Differ(std::vector<FieldDiff>& out) : out_(out) {}

  template <typename T>
  void field(std::string_view category, const T& recorded, const T& replay) {
    if (!(recorded == replay)) out_.push_back({category, show(recorded), show(replay)});
  }

 private:
  std::vector<FieldDiff>& out_;
};

void diff_kinds(const RecordKind& recorded, const RecordKind& replay, const Level& level,
                Differ& differ, std::vector<FieldDiff>& out, std::vector<std::string>& notes) {
  if (recorded.index() != replay.index() || kind_name(recorded) != kind_name(replay)) {
    out.push_back(
        {"kind_mismatch", std::string(kind_name(recorded)), std::string(kind_name(replay))});
    return;
  }
  std::visit(
      [&](const auto& a) {
        using K = std::decay_t<decltype(a)>;
        const K& b = std::get<K>(replay);
        if constexpr (std::is_same_v<K, kind::ClockRead>) {
          differ.field("clock_read_source", std::string(to_string(a.source)),
                       std::string(to_string(b.source)));
          // The time a clock gave is drift like any other: semantic leaves it to the strict modes.
          if (level.clocks) differ.field("clock_read_value", a.value_ms, b.value_ms);
          if (level.clocks) differ.field("clock_read_lane", a.lane, b.lane);
        } else if constexpr (std::is_same_v<K, kind::ClockSleep>) {
          differ.field("clock_sleep_duration", a.duration_ms, b.duration_ms);
          differ.field("clock_sleep_waited", a.waited, b.waited);
        } else if constexpr (std::is_same_v<K, kind::LlmCall>) {
          differ.field("llm_request_digest", a.request_digest, b.request_digest);
          differ.field("llm_response_hash", a.response.content_hash, b.response.content_hash);
        } else if constexpr (std::is_same_v<K, kind::FileRead>) {
          differ.field("file_path", a.path, b.path);
          if (level.code_notes && (a.code || b.code) && a.path == b.path) {
            if (a.content_hash != b.content_hash) {
              notes.push_back(code_note(a.path, a.content_hash, b.content_hash));
            }
          } else {
            differ.field("file_content_hash", a.content_hash, b.content_hash);
            differ.field("file_len_bytes", a.len_bytes, b.len_bytes);
          }
        } else if constexpr (std::is_same_v<K, kind::FileWrite>) {
          differ.field("file_path", a.path, b.path);
          differ.field("file_content_hash", a.content_hash, b.content_hash);
          differ.field("file_len_bytes", a.len_bytes, b.len_bytes);
          differ.field("file_by_subprocess", a.by_subprocess, b.by_subprocess);
          differ.field("file_mode", a.mode.value_or(0), b.mode.value_or(0));
        } else if constexpr (std::is_same_v<K, kind::FileDelete>) {
          differ.field("file_path", a.path, b.path);
          differ.field("file_by_subprocess", a.by_subprocess, b.by_subprocess);
        } else if constexpr (std::is_same_v<K, kind::ProcessSpawn>) {
          differ.field("process_program", a.program, b.program);
          differ.field("process_args", a.args, b.args);
          differ.field("process_cwd", a.cwd, b.cwd);
          differ.field("process_exit_code", a.exit_code, b.exit_code);
          differ.field("process_descended", a.descended, b.descended);
          if (level.process_timing) differ.field("process_duration", a.duration_ms, b.duration_ms);
          differ.field("process_stdout_hash", a.stdout_payload.content_hash,
                       b.stdout_payload.content_hash);
          differ.field("process_stderr_hash", a.stderr_payload.content_hash,
                       b.stderr_payload.content_hash);
        } else if (auto left = extension::program_outcome(a), right = extension::program_outcome(b);
                   left && right) {
          differ.field("outcome_exit_code", left->exit_code, right->exit_code);
          differ.field("outcome_stdout", shown_output(left->stdout_hash, left->stdout_size),
                       shown_output(right->stdout_hash, right->stdout_size));
          differ.field("outcome_stderr", shown_output(left->stderr_hash, left->stderr_size),
                       shown_output(right->stderr_hash, right->stderr_size));
        } else if (level.entropy_seed || a.name != "entropy") {
          differ.field("unknown_kind_content", a.raw_json, b.raw_json);
        }
      },
      recorded);
}

std::vector<FieldDiff> diff_records(const Record& recorded, const Record& replay,
                                    const Level& level, std::vector<std::string>& notes) {
  std::vector<FieldDiff> out;
  Differ differ(out);
  if (level.seq) differ.field("seq_mismatch", recorded.seq, replay.seq);
  differ.field("phase_mismatch", std::string(to_string(recorded.phase)),
               std::string(to_string(replay.phase)));
  if (level.clocks) {
    differ.field("virtual_time_drift", recorded.virtual_time_ms, replay.virtual_time_ms);
    differ.field("monotonic_drift", recorded.monotonic_ms, replay.monotonic_ms);
  }
  diff_kinds(recorded.kind, replay.kind, level, differ, out, notes);
  return out;
}

std::string line_of(const Record& record) {
  std::string line = encode_record_line(record);
  line.pop_back();
  return line;
}

Divergence divergence_from(const std::vector<FieldDiff>& diffs, const Record& recorded,
                           const Record& replay) {
  Divergence divergence;
  divergence.seq = recorded.seq;
  divergence.category = std::string(diffs.front().category);
  divergence.message = std::string(diffs.front().category) + ": recorded " +
                       diffs.front().recorded + ", replay " + diffs.front().replay;
  for (size_t i = 1; i < diffs.size(); ++i) {
    divergence.message += "; also " + std::string(diffs[i].category) + ": recorded " +
                          diffs[i].recorded + ", replay " + diffs[i].replay;
  }
  divergence.recorded_line = line_of(recorded);
  divergence.replay_line = line_of(replay);
  return divergence;
}

// Semantic mode's timing: a clock read, or a wait that timed out.
bool is_timing(const Record& record) {
  if (std::holds_alternative<kind::ClockRead>(record.kind)) return true;
  const auto* sleep = std::get_if<kind::ClockSleep>(&record.kind);
  return sleep != nullptr && sleep->waited;
}

// A tape's records (from a reader or from memory), minus the ones a mode ignores.
class Stream {
 public:
  using Source = std::function<const Record*()>;
  Stream(Source source, Mode mode) : source_(std::move(source)), mode_(mode) {}
  const Record* next() {
    if (!returned_.empty()) {
      // Counted when first read.
      current_ = std::move(returned_.front());
      returned_.pop_front();
      return &current_;
    }
    while (const Record* record = source_()) {
      ++count_;
      if (mode_ == Mode::phase_aware && record->phase == Phase::runtime_finalize &&
          std::holds_alternative<kind::ClockRead>(record->kind)) {
        continue;
      }
      if (mode_ != Mode::semantic || !is_timing(*record)) ++weighed_;
      return record;
    }
    return nullptr;
  }
  uint64_t count() const { return count_; }
  // The records the score weighs: all the mode compares, but semantic's timing.
  uint64_t weighed() const { return weighed_; }
  // Records read ahead and not used: next() gives them again, in this order, before the rest.
  void give_back(std::vector<Record> records) {
    for (auto at = records.rbegin(); at != records.rend(); ++at) {
      returned_.push_front(std::move(*at));
    }
  }

 private:
  std::deque<Record> returned_;
  Record current_;
  Source source_;
  Mode mode_;
  uint64_t count_ = 0;
  uint64_t weighed_ = 0;
};

// The end state outcome mode compares.
struct Outcome {
  std::map<std::string, std::pair<std::string, uint64_t>> files;  // path -> (hash, seq)
  std::optional<std::pair<int32_t, uint64_t>> last_exit;          // (exit code, seq)
  uint64_t llm_calls = 0;
  std::map<std::string, std::string> code;  // path -> the hash it was first read with
  std::optional<std::pair<extension::ProgramOutcome, uint64_t>>
      program;  // the run's outcome record

  void add(const Record& record) {
    if (const auto* read = std::get_if<kind::FileRead>(&record.kind); read && read->code) {
      code.try_emplace(read->path, read->content_hash);
    } else if (const auto* write = std::get_if<kind::FileWrite>(&record.kind)) {
      files[write->path] = {write->content_hash, record.seq};
    } else if (const auto* gone = std::get_if<kind::FileDelete>(&record.kind)) {
      files.erase(gone->path);
    } else if (const auto* spawn = std::get_if<kind::ProcessSpawn>(&record.kind)) {
      last_exit = {{spawn->exit_code, record.seq}};
    } else if (std::holds_alternative<kind::LlmCall>(record.kind)) {
      ++llm_calls;
    } else if (const auto* unknown = std::get_if<kind::Unknown>(&record.kind)) {
      if (auto outcome = extension::program_outcome(*unknown)) program = {{*outcome, record.seq}};
    }
  }
};

void compare_outcomes(const Outcome& recorded, const Outcome& replay, Report& report) {
  for (const auto& [path, hash] : recorded.code) {
    const auto now = replay.code.find(path);
    if (now != replay.code.end() && now->second != hash) {
      report.notes.push_back(code_note(path, hash, now->second));
    }
  }
  std::map<std::string, int> paths;
  for (const auto& [path, _] : recorded.files) paths[path];
  for (const auto& [path, _] : replay.files) paths[path];
  for (const auto& [path, _] : paths) {
    auto a = recorded.files.find(path);
    auto b = replay.files.find(path);
    const std::string left = a == recorded.files.end() ? "not written" : a->second.first;
    const std::string right = b == replay.files.end() ? "not written" : b->second.first;
    if (left == right) continue;
    report.divergences.push_back(
        {a != recorded.files.end() ? a->second.second : b->second.second, "outcome_files",
         "final content of " + quoted(path) + ": recorded " + left + ", replay " + right, "", ""});
  }
  if (recorded.last_exit.has_value() != replay.last_exit.has_value() ||
      (recorded.last_exit && recorded.last_exit->first != replay.last_exit->first)) {
    auto shown_exit = [](const auto& exit) {
      return exit ? std::to_string(exit->first) : std::string("no subprocess");
    };
    report.divergences.push_back(
        {recorded.last_exit ? recorded.last_exit->second
                            : (replay.last_exit ? replay.last_exit->second : 0),
         "outcome_exit_code",
         "exit code of the last subprocess: recorded " + shown_exit(recorded.last_exit) +
             ", replay " + shown_exit(replay.last_exit),
         "", ""});
  }
  if (recorded.program && !replay.program) {
    report.divergences.push_back({recorded.program->second, "outcome_missing",
                                  "the recording ended with the program's outcome; the replay "
                                  "has none (it was stopped, or recorded before outcomes)",
                                  "", ""});
  } else if (recorded.program && replay.program) {
    const extension::ProgramOutcome& a = recorded.program->first;
    const extension::ProgramOutcome& b = replay.program->first;
    const uint64_t seq = recorded.program->second;
    if (a.exit_code != b.exit_code) {
      report.divergences.push_back({seq, "outcome_exit_code",
                                    "the program's exit code: recorded " +
                                        std::to_string(a.exit_code) + ", replay " +
                                        std::to_string(b.exit_code),
                                    "", ""});
    }
    auto printed = [&](const char* category, const char* stream, const std::string& left_hash,
                       uint64_t left_size, const std::string& right_hash, uint64_t right_size) {
      if (left_hash == right_hash) return;
      report.divergences.push_back({seq, category,
                                    std::string("what the program printed on ") + stream +
                                        ": recorded " + shown_output(left_hash, left_size) +
                                        ", replay " + shown_output(right_hash, right_size),
                                    "", ""});
    };
    printed("outcome_stdout", "stdout", a.stdout_hash, a.stdout_size, b.stdout_hash, b.stdout_size);
    printed("outcome_stderr", "stderr", a.stderr_hash, a.stderr_size, b.stderr_hash, b.stderr_size);
  }
  if (recorded.llm_calls != replay.llm_calls) {
    report.divergences.push_back({0, "outcome_llm_calls",
                                  "LLM calls: recorded " + std::to_string(recorded.llm_calls) +
                                      ", replay " + std::to_string(replay.llm_calls),
                                  "", ""});
  }
}

}  // namespace

std::optional<Mode> parse_mode(std::string_view text) {
  if (text == "byte-identical" || text == "byte_identical") return Mode::byte_identical;
  if (text == "semantic") return Mode::semantic;
  if (text == "outcome") return Mode::outcome;
  if (text == "phase-aware" || text == "phase_aware") return Mode::phase_aware;
  return std::nullopt;
}

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::byte_identical:
      return "byte-identical";
    case Mode::semantic:
      return "semantic";
    case Mode::outcome:
      return "outcome";
    case Mode::phase_aware:
      return "phase-aware";
  }
  return "semantic";
}

namespace {

// The path a file read, write or delete is about; none for any other record.
const std::string* file_path_of(const Record& record) {
  if (const auto* read = std::get_if<kind::FileRead>(&record.kind)) return &read->path;
  if (const auto* write = std::get_if<kind::FileWrite>(&record.kind)) return &write->path;
  if (const auto* deleted = std::get_if<kind::FileDelete>(&record.kind)) return &deleted->path;
  return nullptr;
}

// What an effect did, for a line about one that has no match: "read", "written", "deleted".
std::string_view verb_of(const Record& record) {
  if (std::holds_alternative<kind::FileRead>(record.kind)) return "read";
  return std::holds_alternative<kind::FileWrite>(record.kind) ? "written" : "deleted";
}

std::string content_of(const Record& record) {
  if (const auto* read = std::get_if<kind::FileRead>(&record.kind)) return read->content_hash;
  if (const auto* write = std::get_if<kind::FileWrite>(&record.kind)) return write->content_hash;
  return "";
}

// Semantic mode: file effects that nothing orders among themselves are compared path by path.
// Node reads its modules from a thread pool, in another order each run; tar reads its inputs
// while the child it forked opens the archive for gzip. So a run of reads, writes and deletes
// (through clock reads, which are timing, counted as above) ends at a record that orders: a
// subprocess, an LLM call, a sleep. Within it, effects on different paths may come in any order;
// each path's effects are matched in order, field by field as anywhere else (a read of other
// bytes, a write made in another phase, a delete for a write). An effect one side has and the
// other has not is named (`file_read_set`, `file_effect_set`). On return `a` and `b` are the
// records after the runs.
void compare_file_runs(const Record*& a, const Record*& b, Stream& recorded, Stream& replay,
                       Report& report) {
  // Each path's effects in order, per side, paths in the order first met.
  std::vector<std::string> paths;
  std::map<std::string, std::vector<Record>> on_path[2];
  uint64_t clocks[2] = {0, 0};
  auto gather = [&](const Record*& record, Stream& stream, int side) {
    for (; record != nullptr; record = stream.next()) {
      if (is_timing(*record)) {
        ++clocks[side];
        continue;
      }
      const std::string* path = file_path_of(*record);
      if (path == nullptr) break;
      auto [place, fresh] = on_path[side].try_emplace(*path);
      if (fresh && !on_path[1 - side].contains(*path)) paths.push_back(*path);
      place->second.push_back(*record);
    }
  };
  gather(a, recorded, 0);
  gather(b, replay, 1);
  report.unmatched_clock_reads +=
      clocks[0] > clocks[1] ? clocks[0] - clocks[1] : clocks[1] - clocks[0];
  const size_t first_new = report.divergences.size();
  for (const std::string& path : paths) {
    const std::vector<Record>& left = on_path[0][path];
    const std::vector<Record>& right = on_path[1][path];
    const size_t both = std::min(left.size(), right.size());
    for (size_t i = 0; i < both; ++i) {
      const std::vector<FieldDiff> diffs = diff_records(left[i], right[i], kSemantic, report.notes);
      if (diffs.empty()) {
        ++report.matched_records;
        continue;
      }
      // Named by its path: "file_content_hash of \"node_modules/x/index.mjs\": recorded …".
      Divergence divergence = divergence_from(diffs, left[i], right[i]);
      divergence.message.insert(divergence.category.size(), " of " + quoted(path));
      report.divergences.push_back(std::move(divergence));
    }
    // The ones past the other side's, counted by what they did with which bytes.
    const bool recording_has_more = left.size() > right.size();
    const std::vector<Record>& longer = recording_has_more ? left : right;
    std::map<std::pair<std::string_view, std::string>, std::pair<uint64_t, uint64_t>> extra;
    for (size_t i = both; i < longer.size(); ++i) {
      auto [counted, fresh] =
          extra.try_emplace({verb_of(longer[i]), content_of(longer[i])}, 0, longer[i].seq);
      ++counted->second.first;
    }
    for (const auto& [what, count] : extra) {
      const auto& [verb, hash] = what;
      report.divergences.push_back(
          {count.second, verb == "read" ? "file_read_set" : "file_effect_set",
           "among file effects nothing orders, " + quoted(path) +
               (hash.empty() ? "" : " (" + hash.substr(0, 12) + ")") + " was " + std::string(verb) +
               " " + std::to_string(count.first) + " time(s) more " +
               (recording_has_more ? "by the recording" : "by the replay"),
           "", ""});
    }
  }
  std::sort(report.divergences.begin() + static_cast<std::ptrdiff_t>(first_new),
            report.divergences.end(),
            [](const Divergence& x, const Divergence& y) { return x.seq < y.seq; });
}

std::string command_of(const kind::ProcessSpawn& spawn) {
  std::string command = "`" + spawn.program;
  for (const std::string& arg : spawn.args) command += " " + arg;
  return command + "`";
}

// A subprocess taped in a run of ones that overlapped, with what followed its spawn record and
// goes with it (its changes to the workspace; clock reads, which are timing).
struct Member {
  std::vector<Record> records;  // the spawn first
  const kind::ProcessSpawn& spawn() const { return std::get<kind::ProcessSpawn>(records[0].kind); }
};

// Takes the spawn at `record` and what goes with it.
Member take_member(const Record*& record, Stream& stream) {
  Member member;
  member.records.push_back(*record);
  for (record = stream.next();
       record != nullptr && (is_timing(*record) || extension::is_subprocess_change(record->kind));
       record = stream.next()) {
    member.records.push_back(*record);
  }
  return member;
}

// Semantic mode: subprocesses that run at the same time (a pipeline, `&` jobs, a parallel
// make) end in either order, and each side tapes them as they end (a replay tapes one it plays
// back as it is handed out). Nor does the recording's timing say which may come apart: a replay
// skips sleeps, so `(sleep 1; date) & cat x & wait` hands out `date` before `cat`'s stand-in
// asks, though they were 1 s apart when recorded. So a run of subprocesses with nothing between
// them but what goes with each (clock reads, the changes a tool made) is compared as a set:
// each recorded one matched to a replayed one by program, arguments and cwd, whatever the
// order, then field by field as anywhere else. One that only one side ran is named. Order
// still gates across any other record (a file the program read, an LLM call), and
// in byte-identical mode. `a` is a process_spawn record; on return `a` and `b` are the records
// after the runs. False (nothing read) when the recording's run is one subprocess.
bool compare_spawn_runs(const Record*& a, const Record*& b, Stream& recorded, Stream& replay,
                        Report& report) {
  std::vector<Member> left;
  left.push_back(take_member(a, recorded));
  while (a != nullptr && std::holds_alternative<kind::ProcessSpawn>(a->kind)) {
    left.push_back(take_member(a, recorded));
  }
  if (left.size() == 1) {
    // Not a run: the records read are given back, to be compared in order.
    std::vector<Record> taken = std::move(left[0].records);
    if (a != nullptr) taken.push_back(*a);
    recorded.give_back(std::move(taken));
    a = recorded.next();
    return false;
  }
  std::vector<Member> right;
  while (b != nullptr && std::holds_alternative<kind::ProcessSpawn>(b->kind)) {
    right.push_back(take_member(b, replay));
  }
  // Pairs: the same command first, then the same program (a changed argument is a field's
  // divergence, not a missing and an extra subprocess).
  std::vector<int> pair(left.size(), -1);
  std::vector<bool> taken(right.size(), false);
  const auto match = [&](auto same) {
    for (size_t i = 0; i < left.size(); ++i) {
      for (size_t j = 0; j < right.size() && pair[i] < 0; ++j) {
        if (!taken[j] && same(left[i].spawn(), right[j].spawn())) {
          pair[i] = static_cast<int>(j);
          taken[j] = true;
        }
      }
    }
  };
  match([](const kind::ProcessSpawn& x, const kind::ProcessSpawn& y) {
    return x.program == y.program && x.args == y.args && x.cwd == y.cwd &&
           x.stdout_payload.content_hash == y.stdout_payload.content_hash;
  });
  match([](const kind::ProcessSpawn& x, const kind::ProcessSpawn& y) {
    return x.program == y.program && x.args == y.args && x.cwd == y.cwd;
  });
  match([](const kind::ProcessSpawn& x, const kind::ProcessSpawn& y) {
    return x.program == y.program;
  });
  const size_t first_new = report.divergences.size();
  for (size_t i = 0; i < left.size(); ++i) {
    if (pair[i] < 0) {
      const Record& spawn = left[i].records[0];
      report.divergences.push_back(
          {spawn.seq, "process_set",
           "among subprocesses that ran at the same time, the recording ran " +
               command_of(left[i].spawn()) + " and the replay did not",
           line_of(spawn), ""});
      continue;
    }
    // Each with what went with it, in order; clock reads are timing.
    std::vector<const Record*> ours, theirs;
    uint64_t clocks[2] = {0, 0};
    for (const Record& record : left[i].records) {
      is_timing(record) ? ++clocks[0] : (ours.push_back(&record), 0);
    }
    for (const Record& record : right[static_cast<size_t>(pair[i])].records) {
      is_timing(record) ? ++clocks[1] : (theirs.push_back(&record), 0);
    }
    report.unmatched_clock_reads +=
        clocks[0] > clocks[1] ? clocks[0] - clocks[1] : clocks[1] - clocks[0];
    for (size_t k = 0; k < std::max(ours.size(), theirs.size()); ++k) {
      if (k >= theirs.size()) {
        report.divergences.push_back({ours[k]->seq, "missing_in_replay",
                                      "the replay's " + command_of(left[i].spawn()) + " has no " +
                                          std::string(kind_name(ours[k]->kind)) +
                                          " record like this",
                                      line_of(*ours[k]), ""});
        continue;
      }
      if (k >= ours.size()) {
        report.divergences.push_back({left[i].records[0].seq, "missing_in_recorded",
                                      "the replay's " + command_of(left[i].spawn()) + " has this " +
                                          std::string(kind_name(theirs[k]->kind)) + " record more",
                                      "", line_of(*theirs[k])});
        continue;
      }
      const std::vector<FieldDiff> diffs =
          diff_records(*ours[k], *theirs[k], kSemantic, report.notes);
      if (diffs.empty()) {
        ++report.matched_records;
      } else {
        report.divergences.push_back(divergence_from(diffs, *ours[k], *theirs[k]));
      }
    }
  }
  for (size_t j = 0; j < right.size(); ++j) {
    if (taken[j]) continue;
    const Record& spawn = right[j].records[0];
    report.divergences.push_back({left.back().records[0].seq, "process_set",
                                  "among subprocesses that ran at the same time, the replay ran " +
                                      command_of(right[j].spawn()) + " and the recording did not",
                                  "", line_of(spawn)});
  }
  std::sort(report.divergences.begin() + static_cast<std::ptrdiff_t>(first_new),
            report.divergences.end(),
            [](const Divergence& x, const Divergence& y) { return x.seq < y.seq; });
  return true;
}

Report compare_streams(Stream& recorded, Stream& replay, Mode mode) {
  Report report;
  report.mode = mode;

  if (mode == Mode::outcome) {
    Outcome left, right;
    while (const Record* record = recorded.next()) left.add(*record);
    while (const Record* record = replay.next()) right.add(*record);
    compare_outcomes(left, right, report);
  } else {
    // Timing: clock reads, and waits that timed out (an event loop's sleeps, as many as it
    // took to wait: a fast replay may take fewer).
    auto is_clock_read = [](const Record* record) {
      return record != nullptr && is_timing(*record);
    };
    auto is_file_effect = [](const Record* record) {
      return record != nullptr && file_path_of(*record) != nullptr;
    };
    const Record* a = recorded.next();
    const Record* b = replay.next();
    for (;;) {
      if (mode == Mode::semantic && (is_clock_read(a) || is_clock_read(b))) {
        // A stretch of clock reads is timing: a runtime polls the clock while it waits, from
        // several threads, and a fast replay waits less. Both sides read the clock here; the
        // reads one side made beyond the other's are counted, not diverged.
        uint64_t left = 0, right = 0;
        for (; is_clock_read(a); a = recorded.next()) ++left;
        for (; is_clock_read(b); b = replay.next()) ++right;
        report.unmatched_clock_reads += left > right ? left - right : right - left;
      }
      if (mode == Mode::semantic && is_file_effect(a) && is_file_effect(b)) {
        compare_file_runs(a, b, recorded, replay, report);
        continue;  // a and b are the records after the runs
      }
      if (mode == Mode::semantic && a != nullptr &&
          std::holds_alternative<kind::ProcessSpawn>(a->kind) &&
          compare_spawn_runs(a, b, recorded, replay, report)) {
        continue;  // a and b are the records after the runs
      }
      if (a == nullptr && b == nullptr) break;
      if (b == nullptr) {
        report.divergences.push_back(
            {a->seq, "missing_in_replay",
             "the replay ended before this " + std::string(kind_name(a->kind)) + " record",
             line_of(*a), ""});
        a = recorded.next();
        continue;
      }
      if (a == nullptr) {
        report.divergences.push_back({b->seq, "missing_in_recorded",
                                      "the replay has this " + std::string(kind_name(b->kind)) +
                                          " record past the recording's end",
                                      "", line_of(*b)});
        b = replay.next();
        continue;
      }
      Level level = kSemantic;
      if (mode == Mode::byte_identical) level = kByteIdentical;
      if (mode == Mode::phase_aware && a->phase == Phase::user_script) level = kStrictButSeq;
      std::vector<FieldDiff> diffs = diff_records(*a, *b, level, report.notes);
      if (diffs.empty()) {
        ++report.matched_records;
      } else {
        report.divergences.push_back(divergence_from(diffs, *a, *b));
      }
      a = recorded.next();
      b = replay.next();
    }
  }
  std::sort(report.notes.begin(), report.notes.end());
  report.notes.erase(std::unique(report.notes.begin(), report.notes.end()), report.notes.end());
  report.recorded_records = recorded.count();
  report.replay_records = replay.count();
  if (mode == Mode::outcome) {
    report.score = report.divergences.empty() ? 1.0 : 0.0;
  } else {
    const uint64_t weighed = std::max(recorded.weighed(), replay.weighed());
    report.score = weighed == 0
                       ? 1.0
                       : static_cast<double>(report.matched_records) / static_cast<double>(weighed);
  }
  return report;
}

}  // namespace

Report compare(TapeReader& recorded, TapeReader& replay, Mode mode) {
  Stream left([&] { return recorded.read(); }, mode);
  Stream right([&] { return replay.read(); }, mode);
  return compare_streams(left, right, mode);
}

Report compare(const Tape& recorded, const Tape& replay, Mode mode) {
  auto from = [](const Tape& tape) {
    return [&tape, next = size_t{0}]() mutable -> const Record* {
      return next < tape.records.size() ? &tape.records[next++] : nullptr;
    };
  };
  Stream left(from(recorded), mode);
  Stream right(from(replay), mode);
  return compare_streams(left, right, mode);
}

}  // namespace tapedeck::fidelity
