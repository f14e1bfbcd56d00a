// libFuzzer target for hostile tapes: every record of a mutated tape that names a path (file
// writes, deletes, folders made, a subprocess's cwd) is applied as a replay applies it, in a
// replay's view (a copy of a small workspace) holding links a program could have made (to /, to
// a canary folder beside the workspace, to a file in it). Twice: once through the gate a replay
// passes a tape through (tape_paths.hpp), once straight to the view, whose walk must hold alone.
// After every case, nothing outside the view has changed: the canary's listing and bytes, the
// workspace, and no file made in /tmp by the names the dictionary steers toward.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "supervisor/workspace_view.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/extensions.hpp"
#include "tapedeck/tape_paths.hpp"

namespace {

namespace fs = std::filesystem;
using tapedeck::supervisor::WorkspaceView;

struct World {
  fs::path base;
  std::unique_ptr<WorkspaceView> view;
  std::string outside_before;

  World() {
    char pattern[] = "/tmp/tapedeck-effects-fuzz-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    base = pattern;
    fs::create_directories(base / "ws" / "d");
    fs::create_directories(base / "canary" / "inner");
    std::ofstream(base / "canary" / "keep.txt") << "canary";
    std::ofstream(base / "ws" / "in.txt") << "workspace";
    view = std::make_unique<WorkspaceView>(base / "ws", base / "scratch");
    view->make_copy();
    outside_before = outside();
  }
  ~World() {
    std::error_code ignored;
    fs::remove_all(base, ignored);
  }
  // Everything beside the view: each entry's path, type and size, and the canary's bytes.
  std::string outside() const {
    std::string listing;
    std::error_code error;
    for (auto it = fs::recursive_directory_iterator(base, error); it != fs::end(it);
         it.increment(error)) {
      const std::string path = it->path().string();
      if (path.starts_with(view->copy_root().string())) {
        it.disable_recursion_pending();
        continue;
      }
      const auto status = it->symlink_status(error);
      listing += path + " " + std::to_string(static_cast<int>(status.type())) + " " +
                 std::to_string(it->is_regular_file(error) ? it->file_size(error) : 0) + "\n";
    }
    std::ifstream kept(base / "canary" / "keep.txt");
    return listing + std::string(std::istreambuf_iterator<char>(kept), {});
  }
  // The view as a case starts it: its files gone, the links a program could have made.
  void reset_view() const {
    const fs::path root = view->copy_root();
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(root, error))
      fs::remove_all(entry.path(), error);
    fs::create_directory_symlink("/", root / "up", error);
    fs::create_directory_symlink(base / "canary", root / "canary", error);
    fs::create_directory_symlink("../..", root / "parent", error);
    fs::create_symlink(base / "canary" / "keep.txt", root / "keep.txt", error);
  }
};

// As the replay applies a recorded change of the workspace (spawn_effects.cpp).
void apply_recorded(const WorkspaceView& view, const tapedeck::RecordKind& kind) {
  if (const auto* write = std::get_if<tapedeck::kind::FileWrite>(&kind)) {
    view.write_file(write->path, "fuzzed", write->mode);
  } else if (const auto* gone = std::get_if<tapedeck::kind::FileDelete>(&kind)) {
    view.remove_file(gone->path);
  } else if (const auto* read = std::get_if<tapedeck::kind::FileRead>(&kind)) {
    view.write_file(read->path, "served");  // a read's bytes are put in the view before the open
  } else if (const auto* unknown = std::get_if<tapedeck::kind::Unknown>(&kind)) {
    if (auto folder = tapedeck::extension::made_folder(*unknown)) view.make_folder(*folder);
  } else if (const auto* spawn = std::get_if<tapedeck::kind::ProcessSpawn>(&kind)) {
    if (spawn->cwd) view.make_folder(*spawn->cwd);  // a place no replay makes: the worst case
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const bool gated : {true, false}) {
    world.reset_view();
    try {
      auto reader = tapedeck::TapeReader::from_memory(input, "fuzz.tape");
      tapedeck::Record record;
      while (reader->next(record)) {
        if (gated && tapedeck::record_path_problem(record.kind)) continue;  // refused
        apply_recorded(*world.view, record.kind);
      }
    } catch (const tapedeck::TapeError&) {
      // a tape the reader refuses: nothing of it is applied past that line
    }
    if (world.outside() != world.outside_before) std::abort();  // something left the view
    for (const char* escaped : {"/tmp/escape.txt", "/tmp/escape-dir", "/escape.txt"}) {
      if (::access(escaped, F_OK) == 0) std::abort();
    }
  }
  return 0;
}
