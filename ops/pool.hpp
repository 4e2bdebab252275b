#pragma once

#include <optional>

#include "graph/var.hpp"
#include "ops/reduce.hpp"  // ValuesIndices

namespace tg {

// Pooling over NCHW (PyTorch's torch.nn.functional.max_pool2d, avg_pool2d,
// adaptive_avg_pool2d, max_pool1d, avg_pool1d). x is [N, C, H, W] or unbatched [C, H, W]
// ([N, C, L] or [C, L] for the 1-d forms), floating (a DtypeError naming the op
// otherwise). Output extents follow PyTorch: floor((in + 2 pad - dil (k - 1) - 1) / stride)
// + 1, rounded up with ceil_mode (the last window must start inside the input or its left
// padding). Bad arguments (kernel, stride or dilation <= 0, padding above half the
// kernel (of kernel_size, whatever the dilation, as PyTorch), an output extent below 1, a wrong
// rank) throw ShapeError / Error naming the op and the values. Every backward is itself a recorded
// op with its own backward, so second derivatives work.

/// A pair of extents (height, width); an integer means the same for both.
struct Pair2 {
  int64_t h, w;
  Pair2(int64_t v) : h(v), w(v) {}  // implicit on purpose: max_pool2d(x, 2)
  Pair2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

/// The maximum of each window and its position (i64, flat over H * W of its plane, as
/// PyTorch's return_indices). NaN wins (as PyTorch: a NaN in the window gives NaN, at the
/// last NaN's position); on ties the first maximum. The gradient goes to that position
/// (a scatter, whose own gradient is a gather). `stride` defaults to `kernel_size`.
ValuesIndices max_pool2d_with_indices(const Var& x, Pair2 kernel_size,
                                      std::optional<Pair2> stride = {}, Pair2 padding = 0,
                                      Pair2 dilation = 1, bool ceil_mode = false);
Var max_pool2d(const Var& x, Pair2 kernel_size, std::optional<Pair2> stride = {}, Pair2 padding = 0,
               Pair2 dilation = 1, bool ceil_mode = false);
/// The mean of each window; with count_include_pad the divisor counts the zero padding
/// inside the window (not the part a ceil_mode window spills past it), as PyTorch.
/// divisor_override, when given, divides every window's sum instead (non-zero: an Error
/// naming the op otherwise, as PyTorch).
Var avg_pool2d(const Var& x, Pair2 kernel_size, std::optional<Pair2> stride = {}, Pair2 padding = 0,
               bool ceil_mode = false, bool count_include_pad = true,
               std::optional<int64_t> divisor_override = {});
/// Mean over windows [floor(i H / OH), ceil((i + 1) H / OH)) (likewise W), as PyTorch.
Var adaptive_avg_pool2d(const Var& x, Pair2 output_size);
/// The 1-d forms over [N, C, L] / [C, L] (the 2-d ops over a height of 1).
ValuesIndices max_pool1d_with_indices(const Var& x, int64_t kernel_size,
                                      std::optional<int64_t> stride = {}, int64_t padding = 0,
                                      int64_t dilation = 1, bool ceil_mode = false);
Var max_pool1d(const Var& x, int64_t kernel_size, std::optional<int64_t> stride = {},
               int64_t padding = 0, int64_t dilation = 1, bool ceil_mode = false);
Var avg_pool1d(const Var& x, int64_t kernel_size, std::optional<int64_t> stride = {},
               int64_t padding = 0, bool ceil_mode = false, bool count_include_pad = true);

}  // namespace tg
