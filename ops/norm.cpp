#include "ops/norm.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/forward_ad.hpp"
#include "graph/kernels.hpp"
#include "ops/arith.hpp"
#include "ops/kernels.hpp"
#include "ops/math.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"
#include "parallel/parallel.hpp"

namespace tg {

namespace {

void check_float_arg(const Var& v, const char* op) {
  if (v.defined()) kern::check_floating(v.value(), op);
}

// A per-channel tensor ([C]) for x of rank `rank`: checked, and viewed as [1, C, 1, ...].
Var per_channel(const Var& v, int64_t C, int rank, const char* op, const char* what) {
  if (!v.defined()) return v;
  if (v.dim() != 1 || v.shape()[0] != C)
    throw ShapeError(std::string(op) + ": " + what + " of shape " + v.shape().str() +
                     " for an input with " + std::to_string(C) + " channels (expected [" +
                     std::to_string(C) + "])");
  std::vector<int64_t> s(static_cast<size_t>(rank), 1);
  s[1] = C;
  return reshape(v, s);
}

Var affine(Var y, const Var& w, const Var& b) {
  if (w.defined()) y = y * w;
  if (b.defined()) y = y + b;
  return y;
}

int64_t channel_grain(int64_t per);

// y = x alpha[c] + beta[c] over x [A, C, ...] in one pass (alpha, beta: C values).
Tensor channel_affine_kernel(const Tensor& x, const Tensor& alpha, const Tensor& beta) {
  const Shape& s = x.shape();
  const int64_t A = s[0], C = s[1], B = A * C > 0 ? x.numel() / (A * C) : 0;
  Tensor y = Tensor::empty(s, x.dtype());
  dispatch(x.dtype(), "batch_norm", [&]<class T>() {
    const T* px = x.data<T>();
    const T* pa = alpha.data<T>();
    const T* pb = beta.data<T>();
    T* py = y.data<T>();
    detail::parallel_for(A * C, channel_grain(B), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const T a = pa[row % C], b = pb[row % C];
        const T* __restrict xr = px + row * B;
        T* __restrict yr = py + row * B;
        for (int64_t i = 0; i < B; ++i) yr[i] = xr[i] * a + b;
      }
    });
  });
  return y;
}

// Normalization by given (running) statistics, computed as PyTorch does: y = x alpha + beta,
// alpha = w / sqrt(rv + eps) and beta = b - rm alpha per channel, two passes over x instead
// of four. With nothing to record (inference: no gradient, no forward-mode level), one pass
// and no x alpha temporary (at the evaluation's batch of 1000, BN1's is 100 MB at the
// process's peak).
Var running_affine(const Var& x, const Var& rm, const Var& rv, const Var& w, const Var& b,
                   double eps) {
  const Var alpha = w.defined() ? rsqrt(rv + eps) * w : rsqrt(rv + eps);
  const Var beta = b.defined() ? b - rm * alpha : -(rm * alpha);
  const bool recorded =
      fwd::level_active() ||
      (is_grad_enabled() && (x.requires_grad() || alpha.requires_grad() || beta.requires_grad()));
  const Tensor& xv = x.value();
  if (recorded || x.dim() < 2 || alpha.numel() != x.shape()[1] || beta.numel() != x.shape()[1] ||
      alpha.dtype() != xv.dtype() || beta.dtype() != xv.dtype() || !is_floating(xv.dtype()))
    return x * alpha + beta;
  return constant(channel_affine_kernel(xv, alpha.value(), beta.value()));
}

// ---- the fused normalization ----------------------------------------------------------
//
// x viewed as [A, C, B]: channel c is normalized over its A * B elements (batch_norm:
// [N, C, spatial]; layer_norm, group_norm, instance_norm: [1, rows, row length]).
// Forward: per (a, c) row of B contiguous elements a two-pass mean and sum of squared
// deviations, merged over a by Chan's formula (stable), then one pass writing
// xhat = (x - mean) * rstd. Backward (closed form): dx = rstd (g - mean(g) - xhat
// mean(g xhat)), recorded as normalize_backward, whose own backward is that same op in g
// and, in x, a formula made of differentiable ops (so every order works).

// Channels (or rows) of `per` elements each handed to a thread at a time: the kernels split
// over the worker pool by channel (each channel's sums stay in one thread, in the same order,
// so the thread count never changes a result), at least ~16k elements per piece.
int64_t channel_grain(int64_t per) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(per, 1));
}

struct Stats {
  std::vector<double> mean, var;  // per channel; var biased
};

Stats channel_stats(const Tensor& x, int64_t A, int64_t C, int64_t B) {
  Stats st{std::vector<double>(static_cast<size_t>(C), 0.0),
           std::vector<double>(static_cast<size_t>(C), 0.0)};
  dispatch(x.dtype(), "normalize", [&]<class T>() {
    const T* px = x.data<T>();
    detail::parallel_for(C, channel_grain(A * B), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double n = 0, mean = 0, m2 = 0;
        for (int64_t a = 0; a < A; ++a) {
          const T* row = px + (a * C + c) * B;
          const double s =
              kern::lane_sum(B, [&](int64_t b) { return static_cast<double>(row[b]); });
          const double rm = B > 0 ? s / static_cast<double>(B) : 0.0;
          const double q = kern::lane_sum(B, [&](int64_t b) {
            const double d = static_cast<double>(row[b]) - rm;
            return d * d;
          });
          const double nb = static_cast<double>(B), nt = n + nb;
          if (nt == 0) continue;
          const double delta = rm - mean;
          mean += delta * nb / nt;
          m2 += q + delta * delta * n * nb / nt;
          n = nt;
        }
        st.mean[static_cast<size_t>(c)] = n > 0 ? mean : std::nan("");
        st.var[static_cast<size_t>(c)] = n > 0 ? m2 / n : std::nan("");
      }
    });
  });
  return st;
}

// A per-channel affine map folded into the normalization (batch_norm's weight and bias):
// y = xhat * scale[c] + shift[c]; none: scale 1, shift 0.
struct ChannelAffine {
  std::vector<double> scale, shift;
};

std::vector<double> channel_values(const Var& v) {
  std::vector<double> out;
  const Tensor& t = v.value();
  dispatch(t.dtype(), "normalize_affine",
           [&]<class T>() { out.assign(t.data<T>(), t.data<T>() + t.numel()); });
  return out;
}

// Per-channel sums of the gradient g and of g xhat.
struct ChannelSums {
  std::vector<double> g, gx;
};

Tensor normalize_kernel(const Tensor& x, const Stats& st, double eps,
                        const ChannelAffine* af = nullptr) {
  const Shape& s = x.shape();
  const int64_t A = s[0], C = s[1], B = s[2];
  Tensor y = Tensor::empty(s, x.dtype());
  dispatch(x.dtype(), "normalize", [&]<class T>() {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    detail::parallel_for(A * C, channel_grain(B), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const auto c = static_cast<size_t>(row % C);
        const double m = st.mean[c];
        const double r = (af ? af->scale[c] : 1.0) / std::sqrt(st.var[c] + eps);
        const double t = af ? af->shift[c] : 0.0;
        // The elementwise pass in T (the statistics are in double), as in the backward.
        const T mt = static_cast<T>(m), rt = static_cast<T>(r), tt = static_cast<T>(t);
        const T* __restrict xr = px + row * B;
        T* __restrict yr = py + row * B;
        for (int64_t b = 0; b < B; ++b) yr[b] = (xr[b] - mt) * rt + tt;
      }
    });
  });
  return y;
}

// dx = rstd scale (g - mean(g) - xhat mean(g xhat)) per channel (scale: af's, else 1); the
// channel sums of g and g xhat (the affine's bias and weight gradients) go to `sums`.
Tensor normalize_backward_kernel(const Tensor& g, const Tensor& x, const Stats& st, double eps,
                                 const ChannelAffine* af = nullptr, ChannelSums* sums = nullptr) {
  const Shape& s = x.shape();
  const int64_t A = s[0], C = s[1], B = s[2];
  Tensor dx = Tensor::empty(s, x.dtype());
  dispatch(x.dtype(), "normalize_backward", [&]<class T>() {
    const T* px = x.data<T>();
    const T* pg = g.data<T>();
    T* pd = dx.data<T>();
    const double n = static_cast<double>(A * B);
    detail::parallel_for(C, channel_grain(A * B), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double m = st.mean[static_cast<size_t>(c)];
        const double r = 1.0 / std::sqrt(st.var[static_cast<size_t>(c)] + eps);
        double sg = 0, sgx = 0;
        for (int64_t a = 0; a < A; ++a) {
          const T* gr = pg + (a * C + c) * B;
          const T* xr = px + (a * C + c) * B;
          sg += kern::lane_sum(B, [&](int64_t b) { return static_cast<double>(gr[b]); });
          sgx += kern::lane_sum(B, [&](int64_t b) {
            return static_cast<double>(gr[b]) * (static_cast<double>(xr[b]) - m) * r;
          });
        }
        if (sums) {
          sums->g[static_cast<size_t>(c)] = sg;
          sums->gx[static_cast<size_t>(c)] = sgx;
        }
        const double gm = sg / n, gxm = sgx / n;
        const double rs = af ? r * af->scale[static_cast<size_t>(c)] : r;
        // The elementwise pass in T, as PyTorch's (the sums above are in double): in f32 a
        // vector holds twice the lanes of a double pass, and no conversions.
        const T mt = static_cast<T>(m), rt = static_cast<T>(r), st_ = static_cast<T>(rs),
                gmt = static_cast<T>(gm), kt = static_cast<T>(rs * gxm);
        for (int64_t a = 0; a < A; ++a) {
          const int64_t o = (a * C + c) * B;
          const T* __restrict xr = px + o;
          const T* __restrict gr = pg + o;
          T* __restrict dr = pd + o;
          for (int64_t b = 0; b < B; ++b) dr[b] = st_ * (gr[b] - gmt) - kt * ((xr[b] - mt) * rt);
        }
      }
    });
  });
  return dx;
}

Var normalize3(const Var& x, double eps, Stats* stats_out = nullptr);

// d/dx <u, normalize_backward(g, x)> = -r^2 (xhat (C - 3 mg mu) + mu (g - gm) + mg (u - um)),
// means over the channel's elements, C = mean(u g) - um gm.
Var normalize_backward_dx(const Var& u, const Var& gg, const Var& xx, double eps) {
  const std::vector<int64_t> d{0, 2};
  const Var xh = normalize3(xx, eps);
  const Var r2 = 1.0 / (var(xx, d, 0, true) + eps);
  const Var gm = mean(gg, d, true), um = mean(u, d, true);
  const Var mg = mean(gg * xh, d, true), mu = mean(u * xh, d, true);
  const Var cov = mean(u * gg, d, true) - um * gm;
  return -r2 * (xh * (cov - 3.0 * mg * mu) + mu * (gg - gm) + mg * (u - um));
}

// normalize3's gradient: g (dxhat) and x both [A, C, B]. `known`: x's statistics when the
// caller has them (normalize3 keeps its forward's: x is version-checked, so they are still
// x's), saving two passes over x.
Var normalize_backward(const Var& g, const Var& x, double eps, const Stats* known = nullptr) {
  kern::check_same_dtype(g.value(), x.value(), "normalize_backward");
  const Shape& s = x.shape();
  const Stats st = known ? *known : channel_stats(x.value(), s[0], s[1], s[2]);
  Tensor dx = normalize_backward_kernel(g.value(), x.value(), st, eps);
  // In g the map is r times a symmetric projection: its adjoint is itself. In x it is the
  // Hessian of <g, normalize3(x)>, symmetric too. So each part of the JVP rule is the same
  // formula as that part of the backward, applied to the tangent.
  return record(
      "normalize_backward", std::move(dx), {g, x},
      [eps](const BackwardCtx& c, const Var& u) {
        return Grads{
            c.needs_grad(0) ? normalize_backward(u, c.input(1), eps) : Var(),
            c.needs_grad(1) ? normalize_backward_dx(u, c.input(0), c.input(1), eps) : Var()};
      },
      [eps](const JvpCtx& c) {
        return detail::add_defined(
            c.has_tangent(0) ? normalize_backward(c.tangent(0), c.input(1), eps) : Var(),
            c.has_tangent(1) ? normalize_backward_dx(c.tangent(1), c.input(0), c.input(1), eps)
                             : Var());
      });
}

// (x - mean) / sqrt(var + eps) per channel of x [A, C, B]; the statistics go to stats_out.
Var normalize3(const Var& x, double eps, Stats* stats_out) {
  const Shape& s = x.shape();
  auto st = std::make_shared<const Stats>(channel_stats(x.value(), s[0], s[1], s[2]));
  Tensor y = normalize_kernel(x.value(), *st, eps);
  if (stats_out) *stats_out = *st;
  // Its Jacobian is r times a symmetric projection: the backward is also the JVP rule.
  return detail::record_symmetric("normalize", std::move(y), x,
                                  [eps, st](const auto& c, const Var& g) {
                                    return normalize_backward(g, c.input(0), eps, st.get());
                                  });
}

Var stats_var(const std::vector<double>& v, Dtype dt) {
  return constant(tensor(v, Shape{static_cast<int64_t>(v.size())}, dt));
}

// normalize3 with batch_norm's per-channel weight w and bias b ([C]) folded in:
// y = xhat w + b in the normalizing pass. Its backward, when no graph is being recorded
// (create_graph off: grad mode is off inside the engine), takes dx, dw = sum(g xhat) and
// db = sum(g) from one kernel (two passes over g and x) instead of the passes of
// normalize_backward, mul's and add's gradients and their sums; with a graph, the same
// gradients composed of differentiable ops (normalize_backward, normalize, sum), so every
// order of derivative works.
Var normalize_affine(const Var& x, const Var& w, const Var& b, double eps, Stats* stats_out) {
  kern::check_same_dtype(x.value(), w.value(), "normalize_affine");
  kern::check_same_dtype(x.value(), b.value(), "normalize_affine");
  const Shape& s = x.shape();
  auto st = std::make_shared<const Stats>(channel_stats(x.value(), s[0], s[1], s[2]));
  const ChannelAffine af{channel_values(w), channel_values(b)};
  Tensor y = normalize_kernel(x.value(), *st, eps, &af);
  if (stats_out) *stats_out = *st;
  return record(
      "normalize_affine", std::move(y), {x, w, b},
      [eps, st](const BackwardCtx& c, const Var& g) {
        const Var& xx = c.input(0);
        const Var& ww = c.input(1);
        const int64_t C = xx.shape()[1];
        if (!is_grad_enabled()) {
          const ChannelAffine scale{channel_values(ww), {}};
          ChannelSums sums{std::vector<double>(static_cast<size_t>(C)),
                           std::vector<double>(static_cast<size_t>(C))};
          Tensor dx = normalize_backward_kernel(g.value(), xx.value(), *st, eps, &scale, &sums);
          const Dtype dt = xx.value().dtype();
          return Grads{c.needs_grad(0) ? constant(std::move(dx)) : Var(),
                       c.needs_grad(1) ? stats_var(sums.gx, dt) : Var(),
                       c.needs_grad(2) ? stats_var(sums.g, dt) : Var()};
        }
        const std::vector<int64_t> d{0, 2};
        return Grads{c.needs_grad(0)
                         ? normalize_backward(g * reshape(ww, {1, C, 1}), xx, eps, st.get())
                         : Var(),
                     c.needs_grad(1) ? sum(g * normalize3(xx, eps), d) : Var(),
                     c.needs_grad(2) ? sum(g, d) : Var()};
      },
      [eps, st](const JvpCtx& c) {  // normalize's JVP (its backward) times w, + xhat tw + tb
        const Var& xx = c.input(0);
        const auto chan = [C = xx.shape()[1]](const Var& v) { return reshape(v, {1, C, 1}); };
        Var t = c.has_tangent(0)
                    ? normalize_backward(c.tangent(0), xx, eps, st.get()) * chan(c.input(1))
                    : Var();
        if (c.has_tangent(1)) t = detail::add_defined(t, normalize3(xx, eps) * chan(c.tangent(1)));
        if (c.has_tangent(2))
          t = t.defined() ? t + chan(c.tangent(2)) : expand(chan(c.tangent(2)), xx.shape());
        return t;
      });
}

// x normalized per channel over the view [A, C, B] of its elements, in x's shape; with w and
// b ([C], both given) the fused affine of normalize_affine.
Var normalize(const Var& x, int64_t A, int64_t C, int64_t B, double eps, Stats* stats_out = nullptr,
              const Var& w = Var(), const Var& b = Var()) {
  const std::vector<int64_t> xs = x.shape().to_vector();
  const Var x3 = reshape(x, {A, C, B});
  return reshape(w.defined() && b.defined() ? normalize_affine(x3, w, b, eps, stats_out)
                                            : normalize3(x3, eps, stats_out),
                 xs);
}

// running = (1 - momentum) running + momentum value, in place, unrecorded.
void update_running(const Var& running, const Var& value, double momentum) {
  if (!running.defined()) return;
  NoGradGuard ng;
  Var r = running;
  r.mul_(1.0 - momentum);
  r.add_(reshape(value.detach(), {running.numel()}), momentum);
}

// The checked arguments batch_norm and instance_norm share: x of rank `min_rank` or more
// ([N, C, *]) and the optional per-channel tensors, shaped to broadcast against x.
struct ChannelArgs {
  int64_t C;
  Var rm, rv, w, b;
};
ChannelArgs channel_args(const char* op, int min_rank, const Var& x, const Var& running_mean,
                         const Var& running_var, const Var& weight, const Var& bias) {
  if (x.dim() < min_rank)
    throw ShapeError(std::string(op) + ": expected an input of rank " + std::to_string(min_rank) +
                     " or more ([N, C, *]), got shape " + x.shape().str());
  for (const Var* v : {&x, &running_mean, &running_var, &weight, &bias}) check_float_arg(*v, op);
  const int r = x.dim();
  const int64_t C = x.shape()[1];
  return {C, per_channel(running_mean, C, r, op, "running_mean"),
          per_channel(running_var, C, r, op, "running_var"),
          per_channel(weight, C, r, op, "weight"), per_channel(bias, C, r, op, "bias")};
}

}  // namespace

Var batch_norm(const Var& x, const Var& running_mean, const Var& running_var, const Var& weight,
               const Var& bias, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  const auto [C, rm, rv, w, b] = channel_args(op, 2, x, running_mean, running_var, weight, bias);
  if (training) {
    int64_t per_sample = 1;  // the elements of one channel of one sample
    for (int d = 2; d < x.dim(); ++d) per_sample *= x.shape()[d];
    const int64_t n = x.shape()[0] * per_sample;
    // NOTE: as PyTorch, only exactly one value per channel is refused; an empty batch (or
    // empty spatial dims) gives an empty result and leaves the running statistics alone.
    if (n == 1)
      throw Error(std::string(op) + ": expected more than 1 value per channel when training, " +
                  "got input of shape " + x.shape().str());
    Stats st;
    const bool fused = weight.defined() && bias.defined();
    Var y = normalize(x, x.shape()[0], C, per_sample, eps, &st, fused ? weight : Var(),
                      fused ? bias : Var());
    if (n > 1) {
      for (double& v : st.var) v *= static_cast<double>(n) / static_cast<double>(n - 1);
      update_running(running_mean, stats_var(st.mean, x.dtype()), momentum);
      update_running(running_var, stats_var(st.var, x.dtype()), momentum);
    }
    return fused ? y : affine(y, w, b);
  }
  if (!rm.defined() || !rv.defined())
    throw Error(std::string(op) + ": running_mean and running_var must be given when not training");
  return running_affine(x, rm, rv, w, b, eps);
}

Var layer_norm(const Var& x, const std::vector<int64_t>& normalized_shape, const Var& weight,
               const Var& bias, double eps) {
  const char* op = "layer_norm";
  for (const Var* v : {&x, &weight, &bias}) check_float_arg(*v, op);
  const Shape ns(normalized_shape);
  const int k = ns.rank(), r = x.dim();
  bool ok = k >= 1 && k <= r;
  for (int i = 0; ok && i < k; ++i) ok = x.shape()[r - k + i] == ns[i];
  if (!ok)
    throw ShapeError(std::string(op) + ": normalized_shape " + ns.str() +
                     " is not the trailing shape of the input " + x.shape().str());
  for (const auto& [v, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}})
    if (v->defined() && v->shape() != ns)
      throw ShapeError(std::string(op) + ": " + what + " of shape " + v->shape().str() +
                       " for normalized_shape " + ns.str());
  int64_t rows = 1;
  for (int d = 0; d < r - k; ++d) rows *= x.shape()[d];
  return affine(normalize(x, 1, rows, ns.numel(), eps), weight, bias);
}

Var group_norm(const Var& x, int64_t num_groups, const Var& weight, const Var& bias, double eps) {
  const char* op = "group_norm";
  if (x.dim() < 2)
    throw ShapeError(std::string(op) + ": expected an input of rank 2 or more ([N, C, *]), got " +
                     "shape " + x.shape().str());
  for (const Var* v : {&x, &weight, &bias}) check_float_arg(*v, op);
  const int r = x.dim();
  const int64_t N = x.shape()[0], C = x.shape()[1];
  if (num_groups <= 0 || C % num_groups != 0)
    throw Error(std::string(op) + ": expected the number of channels " + std::to_string(C) +
                " to be divisible by num_groups " + std::to_string(num_groups));
  const Var w = per_channel(weight, C, r, op, "weight");
  const Var b = per_channel(bias, C, r, op, "bias");
  int64_t per_group = C / num_groups;
  for (int d = 2; d < r; ++d) per_group *= x.shape()[d];
  return affine(normalize(x, 1, N * num_groups, per_group, eps), w, b);
}

Var instance_norm(const Var& x, const Var& running_mean, const Var& running_var, const Var& weight,
                  const Var& bias, bool use_input_stats, double momentum, double eps) {
  const char* op = "instance_norm";
  const auto [C, rm, rv, w, b] = channel_args(op, 3, x, running_mean, running_var, weight, bias);
  const int r = x.dim();
  const int64_t N = x.shape()[0];
  int64_t n = 1;
  for (int d = 2; d < r; ++d) n *= x.shape()[d];
  if (use_input_stats) {
    if (n <= 1)
      throw Error(std::string(op) + ": expected more than 1 spatial element when training, " +
                  "got input of shape " + x.shape().str());
    Stats st;
    Var y = normalize(x, 1, N * C, n, eps, &st);
    // The running statistics take the batch's average of the instances' statistics.
    std::vector<double> bm(static_cast<size_t>(C), 0.0), bv(static_cast<size_t>(C), 0.0);
    const double unbias = static_cast<double>(n) / static_cast<double>(n - 1);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t c = 0; c < C; ++c) {
        bm[static_cast<size_t>(c)] +=
            st.mean[static_cast<size_t>(i * C + c)] / static_cast<double>(N);
        bv[static_cast<size_t>(c)] +=
            st.var[static_cast<size_t>(i * C + c)] * unbias / static_cast<double>(N);
      }
    if (N > 0) {
      update_running(running_mean, stats_var(bm, x.dtype()), momentum);
      update_running(running_var, stats_var(bv, x.dtype()), momentum);
    }
    return affine(y, w, b);
  }
  if (!rm.defined() || !rv.defined())
    throw Error(std::string(op) +
                ": running_mean and running_var must be given when use_input_stats is false");
  return running_affine(x, rm, rv, w, b, eps);
}

}  // namespace tg
