// Records the anchor's two workloads (shared/anchors/seed-rust, `seedbench gen`) with tapedeck's
// recorder: same generator, same records, same paused clock. With one thread its tape must be
// byte-identical to the seed's; the compatibility test and the benchmarks rely on that.
//
// Usage: tape_gen N THREADS OUT [small]
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tapedeck/error.hpp"
#include "tapedeck/recorder.hpp"

namespace {

using namespace tapedeck;

uint64_t lcg(uint64_t& state) {
  state = state * 6364136223846793005ULL + 1442695040888963407ULL;
  return state >> 33;
}

std::string text(size_t len, uint64_t seed) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz \n\"\\{}";
  std::string out(len, '\0');
  for (char& c : out) c = kAlphabet[lcg(seed) % 32];
  return out;
}

std::string le_bytes(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

constexpr int64_t kEpochMs = 1'700'000'000'000;

void record_workload(Recorder& rec, uint64_t n, uint64_t seed) {
  uint64_t s = seed;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t r = lcg(s) % 100;
    if (r < 40) {
      rec.record(kind::ClockRead{r % 2 == 0 ? ClockSource::wall : ClockSource::monotonic,
                                 kEpochMs + static_cast<int64_t>(i)});
    } else if (r < 50) {
      rec.record(kind::ClockSleep{lcg(s) % 5000});
    } else if (r < 70) {
      static constexpr std::array<size_t, 5> kLens = {200, 1500, 3000, 9000, 65536};
      const size_t len = kLens[lcg(s) % 5];
      std::string digest = content_hash("req" + std::to_string(i));
      rec.record(kind::LlmCall{std::move(digest), rec.payload_from_bytes(text(len, i))});
    } else if (r < 80) {
      rec.record(kind::FileRead{"/work/src/file_" + std::to_string(i % 997) + ".rs",
                                content_hash(le_bytes(i)), i % 100000});
    } else if (r < 88) {
      rec.record(kind::FileWrite{"/work/out/o_" + std::to_string(i % 311) + ".json",
                                 content_hash(le_bytes(i + 7)), i % 4096});
    } else if (r < 90) {
      rec.record(kind::FileDelete{"/tmp/scratch_" + std::to_string(i % 101)});
    } else {
      static constexpr std::array<size_t, 4> kLens = {0, 80, 2000, 12000};
      const size_t len = kLens[lcg(s) % 4];
      kind::ProcessSpawn spawn;
      spawn.program = "/usr/bin/git";
      spawn.args = {"status", "--porcelain", "path " + std::to_string(i)};
      if (i % 3 != 0) spawn.cwd = "/work/repo";
      spawn.exit_code = static_cast<int32_t>(i % 3);
      spawn.duration_ms = i % 900;
      spawn.stdout_payload = rec.payload_from_bytes(text(len, i + 1));
      spawn.stderr_payload = rec.payload_from_bytes("");
      rec.record(std::move(spawn));
    }
  }
}

void record_small(Recorder& rec, uint64_t n, uint64_t seed) {
  uint64_t s = seed;
  for (uint64_t i = 0; i < n; ++i) {
    switch (lcg(s) % 4) {
      case 0:
        rec.record(kind::ClockRead{ClockSource::wall, kEpochMs + static_cast<int64_t>(i)});
        break;
      case 1:
        rec.record(kind::ClockSleep{lcg(s) % 5000});
        break;
      case 2: {
        char hash[65];
        std::snprintf(hash, sizeof hash, "%064llx", static_cast<unsigned long long>(lcg(s)));
        rec.record(kind::FileRead{"/work/src/module_" + std::to_string(i % 13) + "/file_" +
                                      std::to_string(i % 997) + ".py",
                                  hash, i % 100000});
        break;
      }
      default:
        rec.record(kind::FileDelete{"/tmp/scratch \"" + std::to_string(i % 101) + "\""});
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5 || (argc == 5 && std::strcmp(argv[4], "small") != 0)) {
    std::fprintf(stderr, "usage: tape_gen N THREADS OUT [small]\n");
    return 2;
  }
  const uint64_t n = std::strtoull(argv[1], nullptr, 10);
  const uint64_t threads = std::strtoull(argv[2], nullptr, 10);
  const bool small = argc == 5;
  auto rec = std::make_shared<Recorder>(Clock::paused_at(kEpochMs));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (uint64_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      if (small) {
        record_small(*rec, n, 42 + t);
      } else {
        record_workload(*rec, n, 42 + t);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const auto t1 = std::chrono::steady_clock::now();
  try {
    Tape tape = rec->snapshot(Header::current(kEpochMs, "bench.harn", {"--x"}));
    tape.persist(argv[3]);
    const auto t2 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "record_s %.4f persist_s %.4f records %zu cas %zu\n",
                 std::chrono::duration<double>(t1 - t0).count(),
                 std::chrono::duration<double>(t2 - t1).count(), tape.records.size(),
                 tape.cas_entries().size());
  } catch (const TapeError& error) {
    std::fprintf(stderr, "tape_gen: %s\n", error.what());
    return 2;
  }
  return 0;
}
