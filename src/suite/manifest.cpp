// The manifest beside a tape (see suite.hpp) and the search for tapes in folders.
#include <fmt/core.h>
#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tape/atomic_file.hpp"
#include "tapedeck/codec.hpp"
#include "tapedeck/error.hpp"
#include "tapedeck/pack.hpp"
#include "tapedeck/secrets.hpp"
#include "tapedeck/suite.hpp"

namespace tapedeck::suite {

namespace fs = std::filesystem;

namespace {

constexpr int kManifestVersion = 1;

// Relative to `base` when both are on one tree, so a moved folder of tapes still finds its code.
std::string relative_to(const fs::path& path, const fs::path& base) {
  const fs::path absolute = fs::weakly_canonical(path);
  const fs::path relative = absolute.lexically_relative(fs::weakly_canonical(base));
  return relative.empty() ? absolute.string() : relative.string();
}

}  // namespace

fs::path manifest_path_for(const fs::path& tape) {
  if (pack::is_packed_tape(tape)) return pack::read_view(tape).manifest;
  // NAME.tape.zst's is NAME.tape.manifest, as its sidecar is NAME.tape.cas.
  fs::path path = tape.extension() == ".zst" ? tape.parent_path() / tape.stem() : tape;
  path += ".manifest";
  return path;
}

std::string manifest_json(const Manifest& manifest, const fs::path& folder) {
  const fs::path base = fs::absolute(folder);
  std::string text = fmt::format("{{\"tapedeck_manifest\":{},\"command\":[", kManifestVersion);
  for (size_t i = 0; i < manifest.command.size(); ++i) {
    // As the tape's header: a key on the command line is not kept (a replay gets the marker).
    std::string arg = manifest.command[i];
    secrets::redact(arg);
    text += (i ? "," : "") + json_string(arg);
  }
  text += "],\"cwd\":" + json_string(relative_to(manifest.cwd, base));
  text += ",\"workspace\":" + json_string(relative_to(manifest.workspace, base));
  if (manifest.mode) text += ",\"fidelity\":" + json_string(fidelity::to_string(*manifest.mode));
  for (const auto& [field, globs] :
       {std::pair{"code", &manifest.code_globs}, {"data", &manifest.data_globs}}) {
    if (globs->empty()) continue;
    text += fmt::format(",\"{}\":[", field);
    for (size_t i = 0; i < globs->size(); ++i) text += (i ? "," : "") + json_string((*globs)[i]);
    text += "]";
  }
  text += "}\n";
  return text;
}

void write_manifest(const fs::path& tape, const Manifest& manifest) {
  const fs::path target = manifest_path_for(tape);
  detail::AtomicFile file(target);
  file.write(manifest_json(manifest, fs::absolute(target).parent_path()));
  file.commit();
}

Manifest read_manifest(const fs::path& tape) {
  const fs::path path = manifest_path_for(tape);
  auto bad = [&](const std::string& detail) { return TapeError(path.string(), 0, detail); };
  std::string text;
  if (!detail::read_file(path, text)) {
    throw bad(errno == ENOENT ? "no manifest: record the tape with `tapedeck run --emit-tape`, "
                                "which writes one, or write it by hand (see `tapedeck check "
                                "--help`)"
                              : std::string("cannot be read: ") + std::strerror(errno));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS || !root.is_object()) {
    throw bad("not a JSON object");
  }
  int64_t version = 0;
  if (root["tapedeck_manifest"].get(version) != simdjson::SUCCESS || version != kManifestVersion) {
    throw bad(fmt::format("\"tapedeck_manifest\" must be {}", kManifestVersion));
  }
  // The tape's folder: the manifest's own, or for a pack, the folder the pack is in.
  const fs::path base = fs::absolute(tape).parent_path();
  Manifest manifest;
  simdjson::dom::array command;
  if (root["command"].get(command) != simdjson::SUCCESS) throw bad("\"command\" must be a list");
  for (simdjson::dom::element arg : command) {
    std::string_view text_arg;
    if (arg.get(text_arg) != simdjson::SUCCESS) throw bad("\"command\" must hold strings");
    manifest.command.emplace_back(text_arg);
  }
  if (manifest.command.empty()) throw bad("\"command\" is empty");
  for (auto [field, out] : {std::pair{"cwd", &manifest.cwd}, {"workspace", &manifest.workspace}}) {
    std::string_view value;
    if (root[field].get(value) != simdjson::SUCCESS) {
      throw bad(fmt::format("\"{}\" must be a path", field));
    }
    // Written relative to the manifest's folder; one naming the root (or reaching it with `..`)
    // would make the whole machine a replay's workspace.
    if (value.find('\0') != std::string_view::npos)
      throw bad(fmt::format("\"{}\" holds a NUL byte", field));
    if (value.empty() || value.front() == '/') {
      throw bad(fmt::format("\"{}\": {} is not relative to the manifest's folder", field,
                            json_string(value)));
    }
    *out = (base / fs::path(value)).lexically_normal();
    if (*out == out->root_path()) {
      throw bad(
          fmt::format("\"{}\": {} reaches the file system's root", field, json_string(value)));
    }
  }
  std::string_view mode;
  if (root["fidelity"].get(mode) == simdjson::SUCCESS) {
    manifest.mode = fidelity::parse_mode(mode);
    if (!manifest.mode) {
      throw bad(
          fmt::format("\"fidelity\": {} is not a mode (byte-identical, semantic, outcome, "
                      "phase-aware)",
                      json_string(mode)));
    }
  }
  for (const auto& [field, out] :
       {std::pair{"code", &manifest.code_globs}, {"data", &manifest.data_globs}}) {
    simdjson::dom::element globs;
    if (root[field].get(globs) != simdjson::SUCCESS) continue;
    simdjson::dom::array list;
    if (globs.get(list) != simdjson::SUCCESS) {
      throw bad(fmt::format("\"{}\" must be a list", field));
    }
    for (simdjson::dom::element glob : list) {
      std::string_view text_glob;
      if (glob.get(text_glob) != simdjson::SUCCESS || text_glob.empty() ||
          text_glob.find('\0') != std::string_view::npos) {
        throw bad(fmt::format("\"{}\" must hold globs (non-empty strings)", field));
      }
      out->emplace_back(text_glob);
    }
  }
  return manifest;
}

std::vector<fs::path> find_tapes(const std::vector<fs::path>& paths) {
  std::vector<fs::path> tapes;
  for (const fs::path& path : paths) {
    std::error_code error;
    if (fs::is_regular_file(path, error)) {
      tapes.push_back(path);
      continue;
    }
    if (!fs::is_directory(path, error)) {
      throw TapeError(path.string(), 0, "neither a tape nor a folder of tapes");
    }
    std::vector<fs::path> found;
    fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, error);
    if (error) throw TapeError(path.string(), 0, "cannot be listed: " + error.message());
    for (const fs::recursive_directory_iterator end; it != end; it.increment(error)) {
      if (error) throw TapeError(path.string(), 0, "cannot be listed: " + error.message());
      if (it->is_directory(error) &&
          (it->path().extension() == ".cas" || it->path().filename() == kSharedStoreName)) {
        it.disable_recursion_pending();  // a sidecar: content, never tapes
      } else if (it->is_regular_file(error) &&
                 (it->path().extension() == ".tape" || it->path().extension() == ".tdk" ||
                  it->path().filename().string().ends_with(".tape.zst"))) {
        found.push_back(it->path());
      }
    }
    std::sort(found.begin(), found.end());
    tapes.insert(tapes.end(), found.begin(), found.end());
  }
  return tapes;
}

}  // namespace tapedeck::suite
