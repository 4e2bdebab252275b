#pragma once

// The `tapegrad` program's subcommands. Each `add_*` registers one subcommand with its
// options and callback; errors in user input are thrown as tg::Error (exit status 2).

#include <CLI/CLI.hpp>
#include <string>

namespace tg::app {

void add_symmetry(CLI::App& app);
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_inspect(CLI::App& app);
void add_charlm(CLI::App& app);

// Output paths are checked before any work (loading data, training), so a run never ends
// in "cannot write" after its work is done.
/// Creates `dir` and its missing parents (like mkdir -p) and checks that files can be
/// created in it; throws tg::IoError naming the path otherwise.
void prepare_output_dir(const std::string& dir);
/// Checks that `path` can be written: creates its missing parent folders and fails when
/// `path` is a folder, a parent is a file, or the folder takes no new files (and, with
/// `append`, when an existing file takes no writes). Creates nothing at `path` itself.
void prepare_output_file(const std::string& path, bool append = false);
/// A new run folder name, runs/<YYYYmmdd-HHMMSS>-<kind> (with -2, -3, ... when it exists).
std::string default_run_dir(const std::string& kind);
/// Writes `text` to `path` atomically; throws tg::IoError.
void write_text(const std::string& path, const std::string& text);
/// Appends one line to `path`; throws tg::IoError.
void append_line(const std::string& path, const std::string& line);

}  // namespace tg::app
