#pragma once

// Functional transforms after torch.autograd.functional: vjp, jvp, jacobian, hessian, hvp,
// vhp, and per-sample gradients of a module. All are built on tg::grad (graph/var.hpp);
// docs/research.md says what each costs and where it differs from PyTorch.

#include <functional>
#include <string>
#include <vector>

#include "graph/var.hpp"
#include "models/module.hpp"

namespace tg::func {

/// A function of several inputs and several outputs.
using Fn = std::function<std::vector<Var>(const std::vector<Var>& inputs)>;
/// A function of one input and one output.
using Fn1 = std::function<Var(const Var& input)>;
/// A function of several inputs with one output (a loss: one element for hessian / hvp / vhp).
using ScalarFn = std::function<Var(const std::vector<Var>& inputs)>;

/// What vjp, jvp, hvp and vhp return, as PyTorch's pair: the function's outputs and the
/// product (one per input for vjp / hvp / vhp, one per output for jvp).
struct Product {
  std::vector<Var> outputs;
  std::vector<Var> product;
};
/// The same for a function of one input and one output.
struct Product1 {
  Var output;
  Var product;
};

/// How jacobian builds the matrix: by rows (one vjp per output element, PyTorch's
/// "reverse-mode") or by columns (one forward-mode pass per input element, "forward-mode").
/// hessian's forward outer strategy differentiates the recorded gradient by the double-vjp
/// trick (J t = d/du <J^T u, t>), not by forward mode over the backward.
enum class Strategy { reverse, forward };

// Every transform runs f with grad mode on, on copies of the inputs that want gradients
// (the inputs themselves when create_graph and they already want one, so the results can
// be differentiated with respect to them, as PyTorch's). Without create_graph the results
// are plain values (nothing recorded). An output the inputs do not reach, or an input no
// output depends on, gives zeros, or a GraphError naming the transform when `strict` (as
// PyTorch's strict=True: also a missing Jacobian block in either strategy, a loss linear in
// an input for hessian / hvp / vhp, and with create_graph a result constant in the inputs). Inputs
// and outputs must be floating (DtypeError); v / tangents must match the outputs / inputs in number
// and shape (ShapeError); each message starts with the transform's name, e.g. "func::vjp: ".

/// v^T J: the vector-Jacobian product, one gradient per input. `v` may be empty when f has
/// one output of one element (then v = 1).
Product vjp(const Fn& f, const std::vector<Var>& inputs, const std::vector<Var>& v = {},
            bool create_graph = false, bool strict = false);
Product1 vjp(const Fn1& f, const Var& input, const Var& v = {}, bool create_graph = false,
             bool strict = false);
/// The same for one output of several inputs (with v empty: the gradient of a loss).
Product vjp(const ScalarFn& f, const std::vector<Var>& inputs, const Var& v = {},
            bool create_graph = false, bool strict = false);

/// J t: the Jacobian-vector product, one per output (`tangents` may be empty for one input
/// of one element: t = 1), by forward mode (graph/forward_ad.hpp):
/// f runs once on duals of the inputs inside its own fwd::DualLevel (so not inside one
/// already: tg::Error). Without create_graph f runs with grad mode off (one pass, nothing
/// recorded; a function that calls tg::grad itself needs create_graph); with it the outputs
/// and products are differentiable with respect to the inputs and the tangents.
Product jvp(const Fn& f, const std::vector<Var>& inputs, const std::vector<Var>& tangents = {},
            bool create_graph = false, bool strict = false);
Product1 jvp(const Fn1& f, const Var& input, const Var& tangent = {}, bool create_graph = false,
             bool strict = false);

/// J[i][j] = d outputs[i] / d inputs[j], of shape outputs[i].shape + inputs[j].shape.
std::vector<std::vector<Var>> jacobian(const Fn& f, const std::vector<Var>& inputs,
                                       bool create_graph = false, bool strict = false,
                                       Strategy strategy = Strategy::reverse);
Var jacobian(const Fn1& f, const Var& input, bool create_graph = false, bool strict = false,
             Strategy strategy = Strategy::reverse);

/// H[i][j] = d^2 f / d inputs[i] d inputs[j], of shape inputs[i].shape + inputs[j].shape;
/// f's output must have one element (ShapeError).
std::vector<std::vector<Var>> hessian(const ScalarFn& f, const std::vector<Var>& inputs,
                                      bool create_graph = false, bool strict = false,
                                      Strategy outer_jacobian_strategy = Strategy::reverse);
Var hessian(const Fn1& f, const Var& input, bool create_graph = false, bool strict = false,
            Strategy outer_jacobian_strategy = Strategy::reverse);

/// H v (the Hessian times v, one per input; v may be empty for one input of one element:
/// v = 1) by the double-vjp trick, exact without assuming
/// H symmetric; for a twice continuously differentiable f vhp gives the same, cheaper.
Product hvp(const ScalarFn& f, const std::vector<Var>& inputs, const std::vector<Var>& v = {},
            bool create_graph = false, bool strict = false);
Product1 hvp(const Fn1& f, const Var& input, const Var& v = {}, bool create_graph = false,
             bool strict = false);

/// v^T H, one per input: one reverse sweep through the gradient (v as hvp's).
Product vhp(const ScalarFn& f, const std::vector<Var>& inputs, const std::vector<Var>& v = {},
            bool create_graph = false, bool strict = false);
Product1 vhp(const Fn1& f, const Var& input, const Var& v = {}, bool create_graph = false,
             bool strict = false);

/// The loss of one sample: `sample` holds the batch tensors' rows for that sample, each
/// keeping a leading dimension of 1.
using SampleLoss = std::function<Var(const std::vector<Var>& sample)>;

/// Per-sample gradients of `module`'s parameters (the torch.func recipe
/// vmap(grad(loss)) over the first dimension of every tensor of `batch`): one Var per
/// parameter of module.parameters(), of shape [B, *parameter shape], row b the gradient of
/// loss(sample b). A loop over the samples (one forward and backward of batch 1 each); the
/// BatchLoss overload below vectorizes. Parameters' .grad are not touched.
std::vector<Var> per_sample_grad(Module& module, const SampleLoss& loss,
                                 const std::vector<Var>& batch);

/// The losses of a whole batch, one per sample (PyTorch's reduction='none'): given the batch
/// tensors (first dim B), a Var of shape [B] whose entry b depends on sample b only.
using BatchLoss = std::function<Var(const std::vector<Var>& batch)>;

/// How per_sample_grad(module, BatchLoss, ...) computes: `vectorized` (one batched forward
/// and one backward, then Opacus's per-layer rules; a tg::Error naming what prevents it),
/// `loop` (B passes of batch 1) or `automatic` (vectorized when possible, else the loop).
enum class PerSampleStrategy { automatic, vectorized, loop };

struct PerSampleGradOptions {
  PerSampleStrategy strategy = PerSampleStrategy::automatic;
};

/// What per_sample_grad(module, BatchLoss, ...) returns.
struct PerSampleGrads {
  /// One per parameter of module.parameters(), [B, *parameter shape]; zeros for a parameter
  /// that wants no gradient or that the loss does not reach.
  std::vector<Var> grads;
  /// The per-sample losses [B] (plain values).
  Var losses;
  /// Whether the vectorized path ran.
  bool vectorized = false;
  /// Why the automatic strategy looped ("" when vectorized or when asked to loop).
  std::string fallback_reason;
};

/// Per-sample gradients from one batched forward and one backward (torch.func's
/// vmap(grad(...)), Opacus's GradSampleModule): `loss(batch)` runs once with forward hooks
/// on the module's layers, one backward of sum(losses) gives the gradient g of each hooked
/// layer's output (the called layers' parameters want no gradient during that sweep, and
/// want one again after), and each layer's rule turns its saved input x and g into
/// per-sample gradients: Linear (g_b^T x_b, summed over the sample's extra leading dims;
/// bias: sum of g_b), Conv1d / Conv2d (g_b times x_b's im2col columns: any stride, padding,
/// dilation, groups), Embedding (g_b's rows added at sample b's ids, none
/// at padding_idx), LayerNorm / GroupNorm (sum of g * xhat and of g over the sample's dims).
/// A layer called several times adds its calls up. The result is the loop's (same values
/// up to rounding) when the samples do not interact through the model: loss entry b must
/// depend on sample b only, and every parameter must reach the loss through calls of its
/// layer (operator(), not forward()) on inputs whose first dim is the sample.
/// The vectorized path is not taken (automatic: the loop runs and `fallback_reason` says
/// why; vectorized: tg::Error) when a parameter that wants a gradient belongs to a module
/// without a rule (ConvTranspose2d, BatchNorm's affine, attention, recurrent layers, a
/// custom module's own parameter), when a BatchNorm is in training mode (its batch
/// statistics mix the samples; Opacus refuses it too), when such a layer saw an input whose
/// first dim is not B, when a parameter reached the loss without its layer's hook, or
/// when an op outside its layer's calls reads it on the way to the loss (weight tying
/// written as `matmul(h, transpose(emb.weight))`). The last three show while the batched
/// forward runs, so it has run once before the loop (a Dropout's generator has moved on).
/// The loop calls `loss` on each sample (a batch of 1), which must give shape [1]; an
/// empty batch takes the loop (gradients [0, *shape]).
/// Errors: a batch tensor of another first dim, or losses not of shape [B]: ShapeError
/// starting "func::per_sample_grad: ".
PerSampleGrads per_sample_grad(Module& module, const BatchLoss& loss, const std::vector<Var>& batch,
                               const PerSampleGradOptions& options);

}  // namespace tg::func
