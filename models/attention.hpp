#pragma once

// Attention and Transformer modules as torch.nn's (PyTorch 2.x): MultiheadAttention,
// TransformerEncoderLayer (post-LN or pre-LN, ReLU or GELU) and TransformerEncoder, with
// PyTorch's constructor arguments, defaults, parameter names and initialization, made of the
// framework's differentiable ops (ops/attention.hpp), so every derivative order works.
// A decoder-only (GPT) block is a TransformerEncoderLayer with norm_first = true given a
// causal mask (tg::causal_mask) as src_mask: see docs/sequence.md.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "graph/rng.hpp"
#include "models/cnn_layers.hpp"
#include "models/layers.hpp"
#include "models/module.hpp"
#include "ops/attention.hpp"

namespace tg {

/// PyTorch's out_proj type (a Linear under another name, so str() prints as PyTorch's repr).
class NonDynamicallyQuantizableLinear : public Linear {
 public:
  using Linear::Linear;
  std::string type_name() const override { return "NonDynamicallyQuantizableLinear"; }
};

/// torch.nn.MultiheadAttention. Parameters `in_proj_weight` [3E, E] (xavier_uniform),
/// `in_proj_bias` [3E] (zeros, unless bias is false), `out_proj.weight` [E, E] (Linear's
/// kaiming-uniform) and `out_proj.bias` [E] (zeros). Inputs [L, N, E] (or [N, L, E] with
/// batch_first), or unbatched [L, E]. Dropout on the attention weights in training mode, with
/// masks from the generator given here (which must outlive the module).
/// Not supported (an Error naming the module): add_bias_kv, add_zero_attn, kdim or vdim other
/// than embed_dim.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t embed_dim, int64_t num_heads, Rng& rng, double dropout = 0.0,
                     bool bias = true, bool add_bias_kv = false, bool add_zero_attn = false,
                     std::optional<int64_t> kdim = std::nullopt,
                     std::optional<int64_t> vdim = std::nullopt, bool batch_first = false,
                     Dtype dtype = f32);

  /// (attn_output, attn_weights) as LibTorch: attn_output has the query's shape;
  /// attn_weights (undefined unless need_weights) is [N, L, S] averaged over the heads, or
  /// [N, num_heads, L, S] without average_attn_weights ([L, S] / [num_heads, L, S] unbatched).
  /// Masks are bool (true = masked OUT: PyTorch's convention here, the opposite of
  /// scaled_dot_product_attention's) or float of the query's dtype (added to the scores):
  /// key_padding_mask [N, S] ([S] unbatched); attn_mask [L, S] or [N * num_heads, L, S]
  /// ([num_heads, L, S] unbatched). is_causal is PyTorch's hint that attn_mask is the causal
  /// mask: it needs attn_mask (an Error otherwise, as PyTorch) and the result is computed from
  /// attn_mask. A query whose keys are all masked gets zero output (see
  /// scaled_dot_product_attention).
  /// NOTE: PyTorch 2.x gives NaN there when need_weights is true (its softmax path) and 0 when
  /// it is false (its sdpa path); tapegrad gives 0 (and zero weights) both ways.
  std::tuple<Var, Var> forward(const Var& query, const Var& key, const Var& value,
                               const Var& key_padding_mask = {}, bool need_weights = true,
                               const Var& attn_mask = {}, bool average_attn_weights = true,
                               bool is_causal = false);
  /// Draws fresh values with PyTorch's initialization (_reset_parameters).
  void reset_parameters(Rng& rng);

  std::string type_name() const override { return "MultiheadAttention"; }

  int64_t embed_dim() const { return embed_dim_; }
  int64_t num_heads() const { return num_heads_; }
  int64_t head_dim() const { return embed_dim_ / num_heads_; }
  bool batch_first() const { return batch_first_; }
  double dropout() const { return dropout_; }

  Var in_proj_weight;
  Var in_proj_bias;  // undefined without bias
  NonDynamicallyQuantizableLinear out_proj;

 private:
  int64_t embed_dim_, num_heads_;
  double dropout_;
  bool batch_first_;
  Rng* rng_;
};

/// torch.nn.TransformerEncoderLayer: self-attention then a feed-forward block
/// linear2(dropout(activation(linear1(x)))), each with a residual connection; LayerNorm after
/// each (post-LN, the default) or before (norm_first, pre-LN). Children `self_attn`,
/// `linear1`, `dropout`, `linear2`, `norm1`, `norm2`, `dropout1`, `dropout2` as PyTorch's
/// (so the parameters are `self_attn.in_proj_weight`, ..., `norm2.bias`); `bias` false drops
/// every bias (attention, linears, norms), as PyTorch 2.1+. `activation` "relu" or "gelu"
/// (an Error otherwise). The dropouts draw from `rng`, which must outlive the layer.
class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t nhead, Rng& rng, int64_t dim_feedforward = 2048,
                          double dropout = 0.1, const std::string& activation = "relu",
                          double layer_norm_eps = 1e-5, bool batch_first = false,
                          bool norm_first = false, bool bias = true, Dtype dtype = f32);

  /// src [S, N, E] ([N, S, E] with batch_first, or unbatched [S, E]); masks as
  /// MultiheadAttention's attn_mask and key_padding_mask; is_causal is the hint that src_mask
  /// is the causal mask (it needs src_mask, as PyTorch).
  Var forward(const Var& src, const Var& src_mask = {}, const Var& src_key_padding_mask = {},
              bool is_causal = false);

  std::string type_name() const override { return "TransformerEncoderLayer"; }
  bool norm_first() const { return norm_first_; }
  const std::string& activation() const { return activation_; }

  MultiheadAttention self_attn;
  Linear linear1;
  Dropout dropout;
  Linear linear2;
  LayerNorm norm1, norm2;
  Dropout dropout1, dropout2;

 private:
  Var feed_forward(const Var& x);
  bool norm_first_;
  std::string activation_;
};

/// torch.nn.TransformerEncoder: `num_layers` layers in a ModuleList `layers` (parameters
/// `layers.0.self_attn.in_proj_weight`, ...), then the optional final `norm`.
/// NOTE: PyTorch deep-copies one prototype layer, so its layers start with identical weights;
/// here `make_layer` is called once per layer, so each layer is initialized afresh (different
/// draws from the generator the factory captures). Copy weights (load a state dict) for
/// PyTorch's identical start.
class TransformerEncoder : public Module {
 public:
  using LayerFactory = std::function<std::unique_ptr<TransformerEncoderLayer>()>;
  TransformerEncoder(const LayerFactory& make_layer, int64_t num_layers,
                     std::unique_ptr<LayerNorm> norm = nullptr);

  /// Each layer in turn with the same masks and hint, then the final norm.
  Var forward(const Var& src, const Var& mask = {}, const Var& src_key_padding_mask = {},
              bool is_causal = false);

  std::string type_name() const override { return "TransformerEncoder"; }
  int64_t num_layers() const { return static_cast<int64_t>(layers.size()); }
  TransformerEncoderLayer& layer(int64_t i) const { return layers.at<TransformerEncoderLayer>(i); }

  ModuleList layers;
  std::unique_ptr<LayerNorm> norm;  // null without a final norm
};

}  // namespace tg
