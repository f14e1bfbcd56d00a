// Which workspace files are the program's code and which are the data it works on. A replay
// reads code as it is now (an edited prompt, a refactor, an upgraded SDK in node_modules is what
// runs) and serves data as recorded (the world the agent acted on stays the recording's).
//
// Code, by default: the root command's script (the program itself when it is a workspace file,
// else an interpreter's first argument naming one); source files of the interpreters agents
// run on (*.py, *.pth, *.pyc, *.js, *.mjs, *.cjs, *.ts, *.sh, …); anything under node_modules/,
// .venv/, venv/, site-packages/, dist-packages/, __pycache__/; and the files that say how code
// is run (package.json, tsconfig.json, pyvenv.cfg, pyproject.toml, Makefiles). Everything else
// is data. `--data GLOB` then `--code GLOB` override, first match wins, data before code.
// (Files a process exec's or maps executable are read by the kernel and the dynamic loader,
// never through the tape, so they are live whatever this says.)
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace tapedeck::supervisor {

class CodeRule {
 public:
  CodeRule() = default;
  // `command`: the root program and its arguments; `workspace`: absolute; `cwd`: where the
  // command starts (its relative arguments are relative to it).
  CodeRule(const std::vector<std::string>& command, const std::filesystem::path& workspace,
           const std::filesystem::path& cwd, std::vector<std::string> code_globs,
           std::vector<std::string> data_globs);

  // `path`: relative to the workspace, in normal form.
  bool is_code(std::string_view path) const;
  // Whether a --code or --data glob decides `path` (and which way), so a replay knows when the
  // recording's own mark is to be overridden.
  enum class Said { nothing, code, data };
  Said globs_say(std::string_view path) const;
  // Replay: whether a file the recording read is read as code: as the recording marked it
  // (`recorded_as_code`), unless a --code or --data glob says otherwise.
  bool is_code(std::string_view path, bool recorded_as_code) const;
  // The root command's script, relative to the workspace ("" when it has none there).
  const std::string& script() const { return script_; }
  // A subprocess's command (`command` as for the constructor, started in `cwd`): its script is
  // code too (`npm run agent` running ./bin/agent, a script with no suffix).
  void add_command(const std::vector<std::string>& command, const std::filesystem::path& cwd);

 private:
  std::string script_;
  std::vector<std::string> scripts_;  // the subprocesses' (add_command)
  std::filesystem::path workspace_;
  std::vector<std::string> code_globs_;
  std::vector<std::string> data_globs_;
};

// Whether `glob` matches the workspace-relative `path`: fnmatch(3), `*` crossing `/` (so
// `docs/*` is everything under docs, `*.py` every .py); a glob ending in `/` matches what is
// under that folder.
bool glob_matches(std::string_view glob, std::string_view path);

}  // namespace tapedeck::supervisor
