#pragma once

// What `tapegrad inspect` needs of `tapegrad charlm`'s checkpoints.

#include <string>

#include "models/npz.hpp"

namespace tg::app {

/// Whether `a` is a checkpoint written by `tapegrad charlm` (it has a `charlm.model` entry).
bool is_charlm_checkpoint(const NpzArchive& a);
/// Prints the run's configuration, vocabulary, last losses and parameter table.
void inspect_charlm(const NpzArchive& a, const std::string& path);

}  // namespace tg::app
