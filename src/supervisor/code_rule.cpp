#include "supervisor/code_rule.hpp"

#include <fnmatch.h>

#include <array>
#include <system_error>

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

namespace {

// Interpreters whose first file argument is the program's script.
bool is_interpreter(std::string_view name) {
  constexpr std::array<std::string_view, 16> kNames = {
      "python", "node", "nodejs", "bun",  "deno", "sh",  "bash",    "dash",
      "zsh",    "ksh",  "ruby",   "perl", "php",  "lua", "ts-node", "tsx"};
  for (std::string_view known : kNames) {
    if (name == known) return true;
    // python3, python3.13, lua5.4, perl5.40: a version after the name.
    if (name.starts_with(known) && name.size() > known.size() &&
        (name[known.size()] >= '0' && name[known.size()] <= '9')) {
      return true;
    }
  }
  return false;
}

// Options after which an interpreter runs no script file (`python3 -c CODE`, `node -e CODE`,
// `python3 -m MODULE`: the module is found by import, and so by the suffix rule).
bool ends_script_search(std::string_view arg) {
  return arg == "-c" || arg == "-m" || arg == "-e" || arg == "-p" || arg == "--eval" ||
         arg == "--print" || arg == "-" || arg == "--";
}

// `candidate` (relative to `cwd`, or absolute) as a path relative to the workspace, when it is
// a regular file inside it.
std::string in_workspace(const std::string& candidate, const fs::path& workspace,
                         const fs::path& cwd) {
  std::error_code error;
  const fs::path absolute = fs::weakly_canonical(cwd / candidate, error);
  if (error || !fs::is_regular_file(absolute, error)) return "";
  const fs::path relative = absolute.lexically_relative(workspace);
  if (relative.empty() || *relative.begin() == "..") return "";
  return relative.generic_string();
}

constexpr std::array<std::string_view, 24> kCodeSuffixes = {
    ".py", ".pyi",  ".pth", ".pyc", ".js", ".mjs", ".cjs", ".ts",  ".mts", ".cts",  ".jsx",  ".tsx",
    ".sh", ".bash", ".zsh", ".rb",  ".pl", ".pm",  ".php", ".lua", ".so",  ".node", ".wasm", ".mk"};

constexpr std::array<std::string_view, 6> kCodeFolders = {
    "node_modules", ".venv", "venv", "site-packages", "dist-packages", "__pycache__"};

constexpr std::array<std::string_view, 9> kCodeNames = {
    "package.json", "tsconfig.json", "pyvenv.cfg", "pyproject.toml", "Makefile",
    "makefile",     "GNUmakefile",   "deno.json",  "bunfig.toml"};

bool default_code(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  for (std::string_view known : kCodeNames) {
    if (name == known) return true;
  }
  for (std::string_view suffix : kCodeSuffixes) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) return true;
  }
  // A folder of code anywhere on the path (node_modules/x, lib/python3/site-packages/y).
  for (size_t at = 0; at < path.size();) {
    const size_t end = std::min(path.find('/', at), path.size());
    if (end == path.size()) break;  // the last component is the file's own name
    const std::string_view part = path.substr(at, end - at);
    for (std::string_view folder : kCodeFolders) {
      if (part == folder) return true;
    }
    at = end + 1;
  }
  return false;
}

}  // namespace

bool glob_matches(std::string_view glob, std::string_view path) {
  std::string pattern(glob);
  if (pattern.ends_with('/')) pattern += '*';
  const std::string subject(path);
  return ::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0;
}

namespace {

// The script `command` runs, relative to `workspace` ("" when none there): the program itself
// when it is a workspace file named by a path, else an interpreter's first argument naming one.
std::string script_of(const std::vector<std::string>& command, const fs::path& workspace,
                      const fs::path& cwd) {
  if (command.empty()) return "";
  if (command[0].find('/') != std::string::npos) {
    std::string script = in_workspace(command[0], workspace, cwd);
    if (!script.empty()) return script;
  }
  if (!is_interpreter(fs::path(command[0]).filename().string())) return "";
  for (size_t i = 1; i < command.size(); ++i) {
    const std::string& arg = command[i];
    if (ends_script_search(arg)) return "";
    if (arg.starts_with("-")) continue;
    std::string script = in_workspace(arg, workspace, cwd);
    if (!script.empty()) return script;
  }
  return "";
}

}  // namespace

CodeRule::CodeRule(const std::vector<std::string>& command, const fs::path& workspace,
                   const fs::path& cwd, std::vector<std::string> code_globs,
                   std::vector<std::string> data_globs)
    : code_globs_(std::move(code_globs)), data_globs_(std::move(data_globs)) {
  std::error_code error;
  workspace_ = fs::weakly_canonical(workspace, error);
  script_ = script_of(command, workspace_, cwd);
}

void CodeRule::add_command(const std::vector<std::string>& command, const fs::path& cwd) {
  std::string script = script_of(command, workspace_, cwd);
  if (!script.empty() && std::find(scripts_.begin(), scripts_.end(), script) == scripts_.end()) {
    scripts_.push_back(std::move(script));
  }
}

CodeRule::Said CodeRule::globs_say(std::string_view path) const {
  for (const std::string& glob : data_globs_) {
    if (glob_matches(glob, path)) return Said::data;
  }
  for (const std::string& glob : code_globs_) {
    if (glob_matches(glob, path)) return Said::code;
  }
  return Said::nothing;
}

bool CodeRule::is_code(std::string_view path, bool recorded_as_code) const {
  const Said said = globs_say(path);
  return said == Said::nothing ? recorded_as_code : said == Said::code;
}

bool CodeRule::is_code(std::string_view path) const {
  switch (globs_say(path)) {
    case Said::data:
      return false;
    case Said::code:
      return true;
    case Said::nothing:
      break;
  }
  return path == script_ || default_code(path) ||
         std::find(scripts_.begin(), scripts_.end(), path) != scripts_.end();
}

}  // namespace tapedeck::supervisor
