// A MAML-style meta-gradient: the gradient of the loss after 5 inner SGD steps with respect
// to the initial weights, differentiated through the inner steps (second derivatives: each
// inner gradient is taken with create_graph). Tasks are sine waves y = a sin(x + b); the
// model a 1-16-1 tanh MLP written as a function of its weights. The meta-gradient is
// checked against central finite differences, then a few meta-steps lower the meta-loss.
#include <tapegrad/tapegrad.hpp>

#include <cmath>
#include <cstdio>

namespace {

using Vars = std::vector<tg::Var>;

struct Task {
  tg::Var xs, ys, xq, yq;  // support and query points
};

tg::Var model(const Vars& w, const tg::Var& x) {
  return tg::linear(tg::tanh(tg::linear(x, w[0], w[1])), w[2], w[3]);
}

// The query loss after 5 inner SGD steps from w0 on the support set, averaged over tasks.
tg::Var meta_loss(const Vars& w0, const std::vector<Task>& tasks) {
  tg::Var total;
  for (const Task& t : tasks) {
    Vars w = w0;
    for (tg::Var& wi : w)  // the inner steps need gradients even where w0 is a plain value
      if (!wi.requires_grad()) wi = tg::param(wi.value());
    for (int k = 0; k < 5; ++k) {
      const Vars g = tg::grad({tg::mse_loss(model(w, t.xs), t.ys)}, w, {}, {.create_graph = true});
      for (size_t i = 0; i < w.size(); ++i) w[i] = w[i] - 0.05 * g[i];
    }
    const tg::Var l = tg::mse_loss(model(w, t.xq), t.yq);
    total = total.defined() ? total + l : l;
  }
  return total / static_cast<double>(tasks.size());
}

}  // namespace

int main() {
  tg::Rng rng(11);
  auto points = [&](int k, double a, double b) {
    std::vector<double> x, y;
    for (int i = 0; i < k; ++i) {
      x.push_back(rng.uniform(-3, 3));
      y.push_back(a * std::sin(x.back() + b));
    }
    return std::pair{tg::constant(tg::tensor(x, {k, 1}, tg::f64)),
                     tg::constant(tg::tensor(y, {k, 1}, tg::f64))};
  };
  std::vector<Task> tasks;
  for (int t = 0; t < 4; ++t) {
    const double a = rng.uniform(0.5, 2), b = rng.uniform(0, 3.14);
    auto [xs, ys] = points(10, a, b);
    auto [xq, yq] = points(10, a, b);
    tasks.push_back({xs, ys, xq, yq});
  }
  tg::MLP init({1, 16, 1}, tg::Activation::tanh, tg::Activation::identity, rng, true, tg::f64);
  Vars w;
  for (const tg::Var& p : init.parameters()) w.push_back(p.detach());

  // The meta-gradient by tg::func::vjp (one reverse sweep through the 5 recorded steps)...
  const auto f = [&](const Vars& v) { return meta_loss(v, tasks); };
  const auto [loss0, meta_grad] = tg::func::vjp(f, w);
  // ... against central differences, every weight.
  double worst = 0;
  const double h = 1e-5;
  for (size_t i = 0; i < w.size(); ++i) {
    const std::vector<double> g = meta_grad[i].value().to_vector();
    for (int64_t k = 0; k < w[i].numel(); ++k) {
      auto shifted = [&](double s) {
        Vars v = w;
        tg::Tensor t = w[i].value().clone();
        t.data<double>()[k] += s;
        v[i] = tg::constant(t);
        return f(v).item();
      };
      const double fd = (shifted(h) - shifted(-h)) / (2 * h);
      worst =
          std::max(worst, std::abs(fd - g[static_cast<size_t>(k)]) / std::max(1.0, std::abs(fd)));
    }
  }
  // A few meta-steps (plain gradient descent on the initial weights).
  Vars v = w;
  for (int s = 0; s < 30; ++s) {
    const Vars g = tg::func::vjp(f, v).product;
    for (size_t i = 0; i < v.size(); ++i) v[i] = v[i] - 0.1 * g[i];
  }
  const double before = loss0[0].item(), after = f(v).item();
  std::printf("meta-gradient vs finite differences: worst relative error %.2e\n", worst);
  std::printf("meta-loss %.4f -> %.4f after 30 meta-steps\n", before, after);
  return worst < 1e-6 && after < before ? 0 : 1;
}
