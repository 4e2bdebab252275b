#pragma once

// The layers of convolutional networks: convolutions, pooling, batch / layer / group
// normalization, Embedding, Flatten and Unflatten, as torch.nn's (names, constructor
// arguments and defaults, parameter and buffer names, initializations and str() like
// PyTorch's repr, with C++'s true/false as the other modules print). NCHW layout.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "graph/rng.hpp"
#include "models/layers.hpp"
#include "models/module.hpp"
#include "ops/conv.hpp"
#include "ops/pool.hpp"

namespace tg {

/// What Conv1d, Conv2d and ConvTranspose2d share (PyTorch's _ConvNd). Parameters `weight`
/// ([out, in / groups, *kernel], ConvTranspose2d: [in, out / groups, *kernel]) and `bias`
/// ([out], unless bias is false), initialized as PyTorch's reset_parameters:
/// weight ~ kaiming_uniform(a = sqrt(5)) = U(+-1/sqrt(fan_in)) and bias ~ U(+-1/sqrt(fan_in))
/// with fan_in = weight.size(1) * prod(kernel) (for ConvTranspose2d that is
/// out / groups * prod(kernel), as PyTorch), weight first, then bias, each in row-major
/// order. in_channels and out_channels must be positive and divide by groups (an Error
/// naming the layer otherwise). `padding_mode` (Conv1d, Conv2d) as PyTorch's: "zeros" (the
/// default), or "reflect", "replicate", "circular": the input is padded so (pad, ops/
/// shape_ops.hpp; circular wraps around, each pad at most the extent), then convolved
/// without padding. str() as PyTorch's repr: padding, dilation, output_padding, groups, bias
/// and padding_mode shown only when not the default, bias as C++'s false.
class ConvBase : public Layer {
 public:
  /// Draws fresh values with the default initializer.
  void reset_parameters(Rng& rng);
  std::string extra_repr() const override;

  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t groups() const { return groups_; }
  const std::vector<int64_t>& kernel_size() const { return kernel_; }
  const std::vector<int64_t>& stride() const { return stride_; }
  const std::vector<int64_t>& dilation() const { return dilation_; }
  const Padding2& padding() const { return padding_; }
  const std::string& padding_mode() const { return padding_mode_; }
  /// x padded as padding_mode says when it is not "zeros" (each spatial dim gets the
  /// padding's (before, after): "same" puts an odd total's extra after); x itself for
  /// "zeros", whose padding the convolution applies.
  Var pad_input(const Var& x) const;

  Var weight;
  Var bias;  // undefined without bias

 protected:
  ConvBase(int64_t in, int64_t out, std::vector<int64_t> kernel, std::vector<int64_t> stride,
           Padding2 padding, std::vector<int64_t> dilation, std::vector<int64_t> output_padding,
           int64_t groups, bool bias, bool transposed, Dtype dtype, Rng& rng, const char* name,
           std::string padding_mode = "zeros");
  /// The padding the convolution itself applies: 0 when pad_input pads.
  Padding2 conv_padding() const { return padding_mode_ == "zeros" ? padding_ : Padding2(0); }

  int64_t in_, out_, groups_;
  std::vector<int64_t> kernel_, stride_, dilation_, output_padding_;
  Padding2 padding_;
  std::string padding_mode_;
  const char* name_;
};

/// torch.nn.Conv1d: conv1d (ops/conv.hpp) over [N, C, L] or [C, L]. `padding` an int,
/// "same" or "valid".
class Conv1d : public ConvBase {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Rng& rng,
         int64_t stride = 1, Padding2 padding = 0, int64_t dilation = 1, int64_t groups = 1,
         bool bias = true, const std::string& padding_mode = "zeros", Dtype dtype = f32);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Conv1d"; }
};

/// torch.nn.Conv2d: conv2d (ops/conv.hpp) over [N, C, H, W] or [C, H, W]. `padding` an int,
/// a pair, "same" (stride 1 only, an Error otherwise, as PyTorch) or "valid".
class Conv2d : public ConvBase {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Rng& rng, Size2 stride = 1,
         Padding2 padding = 0, Size2 dilation = 1, int64_t groups = 1, bool bias = true,
         const std::string& padding_mode = "zeros", Dtype dtype = f32);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Conv2d"; }
};

/// torch.nn.ConvTranspose2d: conv_transpose2d (ops/conv.hpp) over [N, C, H, W] or
/// [C, H, W]; PyTorch's argument order (dilation after bias).
class ConvTranspose2d : public ConvBase {
 public:
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Rng& rng,
                  Size2 stride = 1, Size2 padding = 0, Size2 output_padding = 0, int64_t groups = 1,
                  bool bias = true, Size2 dilation = 1, Dtype dtype = f32);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "ConvTranspose2d"; }
};

/// torch.nn.MaxPool2d: max_pool2d (ops/pool.hpp) over [N, C, H, W] or [C, H, W]; `stride`
/// defaults to `kernel_size`. str() prints a pair as one number when both extents agree.
/// PyTorch's return_indices is forward_with_indices, as LibTorch's.
class MaxPool2d : public Layer {
 public:
  MaxPool2d(Pair2 kernel_size, std::optional<Pair2> stride = {}, Pair2 padding = 0,
            Pair2 dilation = 1, bool ceil_mode = false);
  Var forward(const Var& x) override;
  /// The maxima and their positions (max_pool2d_with_indices).
  ValuesIndices forward_with_indices(const Var& x);
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;

 private:
  Pair2 kernel_, stride_, padding_, dilation_;
  bool ceil_mode_;
};

/// torch.nn.AvgPool2d: avg_pool2d (ops/pool.hpp); `stride` defaults to `kernel_size`;
/// `divisor_override` (non-zero) divides every window's sum in place of its size.
class AvgPool2d : public Layer {
 public:
  AvgPool2d(Pair2 kernel_size, std::optional<Pair2> stride = {}, Pair2 padding = 0,
            bool ceil_mode = false, bool count_include_pad = true,
            std::optional<int64_t> divisor_override = {});
  Var forward(const Var& x) override;
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;

 private:
  Pair2 kernel_, stride_, padding_;
  bool ceil_mode_, count_include_pad_;
  std::optional<int64_t> divisor_override_;
};

/// torch.nn.MaxPool1d: max_pool1d (ops/pool.hpp) over [N, C, L] or [C, L]; `stride`
/// defaults to `kernel_size`; return_indices is forward_with_indices.
class MaxPool1d : public Layer {
 public:
  explicit MaxPool1d(int64_t kernel_size, std::optional<int64_t> stride = {}, int64_t padding = 0,
                     int64_t dilation = 1, bool ceil_mode = false);
  Var forward(const Var& x) override;
  ValuesIndices forward_with_indices(const Var& x);
  std::string type_name() const override { return "MaxPool1d"; }
  std::string extra_repr() const override;

 private:
  int64_t kernel_, stride_, padding_, dilation_;
  bool ceil_mode_;
};

/// torch.nn.AvgPool1d: avg_pool1d (ops/pool.hpp); `stride` defaults to `kernel_size`. str()
/// as PyTorch's repr, which shows the extents as 1-tuples: "AvgPool1d(kernel_size=(3,), ...".
class AvgPool1d : public Layer {
 public:
  explicit AvgPool1d(int64_t kernel_size, std::optional<int64_t> stride = {}, int64_t padding = 0,
                     bool ceil_mode = false, bool count_include_pad = true);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "AvgPool1d"; }
  std::string extra_repr() const override;

 private:
  int64_t kernel_, stride_, padding_;
  bool ceil_mode_, count_include_pad_;
};

/// torch.nn.AdaptiveAvgPool2d: adaptive_avg_pool2d to `output_size` (H, W).
class AdaptiveAvgPool2d : public Layer {
 public:
  explicit AdaptiveAvgPool2d(Pair2 output_size);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;

 private:
  Pair2 output_size_;
};

/// What BatchNorm1d and BatchNorm2d share (PyTorch's _BatchNorm). Parameters `weight`
/// (ones) and `bias` (zeros) of shape [num_features] when `affine`; buffers `running_mean`
/// (zeros), `running_var` (ones) and `num_batches_tracked` (an i64 scalar 0) when
/// `track_running_stats`. In training mode (or without running statistics) the batch's
/// statistics normalize x; training also updates the running statistics in place
/// (running = (1 - momentum) running + momentum batch, with the unbiased batch variance) and
/// adds 1 to num_batches_tracked. `momentum` nullopt (PyTorch's None) takes the cumulative
/// average: momentum 1 / num_batches_tracked. In eval mode the running statistics normalize.
class BatchNormBase : public Layer {
 public:
  Var forward(const Var& x) override;
  std::string extra_repr() const override;
  /// running_mean = 0, running_var = 1, num_batches_tracked = 0 (when tracked).
  void reset_running_stats();
  /// reset_running_stats(), weight = 1, bias = 0.
  void reset_parameters();

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  std::optional<double> momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  bool track_running_stats() const { return track_; }

  Var weight;  // undefined without affine
  Var bias;    // undefined without affine

 protected:
  BatchNormBase(int64_t num_features, double eps, std::optional<double> momentum, bool affine,
                bool track_running_stats, Dtype dtype, const char* name);
  /// Throws ShapeError naming the layer when x's rank is not one it takes.
  virtual void check_input_dim(const Var& x) const = 0;

 private:
  int64_t num_features_;
  double eps_;
  std::optional<double> momentum_;
  bool affine_, track_;
};

/// torch.nn.BatchNorm1d over [N, C] or [N, C, L].
class BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5,
                       std::optional<double> momentum = 0.1, bool affine = true,
                       bool track_running_stats = true, Dtype dtype = f32);
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input_dim(const Var& x) const override;
};

/// torch.nn.BatchNorm2d over [N, C, H, W].
class BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5,
                       std::optional<double> momentum = 0.1, bool affine = true,
                       bool track_running_stats = true, Dtype dtype = f32);
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input_dim(const Var& x) const override;
};

/// torch.nn.LayerNorm: layer_norm over the last dims, which must equal `normalized_shape`;
/// with elementwise_affine, `weight` (ones) and `bias` (zeros, unless bias is false) of
/// that shape.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(std::vector<int64_t> normalized_shape, double eps = 1e-5,
                     bool elementwise_affine = true, bool bias = true, Dtype dtype = f32);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;
  const std::vector<int64_t>& normalized_shape() const { return shape_; }
  double eps() const { return eps_; }

  Var weight;
  Var bias;

 private:
  std::vector<int64_t> shape_;
  double eps_;
  bool affine_;
};

/// torch.nn.GroupNorm: group_norm with `num_groups` groups of [N, num_channels, *]; with
/// affine, per-channel `weight` (ones) and `bias` (zeros). num_channels must divide by
/// num_groups (an Error otherwise).
class GroupNorm : public Layer {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true,
            Dtype dtype = f32);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "GroupNorm"; }
  std::string extra_repr() const override;
  int64_t num_groups() const { return groups_; }
  double eps() const { return eps_; }

  Var weight;
  Var bias;

 private:
  int64_t groups_, channels_;
  double eps_;
  bool affine_;
};

/// torch.nn.Embedding: rows of `weight` [num_embeddings, embedding_dim] at the i64 ids
/// given to forward (any shape; the result is ids.shape + [embedding_dim]). weight ~ N(0, 1)
/// from `rng` in row-major order, the row at `padding_idx` (negative counts from the end)
/// then zeroed; that row gets no gradient.
class Embedding : public Layer {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Rng& rng,
            std::optional<int64_t> padding_idx = {}, Dtype dtype = f32);
  Var forward(const Var& ids) override;
  void reset_parameters(Rng& rng);
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override;
  std::optional<int64_t> padding_idx() const { return padding_idx_; }

  Var weight;

 private:
  int64_t num_, dim_;
  std::optional<int64_t> padding_idx_;  // non-negative
};

/// torch.nn.Flatten: dims start_dim..end_dim (negative from the end) merged into one.
class Flatten : public Layer {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_(start_dim), end_(end_dim) {}
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;

 private:
  int64_t start_, end_;
};

/// torch.nn.Unflatten: dim `dim` split into `sizes` (one may be -1; their product must be
/// the extent).
class Unflatten : public Layer {
 public:
  Unflatten(int64_t dim, std::vector<int64_t> sizes) : dim_(dim), sizes_(std::move(sizes)) {}
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Unflatten"; }
  std::string extra_repr() const override;

 private:
  int64_t dim_;
  std::vector<int64_t> sizes_;
};

/// torch.nn.Dropout2d: in training mode each whole channel of [N, C, H, W] (or unbatched
/// [C, H, W]) is zeroed with probability p and the others are scaled by 1 / (1 - p)
/// (dropout2d, ops/dropout.hpp); in eval mode the identity. PyTorch's p = 0.5 by default
/// (no inplace: tapegrad's ops never overwrite their input). The masks come from `rng`,
/// which must outlive the layer. p outside [0, 1]: an Error naming the layer. str() as
/// PyTorch's repr, "Dropout2d(p=0.5, inplace=false)".
class Dropout2d : public Dropout {
 public:
  explicit Dropout2d(Rng& rng) : Dropout2d(0.5, rng) {}
  Dropout2d(double p, Rng& rng) : Dropout(p, rng, "Dropout2d") {}
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Dropout2d"; }
  std::string extra_repr() const override;
};

}  // namespace tg
