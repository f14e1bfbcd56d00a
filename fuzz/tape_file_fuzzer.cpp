// libFuzzer target for tape files as they arrive in a pull request: the bytes are a file that
// every command opens by its content, a plain tape, a zstd-compressed one or a pack (a
// zstd-compressed tar). Each case is read to its end as a tape (TapeReader::open: the decompressor,
// a torn frame, the pack's unpacking into a private folder), and unpacked into a folder as
// `tapedeck unpack` does. Neither may crash, hang or write outside its folder: after every case a
// canary beside the folder is unchanged, and the folder holds nothing but a pack's three kinds of
// member, as regular files.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/pack.hpp"

namespace {

namespace fs = std::filesystem;

struct World {
  fs::path base;
  World() {
    char pattern[] = "/tmp/tapedeck-file-fuzz-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    base = pattern;
    fs::create_directories(base / "canary");
    std::ofstream(base / "canary" / "keep.txt") << "canary";
  }
  ~World() {
    std::error_code ignored;
    fs::remove_all(base, ignored);
  }
};

// Whether `out` holds only what unpack may write: NAME.tape, NAME.tape.manifest and
// NAME.tape.cas/<64 hex>, regular files and that one folder.
bool only_members(const fs::path& out) {
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(out, error); it != fs::end(it);
       it.increment(error)) {
    const fs::path relative = it->path().lexically_relative(out);
    const bool folder = it->is_directory(error) && !it->is_symlink(error);
    const bool file = it->is_regular_file(error) && !it->is_symlink(error);
    const std::string name = relative.string();
    if (folder && name.ends_with(".tape.cas")) continue;
    if (!file) return false;
    if (relative.has_parent_path()) {
      if (!relative.parent_path().string().ends_with(".tape.cas") ||
          !tapedeck::is_valid_cas_name(relative.filename().string())) {
        return false;
      }
    } else if (!name.ends_with(".tape") && !name.ends_with(".tape.manifest")) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  const fs::path input = world.base / "in.tdk";
  {
    std::ofstream file(input, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto reader = tapedeck::TapeReader::open(input, tapedeck::ReaderOptions{.threads = 1});
    while (reader->read() != nullptr) {
    }
  } catch (const std::exception&) {  // refused, with a message: what the CLI prints
  }
  const fs::path out = world.base / "out";
  std::error_code ignored;
  fs::remove_all(out, ignored);
  fs::create_directories(out);
  try {
    tapedeck::pack::unpack(input, out, /*overwrite=*/true);
  } catch (const std::exception&) {
  }
  std::ifstream canary(world.base / "canary" / "keep.txt");
  std::string kept((std::istreambuf_iterator<char>(canary)), std::istreambuf_iterator<char>());
  if (kept != "canary" || !only_members(out)) std::abort();
  for (const auto& entry : fs::directory_iterator(world.base)) {
    const std::string name = entry.path().filename().string();
    if (name != "in.tdk" && name != "out" && name != "canary") std::abort();
  }
  return 0;
}
