#include "graph/gradcheck.hpp"

#include <cmath>
#include <sstream>

#include "graph/forward_ad.hpp"
#include "graph/rng.hpp"

namespace tg {

namespace {

// The function under check, with one or several outputs (gradgradcheck's first gradients
// are one output per input).
using Outputs = std::vector<Var>;
using MultiFn = std::function<Outputs(const std::vector<Var>&)>;

Outputs evaluate(const MultiFn& fn, const std::vector<Var>& leaves, const char* who) {
  Outputs outs = fn(leaves);
  for (const Var& out : outs) {
    if (!out.defined()) throw Error(std::string(who) + ": the function returned an undefined Var");
    if (out.dtype() != f64)
      throw DtypeError(std::string(who) + ": the function returned " +
                       std::string(dtype_name(out.dtype())) +
                       " for float64 inputs; it must compute in the inputs' dtype");
  }
  return outs;
}

// Every output element's value, in order (outputs one after another, each row-major).
std::vector<double> flat_values(const Outputs& outs) {
  std::vector<double> v;
  for (const Var& out : outs) {
    const double* p = out.value().data<double>();
    v.insert(v.end(), p, p + out.numel());
  }
  return v;
}

// The full Jacobian of `fn` at `inputs` from backprop against central finite differences.
GradcheckReport check(const MultiFn& fn, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& opt, const char* who) {
  std::vector<Var> leaves;
  for (const Tensor& t : inputs) leaves.push_back(param(t.to(f64).clone()));
  const Outputs outs = evaluate(fn, leaves, who);
  int64_t m = 0;
  for (const Var& out : outs) m += out.numel();

  // Analytic Jacobian, one row per output element: J[i][k * n_i + j] = d out_k / d in_i[j].
  std::vector<std::vector<double>> analytic(leaves.size());
  for (size_t i = 0; i < leaves.size(); ++i)
    analytic[i].assign(static_cast<size_t>(m * leaves[i].numel()), 0.0);
  int64_t row = 0;  // the first row of the current output
  for (const Var& out : outs) {
    for (int64_t k = 0; out.requires_grad() && k < out.numel(); ++k) {
      Tensor seed = zeros(out.shape(), f64);
      seed.data<double>()[k] = 1.0;
      std::vector<Var> g =
          grad({out}, leaves, {constant(seed)}, {.retain_graph = true, .allow_unused = true});
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (!g[i].defined()) continue;
        const double* p = g[i].value().data<double>();
        const int64_t n = leaves[i].numel();
        for (int64_t j = 0; j < n; ++j) analytic[i][static_cast<size_t>((row + k) * n + j)] = p[j];
      }
    }
    row += out.numel();
  }

  GradcheckReport r;
  double worst_ratio = -1.0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    Tensor xv = leaves[i].value();  // shares the leaf's buffer
    double* x = xv.data<double>();
    const int64_t n = leaves[i].numel();
    for (int64_t j = 0; j < n; ++j) {
      const double orig = x[j];
      x[j] = orig + opt.eps;
      const std::vector<double> plus = flat_values(evaluate(fn, leaves, who));
      x[j] = orig - opt.eps;
      const std::vector<double> minus = flat_values(evaluate(fn, leaves, who));
      x[j] = orig;
      for (int64_t k = 0; k < m; ++k) {
        const double num =
            (plus[static_cast<size_t>(k)] - minus[static_cast<size_t>(k)]) / (2.0 * opt.eps);
        const double ana = analytic[i][static_cast<size_t>(k * n + j)];
        const double abs_err = std::abs(ana - num);
        const double rel_err = abs_err / std::max(std::abs(num), 1e-12);
        const double allowed = opt.atol + opt.rtol * std::abs(num);
        const double ratio = std::isfinite(abs_err) ? abs_err / allowed : INFINITY;
        r.max_abs_error = std::max(r.max_abs_error, std::isfinite(abs_err) ? abs_err : INFINITY);
        if (abs_err > opt.atol) r.max_rel_error = std::max(r.max_rel_error, rel_err);
        if (!(abs_err <= allowed)) r.passed = false;
        if (ratio > worst_ratio) {
          worst_ratio = ratio;
          r.worst_input = static_cast<int>(i);
          r.worst_element = j;
          r.analytic = ana;
          r.numeric = num;
        }
      }
    }
  }
  std::ostringstream msg;
  msg << who << (r.passed ? " passed" : " FAILED") << ": max abs error " << r.max_abs_error
      << ", max rel error " << r.max_rel_error;
  if (r.worst_input >= 0)
    msg << "; worst at input " << r.worst_input << " element " << r.worst_element << " (analytic "
        << r.analytic << ", numeric " << r.numeric << ")";
  r.message = msg.str();
  return r;
}

}  // namespace

GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opt) {
  return check([&fn](const std::vector<Var>& xs) { return Outputs{fn(xs)}; }, inputs, opt,
               "gradcheck");
}

GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& opt) {
  // Shape of the output, to draw the fixed random output weights v.
  std::vector<Var> probe;
  for (const Tensor& t : inputs) probe.push_back(param(t.to(f64).clone()));
  const Shape out_shape = evaluate([&fn](const std::vector<Var>& xs) { return Outputs{fn(xs)}; },
                                   probe, "gradgradcheck")[0]
                              .shape();
  Rng rng(opt.seed);
  const Var v = constant(randn(out_shape, rng, f64));
  // G(x) = v . J(x), one output per input; its Jacobian is the second derivative.
  auto first_grads = [&](const std::vector<Var>& xs) {
    Var out = fn(xs);
    if (!out.defined()) throw Error("gradgradcheck: the function returned an undefined Var");
    std::vector<Var> g;
    if (out.requires_grad()) g = grad({out}, xs, {v}, {.create_graph = true, .allow_unused = true});
    Outputs parts;
    for (size_t i = 0; i < xs.size(); ++i)
      parts.push_back(i < g.size() && g[i].defined() ? g[i] : constant(zeros(xs[i].shape(), f64)));
    return parts;
  };
  return check(first_grads, inputs, opt, "gradgradcheck");
}

GradcheckReport fwdcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                         const GradcheckOptions& opt) {
  std::vector<Var> leaves;
  std::vector<Tensor> tangents;
  Rng rng(opt.seed + 1);
  for (const Tensor& t : inputs) {
    leaves.push_back(param(t.to(f64).clone()));
    tangents.push_back(randn(t.shape(), rng, f64));
  }
  auto value = [&](const std::vector<Var>& xs) {
    return evaluate([&fn](const std::vector<Var>& v) { return Outputs{fn(v)}; }, xs, "fwdcheck")[0];
  };
  // Forward mode, on the leaves with grad mode on, and on constants with grad mode off
  // (func::jvp's default): an op must not skip its JVP rule when nothing is recorded.
  auto forward_pass = [&](bool recording) {
    fwd::DualLevel level;
    GradModeGuard mode(recording);
    std::vector<Var> duals;
    for (size_t i = 0; i < leaves.size(); ++i)
      duals.push_back(fwd::make_dual(recording ? leaves[i] : constant(leaves[i].value()),
                                     constant(tangents[i])));
    const Var out = value(duals);
    const Var t = fwd::unpack_dual(out).tangent;
    return t.defined() ? t.value().clone() : zeros(out.shape(), f64);
  };
  const Tensor forward = forward_pass(true);
  Tensor unrecorded = forward;
  try {
    unrecorded = forward_pass(false);
  } catch (const GraphError&) {
    // A function that differentiates itself (a backward op's row) needs grad mode.
  }
  const Var out = value(leaves);
  const int64_t m = out.numel();
  // Backprop: (J t)[k] = sum_i <d out[k] / d in_i, t_i>.
  std::vector<double> reverse(static_cast<size_t>(m), 0.0);
  for (int64_t k = 0; out.requires_grad() && k < m; ++k) {
    Tensor seed = zeros(out.shape(), f64);
    seed.data<double>()[k] = 1.0;
    const std::vector<Var> g =
        grad({out}, leaves, {constant(seed)}, {.retain_graph = true, .allow_unused = true});
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (!g[i].defined()) continue;
      const double* gp = g[i].value().data<double>();
      const double* tp = tangents[i].data<double>();
      for (int64_t j = 0; j < leaves[i].numel(); ++j)
        reverse[static_cast<size_t>(k)] += gp[j] * tp[j];
    }
  }
  // Central differences along t.
  auto shifted = [&](double h) {
    std::vector<Var> xs;
    for (size_t i = 0; i < leaves.size(); ++i) {
      Tensor x = leaves[i].value().clone();
      double* xp = x.data<double>();
      const double* tp = tangents[i].data<double>();
      for (int64_t j = 0; j < x.numel(); ++j) xp[j] += h * tp[j];
      xs.push_back(param(x));  // (the function may differentiate itself)
    }
    return flat_values({value(xs)});
  };
  const std::vector<double> plus = shifted(opt.eps), minus = shifted(-opt.eps);

  GradcheckReport r;
  double worst_ratio = -1.0;
  const double* fw = forward.data<double>();
  const double* fw_unrecorded = unrecorded.data<double>();
  for (int64_t k = 0; k < m; ++k) {
    const auto ks = static_cast<size_t>(k);
    const double num = (plus[ks] - minus[ks]) / (2.0 * opt.eps);
    for (const double want : {num, reverse[ks], fw_unrecorded[k]}) {
      const double abs_err = std::abs(fw[k] - want);
      const double allowed = opt.atol + opt.rtol * std::abs(want);
      const double ratio = std::isfinite(abs_err) ? abs_err / allowed : INFINITY;
      r.max_abs_error = std::max(r.max_abs_error, std::isfinite(abs_err) ? abs_err : INFINITY);
      if (abs_err > opt.atol)
        r.max_rel_error = std::max(r.max_rel_error, abs_err / std::max(std::abs(want), 1e-12));
      if (!(abs_err <= allowed)) r.passed = false;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        r.worst_input = 0;
        r.worst_element = k;
        r.analytic = fw[k];
        r.numeric = want;
      }
    }
  }
  std::ostringstream msg;
  msg << "fwdcheck" << (r.passed ? " passed" : " FAILED") << ": max abs error " << r.max_abs_error
      << ", max rel error " << r.max_rel_error;
  if (r.worst_element >= 0)
    msg << "; worst at output element " << r.worst_element << " (forward " << r.analytic
        << ", expected " << r.numeric
        << "; finite differences, backprop and the tangent "
           "with grad mode off are compared)";
  r.message = msg.str();
  return r;
}

}  // namespace tg
