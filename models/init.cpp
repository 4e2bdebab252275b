#include "models/init.hpp"

#include <cmath>

#include "models/warning.hpp"

namespace tg::init {

namespace {

template <class F>
void fill_with(const Tensor& t, F&& next) {
  Tensor h = t;  // shares the buffer
  h.bump_version();
  dispatch(h.dtype(), [&]<class T>() {
    T* p = h.data<T>();
    for (int64_t i = 0; i < h.numel(); ++i) p[i] = static_cast<T>(next());
  });
}

int64_t receptive_field(const Tensor& t, const char* who) {
  if (t.dim() < 2)
    throw ShapeError(std::string("init::") + who + ": fan in/out needs rank >= 2, got shape " +
                     t.shape().str());
  int64_t rf = 1;
  for (int i = 2; i < t.dim(); ++i) rf *= t.shape()[i];
  return rf;
}

double fan(const Tensor& t, FanMode mode, const char* who) {
  const int64_t rf = receptive_field(t, who);
  return static_cast<double>((mode == FanMode::fan_in ? t.shape()[1] : t.shape()[0]) * rf);
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, double negative_slope) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid:
      return 1.0;
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
  }
  return 1.0;
}

int64_t fan_in(const Tensor& t) { return static_cast<int64_t>(fan(t, FanMode::fan_in, "fan_in")); }
int64_t fan_out(const Tensor& t) {
  return static_cast<int64_t>(fan(t, FanMode::fan_out, "fan_out"));
}

void constant(const Tensor& t, double value) {
  if (t.dim() == 2 && t.shape()[0] > 1)
    warn("init::constant: every row of a " + t.shape().str() + " weight matrix set to " +
         std::to_string(value) + "; if these are the incoming weights of a hidden layer, its " +
         std::to_string(t.shape()[0]) +
         " units compute the same function, receive the same gradient and stay identical "
         "(symmetry is never broken): use a random initializer");
  fill_with(t, [value] { return value; });
}
void constant(const Var& v, double value) { constant(v.value(), value); }
void zeros(const Tensor& t) { constant(t, 0.0); }
void zeros(const Var& v) { zeros(v.value()); }

void uniform(const Tensor& t, Rng& rng, double lo, double hi) {
  if (!(lo <= hi)) throw Error("init::uniform: lo must not exceed hi");
  fill_with(t, [&] { return rng.uniform(lo, hi); });
}
void uniform(const Var& v, Rng& rng, double lo, double hi) { uniform(v.value(), rng, lo, hi); }

void normal(const Tensor& t, Rng& rng, double mean, double std) {
  if (!(std >= 0)) throw Error("init::normal: std must be >= 0");
  fill_with(t, [&] { return mean + std * rng.normal(); });
}
void normal(const Var& v, Rng& rng, double mean, double std) { normal(v.value(), rng, mean, std); }

void xavier_uniform(const Tensor& t, Rng& rng, double gain) {
  const double a = gain * std::sqrt(6.0 / (fan(t, FanMode::fan_in, "xavier_uniform") +
                                           fan(t, FanMode::fan_out, "xavier_uniform")));
  uniform(t, rng, -a, a);
}
void xavier_uniform(const Var& v, Rng& rng, double gain) { xavier_uniform(v.value(), rng, gain); }

void xavier_normal(const Tensor& t, Rng& rng, double gain) {
  const double std = gain * std::sqrt(2.0 / (fan(t, FanMode::fan_in, "xavier_normal") +
                                             fan(t, FanMode::fan_out, "xavier_normal")));
  normal(t, rng, 0.0, std);
}
void xavier_normal(const Var& v, Rng& rng, double gain) { xavier_normal(v.value(), rng, gain); }

void kaiming_uniform(const Tensor& t, Rng& rng, double a, FanMode mode, Nonlinearity nl) {
  const double std = calculate_gain(nl, a) / std::sqrt(fan(t, mode, "kaiming_uniform"));
  // NOTE: U(-b, b) has standard deviation b / sqrt(3).
  const double bound = std::sqrt(3.0) * std;
  uniform(t, rng, -bound, bound);
}
void kaiming_uniform(const Var& v, Rng& rng, double a, FanMode mode, Nonlinearity nl) {
  kaiming_uniform(v.value(), rng, a, mode, nl);
}

void kaiming_normal(const Tensor& t, Rng& rng, double a, FanMode mode, Nonlinearity nl) {
  const double std = calculate_gain(nl, a) / std::sqrt(fan(t, mode, "kaiming_normal"));
  normal(t, rng, 0.0, std);
}
void kaiming_normal(const Var& v, Rng& rng, double a, FanMode mode, Nonlinearity nl) {
  kaiming_normal(v.value(), rng, a, mode, nl);
}

}  // namespace tg::init
