// A folder's shared content store, collected: the blobs that no tape of the folder names go.
#include <sys/stat.h>

#include <set>

#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::suite {

namespace fs = std::filesystem;

StoreCollection collect_store_garbage(const fs::path& folder, bool dry_run) {
  StoreCollection result;
  result.store = folder / kSharedStoreName;
  std::error_code error;
  if (!fs::is_directory(result.store, error)) {
    throw TapeError(folder.string(), 0,
                    "has no shared store (" + result.store.string() +
                        "): make that folder to keep the tapes' blobs there");
  }
  // Every reference of every tape that keeps its entries in the store, read before anything goes.
  std::set<std::string, std::less<>> named;
  fs::directory_iterator it(folder, error);
  if (error) throw TapeError(folder.string(), 0, "cannot be listed: " + error.message());
  for (const fs::directory_iterator end; it != end; it.increment(error)) {
    if (error) throw TapeError(folder.string(), 0, "cannot be listed: " + error.message());
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    if (!it->is_regular_file(error) || !(name.ends_with(".tape") || name.ends_with(".tape.zst"))) {
      continue;
    }
    if (cas_dir_for(path) != result.store) continue;  // a tape with a sidecar of its own
    ++result.tapes;
    auto reader = TapeReader::open(path, ReaderOptions{.threads = 1});
    while (const Record* record = reader->read()) {
      for_each_reference(record->kind, [&](const std::string& blob, std::optional<uint64_t>,
                                           Reference) { named.insert(blob); });
    }
  }
  fs::directory_iterator blobs(result.store, error);
  if (error) throw TapeError(result.store.string(), 0, "cannot be listed: " + error.message());
  for (const fs::directory_iterator end; blobs != end; blobs.increment(error)) {
    if (error) throw TapeError(result.store.string(), 0, "cannot be listed: " + error.message());
    const std::string name = blobs->path().filename().string();
    if (!is_valid_cas_name(name)) continue;  // not a blob (a writer's temporary file, say)
    if (named.contains(name)) {
      ++result.named;
      continue;
    }
    struct stat info {};
    const uint64_t size =
        ::lstat(blobs->path().c_str(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
    if (!dry_run && !fs::remove(blobs->path(), error)) {
      throw TapeError(blobs->path().string(), 0, "cannot remove: " + error.message());
    }
    ++result.removed;
    result.removed_bytes += size;
  }
  return result;
}

}  // namespace tapedeck::suite
