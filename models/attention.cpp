#include "models/attention.hpp"

#include <cmath>
#include <string>

#include "models/init.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/kernels.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

constexpr const char* kMha = "MultiheadAttention";

void refuse(bool bad, const std::string& what) {
  if (bad) throw Error(std::string(kMha) + ": " + what + " is not supported");
}

int64_t checked_heads(int64_t embed_dim, int64_t num_heads) {
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0)
    throw Error(std::string(kMha) +
                ": embed_dim must be divisible by num_heads (both positive), got " +
                std::to_string(embed_dim) + " and " + std::to_string(num_heads));
  return num_heads;
}

std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (auto it = dims.begin(); it != dims.end(); ++it)
    s += (it == dims.begin() ? "" : ", ") + std::to_string(*it);
  return s + "]";
}

// Throws ShapeError unless `mask` (defined) has the shape `want`.
void check_mask_shape(const Var& mask, const char* what, std::initializer_list<int64_t> want) {
  if (mask.shape() != Shape(want))
    throw ShapeError(std::string(kMha) + ": expected " + what + " of shape " + dims_str(want) +
                     ", got " + mask.shape().str());
}

// [N, T, E] -> [N, H, T, D]: the heads as a batch dim.
Var split_heads(const Var& x, int64_t heads) {
  const int64_t n = x.shape()[0], t = x.shape()[1], e = x.shape()[2];
  return permute(reshape(x, {n, t, heads, e / heads}), {0, 2, 1, 3});
}

}  // namespace

// ---- MultiheadAttention ----

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, Rng& rng,
                                       double dropout, bool bias, bool add_bias_kv,
                                       bool add_zero_attn, std::optional<int64_t> kdim,
                                       std::optional<int64_t> vdim, bool batch_first, Dtype dtype)
    : out_proj(embed_dim, embed_dim, rng, bias, dtype),
      embed_dim_(embed_dim),
      num_heads_(checked_heads(embed_dim, num_heads)),
      dropout_(dropout),
      batch_first_(batch_first),
      rng_(&rng) {
  refuse(add_bias_kv, "add_bias_kv = true");
  refuse(add_zero_attn, "add_zero_attn = true");
  refuse((kdim && *kdim != embed_dim) || (vdim && *vdim != embed_dim),
         "kdim or vdim other than embed_dim " + std::to_string(embed_dim));
  if (!(dropout >= 0.0 && dropout <= 1.0))
    throw Error(std::string(kMha) + ": dropout must be in [0, 1], got " + std::to_string(dropout));
  in_proj_weight =
      register_parameter("in_proj_weight", Tensor::empty({3 * embed_dim, embed_dim}, dtype));
  if (bias) in_proj_bias = register_parameter("in_proj_bias", zeros({3 * embed_dim}, dtype));
  register_module("out_proj", out_proj);
  reset_parameters(rng);
}

void MultiheadAttention::reset_parameters(Rng& rng) {
  // PyTorch's _reset_parameters: out_proj keeps its Linear weight; the biases are zeroed.
  init::xavier_uniform(in_proj_weight, rng);
  if (in_proj_bias.defined()) init::zeros(in_proj_bias);
  if (out_proj.bias.defined()) init::zeros(out_proj.bias);
}

std::tuple<Var, Var> MultiheadAttention::forward(const Var& query, const Var& key, const Var& value,
                                                 const Var& key_padding_mask, bool need_weights,
                                                 const Var& attn_mask, bool average_attn_weights,
                                                 bool is_causal) {
  const int64_t e = embed_dim_, h = num_heads_;
  kern::check_floating(query.value(), kMha);
  kern::check_same_dtype(query.value(), in_proj_weight.value(), kMha);
  kern::check_same_dtype(query.value(), key.value(), kMha);
  kern::check_same_dtype(query.value(), value.value(), kMha);
  const bool batched = query.dim() == 3;
  if ((query.dim() != 2 && !batched) || key.dim() != query.dim() || value.dim() != query.dim() ||
      query.shape().back() != e || key.shape().back() != e || value.shape().back() != e)
    throw ShapeError(std::string(kMha) + ": expected query, key and value of rank 3 ([L, N, " +
                     std::to_string(e) + "], batch_first [N, L, " + std::to_string(e) +
                     "]) or 2 (unbatched [L, " + std::to_string(e) + "]), got " +
                     query.shape().str() + ", " + key.shape().str() + " and " +
                     value.shape().str());
  // Everything below works on [N, T, E].
  auto to_nte = [&](const Var& x) {
    if (!batched) return unsqueeze(x, 0);
    return batch_first_ ? x : transpose(x, 0, 1);
  };
  const Var q = to_nte(query), k = to_nte(key), v = to_nte(value);
  const int64_t n = q.shape()[0], l = q.shape()[1], s = k.shape()[1];
  if (k.shape() != v.shape() || k.shape()[0] != n)
    throw ShapeError(std::string(kMha) + ": key " + key.shape().str() + " and value " +
                     value.shape().str() + " must have one shape, with query " +
                     query.shape().str() + "'s batch size");
  if (is_causal && !attn_mask.defined())
    throw Error(std::string(kMha) +
                ": is_causal is a hint that attn_mask is the causal mask; it needs attn_mask");

  // The additive mask [N or 1, H or 1, L, S].
  Var bias = detail::additive_mask(attn_mask, true, q.dtype(), kMha, "attn_mask");
  if (bias.defined()) {
    if (bias.dim() == 2) {
      check_mask_shape(bias, "a 2-D attn_mask", {l, s});
    } else if (bias.dim() == 3) {
      if (batched)
        check_mask_shape(bias, "a 3-D attn_mask", {n * h, l, s});
      else
        check_mask_shape(bias, "a 3-D attn_mask", {h, l, s});
      bias = reshape(bias, {n, h, l, s});
    } else {
      throw ShapeError(std::string(kMha) + ": attn_mask must be 2-D or 3-D, got " +
                       bias.shape().str());
    }
  }
  Var pad = detail::additive_mask(key_padding_mask, true, q.dtype(), kMha, "key_padding_mask");
  if (pad.defined()) {
    if (batched)
      check_mask_shape(pad, "key_padding_mask", {n, s});
    else
      check_mask_shape(pad, "key_padding_mask", {s});
    pad = reshape(pad, {n, 1, 1, s});
    bias = bias.defined() ? add(bias, pad) : pad;
  }

  // In-projection: rows [0, E), [E, 2E), [2E, 3E) of in_proj_weight for q, k and v.
  auto project = [&](const Var& x, int64_t i) {
    const Var w = narrow(in_proj_weight, 0, i * e, e);
    const Var b = in_proj_bias.defined() ? narrow(in_proj_bias, 0, i * e, e) : Var();
    return split_heads(linear(x, w, b), h);
  };
  Var weights;
  const double p = is_training() ? dropout_ : 0.0;
  const Var o = detail::attention(project(q, 0), project(k, 1), project(v, 2), bias,
                                  1.0 / std::sqrt(static_cast<double>(e / h)), p, rng_, kMha,
                                  need_weights ? &weights : nullptr);  // [N, H, L, D]
  Var y = out_proj.forward(reshape(permute(o, {0, 2, 1, 3}), {n, l, e}));
  if (!batched)
    y = squeeze(y, 0);
  else if (!batch_first_)
    y = transpose(y, 0, 1);
  if (need_weights) {
    if (average_attn_weights) weights = mean(weights, {1});
    if (!batched) weights = squeeze(weights, 0);
  }
  return {y, weights};
}

// ---- TransformerEncoderLayer ----

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t nhead, Rng& rng,
                                                 int64_t dim_feedforward, double dropout,
                                                 const std::string& activation,
                                                 double layer_norm_eps, bool batch_first,
                                                 bool norm_first, bool bias, Dtype dtype)
    : self_attn(d_model, nhead, rng, dropout, bias, false, false, std::nullopt, std::nullopt,
                batch_first, dtype),
      linear1(d_model, dim_feedforward, rng, bias, dtype),
      dropout(dropout, rng),
      linear2(dim_feedforward, d_model, rng, bias, dtype),
      norm1({d_model}, layer_norm_eps, true, bias, dtype),
      norm2({d_model}, layer_norm_eps, true, bias, dtype),
      dropout1(dropout, rng),
      dropout2(dropout, rng),
      norm_first_(norm_first),
      activation_(activation) {
  if (activation != "relu" && activation != "gelu")
    throw Error("TransformerEncoderLayer: activation must be \"relu\" or \"gelu\", got \"" +
                activation + "\"");
  register_module("self_attn", self_attn);
  register_module("linear1", linear1);
  register_module("dropout", this->dropout);
  register_module("linear2", linear2);
  register_module("norm1", norm1);
  register_module("norm2", norm2);
  register_module("dropout1", dropout1);
  register_module("dropout2", dropout2);
}

Var TransformerEncoderLayer::feed_forward(const Var& x) {
  const Var a = linear1.forward(x);
  const Var act = activation_ == "gelu" ? gelu(a) : relu(a);
  return dropout2.forward(linear2.forward(dropout.forward(act)));
}

Var TransformerEncoderLayer::forward(const Var& src, const Var& src_mask,
                                     const Var& src_key_padding_mask, bool is_causal) {
  auto attend = [&](const Var& x) {
    return dropout1.forward(std::get<0>(
        self_attn.forward(x, x, x, src_key_padding_mask, false, src_mask, true, is_causal)));
  };
  Var x = src;
  if (norm_first_) {
    x = add(x, attend(norm1.forward(x)));
    return add(x, feed_forward(norm2.forward(x)));
  }
  x = norm1.forward(add(x, attend(x)));
  return norm2.forward(add(x, feed_forward(x)));
}

// ---- TransformerEncoder ----

TransformerEncoder::TransformerEncoder(const LayerFactory& make_layer, int64_t num_layers,
                                       std::unique_ptr<LayerNorm> final_norm)
    : norm(std::move(final_norm)) {
  if (num_layers < 0)
    throw Error("TransformerEncoder: num_layers must be >= 0, got " + std::to_string(num_layers));
  for (int64_t i = 0; i < num_layers; ++i) {
    auto layer = make_layer();
    if (!layer) throw Error("TransformerEncoder: make_layer returned no layer");
    layers.append(std::move(layer));
  }
  register_module("layers", layers);
  if (norm) register_module("norm", *norm);
}

Var TransformerEncoder::forward(const Var& src, const Var& mask, const Var& src_key_padding_mask,
                                bool is_causal) {
  Var x = src;
  for (Module& m : layers)
    x = static_cast<TransformerEncoderLayer&>(m).forward(x, mask, src_key_padding_mask, is_causal);
  return norm ? norm->forward(x) : x;
}

}  // namespace tg
