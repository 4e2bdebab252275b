// The sgemm roofline of the conv2d workload (batch 128, 32 -> 64 channels, 14 x 14, 3 x 3,
// padding 1, f32), shared by bench_conv.cpp and its LibTorch twin so both processes time
// the same direct cblas_sgemm calls next to their own convolution:
//   conv/gemm_same_shapes     the products ops/conv.cpp runs (Note [Batched columns]: chunks
//                             of kChunkImages images whose columns sit side by side): per
//                             chunk [64, 288] x [288, 16 * 196] (forward), [288, 64] x
//                             [64, 16 * 196] (input gradient, W^T dy) and [64, 16 * 196] x
//                             [16 * 196, 288] (weight gradient, accumulated)
//   conv/gemm_per_image       the same flops as one product per image ([64, 288] x
//                             [288, 196], ...), what the kernels ran before the chunks
//   conv/gemm_batched_shapes  the same flops as three whole-batch products
// Counter ms_per_step (bench_table.py). The ratio row "conv/conv2d_fwd_bwd / gemm_same_shapes"
// is the convolution's rate as a fraction of these gemms' rate.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "bench_util.hpp"
#include "cblas_ref.hpp"

namespace bench::conv {

constexpr int64_t kN = 128, kC = 32, kO = 64, kH = 14, kW = 14, kK = 3;
constexpr int64_t kL = kH * kW, kRows = kC * kK * kK;
// ops/conv.cpp's kChunkCols (3136) / kL: the images of one of its gemms.
constexpr int64_t kChunkImages = 16;
// 3 products of 2 * O * rows * L flop per image.
constexpr double kFlops = 3.0 * 2.0 * kO * kRows * kL * kN;

inline std::vector<float> uniform(int64_t n, SharedRng& g) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(g.uniform(-1, 1));
  return v;
}

/// The three products of a forward + backward over the batch, `images` images per product.
inline void gemms(benchmark::State& state, int64_t images) {
  SharedRng g(7);
  const int64_t cols = images * kL;
  const std::vector<float> w = uniform(kO * kRows, g), col = uniform(kRows * cols, g),
                           dy = uniform(kO * cols, g);
  std::vector<float> y(static_cast<size_t>(kO * cols)), dcol(static_cast<size_t>(kRows * cols)),
      dw(static_cast<size_t>(kO * kRows));
  for (auto _ : state) {
    for (int64_t n0 = 0; n0 < kN; n0 += images) {
      cblas_gemm(false, false, kO, cols, kRows, w.data(), col.data(), 0.0f, y.data());
      cblas_gemm(true, false, kRows, cols, kO, w.data(), dy.data(), 0.0f, dcol.data());
      cblas_gemm(false, true, kO, kRows, cols, dy.data(), col.data(), n0 ? 1.0f : 0.0f, dw.data());
    }
    benchmark::DoNotOptimize(dw.data());
  }
  state.counters["ms_per_step"] = seconds_per();
  state.counters["GFLOPS"] = flop_rate(kFlops);
}

inline void register_gemms() {
  for (auto [name, images] :
       {std::pair{"conv/gemm_same_shapes", kChunkImages},
        std::pair{"conv/gemm_per_image", int64_t{1}}, std::pair{"conv/gemm_batched_shapes", kN}})
    benchmark::RegisterBenchmark(name, [images = images](benchmark::State& s) { gemms(s, images); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

}  // namespace bench::conv
