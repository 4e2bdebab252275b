// Convolutions (NCHW): conv2d, conv1d (conv2d over a height of 1), conv_transpose2d.
//
// Three recorded ops share one geometry (Geom) and three kernels:
//   conv2d                  y  = conv(x, w) (+ b)           im2col, gemm W_g cols
//   conv_transpose2d        dx = conv^T(dy, w)              gemm W_g^T dy_g, col2im
//   conv2d_weight_backward  dw = sum_n dy_g cols(x)^T        im2col, gemm
// With B(x, w, dy) = <conv(x, w), dy> (bilinear in each), every op is a partial derivative
// of B, so the backward of each is the other two: the gradients of every order are these
// three ops again (double backward, gradgradcheck).

#include "ops/conv.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "ops/arith.hpp"
#include "ops/kernels.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

Padding2::Padding2(const char* s) {
  const std::string v = s ? s : "";
  if (v == "same")
    mode = Mode::same;
  else if (v == "valid")
    mode = Mode::valid;
  else
    throw Error("conv: padding must be an int, a pair, 'same' or 'valid', got '" + v + "'");
}

namespace {

// The geometry of one convolution x [N, C, H, W] * w [O, C / groups, kh, kw] -> [N, O, OH,
// OW]; ph, pw are the padding before (the padding after is implied by OH, OW).
struct Geom {
  int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
  int64_t cg() const { return c / groups; }
  int64_t og() const { return o / groups; }
  int64_t k() const { return cg() * kh * kw; }  // rows of the columns
  int64_t l() const { return oh * ow; }         // columns per image
  bool pointwise() const {  // a 1x1 kernel reading every pixel: the columns are x itself
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && oh == h && ow == w;
  }
};

std::string pair_str(int64_t a, int64_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

// cols [cg * kh * kw, oh * ow] of one image's group x [cg, h, w]; zeros where the kernel
// reads padding.
template <class T>
void im2col(const T* x, const Geom& g, T* col) {
  const int64_t L = g.l();
  for (int64_t c = 0; c < g.cg(); ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * L;
        const T* xc = x + c * g.h * g.w;
        const int64_t jo = kj * g.dw - g.pw;
        // ow range whose iw = ow * sw + jo lies in [0, w)
        int64_t lo = jo >= 0 ? 0 : (-jo + g.sw - 1) / g.sw;
        int64_t hi = g.w - jo <= 0 ? 0 : (g.w - jo - 1) / g.sw + 1;
        lo = std::min(lo, g.ow);
        hi = std::clamp(hi, lo, g.ow);
        if (g.sw == 1 && g.ow == g.w) {
          // Stride 1 across, rows as wide as the input's: the valid output rows are one
          // contiguous run of x shifted by jo, whose wrapped border columns are zeroed after.
          int64_t oh0 = 0, oh1 = g.oh;  // output rows whose ih lies in [0, h)
          const int64_t io = ki * g.dh - g.ph;
          while (oh0 < g.oh && oh0 * g.sh + io < 0) ++oh0;
          while (oh1 > oh0 && (oh1 - 1) * g.sh + io >= g.h) --oh1;
          std::fill(row, row + oh0 * g.ow, T(0));
          std::fill(row + oh1 * g.ow, row + g.oh * g.ow, T(0));
          if (g.sh == 1 && oh1 > oh0) {
            // x index of r[oh * ow + c] is (oh + io) * w + c + jo; copy the in-bounds span.
            const int64_t first = oh0 * g.ow, last = oh1 * g.ow;  // [first, last) of the row
            const int64_t base = io * g.w + jo;                   // x index = i + base
            const int64_t a = std::max(first, -base), b = std::min(last, g.h * g.w - base);
            std::fill(row + first, row + std::max(first, a), T(0));
            if (b > a) std::memcpy(row + a, xc + a + base, sizeof(T) * static_cast<size_t>(b - a));
            std::fill(row + std::max(std::max(first, a), b), row + last, T(0));
            for (int64_t oh = oh0; oh < oh1; ++oh) {
              T* r = row + oh * g.ow;
              for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
              for (int64_t ow = hi; ow < g.ow; ++ow) r[ow] = T(0);
            }
            continue;
          }
        }
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          T* __restrict r = row + oh * g.ow;
          const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.h) {
            std::fill(r, r + g.ow, T(0));
            continue;
          }
          const T* __restrict xr = xc + ih * g.w + jo;
          for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
          if (g.sw == 1)  // a plain loop: rows are short, a memcpy call costs more
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow) r[ow] = xr[ow * g.sw];
          for (int64_t ow = hi; ow < g.ow; ++ow) r[ow] = T(0);
        }
      }
}

// x [cg, h, w] += the columns' entries at the pixels they were read from (im2col's adjoint).
template <class T>
// The columns are scratch: the stride-1 path zeroes the entries that read padding (they
// have no pixel) and adds each kernel tap's valid rows as one run.
void col2im(T* col, const Geom& g, T* x) {
  const int64_t L = g.l();
  for (int64_t c = 0; c < g.cg(); ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * L;
        T* xc = x + c * g.h * g.w;
        const int64_t jo = kj * g.dw - g.pw;
        int64_t lo = jo >= 0 ? 0 : (-jo + g.sw - 1) / g.sw;
        int64_t hi = g.w - jo <= 0 ? 0 : (g.w - jo - 1) / g.sw + 1;
        lo = std::min(lo, g.ow);
        hi = std::clamp(hi, lo, g.ow);
        if (g.sw == 1 && g.sh == 1 && g.ow == g.w) {
          const int64_t io = ki * g.dh - g.ph;
          const int64_t oh0 = std::clamp<int64_t>(-io, 0, g.oh);
          const int64_t oh1 = std::clamp<int64_t>(g.h - io, oh0, g.oh);
          if (oh1 <= oh0) continue;
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            T* r = row + oh * g.ow;
            for (int64_t ow = 0; ow < lo; ++ow) r[ow] = T(0);
            for (int64_t ow = hi; ow < g.ow; ++ow) r[ow] = T(0);
          }
          const int64_t base = io * g.w + jo;  // x index of row entry i is i + base
          const int64_t a = std::max(oh0 * g.ow, -base), b = std::min(oh1 * g.ow, g.h * g.w - base);
          const T* __restrict r = row;
          T* __restrict xb = xc + base;
          for (int64_t i = a; i < b; ++i) xb[i] += r[i];
          continue;
        }
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          const T* __restrict r = row + oh * g.ow;
          T* __restrict xr = xc + ih * g.w + jo;
          if (g.sw == 1)
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow] += r[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += r[ow];
        }
      }
}

// y [n, o, oh, ow] = conv(x, w) (+ bias).
Tensor conv_forward(const Tensor& x, const Tensor& w, const Tensor* bias, const Geom& g) {
  Tensor y = Tensor::empty(Shape{g.n, g.o, g.oh, g.ow}, x.dtype());
  dispatch(x.dtype(), "conv2d", [&]<class T>() {
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* yp = y.data<T>();
    const int64_t L = g.l(), K = g.k(), og = g.og();
    std::vector<T> col(g.pointwise() ? 0 : static_cast<size_t>(K * L));
    for (int64_t n = 0; n < g.n; ++n) {
      T* yn = yp + n * g.o * L;
      if (bias) {
        const T* b = bias->data<T>();
        for (int64_t o = 0; o < g.o; ++o) std::fill(yn + o * L, yn + (o + 1) * L, b[o]);
      }
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = xp + (n * g.c + gr * g.cg()) * g.h * g.w;
        const T* cols = xg;
        if (!g.pointwise()) {
          im2col(xg, g, col.data());
          cols = col.data();
        }
        kern::gemm_raw(false, false, og, L, K, wp + gr * og * K, K, cols, L, bias ? T(1) : T(0),
                       yn + gr * og * L, L);
      }
    }
  });
  return y;
}

// dx [n, c, h, w] = conv^T(dy, w): conv's input gradient, the transposed convolution.
Tensor conv_transpose_kernel(const Tensor& dy, const Tensor& w, const Geom& g) {
  Tensor dx = zeros(Shape{g.n, g.c, g.h, g.w}, dy.dtype());
  dispatch(dy.dtype(), "conv_transpose2d", [&]<class T>() {
    const T* dyp = dy.data<T>();
    const T* wp = w.data<T>();
    T* dxp = dx.data<T>();
    const int64_t L = g.l(), K = g.k(), og = g.og();
    std::vector<T> col(g.pointwise() ? 0 : static_cast<size_t>(K * L));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        T* xg = dxp + (n * g.c + gr * g.cg()) * g.h * g.w;
        const T* dyg = dyp + (n * g.o + gr * og) * L;
        if (g.pointwise()) {
          kern::gemm_raw(true, false, K, L, og, wp + gr * og * K, K, dyg, L, T(0), xg, L);
        } else {
          kern::gemm_raw(true, false, K, L, og, wp + gr * og * K, K, dyg, L, T(0), col.data(), L);
          col2im(col.data(), g, xg);
        }
      }
  });
  return dx;
}

// dw [o, c / groups, kh, kw] = sum over images of dy_g cols(x_g)^T.
Tensor conv_weight_kernel(const Tensor& x, const Tensor& dy, const Geom& g) {
  Tensor dw = zeros(Shape{g.o, g.cg(), g.kh, g.kw}, x.dtype());
  dispatch(x.dtype(), "conv2d_weight_backward", [&]<class T>() {
    const T* xp = x.data<T>();
    const T* dyp = dy.data<T>();
    T* dwp = dw.data<T>();
    const int64_t L = g.l(), K = g.k(), og = g.og();
    std::vector<T> col(g.pointwise() ? 0 : static_cast<size_t>(K * L));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = xp + (n * g.c + gr * g.cg()) * g.h * g.w;
        const T* cols = xg;
        if (!g.pointwise()) {
          im2col(xg, g, col.data());
          cols = col.data();
        }
        kern::gemm_raw(false, true, og, K, L, dyp + (n * g.o + gr * og) * L, L, cols, L, T(1),
                       dwp + gr * og * K, K);
      }
  });
  return dw;
}

Var conv_transpose_op(const Var& dy, const Var& w, const Geom& g);
Var conv_weight_op(const Var& x, const Var& dy, const Geom& g);

// The recorded forward; bias undefined or [o].
Var conv_op(const Var& x, const Var& w, const Var& b, const Geom& g) {
  Tensor y = conv_forward(x.value(), w.value(), b.defined() ? &b.value() : nullptr, g);
  const Var inputs[3] = {x, w, b};
  const std::span<const Var> used(inputs, b.defined() ? 3 : 2);
  return record("conv2d", std::move(y), used, [g](const BackwardCtx& c, const Var& dy) {
    Grads r{c.needs_grad(0) ? conv_transpose_op(dy, c.input(1), g) : Var(),
            c.needs_grad(1) ? conv_weight_op(c.input(0), dy, g) : Var()};
    if (c.num_inputs() == 3) r.push_back(c.needs_grad(2) ? sum(dy, {0, 2, 3}) : Var());
    return r;
  });
}

Var conv_transpose_op(const Var& dy, const Var& w, const Geom& g) {
  // <G, conv^T(dy, w)> = B(G, w, dy): its gradients are conv(G, w) and the weight op.
  return record("conv_transpose2d", conv_transpose_kernel(dy.value(), w.value(), g), {dy, w},
                [g](const BackwardCtx& c, const Var& gx) {
                  return Grads{c.needs_grad(0) ? conv_op(gx, c.input(1), Var(), g) : Var(),
                               c.needs_grad(1) ? conv_weight_op(gx, c.input(0), g) : Var()};
                });
}

Var conv_weight_op(const Var& x, const Var& dy, const Geom& g) {
  // <G, dw(x, dy)> = B(x, G, dy): its gradients are conv^T(dy, G) and conv(x, G).
  return record("conv2d_weight_backward", conv_weight_kernel(x.value(), dy.value(), g), {x, dy},
                [g](const BackwardCtx& c, const Var& gw) {
                  return Grads{c.needs_grad(0) ? conv_transpose_op(c.input(1), gw, g) : Var(),
                               c.needs_grad(1) ? conv_op(c.input(0), gw, Var(), g) : Var()};
                });
}

void check_dtypes(const Var& x, const Var& w, const Var& b, const char* op) {
  kern::check_floating(x.value(), op);
  kern::check_floating(w.value(), op);
  kern::check_same_dtype(x.value(), w.value(), op);
  if (b.defined()) {
    kern::check_floating(b.value(), op);
    kern::check_same_dtype(x.value(), b.value(), op);
  }
}

void check_positive(Size2 v, const char* what, const char* op) {
  if (v.h <= 0 || v.w <= 0)
    throw Error(std::string(op) + ": " + what + " must be positive, got " + pair_str(v.h, v.w));
}

void check_bias(const Var& b, int64_t channels, const char* op) {
  if (b.defined() && (b.dim() != 1 || b.shape()[0] != channels))
    throw ShapeError(std::string(op) + ": bias must be [" + std::to_string(channels) + "], got " +
                     b.shape().str());
}

// conv2d on 4-D operands; `op` names the public function in messages.
Var conv2d_impl(const char* op, const Var& x, const Var& w, const Var& b, Size2 stride,
                Padding2 padding, Size2 dilation, int64_t groups) {
  const std::string name = op;
  if (x.dim() != 4 || w.dim() != 4)
    throw ShapeError(name + ": expected a batched input and weight of rank " +
                     (name == "conv1d" ? "3" : "4") + ", got input " + x.shape().str() +
                     " and weight " + w.shape().str());
  check_dtypes(x, w, b, op);
  check_positive(stride, "stride", op);
  check_positive(dilation, "dilation", op);
  if (groups <= 0) throw Error(name + ": groups must be positive, got " + std::to_string(groups));
  Geom g{};
  g.n = x.shape()[0];
  g.c = x.shape()[1];
  g.h = x.shape()[2];
  g.w = x.shape()[3];
  g.o = w.shape()[0];
  g.kh = w.shape()[2];
  g.kw = w.shape()[3];
  g.sh = stride.h;
  g.sw = stride.w;
  g.dh = dilation.h;
  g.dw = dilation.w;
  g.groups = groups;
  if (g.c % groups != 0 || g.o % groups != 0)
    throw ShapeError(name + ": groups " + std::to_string(groups) + " must divide the input's " +
                     std::to_string(g.c) + " channels and the weight's " + std::to_string(g.o) +
                     " output channels (input " + x.shape().str() + ", weight " + w.shape().str() +
                     ")");
  if (w.shape()[1] * groups != g.c)
    throw ShapeError(name + ": weight " + w.shape().str() + " with groups " +
                     std::to_string(groups) + " expects " + std::to_string(w.shape()[1] * groups) +
                     " input channels, got input " + x.shape().str());
  check_bias(b, g.o, op);
  const int64_t th = g.dh * (g.kh - 1), tw = g.dw * (g.kw - 1);  // the kernels' reach - 1
  int64_t pbh = 0, pbw = 0, pah = 0, paw = 0;                    // padding before and after
  if (padding.mode == Padding2::Mode::same) {
    if (g.sh != 1 || g.sw != 1)
      throw Error(name + ": padding='same' is not supported for strided convolutions (stride " +
                  pair_str(g.sh, g.sw) + ")");
    pbh = th / 2, pah = th - pbh, pbw = tw / 2, paw = tw - pbw;
  } else if (padding.mode == Padding2::Mode::explicit_) {
    if (padding.size.h < 0 || padding.size.w < 0)
      throw Error(name + ": padding must be non-negative, got " +
                  pair_str(padding.size.h, padding.size.w));
    pbh = pah = padding.size.h;
    pbw = paw = padding.size.w;
  }
  const int64_t hp = g.h + pbh + pah, wp = g.w + pbw + paw;
  if (hp < th + 1 || wp < tw + 1)
    throw ShapeError(name + ": padded input size per channel " + pair_str(hp, wp) +
                     " is smaller than the dilated kernel " + pair_str(th + 1, tw + 1) +
                     " (input " + x.shape().str() + ", weight " + w.shape().str() + ")");
  g.ph = pbh;
  g.pw = pbw;
  g.oh = (hp - th - 1) / g.sh + 1;
  g.ow = (wp - tw - 1) / g.sw + 1;
  return conv_op(x, w, b, g);
}

}  // namespace

Var conv2d(const Var& input, const Var& weight, const Var& bias, Size2 stride, Padding2 padding,
           Size2 dilation, int64_t groups) {
  if (input.dim() == 3)  // unbatched [C, H, W]
    return squeeze(conv2d(unsqueeze(input, 0), weight, bias, stride, padding, dilation, groups), 0);
  return conv2d_impl("conv2d", input, weight, bias, stride, padding, dilation, groups);
}

Var conv1d(const Var& input, const Var& weight, const Var& bias, int64_t stride, Padding2 padding,
           int64_t dilation, int64_t groups) {
  if (input.dim() == 2)  // unbatched [C, L]
    return squeeze(conv1d(unsqueeze(input, 0), weight, bias, stride, padding, dilation, groups), 0);
  if (input.dim() != 3 || weight.dim() != 3)
    throw ShapeError("conv1d: expected a batched input and weight of rank 3, got input " +
                     input.shape().str() + " and weight " + weight.shape().str());
  if (padding.mode == Padding2::Mode::explicit_) {
    if (padding.size.h != padding.size.w)
      throw Error("conv1d: padding must be one int, got " +
                  pair_str(padding.size.h, padding.size.w));
    padding = Padding2(0, padding.size.w);
  }
  const Var y = conv2d_impl("conv1d", unsqueeze(input, 2), unsqueeze(weight, 2), bias,
                            Size2(1, stride), padding, Size2(1, dilation), groups);
  return squeeze(y, 2);
}

Var conv_transpose2d(const Var& input, const Var& weight, const Var& bias, Size2 stride,
                     Size2 padding, Size2 output_padding, int64_t groups, Size2 dilation) {
  const char* op = "conv_transpose2d";
  if (input.dim() == 3)
    return squeeze(conv_transpose2d(unsqueeze(input, 0), weight, bias, stride, padding,
                                    output_padding, groups, dilation),
                   0);
  if (input.dim() != 4 || weight.dim() != 4)
    throw ShapeError("conv_transpose2d: expected a batched input and weight of rank 4, got input " +
                     input.shape().str() + " and weight " + weight.shape().str());
  check_dtypes(input, weight, bias, op);
  check_positive(stride, "stride", op);
  check_positive(dilation, "dilation", op);
  if (groups <= 0)
    throw Error("conv_transpose2d: groups must be positive, got " + std::to_string(groups));
  if (padding.h < 0 || padding.w < 0 || output_padding.h < 0 || output_padding.w < 0)
    throw Error("conv_transpose2d: padding " + pair_str(padding.h, padding.w) +
                " and output_padding " + pair_str(output_padding.h, output_padding.w) +
                " must be non-negative");
  if ((output_padding.h >= stride.h && output_padding.h >= dilation.h) ||
      (output_padding.w >= stride.w && output_padding.w >= dilation.w))
    throw Error("conv_transpose2d: output_padding " + pair_str(output_padding.h, output_padding.w) +
                " must be smaller than either stride " + pair_str(stride.h, stride.w) +
                " or dilation " + pair_str(dilation.h, dilation.w));
  // The convolution whose input gradient this is: x [n, c, h, w] -> input [n, o, oh, ow].
  Geom g{};
  g.n = input.shape()[0];
  g.o = input.shape()[1];
  g.oh = input.shape()[2];
  g.ow = input.shape()[3];
  g.kh = weight.shape()[2];
  g.kw = weight.shape()[3];
  g.sh = stride.h;
  g.sw = stride.w;
  g.ph = padding.h;
  g.pw = padding.w;
  g.dh = dilation.h;
  g.dw = dilation.w;
  g.groups = groups;
  if (g.o % groups != 0 || weight.shape()[0] != g.o)
    throw ShapeError("conv_transpose2d: weight " + weight.shape().str() + " expects " +
                     std::to_string(weight.shape()[0]) + " input channels (divisible by groups " +
                     std::to_string(groups) + "), got input " + input.shape().str());
  g.c = weight.shape()[1] * groups;
  check_bias(bias, g.c, op);
  g.h = (g.oh - 1) * g.sh - 2 * g.ph + g.dh * (g.kh - 1) + output_padding.h + 1;
  g.w = (g.ow - 1) * g.sw - 2 * g.pw + g.dw * (g.kw - 1) + output_padding.w + 1;
  if (g.h <= 0 || g.w <= 0)
    throw ShapeError("conv_transpose2d: output size " + pair_str(g.h, g.w) +
                     " is not positive (input " + input.shape().str() + ", weight " +
                     weight.shape().str() + ")");
  const Var y = conv_transpose_op(input, weight, g);
  return bias.defined() ? y + reshape(bias, {1, g.c, 1, 1}) : y;
}

}  // namespace tg
