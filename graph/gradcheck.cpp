#include "graph/gradcheck.hpp"

#include <cmath>
#include <sstream>

#include "graph/rng.hpp"
#include "ops/arith.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

Var evaluate(const GradcheckFn& fn, const std::vector<Var>& leaves, const char* who) {
  Var out = fn(leaves);
  if (!out.defined()) throw Error(std::string(who) + ": the function returned an undefined Var");
  if (out.dtype() != f64)
    throw DtypeError(std::string(who) + ": the function returned " +
                     std::string(dtype_name(out.dtype())) +
                     " for float64 inputs; it must compute in the inputs' dtype");
  return out;
}

}  // namespace

GradcheckReport gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& opt) {
  std::vector<Var> leaves;
  for (const Tensor& t : inputs) leaves.push_back(param(t.to(f64).clone()));
  Var out = evaluate(fn, leaves, "gradcheck");
  const int64_t m = out.numel();

  // Analytic Jacobian, one row per output element: J[i][k * n_i + j] = d out_k / d in_i[j].
  std::vector<std::vector<double>> analytic(leaves.size());
  for (size_t i = 0; i < leaves.size(); ++i)
    analytic[i].assign(static_cast<size_t>(m * leaves[i].numel()), 0.0);
  if (out.requires_grad()) {
    for (int64_t k = 0; k < m; ++k) {
      Tensor seed = zeros(out.shape(), f64);
      seed.data<double>()[k] = 1.0;
      std::vector<Var> g =
          grad({out}, leaves, {constant(seed)}, {.retain_graph = true, .allow_unused = true});
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (!g[i].defined()) continue;
        const double* p = g[i].value().data<double>();
        const int64_t n = leaves[i].numel();
        for (int64_t j = 0; j < n; ++j) analytic[i][static_cast<size_t>(k * n + j)] = p[j];
      }
    }
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
      const Tensor plus = evaluate(fn, leaves, "gradcheck").value().clone();
      x[j] = orig - opt.eps;
      const Tensor minus = evaluate(fn, leaves, "gradcheck").value().clone();
      x[j] = orig;
      const double* pp = plus.data<double>();
      const double* pm = minus.data<double>();
      for (int64_t k = 0; k < m; ++k) {
        const double num = (pp[k] - pm[k]) / (2.0 * opt.eps);
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
  msg << (r.passed ? "gradcheck passed" : "gradcheck FAILED") << ": max abs error "
      << r.max_abs_error << ", max rel error " << r.max_rel_error;
  if (r.worst_input >= 0)
    msg << "; worst at input " << r.worst_input << " element " << r.worst_element << " (analytic "
        << r.analytic << ", numeric " << r.numeric << ")";
  r.message = msg.str();
  return r;
}

GradcheckReport gradgradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& opt) {
  // Shape of the output, to draw the fixed random output weights v.
  std::vector<Var> probe;
  for (const Tensor& t : inputs) probe.push_back(param(t.to(f64).clone()));
  const Shape out_shape = evaluate(fn, probe, "gradgradcheck").shape();
  Rng rng(opt.seed);
  const Var v = constant(randn(out_shape, rng, f64));
  // G(x) = v . J(x), flattened and joined over inputs; its Jacobian is the second derivative.
  auto first_grads = [&](const std::vector<Var>& xs) {
    Var out = evaluate(fn, xs, "gradgradcheck");
    std::vector<Var> parts;
    std::vector<Var> g;
    if (out.requires_grad()) g = grad({out}, xs, {v}, {.create_graph = true, .allow_unused = true});
    for (size_t i = 0; i < xs.size(); ++i) {
      Var gi = i < g.size() && g[i].defined() ? g[i] : constant(zeros(xs[i].shape(), f64));
      parts.push_back(reshape(gi, {-1}));
    }
    return concat(parts, 0);
  };
  GradcheckReport r = gradcheck(first_grads, inputs, opt);
  r.message = "grad" + r.message;
  return r;
}

}  // namespace tg
