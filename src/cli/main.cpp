// `tapedeck`: one binary, thin over the library.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <exception>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "tapedeck/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "tapedeck: record every input of a run on a tape, replay it offline, and say where two "
      "runs diverge.\n\nExit codes: 0 fine, 1 problems found, 2 usage error or unreadable input.",
      "tapedeck"};
  app.set_version_flag("--version", std::string("tapedeck ") + TAPEDECK_VERSION);
  app.require_subcommand(1);
  app.footer("Run `tapedeck COMMAND --help` for a command's options and examples.");

  int exit_code = 0;
  tapedeck::cli::add_fmt(app, exit_code);
  tapedeck::cli::add_verify(app, exit_code);
  tapedeck::cli::add_show(app, exit_code);
  tapedeck::cli::add_stats(app, exit_code);
  tapedeck::cli::add_fidelity(app, exit_code);
  tapedeck::cli::add_view(app, exit_code);
  tapedeck::cli::add_run(app, exit_code);
  tapedeck::cli::add_replay(app, exit_code);
  tapedeck::cli::add_scan(app, exit_code);
  tapedeck::cli::add_check(app, exit_code);
  tapedeck::cli::add_gc(app, exit_code);
  tapedeck::cli::add_pack(app, exit_code);
  tapedeck::cli::add_unpack(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& done) {  // --help, --version
    return app.exit(done);
  } catch (const CLI::ParseError& error) {
    tapedeck::cli::print_error(fmt::format("{} (see `tapedeck --help`)", error.what()));
    return 2;
  } catch (const tapedeck::TapeError& error) {
    tapedeck::cli::print_error(error.what());
    return 2;
  } catch (const std::bad_alloc&) {
    tapedeck::cli::print_error("out of memory");
    return 2;
  } catch (const std::exception& error) {
    tapedeck::cli::print_error(error.what());
    return 2;
  }
  return exit_code;
}
