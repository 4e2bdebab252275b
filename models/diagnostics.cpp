#include "models/diagnostics.hpp"

#include <cmath>
#include <map>
#include <sstream>

#include "models/layers.hpp"

namespace tg {

namespace {

double norm(const Tensor& t) {
  if (!t.defined()) return 0.0;
  return dispatch(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    double s = 0.0;
    for (int64_t i = 0; i < t.numel(); ++i) s += static_cast<double>(p[i]) * p[i];
    return std::sqrt(s);
  });
}

/// Groups of rows equal in `w` ([out, in]) and, when given, in `b` ([out]).
std::vector<std::vector<int64_t>> equal_rows(const Tensor& w, const Tensor& b) {
  const int64_t out = w.shape()[0], in = w.shape()[1];
  const Tensor wd = w.to(f64);
  const Tensor bd = b.defined() ? b.to(f64) : Tensor();
  const double* W = wd.data<double>();
  const double* B = bd.defined() ? bd.data<double>() : nullptr;
  auto same = [&](int64_t i, int64_t j) {
    if (B && !(B[i] == B[j])) return false;
    for (int64_t k = 0; k < in; ++k)
      if (!(W[i * in + k] == W[j * in + k])) return false;
    return true;
  };
  std::vector<std::vector<int64_t>> groups;
  for (int64_t i = 0; i < out; ++i) {
    bool placed = false;
    for (auto& g : groups)
      if (same(g[0], i)) {
        g.push_back(i);
        placed = true;
        break;
      }
    if (!placed) groups.push_back({i});
  }
  std::erase_if(groups, [](const auto& g) { return g.size() < 2; });
  return groups;
}

std::string list(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "}";
}

ActivationDiagnostics activation_stats(const std::string& name, const std::string& kind,
                                       const Tensor& y, const DiagnosticsOptions& o) {
  ActivationDiagnostics d;
  d.name = name;
  d.kind = kind;
  const Tensor v = y.to(f64);
  d.units = v.dim() == 0 ? 1 : v.shape().back();
  d.batch = d.units == 0 ? 0 : v.numel() / d.units;
  const double* p = v.data<double>();
  for (int64_t u = 0; u < d.units; ++u) {
    bool dead = d.batch > 0, sat = d.batch > 0;
    for (int64_t r = 0; r < d.batch; ++r) {
      const double x = p[r * d.units + u];
      dead = dead && x == 0.0;
      if (kind == "Sigmoid")
        sat = sat && (x < o.saturation_low || x > o.saturation_high);
      else if (kind == "Tanh")
        sat = sat && std::abs(x) > 2.0 * o.saturation_high - 1.0;
      else
        sat = false;
    }
    if (kind == "ReLU" && dead) d.dead.push_back(u);
    if (sat) d.saturated.push_back(u);
  }
  return d;
}

}  // namespace

const LinearDiagnostics& DiagnosticsReport::layer(const std::string& name) const {
  for (const auto& l : linear)
    if (l.name == name) return l;
  throw Error("DiagnosticsReport: no Linear layer named '" + name + "'");
}

std::string DiagnosticsReport::str() const {
  std::ostringstream os;
  for (const auto& l : linear) {
    os << "Linear " << (l.name.empty() ? "<root>" : l.name) << " (" << l.in_features << " -> "
       << l.out_features << "): |W| = " << l.weight_norm << ", |b| = " << l.bias_norm;
    if (l.has_grad) os << ", |dW| = " << l.grad_norm << ", |db| = " << l.bias_grad_norm;
    os << '\n';
    if (l.identical_weights.empty())
      os << "  all " << l.out_features << " units have distinct incoming weights\n";
    for (const auto& g : l.identical_weights)
      os << "  units " << list(g) << " have identical incoming weights"
         << (l.all_units_identical() ? " (the whole layer acts as one unit)" : "") << '\n';
    for (const auto& g : l.identical_grads)
      os << "  units " << list(g) << " receive identical gradients\n";
  }
  for (const auto& a : activations) {
    os << a.kind << ' ' << a.name << " (" << a.units << " units, batch " << a.batch << ")";
    if (a.dead.empty() && a.saturated.empty()) os << ": ok";
    if (!a.dead.empty()) os << ": dead units " << list(a.dead);
    if (!a.saturated.empty()) os << ": saturated units " << list(a.saturated);
    os << '\n';
  }
  return os.str();
}

DiagnosticsReport diagnose(const Module& model, const DiagnosticsOptions& options) {
  DiagnosticsReport r;
  for (const auto& [name, m] : model.named_modules()) {
    const auto* lin = dynamic_cast<const Linear*>(m);
    if (!lin) continue;
    LinearDiagnostics d;
    d.name = name;
    d.in_features = lin->in_features();
    d.out_features = lin->out_features();
    const Tensor w = lin->weight.value();
    const Tensor b = lin->has_bias() ? lin->bias.value() : Tensor();
    d.identical_weights = equal_rows(w, b);
    d.weight_norm = norm(w);
    d.bias_norm = norm(b);
    const Var gw = lin->weight.grad();
    const Var gb = lin->has_bias() ? lin->bias.grad() : Var();
    d.has_grad = gw.defined();
    if (d.has_grad) {
      d.identical_grads = equal_rows(gw.value(), gb.defined() ? gb.value() : Tensor());
      d.grad_norm = norm(gw.value());
      d.bias_grad_norm = gb.defined() ? norm(gb.value()) : 0.0;
    }
    r.linear.push_back(std::move(d));
  }
  return r;
}

DiagnosticsReport diagnose(Layer& model, const Var& batch, const DiagnosticsOptions& options) {
  return diagnose(
      static_cast<Module&>(model), [&model](const Var& x) { return model(x); }, batch, options);
}

DiagnosticsReport diagnose(Module& model, const std::function<Var(const Var&)>& forward,
                           const Var& batch, const DiagnosticsOptions& options) {
  DiagnosticsReport r = diagnose(static_cast<const Module&>(model), options);
  struct Hooked {
    Layer* layer;
    size_t id;
  };
  std::vector<Hooked> hooked;
  std::map<Module*, bool> modes;
  std::map<const Layer*, std::string> names;
  for (auto& [name, m] : model.named_modules()) {
    modes[m] = m->is_training();
    auto* layer = dynamic_cast<Layer*>(m);
    if (!layer) continue;
    const std::string kind = m->type_name();
    if (kind != "ReLU" && kind != "Sigmoid" && kind != "Tanh") continue;
    names[layer] = name;
    hooked.push_back({layer, layer->register_forward_hook(
                                 [&r, &names, &options, kind](Layer& l, const Var&, const Var& y) {
                                   r.activations.push_back(
                                       activation_stats(names[&l], kind, y.value(), options));
                                 })});
  }
  auto restore = [&] {
    for (auto& h : hooked) h.layer->remove_forward_hook(h.id);
    // NOTE: Module::train is recursive, so restore parents first (pre-order), then children.
    for (auto& [name, m] : model.named_modules()) {
      const bool on = modes[m];
      if (m->is_training() != on) m->train(on);
    }
  };
  try {
    model.eval();
    NoGradGuard no_grad;
    forward(batch);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return r;
}

}  // namespace tg
