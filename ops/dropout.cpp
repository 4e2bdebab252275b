#include "ops/dropout.hpp"

#include <string>

#include <vector>

#include "graph/error.hpp"
#include "graph/kernels.hpp"
#include "ops/arith.hpp"

namespace tg {

Var dropout(const Var& x, double p, bool training, Rng& rng) {
  // y = x * m, m = 1 / (1 - p) with probability 1 - p, else 0;  dx = m dy (a mul by a constant)
  if (!(p >= 0.0 && p <= 1.0))
    throw Error("dropout: p must be in [0, 1], got " + std::to_string(p));
  if (!training || p == 0.0) return x;
  kern::check_floating(x.value(), "dropout");
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  const double keep = 1.0 - p;
  // NOTE: p = 1 drops everything (scale would be 1/0): the mask is all zeros.
  const double scale = keep > 0.0 ? 1.0 / keep : 0.0;
  dispatch(mask.dtype(), "dropout", [&]<class T>() {
    T* m = mask.data<T>();
    for (int64_t i = 0; i < mask.numel(); ++i)
      m[i] = rng.uniform() < keep ? static_cast<T>(scale) : T(0);
  });
  return mul(x, constant(std::move(mask)));
}

namespace {

// Channel dropout: the mask has x's leading (batch and) channel dims and 1 for the
// `spatial` trailing ones, so it broadcasts over each channel.
Var feature_dropout(const char* op, const Var& x, double p, bool training, Rng& rng, int spatial) {
  if (!(p >= 0.0 && p <= 1.0))
    throw Error(std::string(op) + ": p must be in [0, 1], got " + std::to_string(p));
  if (x.dim() != spatial + 1 && x.dim() != spatial + 2)
    throw ShapeError(std::string(op) + ": expected a " + std::to_string(spatial + 1) + "-d or " +
                     std::to_string(spatial + 2) + "-d input, got shape " + x.shape().str());
  if (!training || p == 0.0) return x;
  kern::check_floating(x.value(), op);
  std::vector<int64_t> ms(x.shape().begin(), x.shape().end());
  for (size_t i = ms.size() - static_cast<size_t>(spatial); i < ms.size(); ++i) ms[i] = 1;
  Tensor mask = Tensor::empty(Shape(ms), x.dtype());
  const double keep = 1.0 - p;
  const double scale = keep > 0.0 ? 1.0 / keep : 0.0;  // p = 1: all zeros
  dispatch(mask.dtype(), op, [&]<class T>() {
    T* m = mask.data<T>();
    for (int64_t i = 0; i < mask.numel(); ++i)
      m[i] = rng.uniform() < keep ? static_cast<T>(scale) : T(0);
  });
  return mul(x, constant(std::move(mask)));
}

}  // namespace

Var dropout2d(const Var& x, double p, bool training, Rng& rng) {
  return feature_dropout("dropout2d", x, p, training, rng, 2);
}

Var dropout1d(const Var& x, double p, bool training, Rng& rng) {
  return feature_dropout("dropout1d", x, p, training, rng, 1);
}

}  // namespace tg
