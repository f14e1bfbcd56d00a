// The filesystem axis: a copy-on-write layer over a worktree, diffed with dtl at the end.
#include <dtl/dtl.hpp>

#include <fstream>
#include <sstream>

#include "tape/atomic_file.hpp"
#include "tapedeck/testbench.hpp"

namespace tapedeck {

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

bool looks_binary(const std::string& bytes) {
  return bytes.find('\0') != std::string::npos || !is_valid_utf8(bytes);
}

}  // namespace

std::filesystem::path Overlay::resolve(const std::string& path) const {
  const std::filesystem::path relative = std::filesystem::path(path).lexically_normal();
  if (path.empty() || relative.is_absolute() || relative.empty() || *relative.begin() == "..") {
    throw std::runtime_error("overlay: `" + path + "` is not a path inside the worktree");
  }
  return worktree_ / relative;
}

std::optional<std::string> Overlay::read_worktree(const std::string& path) const {
  return detail::read_file(resolve(path));
}

std::string Overlay::read(const std::string& path) {
  const std::string key = resolve(path).lexically_relative(worktree_).string();
  std::optional<std::string> bytes;
  if (auto layered = layer_.find(key); layered != layer_.end()) {
    bytes = layered->second;
  } else {
    bytes = read_worktree(key);
  }
  if (!bytes) throw std::runtime_error("overlay: no such file: " + key);
  session_.recorder_->record(kind::FileRead{key, content_hash(*bytes), bytes->size()});
  return *bytes;
}

bool Overlay::exists(const std::string& path) const {
  const std::string key = resolve(path).lexically_relative(worktree_).string();
  if (auto layered = layer_.find(key); layered != layer_.end()) return layered->second.has_value();
  return std::filesystem::is_regular_file(resolve(key));
}

void Overlay::write(const std::string& path, std::string bytes) {
  const std::string key = resolve(path).lexically_relative(worktree_).string();
  session_.recorder_->record(kind::FileWrite{key, content_hash(bytes), bytes.size()});
  layer_[key] = std::move(bytes);
}

void Overlay::remove(const std::string& path) {
  const std::string key = resolve(path).lexically_relative(worktree_).string();
  session_.recorder_->record(kind::FileDelete{key});
  layer_[key] = std::nullopt;
}

std::vector<std::string> Overlay::changed_paths() const {
  std::vector<std::string> paths;
  for (const auto& [path, bytes] : layer_) {
    if (read_worktree(path) != bytes) paths.push_back(path);
  }
  return paths;
}

std::string Overlay::diff() const {
  std::ostringstream out;
  for (const auto& [path, after] : layer_) {
    const std::optional<std::string> before = read_worktree(path);  // read once per path
    if (before == after) continue;                                  // the layer changed nothing
    const std::string old_text = before.value_or("");
    const std::string new_text = after.value_or("");
    out << "--- " << (before ? "a/" + path : std::string("/dev/null")) << "\n";
    out << "+++ " << (after ? "b/" + path : std::string("/dev/null")) << "\n";
    if (looks_binary(old_text) || looks_binary(new_text)) {
      out << "Binary files differ\n";
      continue;
    }
    dtl::Diff<std::string, std::vector<std::string>> lines(lines_of(old_text), lines_of(new_text));
    lines.compose();
    lines.composeUnifiedHunks();
    std::ostringstream hunks;
    lines.printUnifiedFormat(hunks);
    std::string text = hunks.str();
    // dtl numbers the empty side of a new or deleted file from 1; diff and patch say 0.
    if (!before && text.rfind("@@ -1,0 ", 0) == 0) text.replace(0, 8, "@@ -0,0 ");
    if (!after) {
      if (const size_t at = text.find(" +1,0 @@"); at != std::string::npos)
        text.replace(at, 8, " +0,0 @@");
    }
    out << text;
  }
  return out.str();
}

void Overlay::apply() {
  for (const auto& [path, bytes] : layer_) {
    const std::filesystem::path target = resolve(path);
    if (!bytes) {
      std::filesystem::remove(target);
      continue;
    }
    std::filesystem::create_directories(target.parent_path());
    std::ofstream file(target, std::ios::binary | std::ios::trunc);
    file << *bytes;
    if (!file) throw std::runtime_error("overlay: cannot write " + target.string());
  }
  layer_.clear();
}

}  // namespace tapedeck
