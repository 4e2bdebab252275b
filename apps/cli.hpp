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

/// Creates `dir` (and parents); throws tg::IoError naming it when that fails.
void make_dir(const std::string& dir);
/// Writes `text` to `path` atomically; throws tg::IoError.
void write_text(const std::string& path, const std::string& text);
/// Appends one line to `path`; throws tg::IoError.
void append_line(const std::string& path, const std::string& line);

}  // namespace tg::app
