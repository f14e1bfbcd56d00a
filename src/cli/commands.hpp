// The subcommands of `tapedeck`. Each registers itself on the app and, when chosen, sets the
// process exit code: 0 fine, 1 problems found, 2 usage or unreadable input.
#pragma once

#include <CLI/CLI.hpp>

namespace tapedeck::cli {

void add_fmt(CLI::App& app, int& exit_code);
void add_verify(CLI::App& app, int& exit_code);
void add_show(CLI::App& app, int& exit_code);
void add_stats(CLI::App& app, int& exit_code);
void add_fidelity(CLI::App& app, int& exit_code);
void add_view(CLI::App& app, int& exit_code);
void add_run(CLI::App& app, int& exit_code);
void add_replay(CLI::App& app, int& exit_code);
void add_scan(CLI::App& app, int& exit_code);
void add_check(CLI::App& app, int& exit_code);
void add_gc(CLI::App& app, int& exit_code);
void add_pack(CLI::App& app, int& exit_code);
void add_unpack(CLI::App& app, int& exit_code);

}  // namespace tapedeck::cli
