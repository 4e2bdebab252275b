#include "ops/attention.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/dropout.hpp"
#include "ops/index.hpp"
#include "ops/kernels.hpp"
#include "ops/matmul.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Whether the batch dims (all but the last two) of a and b are equal, so that matmul's
// equal-batch form with a transpose flag applies (no transposed copy of b).
bool same_batch(const Shape& a, const Shape& b) {
  if (a.rank() != b.rank()) return false;
  for (int i = 0; i + 2 < a.rank(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// A bool [..., 1] marking the rows of `scores` (last dim) that are entirely -inf, or an
// undefined tensor when there is none (the common case: nothing more is recorded).
Tensor fully_masked_rows(const Tensor& scores) {
  const int64_t s = scores.shape().back();
  if (s == 0 || scores.numel() == 0) return {};
  const int64_t rows = scores.numel() / s;
  Tensor out;
  dispatch(scores.dtype(), "scaled_dot_product_attention", [&]<class T>() {
    const T* p = scores.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * s;
      bool all_masked = true;
      for (int64_t j = 0; j < s && all_masked; ++j)
        all_masked = row[j] == -std::numeric_limits<T>::infinity();
      if (!all_masked) continue;
      if (!out.defined()) {
        std::vector<int64_t> shape = scores.shape().to_vector();
        shape.back() = 1;
        out = zeros(Shape(shape), boolean);
      }
      out.data<bool>()[r] = true;
    }
  });
  return out;
}

}  // namespace

namespace detail {

Var additive_mask(const Var& mask, bool masked_value, Dtype dtype, const char* op,
                  const char* what) {
  if (!mask.defined()) return mask;
  if (mask.dtype() == boolean) {
    const Var zero = constant(scalar_tensor(0.0, dtype)),
              ninf = constant(scalar_tensor(kNegInf, dtype));
    return masked_value ? where(mask, ninf, zero) : where(mask, zero, ninf);
  }
  if (mask.dtype() != dtype)
    throw DtypeError(std::string(op) + ": " + what + " must be bool or " +
                     std::string(dtype_name(dtype)) + " (the query's dtype), got " +
                     std::string(dtype_name(mask.dtype())));
  return mask;
}

Var attention(const Var& q, const Var& k, const Var& v, const Var& bias, double scale,
              double dropout_p, Rng* rng, const char* op, Var* weights) {
  // y = softmax(q k^T scale + bias) v.  Differentiated through its ops.
  // NOTE: q is scaled before the product (L x E multiplications instead of L x S).
  const Var qs = mul_scalar(q, scale);
  Var scores = same_batch(q.shape(), k.shape()) ? matmul(qs, k, false, true)
                                                : matmul(qs, transpose(k, -2, -1));
  if (bias.defined()) {
    if (broadcast_shapes(bias.shape(), scores.shape(), op) != scores.shape())
      throw ShapeError(std::string(op) + ": the mask of shape " + bias.shape().str() +
                       " does not broadcast to the attention scores " + scores.shape().str());
    scores = add(scores, bias);
  }
  // NOTE: rows masked entirely (all -inf) give weights 0, as PyTorch's _safe_softmax: such
  // a row's scores are replaced by zeros before the softmax (so no NaN reaches any gradient)
  // and its weights by zeros after it.
  const Tensor dead = bias.defined() ? fully_masked_rows(scores.value()) : Tensor();
  Var p;
  if (dead.defined()) {
    const Var d = constant(dead);
    p = where(d, 0.0, softmax(where(d, 0.0, scores), -1));
  } else {
    p = softmax(scores, -1);
  }
  if (dropout_p > 0.0) {
    if (!rng)
      throw Error(std::string(op) + ": dropout_p " + std::to_string(dropout_p) +
                  " needs a generator (rng is null)");
    p = dropout(p, dropout_p, true, *rng);
  }
  if (weights) *weights = p;
  return matmul(p, v);
}

}  // namespace detail

Var scaled_dot_product_attention(const Var& query, const Var& key, const Var& value,
                                 const Var& attn_mask, double dropout_p, bool is_causal,
                                 std::optional<double> scale, Rng* rng) {
  static constexpr const char* kOp = "scaled_dot_product_attention";
  kern::check_floating(query.value(), kOp);
  kern::check_same_dtype(query.value(), key.value(), kOp);
  kern::check_same_dtype(query.value(), value.value(), kOp);
  if (query.dim() < 2 || key.dim() < 2 || value.dim() < 2)
    throw ShapeError(std::string(kOp) + ": query, key and value must have rank >= 2, got " +
                     query.shape().str() + ", " + key.shape().str() + " and " +
                     value.shape().str());
  const int64_t e = query.shape().back();
  const int64_t l = query.shape()[query.dim() - 2];
  const int64_t s = key.shape()[key.dim() - 2];
  if (key.shape().back() != e || value.shape()[value.dim() - 2] != s)
    throw ShapeError(std::string(kOp) + ": expected query [..., L, E], key [..., S, E] and value " +
                     "[..., S, Ev], got " + query.shape().str() + ", " + key.shape().str() +
                     " and " + value.shape().str());
  if (!(dropout_p >= 0.0 && dropout_p <= 1.0))
    throw Error(std::string(kOp) + ": dropout_p must be in [0, 1], got " +
                std::to_string(dropout_p));
  if (is_causal && attn_mask.defined())
    throw Error(std::string(kOp) + ": is_causal cannot be combined with an explicit attn_mask " +
                attn_mask.shape().str() + " (as PyTorch)");
  Var bias = detail::additive_mask(attn_mask, false, query.dtype(), kOp, "attn_mask");
  if (is_causal) {
    // Lower triangle (j <= i) of ones [L, S] takes part: tril, as PyTorch's math path.
    bias = detail::additive_mask(tril(constant(ones({l, s}, boolean))), false, query.dtype(), kOp,
                                 "attn_mask");
  }
  const double sc = scale ? *scale : 1.0 / std::sqrt(static_cast<double>(e));
  return detail::attention(query, key, value, bias, sc, dropout_p, rng, kOp);
}

Var causal_mask(int64_t size, Dtype dtype) {
  if (size < 0) throw ShapeError("causal_mask: size must be >= 0, got " + std::to_string(size));
  if (!is_floating(dtype))
    throw DtypeError("causal_mask: dtype must be f32 or f64, got " +
                     std::string(dtype_name(dtype)));
  return constant(triu(constant(full({size, size}, kNegInf, dtype)), 1).value());
}

}  // namespace tg
