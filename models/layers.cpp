#include "models/layers.hpp"

#include <cmath>
#include <sstream>

#include "models/init.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/dropout.hpp"
#include "ops/matmul.hpp"

namespace tg {

Linear::Linear(int64_t in_features, int64_t out_features, Rng& rng, bool bias, Dtype dtype)
    : in_(in_features), out_(out_features) {
  if (in_features <= 0 || out_features <= 0)
    throw ShapeError("Linear: in_features and out_features must be positive, got " +
                     std::to_string(in_features) + " and " + std::to_string(out_features));
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}, dtype));
  if (bias) this->bias = register_parameter("bias", Tensor::empty({out_features}, dtype));
  reset_parameters(rng);
}

void Linear::reset_parameters(Rng& rng) {
  // NOTE: kaiming_uniform with a = sqrt(5) gives bound = sqrt(3) * sqrt(1/3) / sqrt(in)
  // = 1/sqrt(in): PyTorch's nn.Linear default, kept so results carry over.
  init::kaiming_uniform(weight, rng, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    init::uniform(bias, rng, -bound, bound);
  }
}

Var Linear::forward(const Var& x) { return linear(x, weight, bias); }

std::string Linear::extra_repr() const {
  std::ostringstream os;
  os << "in_features=" << in_ << ", out_features=" << out_
     << ", bias=" << (bias.defined() ? "true" : "false");
  return os.str();
}

Var Sigmoid::forward(const Var& x) { return sigmoid(x); }
Var Tanh::forward(const Var& x) { return tanh(x); }
Var ReLU::forward(const Var& x) { return relu(x); }
Var LeakyReLU::forward(const Var& x) { return leaky_relu(x, slope_); }

std::string LeakyReLU::extra_repr() const {
  std::ostringstream os;
  os << "negative_slope=" << slope_;
  return os.str();
}

GELU::GELU(std::string approximate) : approximate_(std::move(approximate)) {
  if (approximate_ != "none" && approximate_ != "tanh")
    throw Error("GELU: approximate must be 'none' or 'tanh', got '" + approximate_ + "'");
}

Var GELU::forward(const Var& x) { return gelu(x, approximate_); }
Var SiLU::forward(const Var& x) { return silu(x); }

Dropout::Dropout(double p, Rng& rng) : Dropout(p, rng, "Dropout") {}

Dropout::Dropout(double p, Rng& rng, const char* name) : p_(p), rng_(&rng) {
  if (!(p >= 0.0 && p <= 1.0))
    throw Error(std::string(name) + ": p must be in [0, 1], got " + std::to_string(p));
}

Var Dropout::forward(const Var& x) { return dropout(x, p_, is_training(), *rng_); }

std::string Dropout::extra_repr() const { return "p=" + std::to_string(p_); }

}  // namespace tg
