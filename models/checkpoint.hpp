#pragma once

#include <string>

#include "graph/rng.hpp"
#include "models/module.hpp"
#include "models/npz.hpp"

namespace tg {

/// Writes every named parameter and persistent buffer of `module` as `prefix + name`
/// ("fc1.weight", "bn1.running_mean"): PyTorch's state_dict names.
void write_parameters(const Module& module, NpzArchive& archive, const std::string& prefix = "");

/// Reads every named parameter and persistent buffer of `module` from `prefix + name` (an
/// integer or bool buffer only from an entry of its own dtype), all or nothing: every entry
/// is checked first (present, same shape, dtype equal or losslessly convertible: an f32
/// entry loads into an f64 parameter, an f64 entry into an f32 parameter is an error), and
/// only then are the values copied in. With `strict`, entries under `prefix` that name no
/// parameter or persistent buffer are an error too. Throws IoError naming the parameter; the module
/// is then unchanged.
void read_parameters(Module& module, const NpzArchive& archive, const std::string& prefix = "",
                     bool strict = true);

/// Saves the named parameters of `module` to an .npz file (numpy.load reads it), atomically:
/// a crash or error never damages the previous file at `path`. Throws IoError.
void save(const Module& module, const std::string& path);
/// Loads parameters saved by `save` or by numpy.savez / savez_compressed with the same names
/// ("fc1.weight"). See `read_parameters`; on any error the module is unchanged.
void load(Module& module, const std::string& path);

/// A generator's full state as entries `prefix + "state"` (4 x uint64) and
/// `prefix + "spare"` ([has_spare, spare] as float64).
void write_rng(const Rng& rng, NpzArchive& archive, const std::string& prefix = "rng.");
void read_rng(Rng& rng, const NpzArchive& archive, const std::string& prefix = "rng.");

}  // namespace tg
