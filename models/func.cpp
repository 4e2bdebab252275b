// Functional transforms on top of tg::grad and forward mode (graph/forward_ad.hpp). vjp runs
// the user's function once with grad mode on and sweeps its graph backwards once; jvp runs
// it once in forward mode (tangents alongside the values, no sweep); jacobian sweeps once
// per output element (reverse) or runs forward once per input element plus once (forward);
// hessian = jacobian of the gradient, whose forward strategy keeps the double-vjp trick.
#include "models/func.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "graph/dtype.hpp"
#include "graph/error.hpp"
#include "graph/forward_ad.hpp"
#include "graph/kernels.hpp"
#include "models/cnn_layers.hpp"
#include "models/layers.hpp"
#include "ops/arith.hpp"
#include "ops/conv.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg::func {
namespace {

Var zeros_var(const Shape& shape, Dtype dtype) { return Var(zeros(shape, dtype)); }

// A tensor of `shape` that is 1 at flat position k and 0 elsewhere.
Tensor one_hot(const Shape& shape, Dtype dtype, int64_t k) {
  Tensor t = zeros(shape, dtype);
  dispatch(dtype, "func", [&]<class T>() { t.data<T>()[k] = T(1); });
  return t;
}

std::string at(const char* what, size_t i) { return std::string(what) + " " + std::to_string(i); }

// The inputs f is run on: the caller's own when create_graph and they want a gradient (so
// the results stay differentiable with respect to them), else fresh leaves that want one.
std::vector<Var> prepare_inputs(const char* name, const std::vector<Var>& inputs,
                                bool create_graph) {
  std::vector<Var> xs;
  xs.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Var& x = inputs[i];
    if (!x.defined()) throw Error(std::string(name) + ": " + at("input", i) + " is undefined");
    kern::check_floating(x.value(), name);
    xs.push_back(create_graph && x.requires_grad() ? x : x.detach().requires_grad_(true));
  }
  return xs;
}

// Runs f with grad mode on and checks its outputs.
std::vector<Var> run(const char* name, const Fn& f, const std::vector<Var>& xs) {
  std::vector<Var> outs;
  {
    GradModeGuard on(true);
    outs = f(xs);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].defined())
      throw Error(std::string(name) + ": " + at("output", i) + " of the function is undefined");
    kern::check_floating(outs[i].value(), name);
  }
  return outs;
}

// Checks that `vs` (v or tangents) matches `refs` (outputs or inputs) in number, shape and
// dtype.
void check_match(const char* name, const char* vname, const std::vector<Var>& vs, const char* rname,
                 const std::vector<Var>& refs) {
  if (vs.size() != refs.size())
    throw ShapeError(std::string(name) + ": " + std::to_string(vs.size()) + " " + vname +
                     " given for " + std::to_string(refs.size()) + " " + rname + "s");
  for (size_t i = 0; i < vs.size(); ++i) {
    if (!vs[i].defined())
      throw Error(std::string(name) + ": " + vname + "[" + std::to_string(i) + "] is undefined");
    if (vs[i].shape() != refs[i].shape())
      throw ShapeError(std::string(name) + ": " + vname + "[" + std::to_string(i) + "] has shape " +
                       vs[i].shape().str() + " but " + at(rname, i) + " has shape " +
                       refs[i].shape().str());
    if (vs[i].dtype() != refs[i].dtype())
      throw DtypeError(std::string(name) + ": " + vname + "[" + std::to_string(i) + "] is " +
                       std::string(dtype_name(vs[i].dtype())) + " but " + at(rname, i) + " is " +
                       std::string(dtype_name(refs[i].dtype())));
  }
}

// v (or tangents) as given, or a one when omitted for a single reference (outputs or inputs)
// of one element, as PyTorch's v=None.
std::vector<Var> or_one(const std::vector<Var>& vs, const std::vector<Var>& refs) {
  if (!vs.empty() || refs.size() != 1 || refs[0].numel() != 1) return vs;
  return {Var(ones(refs[0].shape(), refs[0].dtype()))};
}
// A single-input overload's v: a list of it, or empty when undefined.
std::vector<Var> listed(const Var& v) { return v.defined() ? std::vector{v} : std::vector<Var>{}; }

// Whether output i takes part; a GraphError under `strict` when the inputs do not reach it.
bool reached(const char* name, const std::vector<Var>& outs, size_t i, bool strict) {
  if (outs[i].requires_grad()) return true;
  if (strict)
    throw GraphError(std::string(name) + ": " + at("output", i) +
                     " does not depend on the inputs (strict)");
  return false;
}

// Under `strict` with create_graph, a result that is not differentiable with respect to the
// inputs (f linear in them) is a GraphError, as PyTorch's strict=True with create_graph=True
// ("the jacobian of the user-provided function is independent of input j"); hessian, hvp and
// vhp record the gradient with create_graph, so there it is a function linear in an input,
// as PyTorch's "the jacobian ... is independent of the input" under strict.
void check_differentiable(const char* name, const Var& g, const std::string& what, bool strict,
                          bool create_graph) {
  if (strict && create_graph && !g.requires_grad())
    throw GraphError(std::string(name) + ": " + what +
                     " is constant (f is linear in the inputs; strict)");
}

// Undefined gradients (inputs not reached) become zeros, or a GraphError under `strict`.
std::vector<Var> fill_unused(const char* name, std::vector<Var> gs, const std::vector<Var>& refs,
                             bool strict, bool create_graph) {
  for (size_t j = 0; j < gs.size(); ++j) {
    if (gs[j].defined()) {
      check_differentiable(name, gs[j], "the derivative for " + at("input", j), strict,
                           create_graph);
      continue;
    }
    if (strict)
      throw GraphError(std::string(name) + ": the outputs do not depend on " + at("input", j) +
                       " (strict)");
    gs[j] = zeros_var(refs[j].shape(), refs[j].dtype());
  }
  return gs;
}

std::vector<Var> detached(std::vector<Var> vs, bool create_graph) {
  if (!create_graph)
    for (Var& v : vs) v = v.detach();
  return vs;
}

// v^T J for outputs already computed from xs.
std::vector<Var> vjp_core(const char* name, const std::vector<Var>& outs,
                          const std::vector<Var>& xs, const std::vector<Var>& v, bool create_graph,
                          bool strict, bool retain) {
  std::vector<Var> roots, gos;
  for (size_t i = 0; i < outs.size(); ++i)
    if (reached(name, outs, i, strict)) roots.push_back(outs[i]), gos.push_back(v[i]);
  std::vector<Var> gs(xs.size());
  if (!roots.empty() && !xs.empty())
    gs = grad(roots, xs, gos,
              {.retain_graph = retain || create_graph,
               .create_graph = create_graph,
               .allow_unused = true});
  return fill_unused(name, std::move(gs), xs, strict, create_graph);
}

// The double-vjp trick: g(u) = J^T u is recorded once for dummy leaves u (one per reached
// output); then J t = d<g(u), t>/du, one more reverse sweep per tangent.
class DoubleVjp {
 public:
  DoubleVjp(const char* name, const std::vector<Var>& outs, const std::vector<Var>& xs, bool strict)
      : outs_(outs) {
    std::vector<Var> roots;
    for (size_t i = 0; i < outs.size(); ++i) {
      if (!reached(name, outs, i, strict)) continue;
      roots.push_back(outs[i]);
      root_of_.push_back(i);
      us_.push_back(Var(zeros(outs[i].shape(), outs[i].dtype()), true));
    }
    if (roots.empty() || xs.empty()) return;
    gs_ = grad(roots, xs, us_, {.retain_graph = true, .create_graph = true, .allow_unused = true});
  }

  // J t, one per output; an undefined tangent counts as zero. Under `strict` an output the
  // tangents' inputs do not reach (`about` names them) is a GraphError, as in reverse mode.
  std::vector<Var> apply(const std::vector<Var>& tangents, bool create_graph, bool retain,
                         const char* name, bool strict, const std::string& about) const {
    std::vector<Var> gs, ts;
    for (size_t j = 0; j < gs_.size(); ++j)
      if (gs_[j].defined() && gs_[j].requires_grad() && tangents[j].defined())
        gs.push_back(gs_[j]), ts.push_back(tangents[j]);
    std::vector<Var> r(us_.size());
    if (!gs.empty())
      r = grad(gs, us_, ts,
               {.retain_graph = retain || create_graph,
                .create_graph = create_graph,
                .allow_unused = true});
    std::vector<Var> out(outs_.size());
    for (size_t k = 0; k < root_of_.size(); ++k) {
      out[root_of_[k]] = r[k];
      if (r[k].defined())
        check_differentiable(name, r[k], at("output", root_of_[k]) + "'s product", strict,
                             create_graph);
      else if (strict)
        throw GraphError(std::string(name) + ": " + at("output", root_of_[k]) +
                         " does not depend on " + about + " (strict)");
    }
    for (size_t i = 0; i < out.size(); ++i)
      if (!out[i].defined()) out[i] = zeros_var(outs_[i].shape(), outs_[i].dtype());
    return out;
  }

 private:
  std::vector<Var> outs_;
  std::vector<size_t> root_of_;  // the output index of each dummy u
  std::vector<Var> us_;
  std::vector<Var> gs_;  // J^T u, one per input (undefined where unused)
};

// One forward-mode pass: f on duals of xs with tangents ts (undefined: none), inside its own
// DualLevel; returns the outputs (without tangents) and their tangents (zeros where an output
// has none, or a GraphError under `strict` naming `about`, the inputs given a tangent).
// Recorded only when create_graph (else grad mode is off: one pass, no graph).
Product forward_pass(const char* name, const Fn& f, const std::vector<Var>& xs,
                     const std::vector<Var>& ts, bool create_graph, bool strict,
                     const std::string& about = "the inputs", bool record = false) {
  if (fwd::level_active())
    throw Error(
        std::string(name) +
        ": a fwd::DualLevel is already open (nested forward-mode levels are not supported)");
  const fwd::DualLevel level;
  const GradModeGuard mode(create_graph || record);
  std::vector<Var> duals;
  for (size_t i = 0; i < xs.size(); ++i)
    duals.push_back(ts[i].defined() ? fwd::make_dual(xs[i], ts[i]) : xs[i]);
  const std::vector<Var> outs = f(duals);
  Product r;
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].defined())
      throw Error(std::string(name) + ": " + at("output", i) + " of the function is undefined");
    kern::check_floating(outs[i].value(), name);
    fwd::UnpackedDual u = fwd::unpack_dual(outs[i]);
    if (strict && !u.tangent.defined())
      throw GraphError(std::string(name) + ": " + at("output", i) + " does not depend on " + about +
                       " (strict)");
    if (u.tangent.defined())
      check_differentiable(name, u.tangent, at("output", i) + "'s product", strict, create_graph);
    r.outputs.push_back(std::move(u.primal));
    r.product.push_back(u.tangent.defined() ? std::move(u.tangent)
                                            : zeros_var(outs[i].shape(), outs[i].dtype()));
  }
  return r;
}

// Under `strict`: a GraphError when no output's recorded graph reaches an input (PyTorch's
// strict=True: "the output of the user-provided function is independent of input j").
void check_inputs_used(const char* name, const std::vector<Var>& outs, const std::vector<Var>& xs) {
  std::unordered_set<const Node*> seen;
  std::vector<const Node*> todo;
  for (const Var& o : outs) todo.push_back(o.node());
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    for (const Var& in : n->inputs) todo.push_back(in.node());
  }
  for (size_t j = 0; j < xs.size(); ++j)
    if (!seen.count(xs[j].node()))
      throw GraphError(std::string(name) + ": the outputs do not depend on " + at("input", j) +
                       " (strict)");
}

Shape joined(const char* name, const Shape& a, const Shape& b) {
  if (a.rank() + b.rank() > Shape::kMaxRank)
    throw ShapeError(std::string(name) + ": a Jacobian block of shape " + a.str() + " + " +
                     b.str() + " exceeds rank " + std::to_string(Shape::kMaxRank));
  Shape s = a;
  for (int64_t d : b) s.push_back(d);
  return s;
}

// Stacks rows (or columns, at `dim`) and shapes the block as out.shape + in.shape.
Var block(const std::vector<Var>& parts, int64_t dim, const Shape& shape, Dtype dtype) {
  if (parts.empty()) return zeros_var(shape, dtype);
  return reshape(stack(parts, dim), shape.to_vector());
}

std::vector<std::vector<Var>> jacobian_core(const char* name, const std::vector<Var>& outs,
                                            const std::vector<Var>& xs, bool create_graph,
                                            bool strict, Strategy strategy) {
  const size_t no = outs.size(), ni = xs.size();
  std::vector<std::vector<Var>> J(no, std::vector<Var>(ni));
  std::vector<Shape> shapes(no * ni);
  for (size_t i = 0; i < no; ++i)
    for (size_t j = 0; j < ni; ++j)
      shapes[i * ni + j] = joined(name, outs[i].shape(), xs[j].shape());
  if (strategy == Strategy::reverse) {
    for (size_t i = 0; i < no; ++i) {
      std::vector<std::vector<Var>> rows(ni);
      if (reached(name, outs, i, strict)) {
        for (int64_t k = 0; k < outs[i].numel(); ++k) {
          const Var e(one_hot(outs[i].shape(), outs[i].dtype(), k));
          std::vector<Var> g = vjp_core(name, {outs[i]}, xs, {e}, create_graph, strict, true);
          for (size_t j = 0; j < ni; ++j) rows[j].push_back(std::move(g[j]));
        }
      }
      for (size_t j = 0; j < ni; ++j)
        J[i][j] = block(rows[j], 0, shapes[i * ni + j], outs[i].dtype());
    }
  } else {
    const DoubleVjp dv(name, outs, xs, strict);
    for (size_t j = 0; j < ni; ++j) {
      std::vector<std::vector<Var>> cols(no);
      std::vector<Var> ts(ni);
      for (int64_t k = 0; k < xs[j].numel(); ++k) {
        ts[j] = Var(one_hot(xs[j].shape(), xs[j].dtype(), k));
        std::vector<Var> c = dv.apply(ts, create_graph, true, name, strict, at("input", j));
        for (size_t i = 0; i < no; ++i) cols[i].push_back(std::move(c[i]));
      }
      for (size_t i = 0; i < no; ++i)
        J[i][j] = block(cols[i], outs[i].dim(), shapes[i * ni + j], outs[i].dtype());
    }
  }
  return J;
}

// f's output, checked to have one element, and its gradient recorded for a second sweep.
struct Gradient {
  Var output;
  std::vector<Var> grads;
};
Gradient gradient(const char* name, const ScalarFn& f, const std::vector<Var>& xs, bool strict) {
  std::vector<Var> outs = run(
      name, [&](const std::vector<Var>& in) { return std::vector{f(in)}; }, xs);
  if (outs[0].numel() != 1)
    throw ShapeError(std::string(name) + ": the function must return one element, got shape " +
                     outs[0].shape().str());
  const Var one(ones(outs[0].shape(), outs[0].dtype()));
  std::vector<Var> gs = vjp_core(name, outs, xs, {one}, /*create_graph=*/true, strict, true);
  return {outs[0], std::move(gs)};
}

// H v (`right`, by the double-vjp trick through the gradient) or v^T H (one more sweep).
Product hessian_product(const char* name, const ScalarFn& f, const std::vector<Var>& inputs,
                        const std::vector<Var>& v_given, bool create_graph, bool strict,
                        bool right) {
  const std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  const std::vector<Var> v = or_one(v_given, xs);
  check_match(name, "v", v, "input", xs);
  const Gradient g = gradient(name, f, xs, strict);
  std::vector<Var> p = right ? DoubleVjp(name, g.grads, xs, strict)
                                   .apply(v, create_graph, false, name, strict, "the inputs")
                             : vjp_core(name, g.grads, xs, v, create_graph, strict, false);
  return {detached({g.output}, create_graph), std::move(p)};
}

Fn lift(const Fn1& f) {
  return [f](const std::vector<Var>& xs) { return std::vector<Var>{f(xs[0])}; };
}
ScalarFn lift_scalar(const Fn1& f) {
  return [f](const std::vector<Var>& xs) { return f(xs[0]); };
}
Product1 single(Product p) { return {std::move(p.outputs[0]), std::move(p.product[0])}; }

}  // namespace

Product vjp(const Fn& f, const std::vector<Var>& inputs, const std::vector<Var>& v,
            bool create_graph, bool strict) {
  const char* name = "func::vjp";
  const std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  std::vector<Var> outs = run(name, f, xs);
  const std::vector<Var> vs = or_one(v, outs);
  check_match(name, "v", vs, "output", outs);
  std::vector<Var> gs = vjp_core(name, outs, xs, vs, create_graph, strict, false);
  return {detached(std::move(outs), create_graph), std::move(gs)};
}

Product jvp(const Fn& f, const std::vector<Var>& inputs, const std::vector<Var>& tangents_given,
            bool create_graph, bool strict) {
  const char* name = "func::jvp";
  std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  const std::vector<Var> tangents = or_one(tangents_given, xs);
  check_match(name, "tangents", tangents, "input", xs);
  if (!strict) {
    if (!create_graph)
      for (Var& x : xs) x = x.detach();  // nothing to record
    return forward_pass(name, f, xs, tangents, create_graph, false);
  }
  // strict: recorded, so that an input no output depends on shows in the graph.
  Product r = forward_pass(name, f, xs, tangents, create_graph, true, "the inputs", true);
  check_inputs_used(name, r.outputs, xs);
  r.outputs = detached(std::move(r.outputs), create_graph);
  r.product = detached(std::move(r.product), create_graph);
  return r;
}

std::vector<std::vector<Var>> jacobian(const Fn& f, const std::vector<Var>& inputs,
                                       bool create_graph, bool strict, Strategy strategy) {
  const char* name = "func::jacobian";
  // Grad mode on throughout, as PyTorch's enable_grad: under a caller's NoGradGuard the
  // blocks' stack must still be recorded for create_graph.
  const GradModeGuard on(true);
  const std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  const std::vector<Var> outs = run(name, f, xs);
  if (strategy == Strategy::reverse)
    return jacobian_core(name, outs, xs, create_graph, strict, strategy);
  // Forward mode, by columns: one pass per input element with that one-hot tangent.
  const size_t no = outs.size(), ni = xs.size();
  for (size_t i = 0; i < no; ++i) reached(name, outs, i, strict);
  std::vector<std::vector<Var>> J(no, std::vector<Var>(ni));
  for (size_t j = 0; j < ni; ++j) {
    std::vector<std::vector<Var>> cols(no);
    std::vector<Var> ts(ni);
    std::vector<Var> args = xs;
    if (!create_graph)
      for (Var& a : args) a = a.detach();
    for (int64_t k = 0; k < xs[j].numel(); ++k) {
      ts[j] = Var(one_hot(xs[j].shape(), xs[j].dtype(), k));
      std::vector<Var> c =
          forward_pass(name, f, args, ts, create_graph, strict, at("input", j)).product;
      for (size_t i = 0; i < no; ++i) cols[i].push_back(std::move(c[i]));
    }
    for (size_t i = 0; i < no; ++i)
      J[i][j] = block(cols[i], outs[i].dim(), joined(name, outs[i].shape(), xs[j].shape()),
                      outs[i].dtype());
  }
  return J;
}

std::vector<std::vector<Var>> hessian(const ScalarFn& f, const std::vector<Var>& inputs,
                                      bool create_graph, bool strict,
                                      Strategy outer_jacobian_strategy) {
  const char* name = "func::hessian";
  const GradModeGuard on(true);  // as jacobian's
  const std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  const Gradient g = gradient(name, f, xs, strict);
  return jacobian_core(name, g.grads, xs, create_graph, strict, outer_jacobian_strategy);
}

Product hvp(const ScalarFn& f, const std::vector<Var>& inputs, const std::vector<Var>& v,
            bool create_graph, bool strict) {
  return hessian_product("func::hvp", f, inputs, v, create_graph, strict, true);
}

Product vhp(const ScalarFn& f, const std::vector<Var>& inputs, const std::vector<Var>& v,
            bool create_graph, bool strict) {
  return hessian_product("func::vhp", f, inputs, v, create_graph, strict, false);
}

Product1 vjp(const Fn1& f, const Var& input, const Var& v, bool create_graph, bool strict) {
  return single(vjp(lift(f), {input}, listed(v), create_graph, strict));
}
Product vjp(const ScalarFn& f, const std::vector<Var>& inputs, const Var& v, bool create_graph,
            bool strict) {
  const Fn many = [f](const std::vector<Var>& xs) { return std::vector<Var>{f(xs)}; };
  return vjp(many, inputs, listed(v), create_graph, strict);
}
Product1 jvp(const Fn1& f, const Var& input, const Var& tangent, bool create_graph, bool strict) {
  return single(jvp(lift(f), {input}, listed(tangent), create_graph, strict));
}
Var jacobian(const Fn1& f, const Var& input, bool create_graph, bool strict, Strategy strategy) {
  return jacobian(lift(f), {input}, create_graph, strict, strategy)[0][0];
}
Var hessian(const Fn1& f, const Var& input, bool create_graph, bool strict,
            Strategy outer_jacobian_strategy) {
  return hessian(lift_scalar(f), {input}, create_graph, strict, outer_jacobian_strategy)[0][0];
}
Product1 hvp(const Fn1& f, const Var& input, const Var& v, bool create_graph, bool strict) {
  return single(hvp(lift_scalar(f), {input}, listed(v), create_graph, strict));
}
Product1 vhp(const Fn1& f, const Var& input, const Var& v, bool create_graph, bool strict) {
  return single(vhp(lift_scalar(f), {input}, listed(v), create_graph, strict));
}

namespace {

constexpr const char* kPsg = "func::per_sample_grad";

// Checks the batch tensors and returns the batch size B (every first dim).
int64_t batch_size(const std::vector<Var>& batch) {
  const std::string name = kPsg;
  if (batch.empty()) throw Error(name + ": the batch holds no tensor");
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].defined()) throw Error(name + ": " + at("batch tensor", i) + " is undefined");
    if (batch[i].dim() == 0 || batch[i].shape()[0] != batch[0].shape()[0])
      throw ShapeError(name + ": " + at("batch tensor", i) + " has shape " +
                       batch[i].shape().str() + ", expected a first dim of " +
                       (batch[0].dim() ? std::to_string(batch[0].shape()[0]) : "the batch size"));
  }
  return batch[0].shape()[0];
}

std::vector<Var> detached(const std::vector<Var>& batch) {
  std::vector<Var> out;
  for (const Var& t : batch) out.push_back(t.detach());
  return out;
}

// `rows` (one [*shape] gradient per sample, or empty) stacked as [B, *shape].
Var stacked(const std::vector<Var>& rows, int64_t n, const Var& param) {
  Shape s = param.shape();
  s.insert(0, n);
  return block(rows, 0, s, param.dtype());
}

// The loop: one forward and backward of batch 1 per sample. Returns the gradients and the
// losses [B]. A batch loss must give shape [1] for a sample, a sample loss one element.
std::pair<std::vector<Var>, Var> loop_grads(Module& module, const SampleLoss& loss,
                                            const std::vector<Var>& batch, int64_t n,
                                            bool batch_loss) {
  const std::vector<Var> params = module.parameters();
  std::vector<Var> wanted;  // the parameters that want a gradient
  for (const Var& p : params)
    if (p.requires_grad()) wanted.push_back(p);
  std::vector<std::vector<Var>> rows(params.size());
  std::vector<Var> losses;
  for (int64_t b = 0; b < n; ++b) {
    std::vector<Var> sample;
    for (const Var& t : batch) sample.push_back(narrow(t.detach(), 0, b, 1));
    Var l;
    {
      GradModeGuard on(true);
      l = loss(sample);
    }
    if (!l.defined() || (batch_loss ? l.shape() != Shape{1} : l.numel() != 1))
      throw ShapeError(std::string(kPsg) +
                       (batch_loss ? ": the batch loss of one sample must have shape [1], got "
                                   : ": the loss must have one element, got ") +
                       (l.defined() ? l.shape().str() : std::string("undefined")));
    losses.push_back(reshape(l.detach(), {}));
    std::vector<Var> gs(wanted.size());
    if (l.requires_grad() && !wanted.empty()) gs = grad({l}, wanted, {}, {.allow_unused = true});
    for (size_t p = 0, w = 0; p < params.size(); ++p) {
      const Var g = params[p].requires_grad() ? gs[w++] : Var();
      rows[p].push_back(g.defined() ? g : zeros_var(params[p].shape(), params[p].dtype()));
    }
  }
  std::vector<Var> out;
  for (size_t p = 0; p < params.size(); ++p) out.push_back(stacked(rows[p], n, params[p]));
  const Dtype dt = losses.empty() ? (params.empty() ? f32 : params[0].dtype()) : losses[0].dtype();
  return {out, block(losses, 0, Shape{n}, dt)};
}

// ---- the vectorized path (Opacus's per-layer rules) ----

// The layers with a per-sample rule: exactly these types (a subclass may compute otherwise).
bool has_rule(const Module& m) {
  const std::type_info& t = typeid(m);
  return t == typeid(Linear) || t == typeid(Conv1d) || t == typeid(Conv2d) ||
         t == typeid(Embedding) || t == typeid(LayerNorm) || t == typeid(GroupNorm);
}

std::string described(const Module& m, const std::string& path) {
  return m.type_name() + " " +
         (path.empty() ? std::string("(the module itself)") : "'" + path + "'");
}

// Why the module cannot be vectorized before running it ("" when it can).
std::string static_obstacle(Module& module) {
  for (auto& [path, m] : module.named_modules()) {
    if (auto* bn = dynamic_cast<BatchNormBase*>(m); bn && bn->is_training())
      return described(*m, path) + " is in training mode: its batch statistics mix the samples";
    if (has_rule(*m)) continue;
    for (const auto& [pname, p] : m->own_parameters())
      if (p.requires_grad())
        return "parameter '" + (path.empty() ? pname : path + "." + pname) + "' belongs to " +
               described(*m, path) + ", which has no per-sample rule";
  }
  return "";
}

// One call of a hooked layer.
struct Call {
  Layer* layer;
  Var input, output;
};

// Forward hooks that record every call of the given layers; removed on destruction.
class Recorder {
 public:
  explicit Recorder(const std::vector<Layer*>& layers) {
    for (Layer* l : layers)
      ids_.emplace_back(l,
                        l->register_forward_hook([this](Layer& layer, const Var& x, const Var& y) {
                          calls.push_back({&layer, x, y});
                        }));
  }
  ~Recorder() {
    for (auto& [l, id] : ids_) l->remove_forward_hook(id);
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  std::vector<Call> calls;

 private:
  std::vector<std::pair<Layer*, size_t>> ids_;
};

// Leaves that want no gradient while it lives (they want one again after).
class Unwanted {
 public:
  explicit Unwanted(std::vector<Var> leaves) : leaves_(std::move(leaves)) {
    for (Var& v : leaves_) v.requires_grad_(false);
  }
  ~Unwanted() {
    for (Var& v : leaves_) v.requires_grad_(true);
  }
  Unwanted(const Unwanted&) = delete;
  Unwanted& operator=(const Unwanted&) = delete;

 private:
  std::vector<Var> leaves_;
};

std::vector<int64_t> axes_between(int64_t first, int64_t last) {
  std::vector<int64_t> a;
  for (int64_t d = first; d < last; ++d) a.push_back(d);
  return a;
}
Var sum_over(const Var& x, const std::vector<int64_t>& axes) {
  return axes.empty() ? x : sum(x, axes);
}

// The padding a convolution puts before and after a spatial dim (Padding2's rules,
// ops/conv.hpp: "same" puts an odd total's extra row or column after).
std::pair<int64_t, int64_t> pads(const Padding2& p, int64_t explicit_size, int64_t k, int64_t d) {
  if (p.mode == Padding2::Mode::same) return {d * (k - 1) / 2, d * (k - 1) - d * (k - 1) / 2};
  const int64_t e = p.mode == Padding2::Mode::valid ? 0 : explicit_size;
  return {e, e};
}

// Per-sample gradients of a convolution's weight (Conv1d as a height of 1): sample b's
// output gradient times its input's columns (unfold: the pixel each kernel tap reads at each
// output position), one batched gemm per sample and group:
// [B, G, O / G, L] x [B, G, C / G * taps, L]^T.
Var conv_weight_rows(const ConvBase& c, const Var& x, const Var& g, int64_t n) {
  const bool one_d = x.dim() == 3;
  const auto &ks = c.kernel_size(), &st = c.stride(), &dl = c.dilation();
  const int64_t kh = one_d ? 1 : ks[0], kw = ks.back(), sh = one_d ? 1 : st[0], sw = st.back();
  const int64_t dh = one_d ? 1 : dl[0], dw = dl.back();
  // A padding_mode other than zeros pads the input itself (ConvBase::pad_input).
  const bool padded = c.padding_mode() != "zeros";
  const std::pair<int64_t, int64_t> none{0, 0};
  const auto [ph, pah] = one_d || padded ? none : pads(c.padding(), c.padding().size.h, kh, dh);
  const auto [pw, paw] = padded ? none : pads(c.padding(), c.padding().size.w, kw, dw);
  Var x4 = one_d ? unsqueeze(c.pad_input(x), 2) : c.pad_input(x);
  Size2 padding(ph, pw);
  if (pah != ph || paw != pw) {  // unfold pads both sides alike
    x4 = pad(x4, {pw, paw, ph, pah});
    padding = 0;
  }
  const Var cols = unfold(x4, {kh, kw}, {dh, dw}, padding, {sh, sw});
  const int64_t ch = x.shape()[1], L = cols.shape()[2], groups = c.groups(), o = g.shape()[1];
  const Var dwt = matmul(reshape(g, {n, groups, o / groups, L}),
                         reshape(cols, {n, groups, ch / groups * kh * kw, L}), false, true);
  std::vector<int64_t> s = c.weight.shape().to_vector();
  s.insert(s.begin(), n);
  return reshape(dwt, s);
}

// Sample b's output gradient rows added at its ids (none at padding_idx).
Var embedding_rows(const Embedding& e, const Var& ids, const Var& g, int64_t n) {
  const int64_t num = e.weight.shape()[0], dim = e.weight.shape()[1];
  Tensor out = zeros({n, num, dim}, g.dtype());
  const Tensor& id = ids.value();
  const Tensor& gv = g.value();
  const int64_t per = id.numel() / n;
  const std::optional<int64_t> pad = e.padding_idx();
  dispatch(g.dtype(), kPsg, [&]<class T>() {
    const int64_t* ip = id.data<int64_t>();
    const T* gp = gv.data<T>();
    T* op = out.data<T>();
    for (int64_t r = 0; r < id.numel(); ++r) {
      const int64_t k = ip[r];
      if (pad && k == *pad) continue;
      T* dst = op + ((r / per) * num + k) * dim;
      const T* src = gp + r * dim;
      for (int64_t d = 0; d < dim; ++d) dst[d] += src[d];
    }
  });
  return Var(out);
}

// The per-sample gradients one call contributes, by parameter; an empty list and `why` set
// when the call's input is not batched as the rule needs.
std::vector<std::pair<Var, Var>> rule(const Call& c, const Var& g, int64_t n, std::string& why) {
  const Var x = c.input.detach();
  const Layer& l = *c.layer;
  std::vector<std::pair<Var, Var>> out;
  auto add = [&](const Var& p, auto&& make) {
    if (p.defined() && p.requires_grad()) out.emplace_back(p, make());
  };
  int64_t min_rank = 2;
  if (const auto* e = dynamic_cast<const LayerNorm*>(&l))
    min_rank = static_cast<int64_t>(e->normalized_shape().size()) + 1;
  else if (const auto* cv = dynamic_cast<const ConvBase*>(&l))
    min_rank = cv->weight.dim();
  else if (dynamic_cast<const Embedding*>(&l))
    min_rank = 1;
  const bool conv = dynamic_cast<const ConvBase*>(&l) != nullptr;
  if (x.dim() < min_rank || (conv && x.dim() != min_rank) || x.shape()[0] != n) {
    why = "its input has shape " + x.shape().str() + ", not a batch of " + std::to_string(n) +
          " samples along the first dim";
    return out;
  }
  if (const auto* lin = dynamic_cast<const Linear*>(&l)) {
    const int64_t in = lin->in_features(), o = lin->out_features();
    const int64_t m = x.numel() / (n * in);
    const Var x3 = reshape(x, {n, m, in}), g3 = reshape(g, {n, m, o});
    add(lin->weight, [&] { return matmul(g3, x3, true, false); });
    add(lin->bias, [&] { return sum(g3, {1}); });
  } else if (const auto* cv = dynamic_cast<const ConvBase*>(&l)) {
    add(cv->weight, [&] { return conv_weight_rows(*cv, x, g, n); });
    add(cv->bias, [&] { return sum(g, axes_between(2, g.dim())); });
  } else if (const auto* e = dynamic_cast<const Embedding*>(&l)) {
    add(e->weight, [&] { return embedding_rows(*e, x, g, n); });
  } else if (const auto* ln = dynamic_cast<const LayerNorm*>(&l)) {
    const auto axes =
        axes_between(1, x.dim() - static_cast<int64_t>(ln->normalized_shape().size()));
    add(ln->weight, [&] {
      return sum_over(g * layer_norm(x, ln->normalized_shape(), {}, {}, ln->eps()), axes);
    });
    add(ln->bias, [&] { return sum_over(g, axes); });
  } else if (const auto* gn = dynamic_cast<const GroupNorm*>(&l)) {
    const auto axes = axes_between(2, x.dim());
    add(gn->weight,
        [&] { return sum_over(g * group_norm(x, gn->num_groups(), {}, {}, gn->eps()), axes); });
    add(gn->bias, [&] { return sum_over(g, axes); });
  }
  return out;
}

// The op nodes recorded by the calls: each call's graph from its output back to its input
// (a layer computes from its input and its own parameters alone).
std::unordered_set<const Node*> call_ops(const std::vector<Call>& calls) {
  std::unordered_set<const Node*> ops;
  for (const Call& c : calls) {
    std::vector<const Node*> todo = {c.output.node()};
    while (!todo.empty()) {
      const Node* n = todo.back();
      todo.pop_back();
      if (n == nullptr || n == c.input.node() || !n->has_fn || !ops.insert(n).second) continue;
      for (const Var& in : n->inputs) todo.push_back(in.node());
    }
  }
  return ops;
}

// The name of a parameter in `owned` (by node) that an op outside `inside` consumes on
// the way to `losses` ("" when none): its gradient has a part no rule sees (weight tying:
// an Embedding's weight reused by a matmul in the parent's forward).
std::string used_outside(const Var& losses, const std::unordered_set<const Node*>& inside,
                         const std::unordered_map<const Node*, std::string>& owned) {
  std::unordered_set<const Node*> seen;
  std::vector<const Node*> todo = {losses.node()};
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !n->has_fn || !seen.insert(n).second) continue;
    for (const Var& in : n->inputs) {
      if (auto it = owned.find(in.node()); it != owned.end() && !inside.count(n)) return it->second;
      todo.push_back(in.node());
    }
  }
  return "";
}

// The vectorized path; fills `why` and returns false when it cannot be taken.
bool vectorized_grads(Module& module, const BatchLoss& loss, const std::vector<Var>& batch,
                      int64_t n, PerSampleGrads& r, std::string& why) {
  why = static_obstacle(module);
  if (!why.empty()) return false;
  std::vector<Layer*> layers;
  std::unordered_map<const Module*, std::string> paths;
  for (auto& [path, m] : module.named_modules())
    if (has_rule(*m)) {
      layers.push_back(static_cast<Layer*>(m));
      paths[m] = path;
    }
  Recorder rec(layers);
  Var losses;
  {
    GradModeGuard on(true);
    losses = loss(detached(batch));
  }
  if (!losses.defined() || losses.shape() != Shape{n})
    throw ShapeError(std::string(kPsg) + ": the batch loss must have shape [" + std::to_string(n) +
                     "] (one loss per sample), got " +
                     (losses.defined() ? losses.shape().str() : std::string("undefined")));
  kern::check_floating(losses.value(), kPsg);
  {
    std::unordered_map<const Node*, std::string> owned;  // the called layers' parameters
    for (const Call& c : rec.calls)
      for (const auto& [pname, p] : c.layer->own_parameters())
        if (p.requires_grad())
          owned.emplace(p.node(), paths[c.layer].empty() ? pname : paths[c.layer] + "." + pname);
    const std::string name = used_outside(losses, call_ops(rec.calls), owned);
    if (!name.empty()) {
      why = "parameter '" + name + "' is used outside the calls of its layer's operator()";
      return false;
    }
  }
  // The outputs to differentiate, and the parameters of layers whose hook never ran (they
  // must not reach the loss: else they were used outside their layer's operator()).
  std::vector<Var> wrt;
  std::vector<size_t> call_of;
  for (size_t i = 0; i < rec.calls.size(); ++i)
    if (rec.calls[i].output.requires_grad()) {
      wrt.push_back(rec.calls[i].output);
      call_of.push_back(i);
    }
  const size_t n_out = wrt.size();
  std::vector<std::string> unhooked;
  for (Layer* l : layers) {
    bool called = false;
    for (const Call& c : rec.calls) called = called || c.layer == l;
    if (called) continue;
    for (const auto& [pname, p] : l->own_parameters())
      if (p.requires_grad()) {
        wrt.push_back(p);
        unhooked.push_back(paths[l].empty() ? pname : paths[l] + "." + pname);
      }
  }
  // The summed gradients of the called layers' parameters are not needed: their leaves
  // stop wanting one for the sweep, so the ops' backwards skip them (the graph is recorded).
  std::vector<Var> frozen;
  for (Layer* l : layers)
    for (const auto& [pname, p] : l->own_parameters()) {
      bool queried = false;
      for (const Var& v : wrt) queried = queried || v.node() == p.node();
      if (p.requires_grad() && !queried) frozen.push_back(p);
    }
  std::vector<Var> gs(wrt.size());
  if (losses.requires_grad() && !wrt.empty()) {
    Unwanted off(frozen);
    gs = grad({losses}, wrt, {Var(ones(losses.shape(), losses.dtype()))}, {.allow_unused = true});
  }
  for (size_t i = n_out; i < gs.size(); ++i)
    if (gs[i].defined()) {
      why = "parameter '" + unhooked[i - n_out] +
            "' reached the loss without a call of its layer's operator()";
      return false;
    }
  GradModeGuard off(false);
  std::unordered_map<const Node*, Var> acc;
  for (size_t k = 0; k < n_out; ++k) {
    if (!gs[k].defined()) continue;
    const Call& c = rec.calls[call_of[k]];
    for (auto& [p, rows] : rule(c, gs[k].detach(), n, why)) {
      Var& a = acc[p.node()];
      a = a.defined() ? a + rows : rows;
    }
    if (!why.empty()) {
      why = described(*c.layer, paths[c.layer]) + ": " + why;
      return false;
    }
  }
  for (const Var& p : module.parameters()) {
    auto it = acc.find(p.node());
    r.grads.push_back(it != acc.end() ? it->second : stacked({}, n, p));
  }
  r.losses = losses.detach();
  return true;
}

}  // namespace

std::vector<Var> per_sample_grad(Module& module, const SampleLoss& loss,
                                 const std::vector<Var>& batch) {
  const int64_t n = batch_size(batch);
  return loop_grads(module, loss, batch, n, false).first;
}

PerSampleGrads per_sample_grad(Module& module, const BatchLoss& loss, const std::vector<Var>& batch,
                               const PerSampleGradOptions& options) {
  const int64_t n = batch_size(batch);
  PerSampleGrads r;
  if (options.strategy != PerSampleStrategy::loop && n > 0) {
    std::string why;
    if (vectorized_grads(module, loss, batch, n, r, why)) {
      r.vectorized = true;
      return r;
    }
    if (options.strategy == PerSampleStrategy::vectorized)
      throw Error(std::string(kPsg) + ": cannot vectorize: " + why);
    r.fallback_reason = why;
  }
  std::tie(r.grads, r.losses) = loop_grads(module, loss, batch, n, true);
  return r;
}

}  // namespace tg::func
