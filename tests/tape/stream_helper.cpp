// A streaming recorder the durability tests can kill, starve of disk, or run many of at once.
//
//   stream_helper record TAPE RECORDS_PER_THREAD THREADS [--interval MS] [--fsync
//   never|phase|always]
//       Records a mix of kinds (some with CAS payloads, a phase change now and then) from THREADS
//       threads, streaming to TAPE. Prints "flushed N" after every flush (N records are then in
//       the file), "done N" at the end, or one "error: ..." line and exits 2.
//   stream_helper check TAPE [MIN_RECORDS [EXACT_RECORDS]]
//       Loads TAPE and checks that seq runs 0..N-1 in order, that every CAS entry a record names is
//       present and whole, and that N >= MIN_RECORDS (== EXACT_RECORDS). A torn last line (what a
//       kill mid-write leaves) fails the check unless TAPEDECK_ALLOW_TORN is set. Prints
//       "records N" (and "torn B" for a torn line of B bytes); exits 1 on any mismatch.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tapedeck/cas.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/recorder.hpp"

using namespace tapedeck;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: stream_helper record TAPE RECORDS_PER_THREAD THREADS [--interval MS] "
               "[--fsync never|phase|always]\n"
               "       stream_helper check TAPE [MIN_RECORDS [EXACT_RECORDS]]\n");
  return 2;
}

void record_mix(Recorder& recorder, uint64_t count, uint64_t thread) {
  for (uint64_t i = 0; i < count; ++i) {
    switch (i % 5) {
      case 0:
        recorder.record(kind::ClockRead{ClockSource::wall, static_cast<int64_t>(i)});
        break;
      case 1:
        recorder.record(kind::ClockSleep{i});
        break;
      case 2:
        recorder.record(
            kind::FileRead{"/work/t" + std::to_string(thread) + "/f" + std::to_string(i),
                           std::string(64, 'a'), i});
        break;
      case 3: {
        // Every 997th such record carries a payload big enough for the CAS sidecar.
        std::string body = i % 997 == 3 ? std::string(5000, static_cast<char>('a' + i % 26))
                                        : "answer " + std::to_string(i);
        recorder.record(kind::LlmCall{"digest", recorder.payload_from_bytes(std::move(body))});
        break;
      }
      default:
        if (thread == 0 && i % 100'000 == 4) {
          auto finalize = enter_phase(Phase::runtime_finalize);
          recorder.record(kind::FileDelete{"/tmp/phase-" + std::to_string(i)});
        } else {
          recorder.record(kind::FileWrite{"/work/out", std::string(64, 'b'), i});
        }
    }
  }
}

int run_record(int argc, char** argv) {
  if (argc < 5) return usage();
  const std::string tape = argv[2];
  const uint64_t per_thread = std::strtoull(argv[3], nullptr, 10);
  const uint64_t threads = std::strtoull(argv[4], nullptr, 10);
  StreamOptions options;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--interval") == 0) {
      options.flush_interval = std::chrono::milliseconds(std::atoi(argv[i + 1]));
    } else if (std::strcmp(argv[i], "--fsync") == 0) {
      const std::string policy = argv[i + 1];
      options.fsync = policy == "never"    ? FsyncPolicy::never
                      : policy == "always" ? FsyncPolicy::every_flush
                                           : FsyncPolicy::at_phase_and_finish;
    } else {
      return usage();
    }
  }
  options.on_flush = [](uint64_t written) {
    std::printf("flushed %llu\n", static_cast<unsigned long long>(written));
    std::fflush(stdout);
  };
  auto recorder = std::make_shared<Recorder>(Clock::paused_at(1'700'000'000'000));
  RecorderGuard active = install_recorder(recorder);
  try {
    recorder->stream_to(tape, Header::current(1'700'000'000'000, "stream_helper", {}), options);
    std::vector<std::thread> workers;
    for (uint64_t t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        RecorderGuard mine = install_recorder(recorder);
        record_mix(*recorder, per_thread, t);
      });
    }
    for (auto& worker : workers) worker.join();
    recorder->finalize();
  } catch (const TapeError& error) {
    std::printf("error: %s\n", error.what());
    std::fflush(stdout);
    return 2;
  }
  std::printf("done %llu\n", static_cast<unsigned long long>(per_thread * threads));
  return 0;
}

int run_check(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string path = argv[2];
  const uint64_t min_records = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  const bool exact = argc > 4;
  const uint64_t exact_records = exact ? std::strtoull(argv[4], nullptr, 10) : 0;
  try {
    auto reader = TapeReader::open(path);
    uint64_t count = 0;
    std::vector<std::pair<std::string, uint64_t>> cas_refs;
    while (const Record* record = reader->read()) {
      if (record->seq != count) {
        std::printf("seq %llu at line %llu, expected %llu\n",
                    static_cast<unsigned long long>(record->seq),
                    static_cast<unsigned long long>(reader->line_number()),
                    static_cast<unsigned long long>(count));
        return 1;
      }
      for_each_payload(record->kind, [&](const Payload& payload) {
        if (payload.in_cas()) cas_refs.emplace_back(payload.content_hash, payload.cas_len_bytes);
      });
      ++count;
    }
    if (const auto& torn = reader->torn_tail()) {
      if (std::getenv("TAPEDECK_ALLOW_TORN") == nullptr) {
        std::printf("torn last line at line %llu\n", static_cast<unsigned long long>(torn->line));
        return 1;
      }
      std::printf("torn %llu\n", static_cast<unsigned long long>(torn->bytes));
    }
    for (const auto& [name, len] : cas_refs) {
      cas::Check check = cas::check_entry(cas_dir_for(path), name, len);
      if (check.problem != cas::Problem::none) {
        std::printf("%s\n", check.detail.c_str());
        return 1;
      }
    }
    std::printf("records %llu\n", static_cast<unsigned long long>(count));
    std::fflush(stdout);
    if (count < min_records || (exact && count != exact_records)) {
      std::printf("expected %s %llu records\n", exact ? "exactly" : "at least",
                  static_cast<unsigned long long>(exact ? exact_records : min_records));
      return 1;
    }
  } catch (const TapeError& error) {
    std::printf("error: %s\n", error.what());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  if (std::strcmp(argv[1], "record") == 0) return run_record(argc, argv);
  if (std::strcmp(argv[1], "check") == 0) return run_check(argc, argv);
  return usage();
}
