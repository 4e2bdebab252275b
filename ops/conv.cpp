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
#include <mutex>
#include <string>
#include <vector>

#include "ops/arith.hpp"
#include "ops/kernels.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"
#include "parallel/parallel.hpp"

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
};

std::string pair_str(int64_t a, int64_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

// cols [cg * kh * kw, oh * ow] of one image's group x [cg, h, w], rows `ld` apart (an
// image's block of a chunk's wide column matrix); zeros where the kernel reads padding.
template <class T>
void im2col(const T* x, const Geom& g, T* col, int64_t ld) {
  for (int64_t c = 0; c < g.cg(); ++c)
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * ld;
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

// The kernel tap (ki * kw + kj) whose column row holds every pixel of the input once, in
// order (stride 1, output as large as the input, the tap at the padding's offset: the centre
// of an odd kernel with 'same' padding), or -1.
int64_t covering_tap(const Geom& g) {
  if (g.sh != 1 || g.sw != 1 || g.oh != g.h || g.ow != g.w || g.ph % g.dh != 0 || g.pw % g.dw != 0)
    return -1;
  const int64_t ki = g.ph / g.dh, kj = g.pw / g.dw;
  return ki < g.kh && kj < g.kw ? ki * g.kw + kj : -1;
}

// x [cg, h, w] = the columns' entries (rows `ld` apart) summed at the pixels they were read
// from (im2col's adjoint). With a covering tap its row is copied first and the other taps
// added; otherwise x is zeroed first. The columns are scratch: the stride-1 path zeroes the
// entries that read padding (they have no pixel) and adds each kernel tap's valid rows as
// one run.
template <class T>
void col2im(T* col, const Geom& g, T* x, int64_t ld) {
  const int64_t cover = covering_tap(g);
  if (cover < 0) std::fill(x, x + g.cg() * g.h * g.w, T(0));
  for (int64_t c = 0; c < g.cg(); ++c) {
    if (cover >= 0)
      std::memcpy(x + c * g.h * g.w, col + (c * g.kh * g.kw + cover) * ld,
                  sizeof(T) * static_cast<size_t>(g.h * g.w));
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        if (ki * g.kw + kj == cover) continue;
        T* row = col + ((c * g.kh + ki) * g.kw + kj) * ld;
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
}

// Note [Batched columns]: the kernels take the batch in chunks of images whose columns sit
// side by side in one [K, images * L] matrix, so each group of a chunk is one wide gemm
// instead of one small gemm per image (OpenBLAS on 2 threads: ~195-230 GFLOP/s on
// [64, 288] x [288, 16 * 196] against ~125 on [288, 196]; bench/README.md, "conv2d"). A
// chunk's scratch stays near the caches (kChunkCols columns).
//
// Note [Chunk lanes]: with two chunks or more, the chunks run in parallel over the worker
// pool, each chunk's copies and gemm on one thread, with OpenBLAS on one thread meanwhile.
// OpenBLAS's own threads, split inside each gemm, spin (sched_yield) between products and
// took a core from tapegrad's copies (~20% of a CNN step's samples); this way one pool
// holds the cores. There is one lane per thread (at most one per chunk), lane l doing
// chunks l, l + lanes, ... with its own scratch. Each chunk writes its own images' outputs,
// and the weight gradient's chunks each write their own partial, summed in chunk order
// afterwards, so the thread count never changes a result. A batch that is one chunk keeps
// OpenBLAS's threads for its gemm and splits the copies by image over the pool.
constexpr int64_t kChunkCols = 3136;

struct Chunking {
  int64_t images;  // images per chunk
  int64_t chunks;  // chunks in the batch
  int64_t lanes;   // chunk lanes: min(chunks, threads), at least 1
  int64_t grain;   // images per parallel_for chunk of the one-chunk path
};

Chunking chunking(const Geom& g) {
  const int64_t L = std::max<int64_t>(g.l(), 1), n = std::max<int64_t>(g.n, 1);
  // At least two chunks when the batch has two images, so two lanes have work.
  const int64_t images = std::clamp<int64_t>((kChunkCols + L - 1) / L, 1, (n + 1) / 2);
  const int64_t chunks = (g.n + images - 1) / images;  // 0 for an empty batch
  // Hand out at least ~16k elements of copying at a time (a pool wake-up costs a few us).
  const int64_t per_image = std::max<int64_t>(g.k() * L, 1);
  return {images, chunks, std::clamp<int64_t>(chunks, 1, num_threads()),
          std::max<int64_t>(1, 16384 / per_image)};
}

// OpenBLAS on one thread while any call's chunk lanes run (Note [Chunk lanes]). OpenBLAS's
// thread count is one process-wide setting, so the guards of concurrent calls (two user
// threads in conv2d at once) share it: the first to enter saves the count and sets 1, the
// last to leave restores it, on every exit path. (A save and restore per call let the call
// that finished first restore the count while the other's lanes still ran, their gemms then
// splitting over OpenBLAS's threads inside the pool's.) A gemm another user thread runs
// meanwhile runs on one thread too.
class BlasOnOneThread {
 public:
  BlasOnOneThread() {
    const std::lock_guard lock(state().mutex);
    State& s = state();
    if (s.users++ == 0) {
      s.saved = blas_threads();
      if (s.saved > 1) set_blas_threads(1);
    }
  }
  ~BlasOnOneThread() {
    const std::lock_guard lock(state().mutex);
    State& s = state();
    if (--s.users == 0 && s.saved > 1) set_blas_threads(s.saved);
  }
  BlasOnOneThread(const BlasOnOneThread&) = delete;
  BlasOnOneThread& operator=(const BlasOnOneThread&) = delete;

 private:
  struct State {
    std::mutex mutex;
    int users = 0;  // guards alive
    int saved = 1;  // the count before the first of them
  };
  static State& state() {
    static State s;
    return s;
  }
};

// Runs body(lane, c, n0, m, per_image) for each chunk c, [n0, n0 + m) of the batch: with one
// lane, the chunks in order on the caller and per_image(f) runs f(i) for i in [0, m) split
// over the pool; with several, the lanes over the pool (Note [Chunk lanes]) and per_image
// runs the images in order on the lane's thread.
template <class F>
void for_each_chunk(const Geom& g, const Chunking& ch, F&& body) {
  const auto chunk = [&](int64_t lane, int64_t c, auto&& per_image) {
    const int64_t n0 = c * ch.images;
    body(lane, c, n0, std::min(ch.images, g.n - n0), per_image);
  };
  if (ch.lanes == 1) {
    for (int64_t c = 0; c < ch.chunks; ++c)
      chunk(0, c, [&](int64_t m, auto&& f) {
        detail::parallel_for(m, ch.grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) f(i);
        });
      });
    return;
  }
  const BlasOnOneThread blas_one;
  detail::parallel_for(ch.lanes, 1, [&](int64_t b, int64_t e) {
    for (int64_t lane = b; lane < e; ++lane)
      for (int64_t c = lane; c < ch.chunks; c += ch.lanes)
        chunk(lane, c, [](int64_t m, auto&& f) {
          for (int64_t i = 0; i < m; ++i) f(i);
        });
  });
}

// rows [rows, m * L] <-> m images' blocks [rows, L] (image i's block at src + i * stride):
// gather copies into the wide matrix, scatter out of it (plus bias[r] when given).
template <class T>
void gather_rows(const T* src, int64_t stride, int64_t rows, int64_t L, int64_t i, int64_t m,
                 T* wide) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(wide + r * m * L + i * L, src + i * stride + r * L,
                sizeof(T) * static_cast<size_t>(L));
}
template <class T>
void scatter_rows(const T* wide, int64_t rows, int64_t L, int64_t i, int64_t m, const T* bias,
                  T* dst, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict s = wide + r * m * L + i * L;
    T* __restrict d = dst + i * stride + r * L;
    if (bias) {
      const T b = bias[r];
      for (int64_t l = 0; l < L; ++l) d[l] = s[l] + b;
    } else {
      std::memcpy(d, s, sizeof(T) * static_cast<size_t>(L));
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
    const T* bp = bias ? bias->data<T>() : nullptr;
    const int64_t L = g.l(), K = g.k(), og = g.og();
    const Chunking ch = chunking(g);
    Tensor col = Tensor::empty(Shape{ch.lanes, K, ch.images * L}, x.dtype());
    Tensor out = Tensor::empty(Shape{ch.lanes, og, ch.images * L}, x.dtype());
    for_each_chunk(g, ch, [&](int64_t lane, int64_t, int64_t n0, int64_t m, auto&& per_image) {
      T* cp = col.data<T>() + lane * K * ch.images * L;
      T* op = out.data<T>() + lane * og * ch.images * L;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = xp + (n0 * g.c + gr * g.cg()) * g.h * g.w;
        per_image(m, [&](int64_t i) { im2col(xg + i * g.c * g.h * g.w, g, cp + i * L, m * L); });
        kern::gemm_raw(false, false, og, m * L, K, wp + gr * og * K, K, cp, m * L, T(0), op, m * L);
        per_image(m, [&](int64_t i) {
          scatter_rows(op, og, L, i, m, bp ? bp + gr * og : nullptr, yp + (n0 * g.o + gr * og) * L,
                       g.o * L);
        });
      }
    });
  });
  return y;
}

// dx [n, c, h, w] = conv^T(dy, w): conv's input gradient, the transposed convolution.
Tensor conv_transpose_kernel(const Tensor& dy, const Tensor& w, const Geom& g) {
  Tensor dx = Tensor::empty(Shape{g.n, g.c, g.h, g.w}, dy.dtype());
  dispatch(dy.dtype(), "conv_transpose2d", [&]<class T>() {
    const T* dyp = dy.data<T>();
    const T* wp = w.data<T>();
    T* dxp = dx.data<T>();
    const int64_t L = g.l(), K = g.k(), og = g.og(), hw = g.h * g.w;
    const Chunking ch = chunking(g);
    Tensor col = Tensor::empty(Shape{ch.lanes, K, ch.images * L}, dy.dtype());
    Tensor dyw = Tensor::empty(Shape{ch.lanes, og, ch.images * L}, dy.dtype());
    for_each_chunk(g, ch, [&](int64_t lane, int64_t, int64_t n0, int64_t m, auto&& per_image) {
      T* cp = col.data<T>() + lane * K * ch.images * L;
      T* dp = dyw.data<T>() + lane * og * ch.images * L;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* dyg = dyp + (n0 * g.o + gr * og) * L;
        T* xg = dxp + (n0 * g.c + gr * g.cg()) * hw;
        per_image(m, [&](int64_t i) { gather_rows(dyg, g.o * L, og, L, i, m, dp); });
        kern::gemm_raw(true, false, K, m * L, og, wp + gr * og * K, K, dp, m * L, T(0), cp, m * L);
        per_image(m, [&](int64_t i) { col2im(cp + i * L, g, xg + i * g.c * hw, m * L); });
      }
    });
  });
  return dx;
}

// dw [o, c / groups, kh, kw] = sum over images of dy_g cols(x_g)^T: each chunk's product
// in its own partial, the partials summed in chunk order (Note [Chunk lanes]).
Tensor conv_weight_kernel(const Tensor& x, const Tensor& dy, const Geom& g) {
  const Chunking ch = chunking(g);
  const int64_t size = g.o * g.k();
  if (ch.chunks == 0) return zeros(Shape{g.o, g.cg(), g.kh, g.kw}, x.dtype());
  // Chunk 0's product goes straight into dw, chunk c's into rest[c - 1].
  Tensor dw = Tensor::empty(Shape{g.o, g.cg(), g.kh, g.kw}, x.dtype());
  Tensor rest = Tensor::empty(Shape{ch.chunks - 1, size}, x.dtype());
  dispatch(x.dtype(), "conv2d_weight_backward", [&]<class T>() {
    const T* xp = x.data<T>();
    const T* dyp = dy.data<T>();
    const int64_t L = g.l(), K = g.k(), og = g.og();
    Tensor col = Tensor::empty(Shape{ch.lanes, K, ch.images * L}, x.dtype());
    Tensor dyw = Tensor::empty(Shape{ch.lanes, og, ch.images * L}, x.dtype());
    for_each_chunk(g, ch, [&](int64_t lane, int64_t c, int64_t n0, int64_t m, auto&& per_image) {
      T* cp = col.data<T>() + lane * K * ch.images * L;
      T* dp = dyw.data<T>() + lane * og * ch.images * L;
      T* dwp = c == 0 ? dw.data<T>() : rest.data<T>() + (c - 1) * size;
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* xg = xp + (n0 * g.c + gr * g.cg()) * g.h * g.w;
        const T* dyg = dyp + (n0 * g.o + gr * og) * L;
        per_image(m, [&](int64_t i) {
          im2col(xg + i * g.c * g.h * g.w, g, cp + i * L, m * L);
          gather_rows(dyg, g.o * L, og, L, i, m, dp);
        });
        kern::gemm_raw(false, true, og, K, m * L, dp, m * L, cp, m * L, T(0), dwp + gr * og * K, K);
      }
    });
    T* out = dw.data<T>();
    const T* rp = rest.data<T>();
    for (int64_t c = 1; c < ch.chunks; ++c)
      for (int64_t j = 0; j < size; ++j) out[j] += rp[(c - 1) * size + j];
  });
  return dw;
}

// db [o] = dy [n, o, oh, ow] summed over images and pixels: conv2d's bias gradient, split
// by channel over the worker pool (as sum(dy, {0, 2, 3}) it ran on one thread, ~3% of
// conv2d's forward + backward). Its backward spreads the bias's gradient back over dy.
Var conv_bias_grad_op(const Var& dy) {
  const Shape& s = dy.shape();
  const int64_t N = s[0], O = s[1], L = s[2] * s[3];
  Tensor db = Tensor::empty(Shape{O}, dy.dtype());
  dispatch(dy.dtype(), "conv2d_bias_backward", [&]<class T>() {
    const T* p = dy.value().data<T>();
    T* out = db.data<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(N * L, 1));
    detail::parallel_for(O, grain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          const T* r = p + (n * O + o) * L;
          acc += kern::lane_sum(L, [&](int64_t l) { return static_cast<double>(r[l]); });
        }
        out[o] = static_cast<T>(acc);
      }
    });
  });
  return record(
      "conv2d_bias_backward", std::move(db), {dy},
      [O](const BackwardCtx& c, const Var& gb) {
        return Grads{expand(reshape(gb, {1, O, 1, 1}), c.input_shape(0))};
      },
      [](const JvpCtx& c) { return conv_bias_grad_op(c.tangent(0)); });
}

Var conv_transpose_op(const Var& dy, const Var& w, const Geom& g);
Var conv_weight_op(const Var& x, const Var& dy, const Geom& g);

// The recorded forward; bias undefined or [o].
Var conv_op(const Var& x, const Var& w, const Var& b, const Geom& g) {
  Tensor y = conv_forward(x.value(), w.value(), b.defined() ? &b.value() : nullptr, g);
  const Var inputs[3] = {x, w, b};
  const std::span<const Var> used(inputs, b.defined() ? 3 : 2);
  return record(
      "conv2d", std::move(y), used,
      [g](const BackwardCtx& c, const Var& dy) {
        Grads r{c.needs_grad(0) ? conv_transpose_op(dy, c.input(1), g) : Var(),
                c.needs_grad(1) ? conv_weight_op(c.input(0), dy, g) : Var()};
        if (c.num_inputs() == 3) r.push_back(c.needs_grad(2) ? conv_bias_grad_op(dy) : Var());
        return r;
      },
      [g](const JvpCtx& c) {  // conv(tx, w) + conv(x, tw) + tb
        const Var t = detail::bilinear_jvp(
            c, [&g](const Var& x, const Var& w) { return conv_op(x, w, Var(), g); });
        if (c.num_inputs() < 3 || !c.has_tangent(2)) return t;
        return detail::add_defined(t, reshape(c.tangent(2), {1, c.input_shape(2)[0], 1, 1}));
      });
}

Var conv_transpose_op(const Var& dy, const Var& w, const Geom& g) {
  // <G, conv^T(dy, w)> = B(G, w, dy): its gradients are conv(G, w) and the weight op.
  return record(
      "conv_transpose2d", conv_transpose_kernel(dy.value(), w.value(), g), {dy, w},
      [g](const BackwardCtx& c, const Var& gx) {
        return Grads{c.needs_grad(0) ? conv_op(gx, c.input(1), Var(), g) : Var(),
                     c.needs_grad(1) ? conv_weight_op(gx, c.input(0), g) : Var()};
      },
      [g](const JvpCtx& c) {
        return detail::bilinear_jvp(
            c, [&g](const Var& d, const Var& w) { return conv_transpose_op(d, w, g); });
      });
}

Var conv_weight_op(const Var& x, const Var& dy, const Geom& g) {
  // <G, dw(x, dy)> = B(x, G, dy): its gradients are conv^T(dy, G) and conv(x, G).
  return record(
      "conv2d_weight_backward", conv_weight_kernel(x.value(), dy.value(), g), {x, dy},
      [g](const BackwardCtx& c, const Var& gw) {
        return Grads{c.needs_grad(0) ? conv_transpose_op(c.input(1), gw, g) : Var(),
                     c.needs_grad(1) ? conv_op(c.input(0), gw, Var(), g) : Var()};
      },
      [g](const JvpCtx& c) {
        return detail::bilinear_jvp(
            c, [&g](const Var& x, const Var& d) { return conv_weight_op(x, d, g); });
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

// unfold (im2col) and fold (col2im) as ops of their own: torch.nn.functional.unfold / fold,
// the conv kernels' column copies with one group. Each is the other's adjoint, so each op's
// backward (and its JVP, both being linear) is the other op or itself.
namespace {

Geom fold_geom(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, Size2 kernel_size,
               Size2 dilation, Size2 padding, Size2 stride) {
  check_positive(kernel_size, "kernel_size", op);
  check_positive(dilation, "dilation", op);
  check_positive(stride, "stride", op);
  if (padding.h < 0 || padding.w < 0)
    throw Error(std::string(op) + ": padding must be non-negative, got " +
                pair_str(padding.h, padding.w));
  Geom g{.n = n,
         .c = c,
         .h = h,
         .w = w,
         .o = 1,
         .kh = kernel_size.h,
         .kw = kernel_size.w,
         .oh = 0,
         .ow = 0,
         .sh = stride.h,
         .sw = stride.w,
         .ph = padding.h,
         .pw = padding.w,
         .dh = dilation.h,
         .dw = dilation.w,
         .groups = 1};
  const int64_t th = g.dh * (g.kh - 1), tw = g.dw * (g.kw - 1);
  const int64_t hp = h + 2 * g.ph, wp = w + 2 * g.pw;
  if (hp < th + 1 || wp < tw + 1)
    throw ShapeError(std::string(op) + ": padded size per channel " + pair_str(hp, wp) +
                     " is smaller than the dilated kernel " + pair_str(th + 1, tw + 1));
  g.oh = (hp - th - 1) / g.sh + 1;
  g.ow = (wp - tw - 1) / g.sw + 1;
  return g;
}

Var fold_op(const Var& cols, const Geom& g);

// x [n, c, h, w] -> [n, c kh kw, oh ow].
Var unfold_op(const Var& x, const Geom& g) {
  Tensor out = Tensor::empty(Shape{g.n, g.k(), g.l()}, x.dtype());
  dispatch(x.dtype(), "unfold", [&]<class T>() {
    const T* xp = x.value().data<T>();
    T* op = out.data<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(g.k() * g.l(), 1));
    detail::parallel_for(g.n, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        im2col(xp + i * g.c * g.h * g.w, g, op + i * g.k() * g.l(), g.l());
    });
  });
  return record(
      "unfold", std::move(out), {x},
      [g](const BackwardCtx&, const Var& gy) { return Grads{fold_op(gy, g)}; },
      [g](const JvpCtx& c) { return unfold_op(c.tangent(0), g); });
}

// cols [n, c kh kw, oh ow] -> [n, c, h, w], overlapping entries summed.
Var fold_op(const Var& cols, const Geom& g) {
  Tensor out = zeros(Shape{g.n, g.c, g.h, g.w}, cols.dtype());
  Tensor scratch = cols.value().clone();  // col2im writes into its columns
  dispatch(cols.dtype(), "fold", [&]<class T>() {
    T* sp = scratch.data<T>();
    T* op = out.data<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(g.k() * g.l(), 1));
    detail::parallel_for(g.n, grain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        col2im(sp + i * g.k() * g.l(), g, op + i * g.c * g.h * g.w, g.l());
    });
  });
  return record(
      "fold", std::move(out), {cols},
      [g](const BackwardCtx&, const Var& gx) { return Grads{unfold_op(gx, g)}; },
      [g](const JvpCtx& c) { return fold_op(c.tangent(0), g); });
}

// PyTorch's im2col / col2im check: only the batch dim may be empty (the unbatched input
// counts as a batch of one).
void check_non_empty(const Var& input, const char* op, bool batched) {
  const Shape& s = input.shape();
  for (int d = batched ? 1 : 0; d < s.rank(); ++d)
    if (s[d] == 0)
      throw ShapeError(std::string(op) + ": expected a non-empty " +
                       (std::string(op) == "unfold" ? "[C, H, W]" : "[C kh kw, L]") +
                       " per sample (only the batch may be empty), got " + s.str());
}

}  // namespace

Var unfold(const Var& input, Size2 kernel_size, Size2 dilation, Size2 padding, Size2 stride) {
  if (input.dim() != 3 && input.dim() != 4)
    throw ShapeError("unfold: expected an input of rank 3 or 4, got " + input.shape().str());
  check_non_empty(input, "unfold", input.dim() == 4);
  if (input.dim() == 3)  // unbatched [C, H, W]
    return squeeze(unfold(unsqueeze(input, 0), kernel_size, dilation, padding, stride), 0);
  kern::check_floating(input.value(), "unfold");
  const Shape& s = input.shape();
  const Geom g =
      fold_geom("unfold", s[0], s[1], s[2], s[3], kernel_size, dilation, padding, stride);
  return unfold_op(input, g);
}

Var fold(const Var& input, Size2 output_size, Size2 kernel_size, Size2 dilation, Size2 padding,
         Size2 stride) {
  if (input.dim() != 2 && input.dim() != 3)
    throw ShapeError("fold: expected an input of rank 2 or 3, got " + input.shape().str());
  check_non_empty(input, "fold", input.dim() == 3);
  if (input.dim() == 2)  // unbatched [C kh kw, L]
    return squeeze(fold(unsqueeze(input, 0), output_size, kernel_size, dilation, padding, stride),
                   0);
  kern::check_floating(input.value(), "fold");
  check_positive(kernel_size, "kernel_size", "fold");
  check_positive(output_size, "output_size", "fold");
  const Shape& s = input.shape();
  const int64_t taps = kernel_size.h * kernel_size.w;
  if (s[1] % taps != 0)
    throw ShapeError("fold: the input's size " + std::to_string(s[1]) +
                     " at dim 1 must be divisible by the kernel's " + std::to_string(taps) +
                     " positions (kernel_size " + pair_str(kernel_size.h, kernel_size.w) +
                     ", input " + s.str() + ")");
  const Geom g = fold_geom("fold", s[0], s[1] / taps, output_size.h, output_size.w, kernel_size,
                           dilation, padding, stride);
  if (s[2] != g.l())
    throw ShapeError("fold: output_size " + pair_str(output_size.h, output_size.w) +
                     " with kernel_size " + pair_str(kernel_size.h, kernel_size.w) + " has " +
                     std::to_string(g.l()) + " blocks (" + pair_str(g.oh, g.ow) +
                     "), but the input " + s.str() + " has " + std::to_string(s[2]));
  return fold_op(input, g);
}

}  // namespace tg
