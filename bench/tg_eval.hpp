// Test accuracy of a tapegrad classifier (bench_fashion, bench_cnn): batches of 1000,
// no gradient, argmax of the logits (the first maximum).
#pragma once

#include "tapegrad/tapegrad.hpp"

namespace bench {

inline double accuracy(tg::Layer& net, const tg::data::Dataset& test) {
  tg::NoGradGuard no_grad;
  tg::data::DataLoader loader(test, 1000);
  tg::data::Batch b;
  int64_t correct = 0;
  while (loader.next(b)) {
    const tg::Var logits = net(tg::constant(b.features));
    const int64_t classes = logits.shape()[1];
    const float* p = logits.value().data<float>();
    for (int64_t i = 0; i < b.size(); ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < classes; ++k)
        if (p[i * classes + k] > p[i * classes + best]) best = k;
      correct += best == b.labels[static_cast<size_t>(i)];
    }
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(test.size());
}

}  // namespace bench
