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
      });
}

Var matmul(const Var& a, const Var& b) {
  if (a.dim() >= 3 && b.dim() == 2) {
    // [..., M, K] x [K, N]: one gemm over all rows.
    const Shape& s = a.shape();
    if (s.back() != b.shape()[0])
      throw ShapeError("matmul: shapes " + s.str() + " and " + b.shape().str() +
                       " do not match: inner extents " + std::to_string(s.back()) + " and " +
                       std::to_string(b.shape()[0]));
    std::vector<int64_t> out = s.to_vector();
    out.back() = b.shape()[1];
    return reshape(matmul(reshape(a, {-1, s.back()}), b, false, false), out);
  }
  return matmul(a, b, false, false);
}

Var linear(const Var& x, const Var& weight, const Var& bias) {
  // y = x W^T + b;  dx = dy W,  dW = dy^T x,  db = sum_rows(dy)
  if (weight.dim() != 2)
    throw ShapeError("linear: weight must be [out, in], got " + weight.shape().str());
  if (x.dim() != 2) {
    if (x.dim() < 1) throw ShapeError("linear: input must have rank >= 1, got " + x.shape().str());
    std::vector<int64_t> out = x.shape().to_vector();
    out.back() = weight.shape()[0];
    return reshape(linear(reshape(x, {-1, x.shape().back()}), weight, bias), out);
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
  return record("linear", std::move(y), used, [](const BackwardCtx& c, const Var& dy) {
    Grads g{c.needs_grad(0) ? matmul(dy, c.input(1), false, false) : Var(),        // [N, in]
            c.needs_grad(1) ? matmul(dy, c.input(0), true, false) : Var()};        // [out, in]
    if (c.num_inputs() == 3) g.push_back(c.needs_grad(2) ? sum(dy, {0}) : Var());  // [out]
    return g;
  });
}

}  // namespace tg
