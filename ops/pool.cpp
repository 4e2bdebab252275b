#include "ops/pool.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/kernels.hpp"
#include "ops/index.hpp"
#include "ops/shape_ops.hpp"
#include "parallel/parallel.hpp"

namespace tg {

namespace {

std::string pair_str(int64_t h, int64_t w) {
  return "(" + std::to_string(h) + ", " + std::to_string(w) + ")";
}

// x as [N, C, H, W]: a rank-3 x (unbatched) gains a batch of 1, which `batched` reports.
Var as_batched(const Var& x, const char* op, bool& unbatched) {
  if (x.dim() != 3 && x.dim() != 4)
    throw ShapeError(std::string(op) + ": expected a 3-d or 4-d input ([C, H, W] or " +
                     "[N, C, H, W]), got shape " + x.shape().str());
  kern::check_floating(x.value(), op);
  unbatched = x.dim() == 3;
  return unbatched ? unsqueeze(x, 0) : x;
}

// PyTorch's pooling_output_shape.
int64_t pooled_extent(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil,
                      bool ceil_mode) {
  const int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

struct PoolGeom {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

PoolGeom check_pool(const char* op, const Shape& s, Pair2 k, std::optional<Pair2> stride, Pair2 pad,
                    Pair2 dil, bool ceil_mode) {
  const Pair2 st = stride ? *stride : k;
  if (k.h <= 0 || k.w <= 0)
    throw Error(std::string(op) + ": kernel_size must be positive, got " + pair_str(k.h, k.w));
  if (st.h <= 0 || st.w <= 0)
    throw Error(std::string(op) + ": stride must be positive, got " + pair_str(st.h, st.w));
  if (dil.h <= 0 || dil.w <= 0)
    throw Error(std::string(op) + ": dilation must be positive, got " + pair_str(dil.h, dil.w));
  // NOTE: half of the kernel size, not of the dilated kernel: PyTorch's rule (a wider
  // padding under dilation gives windows it refuses).
  if (pad.h < 0 || pad.w < 0 || pad.h > k.h / 2 || pad.w > k.w / 2)
    throw Error(std::string(op) + ": padding " + pair_str(pad.h, pad.w) +
                " must be non-negative and at most half of the kernel size " + pair_str(k.h, k.w));
  const int64_t H = s[2], W = s[3];
  const int64_t oh = pooled_extent(H, k.h, pad.h, st.h, dil.h, ceil_mode);
  const int64_t ow = pooled_extent(W, k.w, pad.w, st.w, dil.w, ceil_mode);
  if (oh < 1 || ow < 1 || H < 1 || W < 1)
    throw ShapeError(std::string(op) + ": input of shape " + s.str() + " with kernel_size " +
                     pair_str(k.h, k.w) + ", padding " + pair_str(pad.h, pad.w) + " and dilation " +
                     pair_str(dil.h, dil.w) + " gives an output of " + pair_str(oh, ow) +
                     ": the kernel is larger than the padded input");
  return {k.h, k.w, st.h, st.w, pad.h, pad.w, dil.h, dil.w, oh, ow};
}

// ---- max pooling ----------------------------------------------------------------------

// Max pooling's 2x2 windows at stride 2 over one plane (oh x ow outputs inside the input,
// row length W): the generic loop's rule (in row-major order a larger value wins, a NaN wins
// over anything; so the first of equal maxima, the last NaN) taken as a tree, every input
// row's pairs first (m, k: the larger of each pair and which one), then the two rows of each
// window, which picks the same tap. Every step is a select in loops the compiler vectorizes
// (branches on which tap wins are data, and mispredict); the pairs of the plane's rows are
// one flat loop when the windows cover each row (W = 2 ow), not one short loop per row.
template <class T>
void max_pool_pairs(const T* xp, int64_t W, int64_t oh, int64_t ow, T* y, int64_t* idx,
                    std::vector<T>& m, std::vector<int32_t>& k) {
  const auto n = static_cast<size_t>(2 * oh * ow);
  if (m.size() < n) {
    m.resize(n);
    k.resize(n);
  }
  const auto pairs = [](const T* r, int64_t count, T* mo, int32_t* ko) {
    for (int64_t j = 0; j < count; ++j) {
      const T e = r[2 * j], od = r[2 * j + 1];
      const bool t = (od > e) | (od != od);
      mo[j] = t ? od : e;
      ko[j] = t ? 1 : 0;
    }
  };
  if (W == 2 * ow)
    pairs(xp, 2 * oh * ow, m.data(), k.data());
  else
    for (int64_t r = 0; r < 2 * oh; ++r)
      pairs(xp + r * W, ow, m.data() + r * ow, k.data() + r * ow);
  for (int64_t i = 0; i < oh; ++i) {
    const T* top = m.data() + 2 * i * ow;
    const T* bottom = top + ow;
    const int32_t* kt = k.data() + 2 * i * ow;
    const int32_t* kb = kt + ow;
    T* yo = y + i * ow;
    for (int64_t j = 0; j < ow; ++j) {
      const bool lower = (bottom[j] > top[j]) | (bottom[j] != bottom[j]);
      yo[j] = lower ? bottom[j] : top[j];
    }
    if (idx)
      for (int64_t j = 0; j < ow; ++j) {
        const bool lower = (bottom[j] > top[j]) | (bottom[j] != bottom[j]);
        idx[i * ow + j] = 2 * i * W + 2 * j + (lower ? W + kb[j] : kt[j]);
      }
  }
}

// idx null: the values alone (nothing will read the indices).
void max_pool_kernel(const Tensor& x, const PoolGeom& g, Tensor& y, Tensor* idx) {
  const Shape& s = x.shape();
  const int64_t planes = s[0] * s[1], H = s[2], W = s[3];
  int64_t* pi = idx ? idx->data<int64_t>() : nullptr;
  dispatch(x.dtype(), "max_pool2d", [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    // Split by plane over the worker pool (a plane's outputs are its own).
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(H * W, 1));
    const bool pairs = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 &&
                       g.dh == 1 && g.dw == 1 && 2 * g.oh <= H && 2 * g.ow <= W;
    detail::parallel_for(planes, grain, [&](int64_t p0, int64_t p1) {
      std::vector<T> m;
      std::vector<int32_t> k;
      for (int64_t p = p0; p < p1; ++p) {
        const T* xp = px + p * H * W;
        if (pairs) {  // 2x2 windows, stride 2, inside the input: the common case
          const int64_t o = p * g.oh * g.ow;
          max_pool_pairs(xp, W, g.oh, g.ow, py + o, pi ? pi + o : nullptr, m, k);
          continue;
        }
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          int64_t h0 = oh * g.sh - g.ph;
          const int64_t h1 = std::min(h0 + (g.kh - 1) * g.dh + 1, H);
          while (h0 < 0) h0 += g.dh;
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            int64_t w0 = ow * g.sw - g.pw;
            const int64_t w1 = std::min(w0 + (g.kw - 1) * g.dw + 1, W);
            while (w0 < 0) w0 += g.dw;
            T best = -std::numeric_limits<T>::infinity();
            int64_t at = h0 * W + w0;
            for (int64_t h = h0; h < h1; h += g.dh)
              for (int64_t w = w0; w < w1; w += g.dw) {
                const T v = xp[h * W + w];
                if (v > best || std::isnan(v)) {  // as PyTorch: NaN wins
                  best = v;
                  at = h * W + w;
                }
              }
            const int64_t o = (p * g.oh + oh) * g.ow + ow;
            py[o] = best;
            if (pi) pi[o] = at;
          }
        }
      }
    });
  });
}

// The gradient of max pooling: dy added at the indices of each plane (gather_backward,
// whose own gradient gathers ddx at the same indices).
Var max_pool_grad(const Var& dy, const Shape& xs, const Var& idx) {
  const int64_t N = xs[0], C = xs[1];
  const int64_t L = dy.shape()[2] * dy.shape()[3];
  Var g = detail::gather_backward(reshape(dy, {N, C, L}), Shape{N, C, xs[2] * xs[3]}, 2,
                                  reshape(idx, {N, C, L}));
  return reshape(g, {N, C, xs[2], xs[3]});
}

// Its tangent: the input's tangent at the indices of each plane.
Var max_pool_jvp(const Var& t, const Shape& ys, const Var& idx) {
  const Shape& xs = t.shape();
  const int64_t N = xs[0], C = xs[1], L = ys[2] * ys[3];
  const Var v = gather(reshape(t, {N, C, xs[2] * xs[3]}), 2, reshape(idx, {N, C, L}));
  return reshape(v, ys.to_vector());
}

ValuesIndices max_pool_impl(const char* op, const Var& x0, Pair2 k, std::optional<Pair2> stride,
                            Pair2 pad, Pair2 dil, bool ceil_mode, bool return_indices = true) {
  bool unbatched = false;
  const Var x = as_batched(x0, op, unbatched);
  const PoolGeom g = check_pool(op, x.shape(), k, stride, pad, dil, ceil_mode);
  const Shape& s = x.shape();
  const Shape os{s[0], s[1], g.oh, g.ow};
  Tensor y = Tensor::empty(os, x.dtype());
  // Without a gradient or tangent to route and no indices to return (inference), no indices:
  // they would be twice the output's bytes in f32.
  // (A tangent needs the indices too.)
  if (!return_indices && !(is_grad_enabled() && x.requires_grad()) &&
      !(detail::fw_enabled && detail::has_tangent(x))) {
    max_pool_kernel(x.value(), g, y, nullptr);
    Var v = constant(std::move(y));
    return {unbatched ? squeeze(v, 0) : v, Var()};
  }
  Tensor idx = Tensor::empty(os, i64);
  max_pool_kernel(x.value(), g, y, &idx);
  // The backward keeps its own copy of the indices when they are returned (writing into the
  // returned ones must not move the gradient).
  const Var saved = constant(return_indices ? idx.clone() : idx);
  Var v = record(
      "max_pool2d", std::move(y), {x},
      [saved](const BackwardCtx& c, const Var& dy) {
        return Grads{max_pool_grad(dy, c.input_shape(0), saved)};
      },
      [saved](const JvpCtx& c) { return max_pool_jvp(c.tangent(0), c.output().shape(), saved); });
  if (!return_indices) return {unbatched ? squeeze(v, 0) : v, Var()};
  Var i = constant(std::move(idx));
  if (unbatched) return {squeeze(v, 0), squeeze(i, 0)};
  return {v, i};
}

// ---- average pooling: a separable linear map ------------------------------------------

// The windows along one axis: [start, end) within the input, and the factor each divisor
// takes from this axis (a window's divisor is dh * dw).
struct AxisWindows {
  int64_t in = 0;
  std::vector<int64_t> start, end;
  std::vector<double> div;
};
struct Windows {
  AxisWindows h, w;
};

AxisWindows avg_windows(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p,
                        bool count_include_pad) {
  AxisWindows a;
  a.in = in;
  for (int64_t o = 0; o < out; ++o) {
    int64_t b = o * s - p, e = std::min(b + k, in + p);
    const int64_t padded = e - b;
    b = std::max<int64_t>(b, 0);
    e = std::min(e, in);
    a.start.push_back(b);
    a.end.push_back(e);
    a.div.push_back(static_cast<double>(count_include_pad ? padded : e - b));
  }
  return a;
}

AxisWindows adaptive_windows(int64_t in, int64_t out) {
  AxisWindows a;
  a.in = in;
  for (int64_t o = 0; o < out; ++o) {
    const int64_t b = (o * in) / out, e = ((o + 1) * in + out - 1) / out;
    a.start.push_back(b);
    a.end.push_back(e);
    a.div.push_back(static_cast<double>(e - b));
  }
  return a;
}

// y[n, c, i, j] = sum of x over window (i, j) / (dh[i] dw[j]); an empty window gives 0.
Tensor window_mean_kernel(const Tensor& x, const Windows& wn) {
  const Shape& s = x.shape();
  const int64_t planes = s[0] * s[1], H = s[2], W = s[3];
  const int64_t OH = static_cast<int64_t>(wn.h.start.size()),
                OW = static_cast<int64_t>(wn.w.start.size());
  Tensor y = Tensor::empty(Shape{s[0], s[1], OH, OW}, x.dtype());
  dispatch(x.dtype(), "avg_pool2d", [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for (int64_t p = 0; p < planes; ++p) {
      const T* xp = px + p * H * W;
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          T acc = 0;
          for (int64_t h = wn.h.start[i]; h < wn.h.end[i]; ++h)
            for (int64_t w = wn.w.start[j]; w < wn.w.end[j]; ++w) acc += xp[h * W + w];
          const double d = wn.h.div[i] * wn.w.div[j];
          py[(p * OH + i) * OW + j] = d != 0 ? static_cast<T>(acc / static_cast<T>(d)) : T(0);
        }
    }
  });
  return y;
}

// The adjoint: dx[n, c, h, w] = sum over the windows holding (h, w) of dy / (dh dw).
Tensor window_mean_adjoint_kernel(const Tensor& dy, const Windows& wn) {
  const Shape& s = dy.shape();
  const int64_t planes = s[0] * s[1], OH = s[2], OW = s[3], H = wn.h.in, W = wn.w.in;
  Tensor dx = zeros(Shape{s[0], s[1], H, W}, dy.dtype());
  dispatch(dy.dtype(), "avg_pool2d_backward", [&]<class T>() {
    const T* pg = dy.data<T>();
    T* px = dx.data<T>();
    for (int64_t p = 0; p < planes; ++p) {
      T* xp = px + p * H * W;
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          const double d = wn.h.div[i] * wn.w.div[j];
          if (d == 0) continue;
          const T v = static_cast<T>(pg[(p * OH + i) * OW + j] / static_cast<T>(d));
          for (int64_t h = wn.h.start[i]; h < wn.h.end[i]; ++h)
            for (int64_t w = wn.w.start[j]; w < wn.w.end[j]; ++w) xp[h * W + w] += v;
        }
    }
  });
  return dx;
}

using WindowsPtr = std::shared_ptr<const Windows>;
Var window_mean(const char* op, const Var& x, const WindowsPtr& wn);

// avg_pool2d's (and adaptive_avg_pool2d's) gradient, itself linear: its gradient is the
// pooling again.
Var avg_pool2d_backward(const Var& dy, const WindowsPtr& wn) {
  kern::check_floating(dy.value(), "avg_pool2d_backward");
  Tensor dx = window_mean_adjoint_kernel(dy.value(), *wn);
  return record(
      "avg_pool2d_backward", std::move(dx), {dy},
      [wn](const BackwardCtx&, const Var& ddx) {
        return Grads{window_mean("avg_pool2d", ddx, wn)};
      },
      [wn](const JvpCtx& c) { return avg_pool2d_backward(c.tangent(0), wn); });
}

Var window_mean(const char* op, const Var& x, const WindowsPtr& wn) {
  Tensor y = window_mean_kernel(x.value(), *wn);
  return record(
      op, std::move(y), {x},
      [wn](const BackwardCtx&, const Var& dy) { return Grads{avg_pool2d_backward(dy, wn)}; },
      [op, wn](const JvpCtx& c) { return window_mean(op, c.tangent(0), wn); });
}

}  // namespace

ValuesIndices max_pool2d_with_indices(const Var& x, Pair2 kernel_size, std::optional<Pair2> stride,
                                      Pair2 padding, Pair2 dilation, bool ceil_mode) {
  return max_pool_impl("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode);
}

Var max_pool2d(const Var& x, Pair2 kernel_size, std::optional<Pair2> stride, Pair2 padding,
               Pair2 dilation, bool ceil_mode) {
  return max_pool_impl("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode, false)
      .values;
}

Var avg_pool2d(const Var& x0, Pair2 kernel_size, std::optional<Pair2> stride, Pair2 padding,
               bool ceil_mode, bool count_include_pad, std::optional<int64_t> divisor_override) {
  bool unbatched = false;
  const Var x = as_batched(x0, "avg_pool2d", unbatched);
  const PoolGeom g =
      check_pool("avg_pool2d", x.shape(), kernel_size, stride, padding, 1, ceil_mode);
  if (divisor_override && *divisor_override == 0)
    throw Error("avg_pool2d: divisor_override must be non-zero, got 0");
  auto wn = std::make_shared<Windows>();
  wn->h = avg_windows(x.shape()[2], g.oh, g.kh, g.sh, g.ph, count_include_pad);
  wn->w = avg_windows(x.shape()[3], g.ow, g.kw, g.sw, g.pw, count_include_pad);
  if (divisor_override) {
    // A window's divisor is h.div[i] * w.div[j]: the override on one axis, 1 on the other.
    std::fill(wn->h.div.begin(), wn->h.div.end(), static_cast<double>(*divisor_override));
    std::fill(wn->w.div.begin(), wn->w.div.end(), 1.0);
  }
  Var y = window_mean("avg_pool2d", x, wn);
  return unbatched ? squeeze(y, 0) : y;
}

Var adaptive_avg_pool2d(const Var& x0, Pair2 output_size) {
  bool unbatched = false;
  const Var x = as_batched(x0, "adaptive_avg_pool2d", unbatched);
  const Shape& s = x.shape();
  if (output_size.h < 0 || output_size.w < 0)
    throw Error("adaptive_avg_pool2d: output_size must be non-negative, got " +
                pair_str(output_size.h, output_size.w));
  if (s[2] < 1 || s[3] < 1)
    throw ShapeError(
        "adaptive_avg_pool2d: the input's height and width must be non-zero, got "
        "shape " +
        s.str());
  auto wn = std::make_shared<Windows>();
  wn->h = adaptive_windows(s[2], output_size.h);
  wn->w = adaptive_windows(s[3], output_size.w);
  Var y = window_mean("adaptive_avg_pool2d", x, wn);
  return unbatched ? squeeze(y, 0) : y;
}

namespace {
Var as_2d(const Var& x, const char* op) {
  if (x.dim() != 2 && x.dim() != 3)
    throw ShapeError(std::string(op) + ": expected a 2-d or 3-d input ([C, L] or [N, C, L]), " +
                     "got shape " + x.shape().str());
  return unsqueeze(x, -2);
}
}  // namespace

ValuesIndices max_pool1d_with_indices(const Var& x, int64_t kernel_size,
                                      std::optional<int64_t> stride, int64_t padding,
                                      int64_t dilation, bool ceil_mode) {
  std::optional<Pair2> st;
  if (stride) st = Pair2(1, *stride);
  auto r = max_pool_impl("max_pool1d", as_2d(x, "max_pool1d"), Pair2(1, kernel_size), st,
                         Pair2(0, padding), Pair2(1, dilation), ceil_mode);
  return {squeeze(r.values, -2), squeeze(r.indices, -2)};
}

Var max_pool1d(const Var& x, int64_t kernel_size, std::optional<int64_t> stride, int64_t padding,
               int64_t dilation, bool ceil_mode) {
  return max_pool1d_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode).values;
}

Var avg_pool1d(const Var& x, int64_t kernel_size, std::optional<int64_t> stride, int64_t padding,
               bool ceil_mode, bool count_include_pad) {
  std::optional<Pair2> st;
  if (stride) st = Pair2(1, *stride);
  return squeeze(avg_pool2d(as_2d(x, "avg_pool1d"), Pair2(1, kernel_size), st, Pair2(0, padding),
                            ceil_mode, count_include_pad),
                 -2);
}

}  // namespace tg
