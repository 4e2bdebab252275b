// Resizing (ops/resize.hpp): interpolate's values and gradients against PyTorch's
// torch.nn.functional.interpolate, and its typed errors; channel dropout (dropout2d,
// dropout1d in ops/dropout.hpp): the exact mask drawn from the Rng, its statistics and rules.

#include <catch2/catch.hpp>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "torch_oracle.hpp"

namespace {

using tg::Shape;
using tg::Var;
using tgtest::pattern;

std::vector<double> vals(const Var& v) { return v.value().to(tg::f64).to_vector(); }

// One interpolate call, spelled for both sides.
struct Resize {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<int64_t> size;  // empty: scale_factor
  std::vector<double> scale;  // empty: size
  std::string mode;
  std::optional<bool> align_corners;
};

template <class V>
std::string py_tuple(const std::vector<V>& v) {
  std::string s = "(";
  for (const V& x : v) {
    char buf[64];
    if constexpr (std::is_floating_point_v<V>)
      std::snprintf(buf, sizeof buf, "%.17g, ", x);
    else
      std::snprintf(buf, sizeof buf, "%lld, ", static_cast<long long>(x));
    s += buf;
  }
  // One value is PyTorch's scalar form (the same for every spatial dim).
  return v.size() == 1 ? s.substr(1, s.size() - 3) : s + ")";
}

const std::vector<Resize> kResizes = {
    {"nearest_up", {2, 3, 4, 5}, {7, 9}, {}, "nearest", {}},
    {"nearest_down_odd", {1, 2, 7, 9}, {3, 4}, {}, "nearest", {}},
    {"nearest_x2", {1, 2, 3, 4}, {}, {2.0}, "nearest", {}},
    {"nearest_scale_mixed", {2, 1, 5, 7}, {}, {1.7, 0.6}, "nearest", {}},
    {"nearest_half_odd", {1, 1, 5, 7}, {}, {0.5}, "nearest", {}},
    {"nearest_3x", {1, 1, 3, 2}, {}, {3.0, 1.5}, "nearest", {}},
    {"nearest_1d", {2, 3, 5}, {8}, {}, "nearest", {}},
    {"nearest_1d_scale", {2, 1, 7}, {}, {0.7}, "nearest", {}},
    {"nearest_same", {1, 2, 3, 3}, {3, 3}, {}, "nearest", {}},
    {"bilinear_up", {2, 3, 4, 5}, {7, 9}, {}, "bilinear", false},
    {"bilinear_up_ac", {2, 3, 4, 5}, {7, 9}, {}, "bilinear", true},
    {"bilinear_down_odd", {1, 2, 7, 9}, {3, 4}, {}, "bilinear", false},
    {"bilinear_down_odd_ac", {1, 2, 7, 9}, {3, 4}, {}, "bilinear", true},
    {"bilinear_default_ac", {1, 2, 3, 5}, {6, 4}, {}, "bilinear", {}},
    {"bilinear_scale_mixed", {2, 1, 5, 7}, {}, {1.7, 0.6}, "bilinear", false},
    {"bilinear_scale_mixed_ac", {2, 1, 5, 7}, {}, {1.7, 0.6}, "bilinear", true},
    {"bilinear_scale_2_5", {1, 1, 3, 3}, {}, {2.5}, "bilinear", false},
    {"bilinear_scale_third", {1, 2, 7, 8}, {}, {1.0 / 3.0}, "bilinear", false},
    {"bilinear_to_one", {1, 2, 5, 4}, {1, 1}, {}, "bilinear", false},
    {"bilinear_to_one_ac", {1, 2, 5, 4}, {1, 1}, {}, "bilinear", true},
    {"bilinear_from_one", {1, 1, 1, 1}, {3, 2}, {}, "bilinear", false},
    {"bilinear_from_one_ac", {1, 1, 1, 1}, {3, 2}, {}, "bilinear", true},
    {"bilinear_empty_batch", {0, 2, 3, 3}, {5, 5}, {}, "bilinear", false},
    {"linear_up", {2, 2, 6}, {11}, {}, "linear", false},
    {"linear_up_ac", {2, 2, 6}, {11}, {}, "linear", true},
    {"linear_half", {1, 3, 9}, {}, {0.5}, "linear", false},
};

Var run_resize(const Resize& r, const Var& x) {
  std::optional<std::vector<int64_t>> size;
  std::optional<std::vector<double>> scale;
  if (r.scale.empty())
    size = r.size;
  else
    scale = r.scale;
  return tg::interpolate(x, size, scale, r.mode, r.align_corners);
}

}  // namespace

TEST_CASE("interpolate matches PyTorch", "[ops][resize][oracle]") {
  TGTEST_REQUIRE_TORCH();
  for (const auto& [single, dt, tdt, tol] : tgtest::oracle_dtypes()) {
    std::string script = std::string(tgtest::kPythonPrelude) + "D = " + dt +
                         "\nF = torch.nn.functional\n" + tgtest::kPythonRun;
    for (size_t i = 0; i < kResizes.size(); ++i) {
      const Resize& r = kResizes[i];
      script += "x = P(" + py_tuple(r.shape) + ", " + std::to_string(i) + ".0)\n";
      script += "run(\"" + r.name + "\", F.interpolate(x, ";
      script += r.scale.empty() ? "size=" + py_tuple(r.size) : "scale_factor=" + py_tuple(r.scale);
      script += ", mode=\"" + r.mode + "\"";
      if (r.align_corners)
        script += std::string(", align_corners=") + (*r.align_corners ? "True" : "False");
      script += "), x)\n";
    }
    const auto torch = tgtest::run_python(script);
    for (size_t i = 0; i < kResizes.size(); ++i) {
      const Resize& r = kResizes[i];
      Var x = tg::param(pattern(Shape(r.shape), static_cast<double>(i)).to(tdt));
      const Var y = run_resize(r, x);
      CHECK(y.dtype() == tdt);
      tgtest::check_run(torch, r.name, y, {x}, tol);
    }
  }
}

TEST_CASE("interpolate: output shapes and typed errors", "[ops][resize]") {
  const Var x = tg::param(pattern({2, 3, 4, 5}, 0.0));
  const Var x3 = tg::param(pattern({2, 3, 5}, 1.0));
  CHECK(tg::interpolate(x, std::vector<int64_t>{6}).shape() == Shape{2, 3, 6, 6});
  CHECK(tg::interpolate(x, std::nullopt, std::vector<double>{1.5, 0.5}, "bilinear").shape() ==
        Shape{2, 3, 6, 2});
  CHECK(tg::interpolate(x3, std::nullopt, std::vector<double>{2.2}, "linear").shape() ==
        Shape{2, 3, 11});
  // Nearest upsampling by an integer factor repeats each pixel.
  const Var up = tg::interpolate(x, std::nullopt, std::vector<double>{2.0});
  CHECK(vals(up)[0] == vals(x)[0]);
  CHECK(vals(up)[1] == vals(x)[0]);
  CHECK(vals(up)[10] == vals(x)[0]);
  CHECK(vals(up)[2] == vals(x)[1]);
  // NaN in, NaN out.
  const Var n = tg::constant(tg::full({1, 1, 2, 2}, std::nan(""), tg::f64));
  for (double v : vals(tg::interpolate(n, std::vector<int64_t>{3, 3}, std::nullopt, "bilinear")))
    CHECK(std::isnan(v));

  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const tg::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using V = std::vector<int64_t>;
  using S = std::vector<double>;
  CHECK_THROWS_AS(tg::interpolate(x, V{3}, S{2.0}), tg::Error);
  CHECK(msg([&] { tg::interpolate(x, V{3}, S{2.0}); }).find("interpolate: exactly one") == 0);
  CHECK(msg([&] { tg::interpolate(x, std::nullopt, std::nullopt); }).find("neither") !=
        std::string::npos);
  CHECK(msg([&] { tg::interpolate(x, V{3}, std::nullopt, "bicubic"); }).find("'bicubic'") !=
        std::string::npos);
  CHECK(msg([&] {
          tg::interpolate(x, V{3}, std::nullopt, "nearest", false);
        }).find("interpolate: align_corners") == 0);
  CHECK_THROWS_AS(tg::interpolate(tg::param(pattern({3, 4}, 0.0)), V{3}), tg::ShapeError);
  CHECK_THROWS_AS(tg::interpolate(tg::param(pattern({1, 1, 2, 2, 2}, 0.0)), V{3}), tg::ShapeError);
  CHECK(msg([&] {
          tg::interpolate(x3, V{3}, std::nullopt, "bilinear");
        }).find("interpolate: mode 'bilinear' needs a 4-d input, got shape [2, 3, 5]") == 0);
  CHECK_THROWS_AS(tg::interpolate(x, V{3}, std::nullopt, "linear"), tg::ShapeError);
  CHECK(msg([&] { tg::interpolate(x, V{3, 4, 5}); }).find("[3, 4, 5]") != std::string::npos);
  CHECK_THROWS_AS(tg::interpolate(x, std::nullopt, S{1.0, 2.0, 3.0}), tg::Error);
  CHECK_THROWS_AS(tg::interpolate(x, std::nullopt, S{-1.0}), tg::Error);
  CHECK_THROWS_AS(tg::interpolate(x, std::nullopt, S{0.1}), tg::ShapeError);  // 0 x 0 output
  CHECK_THROWS_AS(tg::interpolate(x, V{0, 3}), tg::ShapeError);
  CHECK_THROWS_AS(tg::interpolate(tg::constant(tg::zeros({1, 1, 2, 2}, tg::i64)), V{3}),
                  tg::DtypeError);
}

TEST_CASE("dropout2d / dropout1d: the mask from the Rng, scaling and rules", "[ops][dropout]") {
  // The mask: one uniform number per (n, c) in order, kept when below 1 - p.
  const Var x = tg::param(pattern({2, 3, 4, 5}, 0.0));
  tg::Rng r1(7), r2(7);
  const Var y = tg::dropout2d(x, 0.3, true, r1);
  REQUIRE(y.shape() == x.shape());
  const auto xv = vals(x), yv = vals(y);
  int kept = 0;
  for (int64_t nc = 0; nc < 6; ++nc) {
    const bool keep = r2.uniform() < 0.7;
    kept += keep;
    for (int64_t k = 0; k < 20; ++k) {
      const size_t e = static_cast<size_t>(nc * 20 + k);
      CHECK(yv[e] == (keep ? xv[e] * (1.0 / 0.7) : 0.0));
    }
  }
  CHECK(r1.uniform() == r2.uniform());  // exactly N * C draws
  // The gradient is the same mask.
  tg::sum(y).backward();
  const auto g = vals(x.grad());
  for (size_t e = 0; e < g.size(); ++e) CHECK(g[e] == (yv[e] == 0.0 ? 0.0 : 1.0 / 0.7));

  // Unbatched [C, H, W]: one draw per channel.
  tg::Rng r3(11), r4(11);
  const Var u = tg::param(pattern({4, 2, 3}, 1.0));
  const auto uv = vals(tg::dropout2d(u, 0.5, true, r3)), uu = vals(u);
  for (int64_t c = 0; c < 4; ++c) {
    const bool keep = r4.uniform() < 0.5;
    for (int64_t k = 0; k < 6; ++k)
      CHECK(uv[static_cast<size_t>(c * 6 + k)] ==
            (keep ? uu[static_cast<size_t>(c * 6 + k)] * 2.0 : 0.0));
  }

  // dropout1d over [N, C, L] and [C, L].
  tg::Rng r5(3), r6(3);
  const Var l = tg::param(pattern({3, 4, 5}, 2.0));
  const auto lv = vals(tg::dropout1d(l, 0.25, true, r5)), ll = vals(l);
  for (int64_t nc = 0; nc < 12; ++nc) {
    const bool keep = r6.uniform() < 0.75;
    for (int64_t k = 0; k < 5; ++k) {
      const size_t e = static_cast<size_t>(nc * 5 + k);
      CHECK(lv[e] == Approx(keep ? ll[e] / 0.75 : 0.0).margin(0));
    }
  }
  CHECK(tg::dropout1d(tg::param(pattern({4, 5}, 0.0)), 0.5, true, r5).shape() == Shape{4, 5});

  // Statistics: about p of the channels are zero, the mean is kept.
  tg::Rng r7(2024);
  const Var ones = tg::constant(tg::ones({100, 200, 2, 2}, tg::f32));
  const auto ov = vals(tg::dropout2d(ones, 0.3, true, r7));
  double zeros = 0, total = 0;
  for (size_t c = 0; c < ov.size(); c += 4) {
    zeros += ov[c] == 0.0;
    for (size_t k = 0; k < 4; ++k) CHECK(ov[c + k] == ov[c]);  // whole channels
    total += ov[c];
  }
  CHECK(zeros / 20000.0 == Approx(0.3).margin(0.015));
  CHECK(total / 20000.0 == Approx(1.0).margin(0.03));

  // Rules: eval and p = 0 give x itself, p = 1 zeros, p outside [0, 1] and bad ranks throw.
  tg::Rng r8(1);
  CHECK(tg::dropout2d(x, 0.5, false, r8).node() == x.node());
  CHECK(tg::dropout2d(x, 0.0, true, r8).node() == x.node());
  for (double v : vals(tg::dropout2d(x, 1.0, true, r8))) CHECK(v == 0.0);
  CHECK_THROWS_AS(tg::dropout2d(x, 1.5, true, r8), tg::Error);
  CHECK_THROWS_AS(tg::dropout2d(x, -0.1, false, r8), tg::Error);
  CHECK_THROWS_AS(tg::dropout1d(x, 1.5, true, r8), tg::Error);
  CHECK_THROWS_AS(tg::dropout2d(tg::param(pattern({3, 4}, 0.0)), 0.5, true, r8), tg::ShapeError);
  CHECK_THROWS_AS(tg::dropout1d(x, 0.5, true, r8), tg::ShapeError);
  CHECK_THROWS_AS(tg::dropout2d(tg::constant(tg::zeros({2, 2, 2}, tg::i64)), 0.5, true, r8),
                  tg::DtypeError);
}
