#pragma once

#include <cstdint>
#include <string>

#include "graph/rng.hpp"
#include "models/module.hpp"

namespace tg {

/// y = x W^T + b for x [N, in]: weight [out, in] (PyTorch layout), bias [out].
class Linear : public Layer {
 public:
  /// Initialised as in PyTorch: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)) from `rng`
  /// (weight first, then bias, each in row-major order).
  Linear(int64_t in_features, int64_t out_features, Rng& rng, bool bias = true, Dtype dtype = f32);
  Var forward(const Var& x) override;
  /// Draws fresh values with the default initializer.
  void reset_parameters(Rng& rng);

  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool has_bias() const { return bias.defined(); }

  Var weight;
  Var bias;  // undefined without bias

 private:
  int64_t in_;
  int64_t out_;
};

class Sigmoid : public Layer {
 public:
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Sigmoid"; }
};

class Tanh : public Layer {
 public:
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Tanh"; }
};

/// NOTE: relu'(0) = 0, as in PyTorch (see ops/activation.hpp).
class ReLU : public Layer {
 public:
  Var forward(const Var& x) override;
  std::string type_name() const override { return "ReLU"; }
};

/// x where x > 0, negative_slope * x elsewhere: PyTorch's LeakyReLU (default slope 0.01).
class LeakyReLU : public Layer {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Var forward(const Var& x) override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;
  double negative_slope() const { return slope_; }

 private:
  double slope_;
};

/// x Phi(x) (torch.nn.GELU); approximate "tanh" uses the tanh form (see ops/activation.hpp).
class GELU : public Layer {
 public:
  /// Throws Error for an `approximate` other than "none" or "tanh".
  explicit GELU(std::string approximate = "none");
  Var forward(const Var& x) override;
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return "approximate='" + approximate_ + "'"; }
  const std::string& approximate() const { return approximate_; }

 private:
  std::string approximate_;
};

/// x sigmoid(x) (torch.nn.SiLU).
class SiLU : public Layer {
 public:
  Var forward(const Var& x) override;
  std::string type_name() const override { return "SiLU"; }
};

class Identity : public Layer {
 public:
  Var forward(const Var& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

/// In training mode zeroes each element with probability p and scales the rest by
/// 1 / (1 - p) (inverted dropout); in eval mode the identity. The mask is drawn from the
/// generator given here, which must outlive the layer.
class Dropout : public Layer {
 public:
  Dropout(double p, Rng& rng);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;
  double p() const { return p_; }
  /// The generator the masks are drawn from (tg::checkpoint_sequential restores it).
  Rng& rng() const { return *rng_; }

 protected:
  /// For channel dropout (Dropout2d): `name` heads the error for a p outside [0, 1].
  Dropout(double p, Rng& rng, const char* name);
  double p_;
  Rng* rng_;
};

}  // namespace tg
