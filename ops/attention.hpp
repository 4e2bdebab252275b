#pragma once

// Attention as torch.nn.functional's scaled_dot_product_attention, composed of differentiable
// ops (matmul, add, softmax, where, dropout), so every derivative order works; and the causal
// mask of nn.Transformer.generate_square_subsequent_mask.

#include <cstdint>
#include <optional>

#include "graph/rng.hpp"
#include "graph/var.hpp"

namespace tg {

/// F.scaled_dot_product_attention (PyTorch 2.x): softmax(q k^T * scale + mask) v for
/// q [..., L, E], k [..., S, E], v [..., S, Ev] (batch dims broadcast, as matmul) -> [..., L, Ev].
/// `attn_mask` broadcasts to [..., L, S]: a bool mask where true means "takes part" (false
/// positions get -inf), or a float mask of q's dtype that is added to the scores. `is_causal`
/// masks j > i (the top-left aligned lower triangle, as PyTorch) and cannot be combined with a
/// mask (an Error, as PyTorch). `scale` defaults to 1 / sqrt(E). With dropout_p > 0 the
/// attention weights go through dropout (always: this function has no training flag, as
/// PyTorch's) with masks drawn from `rng`, which must then be given (Error otherwise).
/// NOTE: a row of scores that is entirely -inf (a fully masked query) gives 0 in the output
/// and no gradient, as PyTorch >= 2.5's math path (_safe_softmax); PyTorch 2.0-2.4 gave NaN.
/// NaN in q, k or v still gives NaN.
Var scaled_dot_product_attention(const Var& query, const Var& key, const Var& value,
                                 const Var& attn_mask = {}, double dropout_p = 0.0,
                                 bool is_causal = false, std::optional<double> scale = std::nullopt,
                                 Rng* rng = nullptr);

/// A [size, size] float mask with -inf above the diagonal and 0 elsewhere (a constant), as
/// nn.Transformer.generate_square_subsequent_mask: position i attends to positions <= i.
Var causal_mask(int64_t size, Dtype dtype = f32);

namespace detail {

/// What scaled_dot_product_attention and MultiheadAttention share. `bias` is an additive
/// float mask broadcasting to the scores [..., L, S] (or undefined); `op` names the caller in
/// error messages. Returns the output and, when `weights` is not null, stores there the
/// attention weights (after dropout, as PyTorch's MultiheadAttention returns them).
Var attention(const Var& q, const Var& k, const Var& v, const Var& bias, double scale,
              double dropout_p, Rng* rng, const char* op, Var* weights = nullptr);

/// A mask as an additive float mask of `dtype`: a bool mask becomes 0 / -inf (-inf where the
/// mask equals `masked_value`); a float mask of `dtype` is returned as it is; other dtypes
/// throw DtypeError naming `op` and `what`. Undefined stays undefined.
Var additive_mask(const Var& mask, bool masked_value, Dtype dtype, const char* op,
                  const char* what);

}  // namespace detail

}  // namespace tg
