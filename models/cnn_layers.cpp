#include "models/cnn_layers.hpp"

#include <cmath>
#include <sstream>

#include "models/init.hpp"
#include "ops/dropout.hpp"
#include "ops/index.hpp"
#include "ops/norm.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

// PyTorch prints an int or a tuple as given; a pair of equal extents prints as one number.
std::string pair_str(const Pair2& p) {
  std::ostringstream os;
  if (p.h == p.w)
    os << p.h;
  else
    os << '(' << p.h << ", " << p.w << ')';
  return os.str();
}

const char* bool_str(bool b) { return b ? "true" : "false"; }

std::string tuple_str(const std::vector<int64_t>& v) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << (v.size() == 1 ? ",)" : ")");
  return os.str();
}

// A dim in [-rank, rank - 1] (a rank-0 tensor counts as rank 1, as PyTorch) to [0, rank).
int64_t wrap_dim(int64_t dim, int64_t rank, const char* op, const char* what) {
  const int64_t r = std::max<int64_t>(rank, 1);
  if (dim < -r || dim >= r)
    throw IndexError(std::string(op) + ": " + what + " " + std::to_string(dim) +
                     " is out of range for a tensor of rank " + std::to_string(rank) +
                     " (expected it in [" + std::to_string(-r) + ", " + std::to_string(r - 1) +
                     "])");
  return dim < 0 ? dim + r : dim;
}

// PyTorch's tuple repr: "(3, 3)", "(3,)".
std::string int_tuple_str(const std::vector<int64_t>& v) { return tuple_str(v); }

bool all_equal(const std::vector<int64_t>& v, int64_t x) {
  for (int64_t e : v)
    if (e != x) return false;
  return true;
}

}  // namespace

// ---- convolutions ----

ConvBase::ConvBase(int64_t in, int64_t out, std::vector<int64_t> kernel,
                   std::vector<int64_t> stride, Padding2 padding, std::vector<int64_t> dilation,
                   std::vector<int64_t> output_padding, int64_t groups, bool bias, bool transposed,
                   Dtype dtype, Rng& rng, const char* name, std::string padding_mode)
    : in_(in),
      out_(out),
      groups_(groups),
      kernel_(std::move(kernel)),
      stride_(std::move(stride)),
      dilation_(std::move(dilation)),
      output_padding_(std::move(output_padding)),
      padding_(padding),
      padding_mode_(std::move(padding_mode)),
      name_(name) {
  const std::string n = name;
  if (padding_mode_ != "zeros" && padding_mode_ != "reflect" && padding_mode_ != "replicate" &&
      padding_mode_ != "circular")
    throw Error(n +
                ": padding_mode must be one of 'zeros', 'reflect', 'replicate' or 'circular', "
                "got '" +
                padding_mode_ + "'");
  if (in <= 0 || out <= 0)
    throw ShapeError(n + ": in_channels and out_channels must be positive, got " +
                     std::to_string(in) + " and " + std::to_string(out));
  if (groups <= 0) throw Error(n + ": groups must be positive, got " + std::to_string(groups));
  if (in % groups != 0)
    throw Error(n + ": in_channels must be divisible by groups, got " + std::to_string(in) +
                " and " + std::to_string(groups));
  if (out % groups != 0)
    throw Error(n + ": out_channels must be divisible by groups, got " + std::to_string(out) +
                " and " + std::to_string(groups));
  for (int64_t k : kernel_)
    if (k <= 0)
      throw ShapeError(n + ": kernel_size must be positive, got " + int_tuple_str(kernel_));
  for (int64_t st : stride_)
    if (st <= 0) throw Error(n + ": stride must be positive, got " + int_tuple_str(stride_));
  for (int64_t d : dilation_)
    if (d <= 0) throw Error(n + ": dilation must be positive, got " + int_tuple_str(dilation_));
  if (padding_.mode == Padding2::Mode::explicit_ && (padding_.size.h < 0 || padding_.size.w < 0))
    throw Error(n + ": padding must be non-negative, got (" + std::to_string(padding_.size.h) +
                ", " + std::to_string(padding_.size.w) + ")");
  if (padding_.mode == Padding2::Mode::same && !all_equal(stride_, 1))
    throw Error(n + ": padding='same' is not supported for strided convolutions, got stride " +
                int_tuple_str(stride_));
  std::vector<int64_t> wshape = {transposed ? in : out, (transposed ? out : in) / groups};
  wshape.insert(wshape.end(), kernel_.begin(), kernel_.end());
  weight = register_parameter("weight", Tensor::empty(Shape(wshape), dtype));
  if (bias) this->bias = register_parameter("bias", Tensor::empty(Shape{out}, dtype));
  reset_parameters(rng);
}

void ConvBase::reset_parameters(Rng& rng) {
  // NOTE: as PyTorch's _ConvNd.reset_parameters: kaiming_uniform(a = sqrt(5)) gives
  // bound sqrt(3) * sqrt(2 / 6) / sqrt(fan_in) = 1/sqrt(fan_in).
  init::kaiming_uniform(weight, rng, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(init::fan_in(weight.value())));
    init::uniform(bias, rng, -bound, bound);
  }
}

std::string ConvBase::extra_repr() const {
  std::ostringstream os;
  os << in_ << ", " << out_ << ", kernel_size=" << int_tuple_str(kernel_)
     << ", stride=" << int_tuple_str(stride_);
  if (padding_.mode == Padding2::Mode::same)
    os << ", padding=same";
  else if (padding_.mode == Padding2::Mode::valid)
    os << ", padding=valid";
  else if (padding_.size.h != 0 || padding_.size.w != 0)
    os << ", padding="
       << int_tuple_str(kernel_.size() == 1
                            ? std::vector<int64_t>{padding_.size.h}
                            : std::vector<int64_t>{padding_.size.h, padding_.size.w});
  if (!all_equal(dilation_, 1)) os << ", dilation=" << int_tuple_str(dilation_);
  if (!all_equal(output_padding_, 0)) os << ", output_padding=" << int_tuple_str(output_padding_);
  if (groups_ != 1) os << ", groups=" << groups_;
  if (!bias.defined()) os << ", bias=false";
  if (padding_mode_ != "zeros") os << ", padding_mode=" << padding_mode_;
  return os.str();
}

namespace {

// x padded circularly by (before, after) pairs for its last dims, from the last dim
// backwards (F.pad's order): the last `before` entries wrap to the front, the first `after`
// to the back. Made of narrow and concat, so differentiable to any order.
Var circular_pad(const Var& x, const std::vector<int64_t>& pads, const char* name) {
  Var y = x;
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    const int64_t dim = y.dim() - 1 - static_cast<int64_t>(i);
    const int64_t n = y.shape()[static_cast<int>(dim)], lo = pads[2 * i], hi = pads[2 * i + 1];
    if (lo > n || hi > n)
      throw ShapeError(std::string(name) + ": circular padding (" + std::to_string(lo) + ", " +
                       std::to_string(hi) + ") wraps around more than once for extent " +
                       std::to_string(n) + " of input " + x.shape().str());
    std::vector<Var> parts;
    if (lo > 0) parts.push_back(narrow(y, dim, n - lo, lo));
    parts.push_back(y);
    if (hi > 0) parts.push_back(narrow(y, dim, 0, hi));
    if (parts.size() > 1) y = concat(parts, dim);
  }
  return y;
}

}  // namespace

Var ConvBase::pad_input(const Var& x) const {
  if (padding_mode_ == "zeros") return x;
  const size_t dims = kernel_.size();
  if (x.dim() < static_cast<int64_t>(dims) + 1)
    throw ShapeError(std::string(name_) + ": expected an input of rank " +
                     std::to_string(dims + 1) + " or " + std::to_string(dims + 2) + ", got " +
                     x.shape().str());
  // (before, after) per spatial dim, from the last backwards.
  std::vector<int64_t> pads;
  for (size_t i = dims; i-- > 0;) {
    const int64_t explicit_pad = i == dims - 1 ? padding_.size.w : padding_.size.h;
    if (padding_.mode == Padding2::Mode::same) {
      const int64_t total = dilation_[i] * (kernel_[i] - 1);
      pads.push_back(total / 2);
      pads.push_back(total - total / 2);
    } else {
      const int64_t p = padding_.mode == Padding2::Mode::valid ? 0 : explicit_pad;
      pads.push_back(p);
      pads.push_back(p);
    }
  }
  if (padding_mode_ == "circular") return circular_pad(x, pads, name_);
  return pad(x, pads, padding_mode_);
}

namespace {
Padding2 conv1d_padding(Padding2 p) {
  if (p.mode == Padding2::Mode::explicit_ && p.size.h != p.size.w)
    throw Error("Conv1d: padding must be an int, 'same' or 'valid', got a pair (" +
                std::to_string(p.size.h) + ", " + std::to_string(p.size.w) + ")");
  return p;
}
}  // namespace

Conv1d::Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Rng& rng,
               int64_t stride, Padding2 padding, int64_t dilation, int64_t groups, bool bias,
               const std::string& padding_mode, Dtype dtype)
    : ConvBase(in_channels, out_channels, {kernel_size}, {stride}, conv1d_padding(padding),
               {dilation}, {0}, groups, bias, false, dtype, rng, "Conv1d", padding_mode) {}

Var Conv1d::forward(const Var& x) {
  return conv1d(pad_input(x), weight, bias, stride_[0], conv_padding(), dilation_[0], groups_);
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Rng& rng, Size2 stride,
               Padding2 padding, Size2 dilation, int64_t groups, bool bias,
               const std::string& padding_mode, Dtype dtype)
    : ConvBase(in_channels, out_channels, {kernel_size.h, kernel_size.w}, {stride.h, stride.w},
               padding, {dilation.h, dilation.w}, {0, 0}, groups, bias, false, dtype, rng, "Conv2d",
               padding_mode) {}

Var Conv2d::forward(const Var& x) {
  return conv2d(pad_input(x), weight, bias, Size2(stride_[0], stride_[1]), conv_padding(),
                Size2(dilation_[0], dilation_[1]), groups_);
}

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size,
                                 Rng& rng, Size2 stride, Size2 padding, Size2 output_padding,
                                 int64_t groups, bool bias, Size2 dilation, Dtype dtype)
    : ConvBase(in_channels, out_channels, {kernel_size.h, kernel_size.w}, {stride.h, stride.w},
               Padding2(padding), {dilation.h, dilation.w}, {output_padding.h, output_padding.w},
               groups, bias, true, dtype, rng, "ConvTranspose2d") {}

Var ConvTranspose2d::forward(const Var& x) {
  return conv_transpose2d(x, weight, bias, Size2(stride_[0], stride_[1]), padding_.size,
                          Size2(output_padding_[0], output_padding_[1]), groups_,
                          Size2(dilation_[0], dilation_[1]));
}

// ---- pooling ----

MaxPool2d::MaxPool2d(Pair2 kernel_size, std::optional<Pair2> stride, Pair2 padding, Pair2 dilation,
                     bool ceil_mode)
    : kernel_(kernel_size),
      stride_(stride.value_or(kernel_size)),
      padding_(padding),
      dilation_(dilation),
      ceil_mode_(ceil_mode) {}

Var MaxPool2d::forward(const Var& x) {
  return max_pool2d(x, kernel_, stride_, padding_, dilation_, ceil_mode_);
}

ValuesIndices MaxPool2d::forward_with_indices(const Var& x) {
  return max_pool2d_with_indices(x, kernel_, stride_, padding_, dilation_, ceil_mode_);
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + pair_str(kernel_) + ", stride=" + pair_str(stride_) +
         ", padding=" + pair_str(padding_) + ", dilation=" + pair_str(dilation_) +
         ", ceil_mode=" + bool_str(ceil_mode_);
}

AvgPool2d::AvgPool2d(Pair2 kernel_size, std::optional<Pair2> stride, Pair2 padding, bool ceil_mode,
                     bool count_include_pad, std::optional<int64_t> divisor_override)
    : kernel_(kernel_size),
      stride_(stride.value_or(kernel_size)),
      padding_(padding),
      ceil_mode_(ceil_mode),
      count_include_pad_(count_include_pad),
      divisor_override_(divisor_override) {}

Var AvgPool2d::forward(const Var& x) {
  return avg_pool2d(x, kernel_, stride_, padding_, ceil_mode_, count_include_pad_,
                    divisor_override_);
}

// NOTE: PyTorch's AvgPool2d repr shows only kernel_size, stride and padding.
std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + pair_str(kernel_) + ", stride=" + pair_str(stride_) +
         ", padding=" + pair_str(padding_);
}

MaxPool1d::MaxPool1d(int64_t kernel_size, std::optional<int64_t> stride, int64_t padding,
                     int64_t dilation, bool ceil_mode)
    : kernel_(kernel_size),
      stride_(stride.value_or(kernel_size)),
      padding_(padding),
      dilation_(dilation),
      ceil_mode_(ceil_mode) {}

Var MaxPool1d::forward(const Var& x) {
  return max_pool1d(x, kernel_, stride_, padding_, dilation_, ceil_mode_);
}

ValuesIndices MaxPool1d::forward_with_indices(const Var& x) {
  return max_pool1d_with_indices(x, kernel_, stride_, padding_, dilation_, ceil_mode_);
}

std::string MaxPool1d::extra_repr() const {
  return "kernel_size=" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_) +
         ", padding=" + std::to_string(padding_) + ", dilation=" + std::to_string(dilation_) +
         ", ceil_mode=" + bool_str(ceil_mode_);
}

AvgPool1d::AvgPool1d(int64_t kernel_size, std::optional<int64_t> stride, int64_t padding,
                     bool ceil_mode, bool count_include_pad)
    : kernel_(kernel_size),
      stride_(stride.value_or(kernel_size)),
      padding_(padding),
      ceil_mode_(ceil_mode),
      count_include_pad_(count_include_pad) {}

Var AvgPool1d::forward(const Var& x) {
  return avg_pool1d(x, kernel_, stride_, padding_, ceil_mode_, count_include_pad_);
}

std::string AvgPool1d::extra_repr() const {
  return "kernel_size=" + tuple_str({kernel_}) + ", stride=" + tuple_str({stride_}) +
         ", padding=" + tuple_str({padding_});
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Pair2 output_size) : output_size_(output_size) {}

Var AdaptiveAvgPool2d::forward(const Var& x) { return adaptive_avg_pool2d(x, output_size_); }

std::string AdaptiveAvgPool2d::extra_repr() const {
  return "output_size=" + pair_str(output_size_);
}

// ---- batch normalization ----

BatchNormBase::BatchNormBase(int64_t num_features, double eps, std::optional<double> momentum,
                             bool affine, bool track_running_stats, Dtype dtype, const char* name)
    : num_features_(num_features),
      eps_(eps),
      momentum_(momentum),
      affine_(affine),
      track_(track_running_stats) {
  if (num_features <= 0)
    throw ShapeError(std::string(name) + ": num_features must be positive, got " +
                     std::to_string(num_features));
  if (!(eps > 0.0))
    throw Error(std::string(name) + ": eps must be positive, got " + std::to_string(eps));
  if (affine) {
    weight = register_parameter("weight", ones(Shape{num_features}, dtype));
    bias = register_parameter("bias", zeros(Shape{num_features}, dtype));
  }
  if (track_running_stats) {
    register_buffer("running_mean", zeros(Shape{num_features}, dtype));
    register_buffer("running_var", ones(Shape{num_features}, dtype));
    register_buffer("num_batches_tracked", tensor({0}, Shape{}, i64));
  }
}

void BatchNormBase::reset_running_stats() {
  if (!track_) return;
  // In place: handles taken from buffer() stay valid.
  buffer("running_mean").fill_(0.0);
  buffer("running_var").fill_(1.0);
  buffer("num_batches_tracked").fill_(0.0);
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (affine_) {
    init::constant(weight, 1.0);
    init::zeros(bias);
  }
}

Var BatchNormBase::forward(const Var& x) {
  check_input_dim(x);
  double factor = momentum_.value_or(0.0);
  if (is_training() && track_) {
    Tensor& count = buffer("num_batches_tracked");
    count.data<int64_t>()[0] += 1;
    count.bump_version();
    if (!momentum_) factor = 1.0 / static_cast<double>(count.data<int64_t>()[0]);
  }
  // Batch statistics in training mode, or always when nothing is tracked (as PyTorch).
  const bool use_batch = is_training() || !track_;
  // The buffers are wrapped afresh on every call (to(dtype) and load replace their slots);
  // in training mode batch_norm updates them in place through these handles.
  Var rm, rv;
  if (track_ && (is_training() || !use_batch)) {
    rm = Var(buffer("running_mean"));
    rv = Var(buffer("running_var"));
  }
  return batch_norm(x, rm, rv, weight, bias, use_batch, factor, eps_);
}

std::string BatchNormBase::extra_repr() const {
  std::ostringstream os;
  os << num_features_ << ", eps=" << eps_ << ", momentum=";
  if (momentum_)
    os << *momentum_;
  else
    os << "None";
  os << ", affine=" << bool_str(affine_) << ", track_running_stats=" << bool_str(track_);
  return os.str();
}

BatchNorm1d::BatchNorm1d(int64_t num_features, double eps, std::optional<double> momentum,
                         bool affine, bool track_running_stats, Dtype dtype)
    : BatchNormBase(num_features, eps, momentum, affine, track_running_stats, dtype,
                    "BatchNorm1d") {}

void BatchNorm1d::check_input_dim(const Var& x) const {
  if (x.dim() != 2 && x.dim() != 3)
    throw ShapeError("BatchNorm1d: expected 2D or 3D input ([N, C] or [N, C, L]), got shape " +
                     x.shape().str());
}

BatchNorm2d::BatchNorm2d(int64_t num_features, double eps, std::optional<double> momentum,
                         bool affine, bool track_running_stats, Dtype dtype)
    : BatchNormBase(num_features, eps, momentum, affine, track_running_stats, dtype,
                    "BatchNorm2d") {}

void BatchNorm2d::check_input_dim(const Var& x) const {
  if (x.dim() != 4)
    throw ShapeError("BatchNorm2d: expected 4D input ([N, C, H, W]), got shape " + x.shape().str());
}

// ---- layer and group normalization ----

LayerNorm::LayerNorm(std::vector<int64_t> normalized_shape, double eps, bool elementwise_affine,
                     bool bias, Dtype dtype)
    : shape_(std::move(normalized_shape)), eps_(eps), affine_(elementwise_affine) {
  for (int64_t d : shape_)
    if (d <= 0)
      throw ShapeError("LayerNorm: normalized_shape must have positive extents, got " +
                       tuple_str(shape_));
  if (elementwise_affine) {
    weight = register_parameter("weight", ones(Shape(shape_), dtype));
    if (bias) this->bias = register_parameter("bias", zeros(Shape(shape_), dtype));
  }
}

Var LayerNorm::forward(const Var& x) { return layer_norm(x, shape_, weight, bias, eps_); }

std::string LayerNorm::extra_repr() const {
  std::ostringstream os;
  os << tuple_str(shape_) << ", eps=" << eps_ << ", elementwise_affine=" << bool_str(affine_);
  return os.str();
}

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine, Dtype dtype)
    : groups_(num_groups), channels_(num_channels), eps_(eps), affine_(affine) {
  if (num_groups <= 0 || num_channels <= 0 || num_channels % num_groups != 0)
    throw Error("GroupNorm: num_channels must be divisible by num_groups (both positive), got " +
                std::to_string(num_channels) + " and " + std::to_string(num_groups));
  if (affine) {
    weight = register_parameter("weight", ones(Shape{num_channels}, dtype));
    bias = register_parameter("bias", zeros(Shape{num_channels}, dtype));
  }
}

Var GroupNorm::forward(const Var& x) { return group_norm(x, groups_, weight, bias, eps_); }

std::string GroupNorm::extra_repr() const {
  std::ostringstream os;
  os << groups_ << ", " << channels_ << ", eps=" << eps_ << ", affine=" << bool_str(affine_);
  return os.str();
}

// ---- embedding ----

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, Rng& rng,
                     std::optional<int64_t> padding_idx, Dtype dtype)
    : num_(num_embeddings), dim_(embedding_dim) {
  if (num_embeddings <= 0 || embedding_dim <= 0)
    throw ShapeError("Embedding: num_embeddings and embedding_dim must be positive, got " +
                     std::to_string(num_embeddings) + " and " + std::to_string(embedding_dim));
  if (padding_idx) {
    if (*padding_idx < -num_embeddings || *padding_idx >= num_embeddings)
      throw IndexError("Embedding: padding_idx " + std::to_string(*padding_idx) +
                       " must be within num_embeddings " + std::to_string(num_embeddings));
    padding_idx_ = *padding_idx < 0 ? *padding_idx + num_embeddings : *padding_idx;
  }
  weight = register_parameter("weight", Tensor::empty({num_embeddings, embedding_dim}, dtype));
  reset_parameters(rng);
}

void Embedding::reset_parameters(Rng& rng) {
  init::normal(weight, rng);
  if (padding_idx_) {
    // The padding row, zeroed in place as PyTorch's _fill_padding_idx_with_zero.
    NoGradGuard ng;
    Tensor w = weight.value();
    dispatch(w.dtype(), "Embedding", [&]<class T>() {
      T* row = w.data<T>() + *padding_idx_ * dim_;
      std::fill(row, row + dim_, T(0));
    });
    w.bump_version();
  }
}

Var Embedding::forward(const Var& ids) { return embedding(ids, weight, padding_idx_); }

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(num_) + ", " + std::to_string(dim_);
  if (padding_idx_) s += ", padding_idx=" + std::to_string(*padding_idx_);
  return s;
}

// ---- flatten / unflatten ----

Var Flatten::forward(const Var& x) {
  const int64_t r = x.dim();
  const int64_t s = wrap_dim(start_, r, "Flatten", "start_dim");
  const int64_t e = wrap_dim(end_, r, "Flatten", "end_dim");
  if (s > e)
    throw Error("Flatten: start_dim " + std::to_string(start_) + " comes after end_dim " +
                std::to_string(end_) + " for shape " + x.shape().str());
  if (r == 0) return reshape(x, {1});
  std::vector<int64_t> shape;
  int64_t merged = 1;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t d = x.shape()[static_cast<int>(i)];
    if (i < s || i > e)
      shape.push_back(d);
    else
      merged *= d;
    if (i == e) shape.push_back(merged);
  }
  return reshape(x, shape);
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
}

Var Unflatten::forward(const Var& x) {
  const int64_t r = x.dim();
  const int64_t d = wrap_dim(dim_, r, "Unflatten", "dim");
  if (r == 0) throw ShapeError("Unflatten: expected a tensor of rank 1 or more, got rank 0");
  const int64_t extent = x.shape()[static_cast<int>(d)];
  int64_t known = 1, unknown = 0;
  for (int64_t v : sizes_) {
    if (v == -1)
      ++unknown;
    else if (v < 0)
      unknown = 2;  // reported below
    else
      known *= v;
  }
  if (sizes_.empty() || unknown > 1 || (unknown == 0 && known != extent) ||
      (unknown == 1 && (known == 0 || extent % known != 0)))
    throw ShapeError("Unflatten: sizes " + tuple_str(sizes_) + " do not multiply to extent " +
                     std::to_string(extent) + " of dim " + std::to_string(dim_) + " of shape " +
                     x.shape().str());
  std::vector<int64_t> shape;
  for (int64_t i = 0; i < r; ++i) {
    if (i == d)
      for (int64_t v : sizes_) shape.push_back(v == -1 ? extent / known : v);
    else
      shape.push_back(x.shape()[static_cast<int>(i)]);
  }
  return reshape(x, shape);
}

std::string Unflatten::extra_repr() const {
  return "dim=" + std::to_string(dim_) + ", unflattened_size=" + tuple_str(sizes_);
}

Var Dropout2d::forward(const Var& x) { return dropout2d(x, p_, is_training(), *rng_); }

std::string Dropout2d::extra_repr() const {
  std::ostringstream os;
  os << "p=" << p_ << ", inplace=false";
  return os.str();
}

}  // namespace tg
