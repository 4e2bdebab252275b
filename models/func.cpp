// Functional transforms on top of tg::grad and forward mode (graph/forward_ad.hpp). vjp runs
// the user's function once with grad mode on and sweeps its graph backwards once; jvp runs
// it once in forward mode (tangents alongside the values, no sweep); jacobian sweeps once
// per output element (reverse) or runs forward once per input element plus once (forward);
// hessian = jacobian of the gradient, whose forward strategy keeps the double-vjp trick.
#include "models/func.hpp"

#include <string>

#include "graph/dtype.hpp"
#include "graph/error.hpp"
#include "graph/forward_ad.hpp"
#include "graph/kernels.hpp"
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

// Whether output i takes part; a GraphError under `strict` when the inputs do not reach it.
bool reached(const char* name, const std::vector<Var>& outs, size_t i, bool strict) {
  if (outs[i].requires_grad()) return true;
  if (strict)
    throw GraphError(std::string(name) + ": " + at("output", i) +
                     " does not depend on the inputs (strict)");
  return false;
}

// Undefined gradients (inputs not reached) become zeros, or a GraphError under `strict`.
std::vector<Var> fill_unused(const char* name, std::vector<Var> gs, const std::vector<Var>& refs,
                             bool strict) {
  for (size_t j = 0; j < gs.size(); ++j) {
    if (gs[j].defined()) continue;
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
  return fill_unused(name, std::move(gs), xs, strict);
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

  // J t, one per output; an undefined tangent counts as zero.
  std::vector<Var> apply(const std::vector<Var>& tangents, bool create_graph, bool retain) const {
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
    for (size_t k = 0; k < root_of_.size(); ++k) out[root_of_[k]] = r[k];
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
// has none, or a GraphError under `strict`). Recorded only when create_graph (else grad mode
// is off: one pass, no graph).
Product forward_pass(const char* name, const Fn& f, const std::vector<Var>& xs,
                     const std::vector<Var>& ts, bool create_graph, bool strict) {
  if (fwd::level_active())
    throw Error(
        std::string(name) +
        ": a fwd::DualLevel is already open (nested forward-mode levels are not supported)");
  const fwd::DualLevel level;
  const GradModeGuard mode(create_graph);
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
      throw GraphError(std::string(name) + ": " + at("output", i) +
                       " does not depend on the inputs (strict)");
    r.outputs.push_back(std::move(u.primal));
    r.product.push_back(u.tangent.defined() ? std::move(u.tangent)
                                            : zeros_var(outs[i].shape(), outs[i].dtype()));
  }
  return r;
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
        std::vector<Var> c = dv.apply(ts, create_graph, true);
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
                        const std::vector<Var>& v, bool create_graph, bool strict, bool right) {
  const std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  check_match(name, "v", v, "input", xs);
  const Gradient g = gradient(name, f, xs, strict);
  std::vector<Var> p = right ? DoubleVjp(name, g.grads, xs, strict).apply(v, create_graph, false)
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
  std::vector<Var> vs = v;
  if (vs.empty() && outs.size() == 1 && outs[0].numel() == 1)
    vs.push_back(Var(ones(outs[0].shape(), outs[0].dtype())));
  check_match(name, "v", vs, "output", outs);
  std::vector<Var> gs = vjp_core(name, outs, xs, vs, create_graph, strict, false);
  return {detached(std::move(outs), create_graph), std::move(gs)};
}

Product jvp(const Fn& f, const std::vector<Var>& inputs, const std::vector<Var>& tangents,
            bool create_graph, bool strict) {
  const char* name = "func::jvp";
  std::vector<Var> xs = prepare_inputs(name, inputs, create_graph);
  check_match(name, "tangents", tangents, "input", xs);
  if (!create_graph)
    for (Var& x : xs) x = x.detach();  // nothing to record
  return forward_pass(name, f, xs, tangents, create_graph, strict);
}

std::vector<std::vector<Var>> jacobian(const Fn& f, const std::vector<Var>& inputs,
                                       bool create_graph, bool strict, Strategy strategy) {
  const char* name = "func::jacobian";
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
      std::vector<Var> c = forward_pass(name, f, args, ts, create_graph, false).product;
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
  return single(vjp(lift(f), {input}, v.defined() ? std::vector{v} : std::vector<Var>{},
                    create_graph, strict));
}
Product vjp(const ScalarFn& f, const std::vector<Var>& inputs, const Var& v, bool create_graph,
            bool strict) {
  const Fn many = [f](const std::vector<Var>& xs) { return std::vector<Var>{f(xs)}; };
  return vjp(many, inputs, v.defined() ? std::vector{v} : std::vector<Var>{}, create_graph, strict);
}
Product1 jvp(const Fn1& f, const Var& input, const Var& tangent, bool create_graph, bool strict) {
  return single(jvp(lift(f), {input}, {tangent}, create_graph, strict));
}
Var jacobian(const Fn1& f, const Var& input, bool create_graph, bool strict, Strategy strategy) {
  return jacobian(lift(f), {input}, create_graph, strict, strategy)[0][0];
}
Var hessian(const Fn1& f, const Var& input, bool create_graph, bool strict,
            Strategy outer_jacobian_strategy) {
  return hessian(lift_scalar(f), {input}, create_graph, strict, outer_jacobian_strategy)[0][0];
}
Product1 hvp(const Fn1& f, const Var& input, const Var& v, bool create_graph, bool strict) {
  return single(hvp(lift_scalar(f), {input}, {v}, create_graph, strict));
}
Product1 vhp(const Fn1& f, const Var& input, const Var& v, bool create_graph, bool strict) {
  return single(vhp(lift_scalar(f), {input}, {v}, create_graph, strict));
}

std::vector<Var> per_sample_grad(Module& module, const SampleLoss& loss,
                                 const std::vector<Var>& batch) {
  const char* name = "func::per_sample_grad";
  if (batch.empty()) throw Error(std::string(name) + ": the batch holds no tensor");
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].defined())
      throw Error(std::string(name) + ": batch tensor " + std::to_string(i) + " is undefined");
    if (batch[i].dim() == 0 || batch[i].shape()[0] != batch[0].shape()[0])
      throw ShapeError(std::string(name) + ": batch tensor " + std::to_string(i) + " has shape " +
                       batch[i].shape().str() + ", expected a first dim of " +
                       (batch[0].dim() ? std::to_string(batch[0].shape()[0]) : "the batch size"));
  }
  const int64_t n = batch[0].shape()[0];
  const std::vector<Var> params = module.parameters();
  std::vector<Var> wanted;  // the parameters that want a gradient
  for (const Var& p : params)
    if (p.requires_grad()) wanted.push_back(p);
  std::vector<std::vector<Var>> rows(params.size());
  for (int64_t b = 0; b < n; ++b) {
    std::vector<Var> sample;
    for (const Var& t : batch) sample.push_back(narrow(t.detach(), 0, b, 1));
    Var l;
    {
      GradModeGuard on(true);
      l = loss(sample);
    }
    if (!l.defined() || l.numel() != 1)
      throw ShapeError(std::string(name) + ": the loss must have one element, got " +
                       (l.defined() ? l.shape().str() : std::string("undefined")));
    std::vector<Var> gs(wanted.size());
    if (l.requires_grad() && !wanted.empty()) gs = grad({l}, wanted, {}, {.allow_unused = true});
    for (size_t p = 0, w = 0; p < params.size(); ++p) {
      const Var g = params[p].requires_grad() ? gs[w++] : Var();
      rows[p].push_back(g.defined() ? g : zeros_var(params[p].shape(), params[p].dtype()));
    }
  }
  std::vector<Var> out;
  for (size_t p = 0; p < params.size(); ++p) {
    Shape s = params[p].shape();
    s.insert(0, n);
    out.push_back(block(rows[p], 0, s, params[p].dtype()));
  }
  return out;
}

}  // namespace tg::func
