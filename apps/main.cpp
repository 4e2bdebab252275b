// The `tapegrad` program. Exit status: 0 success, 2 bad input (options, files, data), 1 an
// internal failure.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "apps/cli.hpp"
#include "apps/world.hpp"
#include "graph/error.hpp"
#include "models/npz.hpp"

namespace tg::app {

namespace {

namespace fs = std::filesystem;

std::string in_quotes(const fs::path& p) { return "'" + p.string() + "'"; }

// Creates `dir` and its parents (mkdir -p) and checks that a file can be created in it, by
// creating and removing an empty one. `what` is the path the user gave, for the message.
void ensure_writable_dir(const fs::path& dir, const std::string& what) {
  // The first ancestor that exists must be a folder: a file there is the common mistake.
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (!fs::is_directory(st))
        throw IoError("cannot write " + in_quotes(what) + ": " + in_quotes(p) +
                      " is a file, not a folder");
      break;
    }
    if (p == p.parent_path()) break;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw IoError("cannot write " + in_quotes(what) + ": cannot create the folder " +
                  in_quotes(dir) + " (" + (ec ? ec.message() : std::string("not a folder")) + ")");
  std::string probe = (dir / ".tapegrad-write-check.XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  if (fd < 0)
    throw IoError("cannot write " + in_quotes(what) + ": cannot create files in " + in_quotes(dir) +
                  " (" + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void prepare_output_dir(const std::string& dir) {
  if (dir.empty()) throw IoError("an output folder name is empty");
  ensure_writable_dir(fs::path(dir), dir);
}

void prepare_output_file(const std::string& path, bool append) {
  const fs::path target(path);
  if (path.empty() || target.filename().empty() || target.filename() == "." ||
      target.filename() == "..")
    throw IoError("cannot write '" + path + "': not a file name");
  std::error_code ec;
  if (fs::is_directory(target, ec))
    throw IoError("cannot write " + in_quotes(target) + ": it is a folder");
  ensure_writable_dir(target.has_parent_path() ? target.parent_path() : fs::path("."), path);
  // A file appended to must take writes (appending nothing changes nothing); one written
  // whole is replaced by a rename, which needs only the folder.
  if (append && fs::exists(target, ec)) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
    if (fd < 0) throw IoError("cannot write " + in_quotes(target) + ": " + std::strerror(errno));
    ::close(fd);
  }
}

std::string default_run_dir(const std::string& kind) {
  char buf[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S-", std::localtime(&now));
  const std::string base = buf + kind;
  std::string dir = base;
  for (int i = 2; fs::exists(dir); ++i) dir = base + "-" + std::to_string(i);
  return dir;
}

void write_text(const std::string& path, const std::string& text) { write_file_atomic(path, text); }

void append_line(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  if (!(f << line << '\n') || !f.flush()) throw IoError(path + ": cannot append to the file");
}

}  // namespace tg::app

int main(int argc, char** argv) {
  tg::app::world::configure_transport();  // before MPI starts (Note [Open MPI transport])
  CLI::App app{
      "tapegrad: reverse-mode autodiff in C++. Answers why hidden units that see the same input "
      "end up different (symmetry), trains MLPs or CNNs on Fashion-MNIST or CSV data (train), "
      "evaluates and inspects checkpoints (eval, inspect), and trains character-level language "
      "models of words (charlm).",
      "tapegrad"};
  app.require_subcommand(0, 1);
  tg::app::add_symmetry(app);
  tg::app::add_train(app);
  tg::app::add_eval(app);
  tg::app::add_inspect(app);
  tg::app::add_charlm(app);
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
    tg::app::world::end_job(2, e);  // under mpirun: the other ranks must not wait for this one
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tapegrad: internal error: %s\n", e.what());
    tg::app::world::end_job(1, e);
    return 1;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr,
                 "tapegrad: error: name a subcommand (symmetry, train, eval, inspect, charlm)\n%s",
                 app.help().c_str());
    return 2;
  }
  return 0;
}
