// The `tapegrad` program. Exit status: 0 success, 2 bad input (options, files, data), 1 an
// internal failure.

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/cli.hpp"
#include "graph/error.hpp"
#include "models/npz.hpp"

namespace tg::app {

void make_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw IoError(dir + ": cannot create the folder (" + ec.message() + ")");
}

void write_text(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

void append_line(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  if (!(f << line << '\n') || !f.flush()) throw IoError(path + ": cannot append to the file");
}

}  // namespace tg::app

int main(int argc, char** argv) {
  CLI::App app{
      "tapegrad: reverse-mode autodiff in C++. Answers why hidden units that see the same input "
      "end up different (symmetry), trains MLPs on Fashion-MNIST or CSV data (train), and "
      "evaluates and inspects checkpoints (eval, inspect).",
      "tapegrad"};
  app.require_subcommand(0, 1);
  tg::app::add_symmetry(app);
  tg::app::add_train(app);
  tg::app::add_eval(app);
  tg::app::add_inspect(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const tg::Error& e) {
    std::fprintf(stderr, "tapegrad: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tapegrad: internal error: %s\n", e.what());
    return 1;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr, "tapegrad: error: name a subcommand (symmetry, train, eval, inspect)\n%s",
                 app.help().c_str());
    return 2;
  }
  return 0;
}
