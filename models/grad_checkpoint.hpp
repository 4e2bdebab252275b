#pragma once

// Gradient checkpointing (torch.utils.checkpoint): trade compute for memory by keeping only
// a segment's inputs and outputs and recomputing its inside during backward. Not to be
// confused with models/checkpoint.hpp, which saves and loads model FILES.

#include <functional>
#include <vector>

#include "graph/rng.hpp"
#include "graph/var.hpp"
#include "models/sequential.hpp"

namespace tg {

/// What a checkpointed function reads besides its inputs.
struct CheckpointOptions {
  /// Leaves the function reads that want gradients (a module's parameters): they become
  /// inputs of the checkpoint node and receive their gradients through it. A leaf that
  /// wants a gradient, is read by the function and is missing here makes backward throw
  /// GraphError (its gradient would be lost).
  std::vector<Var> params;
  /// Generators the function draws from (dropout): their states before the forward are
  /// restored for the recomputation, so it draws the same masks (PyTorch's
  /// preserve_rng_state); the generators are left as the forward left them.
  std::vector<Rng*> rngs;
};

/// A checkpointed function of several inputs and outputs.
using CheckpointFn = std::function<std::vector<Var>(const std::vector<Var>& inputs)>;

/// Runs fn(inputs) without recording and records one node "checkpoint" for all its outputs
/// of each floating dtype (Note [Mixed dtypes] in the .cpp); its backward runs fn again with
/// recording (on copies of the inputs cut from the graph) and differentiates it. Gradients
/// are bit for bit those of fn run plainly. Under create_graph the backward is itself a
/// checkpoint, so derivatives of any order work. Inputs and outputs may mix f32, f64 and
/// integer or bool tensors (an integer or bool output is returned as computed, without a
/// gradient). Without grad mode, or when nothing wants a gradient, fn(inputs) itself.
/// NOTE: buffers fn changes (BatchNorm's running statistics) are changed again by the
/// recomputation, as in PyTorch.
std::vector<Var> checkpoint(const CheckpointFn& fn, const std::vector<Var>& inputs,
                            const CheckpointOptions& options = {});
/// The same for a function of one input and one output.
Var checkpoint(const std::function<Var(const Var&)>& fn, const Var& input,
               const CheckpointOptions& options = {});

/// torch.utils.checkpoint.checkpoint_sequential: `seq` cut into `segments` runs of
/// size()/segments layers (the last takes the rest); every segment but the last is a
/// checkpoint with its layers' parameters and its Dropout layers' generators (plus `rngs`),
/// the last runs plainly. 1 <= segments <= seq.size(), else tg::Error.
Var checkpoint_sequential(Sequential& seq, int64_t segments, const Var& x,
                          const std::vector<Rng*>& rngs = {});

}  // namespace tg
