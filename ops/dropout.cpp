#include "ops/dropout.hpp"

#include <string>

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

}  // namespace tg
