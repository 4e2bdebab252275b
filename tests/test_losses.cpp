// Losses and functional dropout: PyTorch (torch.nn.functional) as the oracle of values and
// gradients over every option that changes a result (weight, ignore_index, reduction,
// label_smoothing, class-index and class-probability targets, [N, C] and [N, C, d1, d2]
// inputs, size-1 and empty batches, every target ignored), in f64 and f32; typed errors;
// dropout against the Dropout module and its own rules.

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

using tg::Reduction;
using tg::Shape;
using tg::Tensor;
using tg::Var;
using tgtest::pattern;

namespace {

Var i64(const std::vector<int64_t>& v, const Shape& s) { return tg::constant(Tensor(v, s)); }
Var f64(const std::vector<double>& v, const Shape& s) {
  return tg::constant(tg::tensor(v, s, tg::f64));
}
std::vector<double> vals(const Var& v) { return v.value().to_vector(); }

const char* rname(Reduction r) {
  switch (r) {
    case Reduction::mean:
      return "mean";
    case Reduction::sum:
      return "sum";
    case Reduction::none:
      return "none";
    case Reduction::batchmean:
      return "batchmean";
  }
  return "?";
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string py_list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}
std::string py_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}
std::string py_shape(const Shape& s) {
  std::string r = "(";
  for (int d = 0; d < s.rank(); ++d) r += std::to_string(s[d]) + ",";
  return r + ")";
}

// An input both sides build alike: pattern(shape, k) in f64, mapped by its kind ("x" as is,
// "x2" doubled, "p" into [0.1, 0.9], "w" into [0.5, 1.5]) or literal values, then converted
// to the dtype under test; `grad`: a leaf that requires grad (else a constant).
struct Input {
  std::string kind;
  Shape shape;
  double k = 0.0;
  bool grad = true;
  std::vector<double> values = {};
};

using Fn = std::function<Var(const std::vector<Var>&)>;
struct Case {
  std::string name;  // one word
  std::vector<Input> inputs;
  std::string py;  // the Python expression of v[0], v[1], ... (I(list, shape): a long tensor)
  Fn fn;
};

Tensor make(const Input& in, tg::Dtype dt) {
  Tensor t = in.kind == "lit" ? tg::tensor(in.values, in.shape, tg::f64) : pattern(in.shape, in.k);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (in.kind == "x2") p[i] = p[i] * 2.0;
    if (in.kind == "p") p[i] = p[i] * 0.4 + 0.5;
    if (in.kind == "w") p[i] = p[i] * 0.5 + 1.0;
  }
  return t.to(dt);
}

const char* kPython = R"PY(
import warnings
warnings.filterwarnings("ignore")  # kl_div's notice that 'mean' is not 'batchmean'
F = torch.nn.functional
def mk(kind, shape, k, grad, values=None):
    t = torch.tensor(values, dtype=torch.float64).reshape(shape) if kind == "lit" else pattern(shape, k)
    if kind == "x2": t = t * 2.0
    if kind == "p": t = t * 0.4 + 0.5
    if kind == "w": t = t * 0.5 + 1.0
    return t.to(D).requires_grad_(grad)
def I(vals, shape):
    return torch.tensor(vals, dtype=torch.long).reshape(shape)
def run(name, f, v):
    y = f(v)
    emit(name, y)
    xs = [t for t in v if t.requires_grad]
    if xs:
        w = pattern(tuple(y.shape), 9.0, 1.0, D)
        gs = torch.autograd.grad((y * w).sum(), xs, allow_unused=True)
        for i, g in enumerate(gs):
            emit(name + "_g%d" % i, torch.zeros_like(xs[i]) if g is None else g)
)PY";

std::vector<Case> oracle_cases() {
  std::vector<Case> cases;
  const std::vector<Reduction> reds{Reduction::mean, Reduction::sum, Reduction::none};

  // ---- cross_entropy and nll_loss with class indices ----
  struct Layout {
    std::string tag;
    Shape x, w;
    std::vector<int64_t> t;
    Shape ts;
  };
  const std::vector<Layout> layouts{
      {"nc", {4, 5}, {5}, {1, 0, 4, 2}, {4}},
      {"ncd", {2, 3, 2, 2}, {3}, {0, 2, 1, 1, 2, 0, 0, 1}, {2, 2, 2}},
      {"n1", {1, 5}, {5}, {3}, {1}},
      {"c", {5}, {5}, {2}, {}},
      {"n1d", {1, 3, 1, 1}, {3}, {2}, {1, 1, 1}},
  };
  for (const Layout& L : layouts) {
    for (const bool weighted : {false, true}) {
      // ignore_index: the default (nothing ignored), or class 0 / 1 (some positions ignored)
      for (const int64_t ignore : {int64_t{-100}, int64_t{0}}) {
        for (const Reduction r : reds) {
          for (const bool nll : {false, true}) {
            for (const double ls : {0.0, 0.15}) {
              if (nll && ls != 0.0) continue;
              const std::string name = std::string(nll ? "nll_" : "ce_") + L.tag + "_w" +
                                       std::to_string(weighted) + "_i" +
                                       std::to_string(ignore < 0 ? 0 : 1) + "_" + rname(r) +
                                       (ls != 0.0 ? "_ls" : "");
              std::vector<Input> ins{{"x", L.x, 0.0}};
              if (weighted) ins.push_back({"w", L.w, 1.0, false});
              std::string py = std::string(nll ? "F.nll_loss" : "F.cross_entropy") + "(v[0], I(" +
                               py_list(L.t) + ", " + py_shape(L.ts) +
                               "), weight=" + (weighted ? "v[1]" : "None") +
                               ", ignore_index=" + std::to_string(ignore) + ", reduction='" +
                               rname(r) + "'" + (nll ? "" : ", label_smoothing=" + num(ls)) + ")";
              Fn fn = [=](const std::vector<Var>& v) {
                const Var t = i64(L.t, L.ts);
                if (nll)
                  return tg::nll_loss(
                      v[0], t,
                      {.weight = weighted ? v[1] : Var(), .ignore_index = ignore, .reduction = r});
                return tg::cross_entropy(v[0], t,
                                         {.weight = weighted ? v[1] : Var(),
                                          .ignore_index = ignore,
                                          .reduction = r,
                                          .label_smoothing = ls});
              };
              cases.push_back({name, ins, py, fn});
            }
          }
        }
      }
    }
  }
  // Every target ignored (mean: NaN, gradient 0, as PyTorch), and an empty batch.
  for (const Reduction r : reds) {
    for (const double ls : {0.0, 0.2}) {
      const std::string name = std::string("ce_all_ignored_") + rname(r) + (ls != 0 ? "_ls" : "");
      cases.push_back(
          {name,
           {{"x", {3, 4}, 0.5}, {"w", {4}, 1.5, false}},
           "F.cross_entropy(v[0], I([2, 2, 2], (3,)), weight=v[1], ignore_index=2, reduction='" +
               std::string(rname(r)) + "', label_smoothing=" + num(ls) + ")",
           [=](const std::vector<Var>& v) {
             return tg::cross_entropy(
                 v[0], i64({2, 2, 2}, {3}),
                 {.weight = v[1], .ignore_index = 2, .reduction = r, .label_smoothing = ls});
           }});
      cases.push_back({"nll_all_ignored_" + std::string(rname(r)),
                       {{"x", {3, 4}, 0.5}},
                       "F.nll_loss(v[0], I([-100, -100, -100], (3,)), reduction='" +
                           std::string(rname(r)) + "')",
                       [=](const std::vector<Var>& v) {
                         return tg::nll_loss(v[0], i64({-100, -100, -100}, {3}), {.reduction = r});
                       }});
      if (ls != 0) cases.pop_back();
    }
    cases.push_back(
        {std::string("ce_empty_") + rname(r),
         {{"x", {0, 4}, 0.5}},
         "F.cross_entropy(v[0], I([], (0,)), reduction='" + std::string(rname(r)) + "')",
         [=](const std::vector<Var>& v) {
           return tg::cross_entropy(v[0], i64({}, {0}), {.reduction = r});
         }});
  }

  // ---- cross_entropy with class probabilities (differentiable in target and weight) ----
  for (const Layout& L : layouts) {
    if (L.tag == "n1d") continue;
    for (const bool weighted : {false, true}) {
      for (const Reduction r : reds) {
        for (const double ls : {0.0, 0.2}) {
          const std::string name = "ce_soft_" + L.tag + "_w" + std::to_string(weighted) + "_" +
                                   rname(r) + (ls != 0.0 ? "_ls" : "");
          std::vector<Input> ins{{"x", L.x, 0.0}, {"p", L.x, 2.0}};
          if (weighted) ins.push_back({"w", L.w, 1.0});
          const std::string py =
              "F.cross_entropy(v[0], v[1], weight=" + std::string(weighted ? "v[2]" : "None") +
              ", reduction='" + rname(r) + "', label_smoothing=" + num(ls) + ")";
          Fn fn = [=](const std::vector<Var>& v) {
            return tg::cross_entropy(
                v[0], v[1],
                {.weight = weighted ? v[2] : Var(), .reduction = r, .label_smoothing = ls});
          };
          cases.push_back({name, ins, py, fn});
        }
      }
    }
  }
  cases.push_back({"ce_soft_empty",
                   {{"x", {0, 4}, 0.5}, {"p", {0, 4}, 1.0}},
                   "F.cross_entropy(v[0], v[1])",
                   [](const std::vector<Var>& v) { return tg::cross_entropy(v[0], v[1]); }});

  // ---- binary_cross_entropy ----
  for (const int wk : {0, 1, 2}) {  // no weight, a [4] weight broadcast, a [3, 4] weight
    for (const Reduction r : reds) {
      const std::string name = "bce_w" + std::to_string(wk) + "_" + rname(r);
      std::vector<Input> ins{{"p", {3, 4}, 0.0}, {"p", {3, 4}, 3.0}};
      if (wk) ins.push_back({"w", wk == 1 ? Shape{4} : Shape{3, 4}, 1.0, false});
      cases.push_back({name, ins,
                       "F.binary_cross_entropy(v[0], v[1], weight=" +
                           std::string(wk ? "v[2]" : "None") + ", reduction='" + rname(r) + "')",
                       [=](const std::vector<Var>& v) {
                         return tg::binary_cross_entropy(v[0], v[1], wk ? v[2] : Var(), r);
                       }});
    }
  }
  // Inputs at exactly 0 and 1: logs clamped to -100, gradients (x - y) / 1e-12 and +-inf.
  cases.push_back({"bce_edges",
                   {{"lit", {5}, 0.0, true, {0.0, 1.0, 0.5, 0.0, 1.0}},
                    {"lit", {5}, 0.0, true, {1.0, 0.0, 0.5, 0.0, 1.0}}},
                   "F.binary_cross_entropy(v[0], v[1], reduction='none')",
                   [](const std::vector<Var>& v) {
                     return tg::binary_cross_entropy(v[0], v[1], Var(), Reduction::none);
                   }});

  // ---- l1, smooth_l1, huber, kl_div ----
  for (const Reduction r : reds) {
    const std::string rs = std::string("reduction='") + rname(r) + "'";
    const std::vector<Input> xy{{"x2", {3, 4}, 0.0}, {"x", {3, 4}, 1.3}};
    cases.push_back({std::string("l1_") + rname(r), xy, "F.l1_loss(v[0], v[1], " + rs + ")",
                     [=](const std::vector<Var>& v) { return tg::l1_loss(v[0], v[1], r); }});
    for (const double beta : {1.0, 0.5, 0.0}) {
      cases.push_back(
          {"smooth_l1_" + std::string(rname(r)) + "_" + num(beta), xy,
           "F.smooth_l1_loss(v[0], v[1], " + rs + ", beta=" + num(beta) + ")",
           [=](const std::vector<Var>& v) { return tg::smooth_l1_loss(v[0], v[1], r, beta); }});
    }
    for (const double delta : {1.0, 0.5, 2.5}) {
      cases.push_back(
          {"huber_" + std::string(rname(r)) + "_" + num(delta), xy,
           "F.huber_loss(v[0], v[1], " + rs + ", delta=" + num(delta) + ")",
           [=](const std::vector<Var>& v) { return tg::huber_loss(v[0], v[1], r, delta); }});
    }
  }
  for (const Reduction r :
       {Reduction::mean, Reduction::sum, Reduction::none, Reduction::batchmean}) {
    const std::string rs = std::string("reduction='") + rname(r) + "'";
    cases.push_back({std::string("kl_") + rname(r),
                     {{"x", {3, 4}, 0.0}, {"p", {3, 4}, 2.0}},
                     "F.kl_div(v[0], v[1], " + rs + ")",
                     [=](const std::vector<Var>& v) { return tg::kl_div(v[0], v[1], r); }});
    cases.push_back({std::string("kl_log_") + rname(r),
                     {{"x", {3, 4}, 0.0}, {"x", {3, 4}, 2.0}},
                     "F.kl_div(v[0], v[1], " + rs + ", log_target=True)",
                     [=](const std::vector<Var>& v) { return tg::kl_div(v[0], v[1], r, true); }});
    // A target with zeros (0 log 0 = 0), as a constant: PyTorch's gradient in a zero target
    // is NaN (0 / 0 in xlogy's derivative), ours -input (see ops/loss.hpp).
    cases.push_back({std::string("kl_zeros_") + rname(r),
                     {{"x", {2, 3}, 0.0}, {"lit", {2, 3}, 0.0, false, {0.0, 0.5, 0.5, 1.0, 0, 0}}},
                     "F.kl_div(v[0], v[1], " + rs + ")",
                     [=](const std::vector<Var>& v) { return tg::kl_div(v[0], v[1], r); }});
    cases.push_back({std::string("kl_rank0_") + rname(r),
                     {{"x", {}, 0.3}, {"p", {}, 1.0}},
                     "F.kl_div(v[0], v[1], " + rs + ")",
                     [=](const std::vector<Var>& v) { return tg::kl_div(v[0], v[1], r); }});
  }
  return cases;
}

}  // namespace

TEST_CASE("losses match PyTorch in values and gradients", "[ops][loss][oracle]") {
  TGTEST_REQUIRE_TORCH();
  const std::vector<Case> cases = oracle_cases();
  for (const bool single : {false, true}) {
    const tg::Dtype dt = single ? tg::f32 : tg::f64;
    const double tol = single ? 2e-5 : 1e-10;
    std::string script = std::string(tgtest::kPythonPrelude) +
                         "D = " + (single ? "torch.float32" : "torch.float64") + "\n" + kPython;
    for (const Case& c : cases) {
      std::string ins = "[";
      for (const Input& in : c.inputs)
        ins += "mk('" + in.kind + "', " + py_shape(in.shape) + ", " + num(in.k) + ", " +
               (in.grad ? "True" : "False") + ", " + py_list(in.values) + "), ";
      script += "run('" + c.name + "', lambda v: " + c.py + ", " + ins + "])\n";
    }
    const auto torch = tgtest::run_python(script);
    for (const Case& c : cases) {
      INFO(c.name << (single ? " f32" : " f64"));
      std::vector<Var> v, xs;
      for (const Input& in : c.inputs) {
        v.push_back(in.grad ? tg::param(make(in, dt)) : tg::constant(make(in, dt)));
        if (in.grad) xs.push_back(v.back());
      }
      const Var y = c.fn(v);
      REQUIRE(torch.count(c.name) == 1);
      CHECK(y.dtype() == dt);
      tgtest::check_close(vals(y), torch.at(c.name), tol);
      const Var w = tg::constant(pattern(y.shape(), 9.0).to(dt));
      const auto gs = tg::grad({tg::sum(y * w)}, xs, {}, {.allow_unused = true});
      for (size_t i = 0; i < xs.size(); ++i) {
        INFO("gradient " << i);
        const std::string key = c.name + "_g" + std::to_string(i);
        REQUIRE(torch.count(key) == 1);
        tgtest::check_close(
            gs[i].defined() ? vals(gs[i]) : std::vector<double>(torch.at(key).size()),
            torch.at(key), tol);
      }
    }
  }
}

TEST_CASE("class-index losses: the vector overloads, ignore_index and shapes", "[ops][loss]") {
  const Var x = tg::param(pattern({3, 4}, 0.2));
  // The vector forms are the tensor forms with the default options, bit for bit.
  CHECK(tg::cross_entropy(x, {2, 0, 3}).item() == tg::cross_entropy(x, i64({2, 0, 3}, {3})).item());
  CHECK(vals(tg::nll_loss(x, std::vector<int64_t>{1, 1, 0}, Reduction::none)) ==
        vals(tg::nll_loss(x, i64({1, 1, 0}, {3}), {.reduction = Reduction::none})));
  // An ignored position adds 0 and counts for nothing in the mean.
  const double l0 = tg::cross_entropy(x, i64({2, 0, 3}, {3}), {.reduction = Reduction::none})
                        .value()
                        .to_vector()[0];
  CHECK(tg::cross_entropy(x, i64({2, -100, -100}, {3})).item() == Approx(l0));
  CHECK(vals(tg::nll_loss(x, i64({2, 5, 3}, {3}),
                          {.ignore_index = 5, .reduction = Reduction::none}))[1] == 0.0);
  // Shapes of reduction none: the target's.
  CHECK(tg::cross_entropy(tg::param(pattern({2, 3, 4, 5}, 0.0)),
                          tg::constant(tg::zeros({2, 4, 5}, tg::i64)),
                          {.reduction = Reduction::none})
            .shape() == Shape{2, 4, 5});
  CHECK(tg::nll_loss(tg::param(pattern({3}, 0.0)), i64({1}, {}), {.reduction = Reduction::none})
            .shape() == Shape{});
}

TEST_CASE("losses throw typed errors naming the op and the values", "[ops][loss]") {
  const Var x = tg::param(pattern({2, 3}, 0.0));
  const Var p = tg::param(make({"p", {2, 3}, 1.0}, tg::f64));
  using Catch::Contains;
  // Class indices of the wrong dtype, out of range, of the wrong shape.
  CHECK_THROWS_AS(tg::cross_entropy(x, f64({0, 1}, {2})), tg::DtypeError);
  CHECK_THROWS_WITH(tg::cross_entropy(x, f64({0, 1}, {2})),
                    Contains("cross_entropy: ") && Contains("f64"));
  CHECK_THROWS_AS(tg::nll_loss(x, f64({0, 1, 2, 0, 1, 2}, {2, 3})), tg::DtypeError);
  // An i64 target of the input's shape reads as class probabilities, which must be floating.
  CHECK_THROWS_AS(tg::cross_entropy(x, i64({0, 1, 2, 0, 1, 2}, {2, 3})), tg::DtypeError);
  CHECK_THROWS_AS(tg::cross_entropy(x, i64({0, 7}, {2})), tg::IndexError);
  CHECK_THROWS_WITH(tg::cross_entropy(x, i64({0, 7}, {2})),
                    Contains("cross_entropy: ") && Contains("7") && Contains("3 classes"));
  CHECK_THROWS_WITH(tg::nll_loss(x, i64({-1, 0}, {2})),
                    Contains("nll_loss: ") && Contains("-1") && Contains("3 classes"));
  CHECK_THROWS_AS(tg::cross_entropy(x, i64({0, 1, 2}, {3})), tg::ShapeError);
  CHECK_THROWS_WITH(tg::cross_entropy(x, i64({0, 1, 2}, {3})),
                    Contains("cross_entropy: ") && Contains("[3]") && Contains("[2, 3]"));
  CHECK_THROWS_AS(tg::nll_loss(tg::param(pattern({}, 0.0)), i64({0}, {})), tg::ShapeError);
  // Weights: one per class, the input's dtype, not differentiable with class indices.
  CHECK_THROWS_WITH(tg::cross_entropy(x, i64({0, 1}, {2}), {.weight = f64({1, 2}, {2})}),
                    Contains("cross_entropy: ") && Contains("[2]") && Contains("[3]"));
  CHECK_THROWS_AS(
      tg::cross_entropy(x, i64({0, 1}, {2}), {.weight = tg::constant(tg::ones({3}, tg::f32))}),
      tg::DtypeError);
  CHECK_THROWS_WITH(
      tg::nll_loss(x, i64({0, 1}, {2}), {.weight = tg::param(tg::ones({3}, tg::f64))}),
      Contains("nll_loss: ") && Contains("not differentiable"));
  {
    tg::NoGradGuard no_grad;  // as PyTorch, only refused while gradients are recorded
    CHECK_NOTHROW(tg::nll_loss(x, i64({0, 1}, {2}), {.weight = tg::param(tg::ones({3}, tg::f64))}));
  }
  // Arguments out of their range.
  CHECK_THROWS_WITH(tg::cross_entropy(x, i64({0, 1}, {2}), {.label_smoothing = 1.5}),
                    Contains("cross_entropy: ") && Contains("label_smoothing"));
  CHECK_THROWS_WITH(tg::cross_entropy(x, p, {.ignore_index = 0}),
                    Contains("cross_entropy: ") && Contains("ignore_index"));
  CHECK_THROWS_WITH(tg::cross_entropy(x, i64({0, 1}, {2}), {.reduction = Reduction::batchmean}),
                    Contains("cross_entropy: ") && Contains("batchmean"));
  CHECK_THROWS_AS(tg::mse_loss(x, p, Reduction::batchmean), tg::Error);
  CHECK_THROWS_AS(tg::l1_loss(x, p, Reduction::batchmean), tg::Error);
  CHECK_THROWS_WITH(tg::smooth_l1_loss(x, p, Reduction::mean, -0.5),
                    Contains("smooth_l1_loss: ") && Contains("beta"));
  CHECK_THROWS_WITH(tg::huber_loss(x, p, Reduction::mean, 0.0),
                    Contains("huber_loss: ") && Contains("delta"));
  // Elementwise losses: shapes must be equal, operands floating.
  const Var q = tg::param(pattern({3, 2}, 1.0));
  for (const auto& [name, fn] : std::vector<std::pair<std::string, std::function<Var()>>>{
           {"l1_loss", [&] { return tg::l1_loss(x, q); }},
           {"smooth_l1_loss", [&] { return tg::smooth_l1_loss(x, q); }},
           {"huber_loss", [&] { return tg::huber_loss(x, q); }},
           {"kl_div", [&] { return tg::kl_div(x, q); }},
           {"binary_cross_entropy", [&] { return tg::binary_cross_entropy(p, q); }},
           {"cross_entropy", [&] { return tg::cross_entropy(x, q); }},
       }) {
    INFO(name);
    CHECK_THROWS_AS(fn(), tg::ShapeError);
    CHECK_THROWS_WITH(fn(), Contains(name + ": ") && Contains("[2, 3]") && Contains("[3, 2]"));
  }
  CHECK_THROWS_WITH(tg::kl_div(x, tg::constant(tg::zeros({2, 3}, tg::i64))),
                    Contains("kl_div: ") && Contains("i64"));
  // binary_cross_entropy: probabilities in [0, 1] (NaN passes), a weight that broadcasts.
  const Var outside = f64({0.5, 1.25, 0.0, 1.0, -0.5, 0.75}, {2, 3});
  CHECK_THROWS_AS(tg::binary_cross_entropy(outside, p), tg::IndexError);
  CHECK_THROWS_WITH(tg::binary_cross_entropy(outside, p),
                    Contains("binary_cross_entropy: ") && Contains("1.25") && Contains("[0, 1]"));
  CHECK(std::isnan(tg::binary_cross_entropy(f64({NAN, 0.5}, {2}), f64({0, 1}, {2})).item()));
  CHECK_THROWS_WITH(tg::binary_cross_entropy(p, p, f64({1, 2}, {2})),
                    Contains("binary_cross_entropy: ") && Contains("[2]") && Contains("[2, 3]"));
  CHECK_THROWS_WITH(tg::binary_cross_entropy(p, p, tg::param(tg::ones({3}, tg::f64))),
                    Contains("not differentiable"));
}

TEST_CASE("dropout: the Dropout module's mask, PyTorch's scaling and rules", "[ops][dropout]") {
  const Var x = tg::param(make({"w", {50, 40}, 0.3}, tg::f64));
  // The module and the function draw the same mask from the same generator state.
  tg::Rng r1(11), r2(11);
  tg::Dropout layer(0.3, r1);
  const Var a = layer.forward(x);
  const Var b = tg::dropout(x, 0.3, true, r2);
  CHECK(vals(a) == vals(b));
  CHECK(r1.state() == r2.state());
  // Kept elements scaled by 1 / (1 - p), the others 0; about 30% dropped.
  int dropped = 0;
  const auto xv = vals(x), bv = vals(b);
  for (size_t i = 0; i < xv.size(); ++i) {
    if (bv[i] == 0.0) {
      ++dropped;
    } else {
      CHECK(bv[i] == Approx(xv[i] / 0.7));
    }
  }
  CHECK(dropped > 500);
  CHECK(dropped < 700);
  // The gradient is the same mask.
  tg::sum(b).backward();
  const auto g = vals(x.grad());
  for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == (bv[i] == 0.0 ? 0.0 : 1.0 / 0.7));
  // Not training, or p = 0: x itself, nothing drawn; p = 1: zeros.
  tg::Rng r3(1);
  const auto before = r3.state();
  CHECK(tg::dropout(x, 0.5, false, r3).node() == x.node());
  CHECK(tg::dropout(x, 0.0, true, r3).node() == x.node());
  CHECK(r3.state() == before);
  for (double v : vals(tg::dropout(x, 1.0, true, r3))) CHECK(v == 0.0);
  // p outside [0, 1] (NaN too) is refused, in training or not.
  for (const double bad : {-0.1, 1.5, static_cast<double>(NAN)}) {
    CHECK_THROWS_AS(tg::dropout(x, bad, false, r3), tg::Error);
    CHECK_THROWS_WITH(tg::dropout(x, bad, true, r3),
                      Catch::Contains("dropout: ") && Catch::Contains("p"));
  }
  CHECK_THROWS_WITH(tg::dropout(tg::constant(tg::ones({2}, tg::i64)), 0.5, true, r3),
                    Catch::Contains("dropout: ") && Catch::Contains("i64"));
  // f32 stays f32.
  CHECK(tg::dropout(tg::param(tg::ones({4}, tg::f32)), 0.5, true, r3).dtype() == tg::f32);
}
