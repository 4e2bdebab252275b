#pragma once

// Forward-mode automatic differentiation after torch.autograd.forward_ad: inside a
// DualLevel, a value made by make_dual carries a tangent, and every op it reaches computes
// its output's tangent with the op's JVP rule (given to `record` next to its backward), in
// the same pass as the value, recording nothing of its own. docs/research.md, "Forward
// mode", says what it costs and how it differs from PyTorch.

#include "graph/var.hpp"

namespace tg::fwd {

/// Opens the forward-mode level for its lifetime (PyTorch's `with dual_level():`). One level
/// at a time (opening a second throws tg::Error, as PyTorch); it belongs to the thread that
/// opened it: ops propagate tangents on that thread only. Closing it drops every tangent.
class DualLevel {
 public:
  DualLevel();
  ~DualLevel();
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
};

/// Whether a DualLevel is open.
bool level_active();

/// A value equal to `primal` (sharing its buffer) whose tangent is `tangent` (same shape and
/// dtype, floating: ShapeError / DtypeError). Reverse mode flows through it to `primal`
/// and to the tangent's own graph. Needs an open DualLevel (tg::Error).
Var make_dual(const Var& primal, const Var& tangent);

/// PyTorch's UnpackedDualTensor: the primal (sharing the buffer, without the tangent;
/// reverse mode flows through it) and the tangent (undefined when there is none).
struct UnpackedDual {
  Var primal;
  Var tangent;
};
UnpackedDual unpack_dual(const Var& v);

}  // namespace tg::fwd
