#include "ops/matmul.hpp"

#include "ops/kernels.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

Var matmul(const Var& a, const Var& b, bool transpose_a, bool transpose_b) {
  // C = op(A) op(B). With op(A) = A' and op(B) = B':  dA' = dC B'^T,  dB' = A'^T dC;
  // when a flag is set the gradient is the transpose of that, which is again one gemm
  // with flags — so no transposed copy is ever made, forward or backward.
  // The product is written straight into its result (record_into: unrecorded, that is a
  // recycled node's buffer).
  const Tensor &av = a.value(), &bv = b.value();
  const kern::GemmPlan plan = kern::plan_gemm(av, transpose_a, bv, transpose_b, nullptr, "matmul");
  return record_into(
      "matmul", plan.shape, av.dtype(), {a, b},
      [&](Tensor& c) { kern::run_gemm(plan, av, bv, nullptr, c); },
      [ta = transpose_a, tb = transpose_b](const BackwardCtx& ctx, const Var& dc) {
        // Each gradient reads only the other operand (Note [Saved versions]).
        Var da, db;
        if (ctx.needs_grad(0)) {
          const Var& B = ctx.input(1);
          da = ta ? matmul(B, dc, tb, true) : matmul(dc, B, false, !tb);
        }
        if (ctx.needs_grad(1)) {
          const Var& A = ctx.input(0);
          db = tb ? matmul(dc, A, true, ta) : matmul(A, dc, !ta, false);
        }
        return Grads{da, db};
      },
      [ta = transpose_a, tb = transpose_b](const JvpCtx& c) {
        return detail::bilinear_jvp(
            c, [&](const Var& x, const Var& y) { return matmul(x, y, ta, tb); });
      });
}

namespace {

Shape batch_of(const Shape& s) { return Shape(s.begin(), s.end() - 2); }

// op(a) op(b) over broadcast batch dims, summed down to `out_batch` (kern::BroadcastGemmPlan).
// Its gradients are the same op summed down to each operand's own batch, so they come out
// reduced, without a broadcast-shaped intermediate.
Var matmul_broadcast(const Var& a, const Var& b, bool ta, bool tb, const Shape& out_batch) {
  const Tensor &av = a.value(), &bv = b.value();
  if (a.dim() == b.dim() && a.dim() == out_batch.rank() + 2 && batch_of(av.shape()) == out_batch &&
      batch_of(bv.shape()) == out_batch)
    return matmul(a, b, ta, tb);  // equal batches: the plain batched product
  const kern::BroadcastGemmPlan plan =
      kern::plan_gemm_broadcast(av, ta, bv, tb, out_batch, "matmul");
  return record_into(
      "matmul", plan.shape, av.dtype(), {a, b},
      [&](Tensor& c) { kern::run_gemm_broadcast(plan, av, bv, c); },
      [ta, tb](const BackwardCtx& ctx, const Var& dc) {
        // As the rank-2 product's formulas, each summed down to its operand's batch.
        Var da, db;
        if (ctx.needs_grad(0)) {
          const Var& B = ctx.input(1);
          const Shape ab = batch_of(ctx.input_shape(0));
          da = ta ? matmul_broadcast(B, dc, tb, true, ab) : matmul_broadcast(dc, B, false, !tb, ab);
        }
        if (ctx.needs_grad(1)) {
          const Var& A = ctx.input(0);
          const Shape bb = batch_of(ctx.input_shape(1));
          db = tb ? matmul_broadcast(dc, A, true, ta, bb) : matmul_broadcast(A, dc, !ta, false, bb);
        }
        return Grads{da, db};
      },
      [ta, tb](const JvpCtx& c) {
        const Shape batch = batch_of(c.output().shape());
        return detail::bilinear_jvp(
            c, [&](const Var& x, const Var& y) { return matmul_broadcast(x, y, ta, tb, batch); });
      });
}

[[noreturn]] void throw_inner_mismatch(const Shape& a, const Shape& b, int64_t ka, int64_t kb) {
  throw ShapeError("matmul: shapes " + a.str() + " and " + b.str() +
                   " do not match: inner extents " + std::to_string(ka) + " and " +
                   std::to_string(kb));
}

// The product of every extent but the last (the rows of a [..., K] operand seen as 2-D).
int64_t leading_rows(const Shape& s) {
  int64_t rows = 1;
  for (int d = 0; d + 1 < s.rank(); ++d) rows *= s[d];
  return rows;
}

}  // namespace

Var matmul(const Var& a, const Var& b) {
  // torch.matmul: ranks >= 1, a rank-1 operand taken as a row (left) or a column (right)
  // vector whose extent is dropped from the result, batch dims broadcast.
  const int ra = a.dim(), rb = b.dim();
  if (ra == 2 && rb == 2) return matmul(a, b, false, false);
  if (ra >= 3 && rb == 2) {
    // [..., M, K] x [K, N]: one gemm over all rows.
    const Shape& s = a.shape();
    if (s.back() != b.shape()[0]) throw_inner_mismatch(s, b.shape(), s.back(), b.shape()[0]);
    std::vector<int64_t> out = s.to_vector();
    out.back() = b.shape()[1];
    // (rows counted, not inferred: with K = 0 a -1 extent cannot be inferred)
    return reshape(matmul(reshape(a, {leading_rows(s), s.back()}), b, false, false), out);
  }
  if (ra == 0 || rb == 0)
    throw ShapeError("matmul: both operands need rank >= 1, got shapes " + a.shape().str() +
                     " and " + b.shape().str() + " (ranks " + std::to_string(ra) + " and " +
                     std::to_string(rb) + ")");
  const int64_t ka = a.shape().back(), kb = rb == 1 ? b.shape()[0] : b.shape()[rb - 2];
  if (ka != kb) throw_inner_mismatch(a.shape(), b.shape(), ka, kb);
  if (ra == 1 || rb == 1) {
    // [K] is [1, K] on the left and [K, 1] on the right; that 1 is dropped from the result.
    const Var c = matmul(ra == 1 ? reshape(a, {1, ka}) : a, rb == 1 ? reshape(b, {kb, 1}) : b);
    std::vector<int64_t> out = c.shape().to_vector();
    if (rb == 1) out.pop_back();
    if (ra == 1) out.erase(out.end() - 1 - (rb == 1 ? 0 : 1));
    return reshape(c, out);
  }
  const Shape ab = batch_of(a.shape()), bb = batch_of(b.shape());
  if (ra == rb && ab == bb) return matmul(a, b, false, false);  // equal batches
  if (bb.numel() == 1) {
    // b's batch dims are all 1: one gemm of a's rows [batch * M, K] by b as [K, N].
    const Shape batch = broadcast_shapes(ab, bb, "matmul");  // dims of 1 always broadcast
    const int64_t m = a.shape()[ra - 2], n = b.shape()[rb - 1];
    std::vector<int64_t> out = batch.to_vector();
    out.push_back(m);
    out.push_back(n);
    return reshape(matmul(reshape(a, {ab.numel() * m, ka}), reshape(b, {kb, n}), false, false),
                   out);
  }
  Shape batch;
  try {
    batch = broadcast_shapes(ab, bb, "matmul");
  } catch (const ShapeError&) {
    throw ShapeError("matmul: shapes " + a.shape().str() + " and " + b.shape().str() +
                     " have batch dims " + ab.str() + " and " + bb.str() +
                     " that cannot be broadcast together");
  }
  return matmul_broadcast(a, b, false, false, batch);
}

Var linear(const Var& x, const Var& weight, const Var& bias) {
  // y = x W^T + b;  dx = dy W,  dW = dy^T x,  db = sum_rows(dy)
  if (weight.dim() != 2)
    throw ShapeError("linear: weight must be [out, in], got " + weight.shape().str());
  if (x.dim() != 2) {
    if (x.dim() < 1) throw ShapeError("linear: input must have rank >= 1, got " + x.shape().str());
    std::vector<int64_t> out = x.shape().to_vector();
    out.back() = weight.shape()[0];
    return reshape(linear(reshape(x, {leading_rows(x.shape()), x.shape().back()}), weight, bias),
                   out);
  }
  kern::check_same_dtype(x.value(), weight.value(), "linear");
  if (x.shape()[1] != weight.shape()[1])
    throw ShapeError("linear: input " + x.shape().str() + " has " + std::to_string(x.shape()[1]) +
                     " features but weight " + weight.shape().str() + " expects " +
                     std::to_string(weight.shape()[1]));
  Tensor y =
      kern::gemm(x.value(), false, weight.value(), true, bias.defined() ? &bias.value() : nullptr);
  const Var inputs[3] = {x, weight, bias};
  const std::span<const Var> used(inputs, bias.defined() ? 3 : 2);
  return record(
      "linear", std::move(y), used,
      [](const BackwardCtx& c, const Var& dy) {
        // dW is added straight into W's gradient summed so far when the engine allows it (a
        // weight applied at every step of a loop): one gemm with beta = 1, no fresh [out, in]
        // product to add afterwards.
        Var dw;
        if (c.needs_grad(1)) {
          if (Tensor sum = c.accumulating_grad(1); sum.defined())
            kern::gemm_accumulate(sum, dy.value(), true, c.input(0).value(), false);
          else
            dw = matmul(dy, c.input(0), true, false);  // [out, in]
        }
        Grads g{c.needs_grad(0) ? matmul(dy, c.input(1), false, false) : Var(),  // [N, in]
                std::move(dw)};
        if (c.num_inputs() == 3) g.push_back(c.needs_grad(2) ? sum(dy, {0}) : Var());  // [out]
        return g;
      },
      [](const JvpCtx& c) {  // tx W^T + x tW^T + tb
        const Var t =
            detail::bilinear_jvp(c, [](const Var& x, const Var& w) { return linear(x, w); });
        return c.num_inputs() == 3 ? detail::add_defined(t, c.tangent(2)) : t;
      });
}

}  // namespace tg
