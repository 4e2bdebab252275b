#include "ops/resize.hpp"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/kernels.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

// Note [Separable resampling]: every mode here maps output position i of an axis to two
// input positions i0[i], i1[i] with weights l0[i], l1[i] (nearest: i1 = i0, l1 = 0), and a
// 2-d output pixel is the product of its row and column weights:
//   y[p, i, j] = sum_{a, b in {0, 1}} lh_a[i] lw_b[j] x[p, ih_a[i], iw_b[j]].
// The map is linear in x; its adjoint (the gradient) scatters dy with the same weights, and
// the adjoint's own gradient is the map again.
struct Axis {
  int64_t in = 0;
  std::vector<int64_t> i0, i1;
  std::vector<double> l0, l1;  // computed in the input's dtype as PyTorch, stored exactly
};

struct Plan {
  Axis h, w;
};
using PlanPtr = std::shared_ptr<const Plan>;

// PyTorch's area_pixel_compute_scale.
template <class T>
T area_scale(int64_t in, int64_t out, bool align_corners, std::optional<double> scale) {
  if (align_corners) return out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0);
  return scale && *scale > 0.0 ? static_cast<T>(1.0 / *scale)
                               : static_cast<T>(in) / static_cast<T>(out);
}

// PyTorch's HelperInterpNearest (the legacy "nearest"): src = floor(i * scale) (in float),
// clamped to in - 1.
template <class T>
Axis nearest_axis(int64_t in, int64_t out, std::optional<double> scale) {
  Axis a;
  a.in = in;
  const T s = area_scale<T>(in, out, false, scale);
  for (int64_t i = 0; i < out; ++i) {
    const T real = s * static_cast<T>(i);
    const int64_t src =
        std::min(static_cast<int64_t>(std::floor(static_cast<float>(real))), in - 1);
    a.i0.push_back(src);
    a.i1.push_back(src);
    a.l0.push_back(1.0);
    a.l1.push_back(0.0);
  }
  return a;
}

// PyTorch's compute_indices_weights_linear (area_pixel_compute_source_index and
// guard_index_and_lambda).
template <class T>
Axis linear_axis(int64_t in, int64_t out, bool align_corners, std::optional<double> scale) {
  Axis a;
  a.in = in;
  const T s = area_scale<T>(in, out, align_corners, scale);
  for (int64_t i = 0; i < out; ++i) {
    T real = align_corners ? s * static_cast<T>(i)
                           : s * (static_cast<T>(i) + static_cast<T>(0.5)) - static_cast<T>(0.5);
    if (!align_corners && real < T(0)) real = T(0);
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(static_cast<float>(real))), in - 1);
    T lambda = real - static_cast<T>(i0);
    lambda = std::min(std::max(lambda, T(0)), T(1));
    a.i0.push_back(i0);
    a.i1.push_back(i0 + (i0 < in - 1 ? 1 : 0));
    a.l0.push_back(static_cast<double>(T(1) - lambda));
    a.l1.push_back(static_cast<double>(lambda));
  }
  return a;
}

int64_t out_extent(const Axis& a) { return static_cast<int64_t>(a.i0.size()); }

Tensor resample_kernel(const Tensor& x, const Plan& pl) {
  const Shape& s = x.shape();
  const int64_t planes = s[0] * s[1], H = s[2], W = s[3];
  const int64_t OH = out_extent(pl.h), OW = out_extent(pl.w);
  Tensor y = Tensor::empty(Shape{s[0], s[1], OH, OW}, x.dtype());
  dispatch(x.dtype(), "interpolate", [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for (int64_t p = 0; p < planes; ++p) {
      const T* xp = px + p * H * W;
      for (int64_t i = 0; i < OH; ++i) {
        const T* r0 = xp + pl.h.i0[i] * W;
        const T* r1 = xp + pl.h.i1[i] * W;
        const T h0 = static_cast<T>(pl.h.l0[i]), h1 = static_cast<T>(pl.h.l1[i]);
        for (int64_t j = 0; j < OW; ++j) {
          const int64_t c0 = pl.w.i0[j], c1 = pl.w.i1[j];
          const T w0 = static_cast<T>(pl.w.l0[j]), w1 = static_cast<T>(pl.w.l1[j]);
          py[(p * OH + i) * OW + j] =
              h0 * (w0 * r0[c0] + w1 * r0[c1]) + h1 * (w0 * r1[c0] + w1 * r1[c1]);
        }
      }
    }
  });
  return y;
}

Tensor resample_adjoint_kernel(const Tensor& dy, const Plan& pl) {
  const Shape& s = dy.shape();
  const int64_t planes = s[0] * s[1], OH = s[2], OW = s[3], H = pl.h.in, W = pl.w.in;
  Tensor dx = zeros(Shape{s[0], s[1], H, W}, dy.dtype());
  dispatch(dy.dtype(), "interpolate_backward", [&]<class T>() {
    const T* pg = dy.data<T>();
    T* px = dx.data<T>();
    for (int64_t p = 0; p < planes; ++p) {
      T* xp = px + p * H * W;
      for (int64_t i = 0; i < OH; ++i) {
        T* r0 = xp + pl.h.i0[i] * W;
        T* r1 = xp + pl.h.i1[i] * W;
        const T h0 = static_cast<T>(pl.h.l0[i]), h1 = static_cast<T>(pl.h.l1[i]);
        for (int64_t j = 0; j < OW; ++j) {
          const int64_t c0 = pl.w.i0[j], c1 = pl.w.i1[j];
          const T w0 = static_cast<T>(pl.w.l0[j]), w1 = static_cast<T>(pl.w.l1[j]);
          const T g = pg[(p * OH + i) * OW + j];
          r0[c0] += h0 * w0 * g;
          r0[c1] += h0 * w1 * g;
          r1[c0] += h1 * w0 * g;
          r1[c1] += h1 * w1 * g;
        }
      }
    }
  });
  return dx;
}

Var resample(const Var& x, const PlanPtr& pl);

// interpolate's gradient; linear, its gradient is the interpolation again.
Var resample_adjoint(const Var& dy, const PlanPtr& pl) {
  kern::check_floating(dy.value(), "interpolate_backward");
  Tensor dx = resample_adjoint_kernel(dy.value(), *pl);
  return record(
      "interpolate_backward", std::move(dx), {dy},
      [pl](const BackwardCtx&, const Var& ddx) { return Grads{resample(ddx, pl)}; },
      [pl](const JvpCtx& c) { return resample_adjoint(c.tangent(0), pl); });
}

Var resample(const Var& x, const PlanPtr& pl) {
  Tensor y = resample_kernel(x.value(), *pl);
  return record(
      "interpolate", std::move(y), {x},
      [pl](const BackwardCtx&, const Var& dy) { return Grads{resample_adjoint(dy, pl)}; },
      [pl](const JvpCtx& c) { return resample(c.tangent(0), pl); });
}

std::string shape_list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string scale_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    std::string d = std::to_string(v[i]);
    s += (i ? ", " : "") + d;
  }
  return s + "]";
}

}  // namespace

Var interpolate(const Var& x0, std::optional<std::vector<int64_t>> size,
                std::optional<std::vector<double>> scale_factor, const std::string& mode,
                std::optional<bool> align_corners) {
  const bool nearest = mode == "nearest";
  if (!nearest && mode != "linear" && mode != "bilinear")
    throw Error("interpolate: mode must be 'nearest', 'linear' or 'bilinear', got '" + mode + "'");
  if (nearest && align_corners)
    throw Error(
        "interpolate: align_corners can only be set with the interpolating modes (linear, "
        "bilinear), got mode 'nearest'");
  if (x0.dim() != 3 && x0.dim() != 4)
    throw ShapeError(
        "interpolate: expected a 3-d ([N, C, L]) or 4-d ([N, C, H, W]) input, got shape " +
        x0.shape().str());
  if ((mode == "linear" && x0.dim() != 3) || (mode == "bilinear" && x0.dim() != 4))
    throw ShapeError("interpolate: mode '" + mode + "' needs a " +
                     (mode == "linear" ? "3-d" : "4-d") + " input, got shape " + x0.shape().str());
  if (size.has_value() == scale_factor.has_value())
    throw Error(
        std::string("interpolate: exactly one of size and scale_factor must be given, got ") +
        (size ? "both" : "neither"));
  kern::check_floating(x0.value(), "interpolate");
  const int d = x0.dim() - 2;
  std::vector<int64_t> in(x0.shape().begin() + 2, x0.shape().end()), out(d);
  std::vector<std::optional<double>> scales(d);
  if (size) {
    if (size->size() != 1 && size->size() != static_cast<size_t>(d))
      throw Error("interpolate: size must have 1 or " + std::to_string(d) +
                  " values for input shape " + x0.shape().str() + ", got " + shape_list(*size));
    for (int k = 0; k < d; ++k) out[k] = (*size)[size->size() == 1 ? 0 : k];
  } else {
    const auto& sf = *scale_factor;
    if (sf.size() != 1 && sf.size() != static_cast<size_t>(d))
      throw Error("interpolate: scale_factor must have 1 or " + std::to_string(d) +
                  " values for input shape " + x0.shape().str() + ", got " + scale_list(sf));
    for (int k = 0; k < d; ++k) {
      const double f = sf[sf.size() == 1 ? 0 : k];
      if (!(f > 0.0) || !std::isfinite(f))
        throw Error("interpolate: scale_factor must be positive and finite, got " + scale_list(sf));
      scales[k] = f;
      out[k] = static_cast<int64_t>(std::floor(static_cast<double>(in[k]) * f));
    }
  }
  for (int k = 0; k < d; ++k)
    if (in[k] <= 0 || out[k] <= 0)
      throw ShapeError("interpolate: input and output sizes must be positive, got input shape " +
                       x0.shape().str() + " and output size " + shape_list(out));

  const Var x = d == 1 ? unsqueeze(x0, 2) : x0;
  auto pl = std::make_shared<Plan>();
  const bool ac = align_corners.value_or(false);
  dispatch(x.dtype(), "interpolate", [&]<class T>() {
    auto axis = [&](int64_t i, int64_t o, std::optional<double> sc) {
      return nearest ? nearest_axis<T>(i, o, sc) : linear_axis<T>(i, o, ac, sc);
    };
    pl->h = d == 1 ? nearest_axis<T>(1, 1, std::nullopt) : axis(in[0], out[0], scales[0]);
    pl->w = axis(in[d - 1], out[d - 1], scales[d - 1]);
  });
  Var y = resample(x, pl);
  return d == 1 ? squeeze(y, 2) : y;
}

}  // namespace tg
