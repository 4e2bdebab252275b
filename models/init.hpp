#pragma once

#include "graph/rng.hpp"
#include "graph/var.hpp"

/// Parameter initializers, as in torch.nn.init. Each fills its argument in place (the
/// buffer the Var or Tensor handle shares) from an explicit generator, drawing the values
/// in row-major order in double precision, so one seed gives one model bit for bit.
namespace tg::init {

/// The nonlinearity a layer's output goes through (for `calculate_gain`).
enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu };
enum class FanMode { fan_in, fan_out };

/// PyTorch's recommended gains: linear/sigmoid 1, tanh 5/3, relu sqrt(2),
/// leaky_relu sqrt(2 / (1 + slope^2)).
double calculate_gain(Nonlinearity nonlinearity, double negative_slope = 0.01);
/// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (rank >= 2).
int64_t fan_in(const Tensor& t);
int64_t fan_out(const Tensor& t);

/// Every element set to `value`. On a matrix with more than one row (the incoming weights
/// of several units) this warns through `tg::warn`: the units of a hidden layer
/// initialised this way receive identical gradients and never become different.
void constant(const Tensor& t, double value);
void constant(const Var& v, double value);
void zeros(const Tensor& t);
void zeros(const Var& v);
/// U(lo, hi).
void uniform(const Tensor& t, Rng& rng, double lo = 0.0, double hi = 1.0);
void uniform(const Var& v, Rng& rng, double lo = 0.0, double hi = 1.0);
/// N(mean, std^2).
void normal(const Tensor& t, Rng& rng, double mean = 0.0, double std = 1.0);
void normal(const Var& v, Rng& rng, double mean = 0.0, double std = 1.0);
/// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010).
void xavier_uniform(const Tensor& t, Rng& rng, double gain = 1.0);
void xavier_uniform(const Var& v, Rng& rng, double gain = 1.0);
/// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_normal(const Tensor& t, Rng& rng, double gain = 1.0);
void xavier_normal(const Var& v, Rng& rng, double gain = 1.0);
/// U(-b, b), b = gain(nonlinearity, a) * sqrt(3 / fan) (He et al. 2015). With the
/// defaults a = sqrt(5), leaky_relu this is PyTorch's Linear weight init, U(+-1/sqrt(fan_in)).
void kaiming_uniform(const Tensor& t, Rng& rng, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nonlinearity = Nonlinearity::leaky_relu);
void kaiming_uniform(const Var& v, Rng& rng, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nonlinearity = Nonlinearity::leaky_relu);
/// N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan).
void kaiming_normal(const Tensor& t, Rng& rng, double a = 0.0, FanMode mode = FanMode::fan_in,
                    Nonlinearity nonlinearity = Nonlinearity::leaky_relu);
void kaiming_normal(const Var& v, Rng& rng, double a = 0.0, FanMode mode = FanMode::fan_in,
                    Nonlinearity nonlinearity = Nonlinearity::leaky_relu);

}  // namespace tg::init
