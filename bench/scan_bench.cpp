// The credential scan's own cost on a tape: secrets::find over every line of TAPE and every entry
// of its sidecar, all read into memory first, so that only the scan is timed (the recorder scans
// each payload as it is recorded; this is the same work over a whole tape). bench/run.sh sets the
// median against `tapedeck fmt` of the same tape.
//
// Usage: scan_bench TAPE ROUNDS  ->  "scan_s S bytes B findings F" (S the median of ROUNDS)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tapedeck/secrets.hpp"

namespace {

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "scan_bench: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::atoi(argv[2]) < 1) {
    std::fprintf(stderr, "usage: scan_bench TAPE ROUNDS\n");
    return 2;
  }
  const std::filesystem::path tape = argv[1];
  const int rounds = std::atoi(argv[2]);
  const std::string lines = read_whole(tape);
  std::vector<std::string> entries;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(tape.string() + ".cas", error)) {
    if (entry.is_regular_file()) entries.push_back(read_whole(entry.path()));
  }
  size_t bytes = lines.size();
  for (const std::string& entry : entries) bytes += entry.size();

  std::vector<double> seconds;
  size_t findings = 0;
  for (int round = 0; round < rounds; ++round) {
    findings = 0;
    const auto start = std::chrono::steady_clock::now();
    for (size_t at = 0; at < lines.size();) {
      size_t end = lines.find('\n', at);
      if (end == std::string::npos) end = lines.size();
      findings += tapedeck::secrets::find(std::string_view(lines).substr(at, end - at)).size();
      at = end + 1;
    }
    for (const std::string& entry : entries) findings += tapedeck::secrets::find(entry).size();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  std::printf("scan_s %.4f bytes %zu findings %zu\n", seconds[seconds.size() / 2], bytes, findings);
  return 0;
}
