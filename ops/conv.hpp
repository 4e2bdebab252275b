#pragma once

// Convolutions in NCHW layout with PyTorch's names, argument order, defaults and semantics
// (torch.nn.functional.conv1d, conv2d, conv_transpose2d, unfold, fold). Kernels: im2col + OpenBLAS
// gemm, col2im for the input gradient (ops/conv.cpp).

#include <concepts>
#include <cstdint>
#include <string>

#include "graph/var.hpp"

namespace tg {

/// An int or a pair (height, width), as PyTorch's `int or tuple` arguments: `2` or `{2, 1}`.
struct Size2 {
  int64_t h = 0, w = 0;
  template <std::integral I>
  Size2(I v) : h(static_cast<int64_t>(v)), w(static_cast<int64_t>(v)) {}
  template <std::integral I, std::integral J>
  Size2(I h_, J w_) : h(static_cast<int64_t>(h_)), w(static_cast<int64_t>(w_)) {}
};

/// conv's padding: an int, a pair, or PyTorch's strings "valid" (no padding) and "same"
/// (output as large as the input; stride 1 only; an odd total padding puts the extra row or
/// column at the end, as PyTorch).
struct Padding2 {
  enum class Mode { explicit_, same, valid };
  Size2 size = 0;
  Mode mode = Mode::explicit_;
  template <std::integral I>
  Padding2(I v) : size(v) {}
  template <std::integral I, std::integral J>
  Padding2(I h, J w) : size(h, w) {}
  Padding2(Size2 s) : size(s) {}
  Padding2(const char* s);
  Padding2(const std::string& s) : Padding2(s.c_str()) {}
};

/// torch.nn.functional.conv2d: input [N, C, H, W] (or unbatched [C, H, W]), weight
/// [O, C / groups, kH, kW], bias [O] or undefined. Output [N, O, OH, OW] with
/// OH = (H + 2 padding - dilation (kH - 1) - 1) / stride + 1. Its gradients are the ops
/// `conv_transpose2d` (input) and `conv2d_weight_backward` (weight), each with its own
/// backward, so every order of derivative is available.
Var conv2d(const Var& input, const Var& weight, const Var& bias = {}, Size2 stride = 1,
           Padding2 padding = 0, Size2 dilation = 1, int64_t groups = 1);

/// torch.nn.functional.conv1d: input [N, C, L] (or [C, L]), weight [O, C / groups, k],
/// bias [O] or undefined; computed as conv2d over a height of 1. Padding an int or
/// "same" / "valid".
Var conv1d(const Var& input, const Var& weight, const Var& bias = {}, int64_t stride = 1,
           Padding2 padding = 0, int64_t dilation = 1, int64_t groups = 1);

/// torch.nn.functional.conv_transpose2d: input [N, C_in, H, W] (or [C_in, H, W]), weight
/// [C_in, C_out / groups, kH, kW], bias [C_out] or undefined. Output height
/// (H - 1) stride - 2 padding + dilation (kH - 1) + output_padding + 1 (same for the width);
/// output_padding must be smaller than stride or dilation. It is conv2d's input gradient.
Var conv_transpose2d(const Var& input, const Var& weight, const Var& bias = {}, Size2 stride = 1,
                     Size2 padding = 0, Size2 output_padding = 0, int64_t groups = 1,
                     Size2 dilation = 1);

/// torch.nn.functional.unfold (im2col): input [N, C, H, W] (or [C, H, W]) -> [N, C kH kW, L]
/// (or [C kH kW, L]), column l the pixels the kernel reads at the l-th output position (row
/// (c kH + i) kW + j, zeros where it reads padding); L = OH OW as conv2d's output.
Var unfold(const Var& input, Size2 kernel_size, Size2 dilation = 1, Size2 padding = 0,
           Size2 stride = 1);

/// torch.nn.functional.fold (col2im), unfold's adjoint: input [N, C kH kW, L] (or
/// [C kH kW, L]) -> [N, C, output_size] (or [C, output_size]), each column's entries added at
/// the pixels unfold reads them from; entries that fall in the padding are dropped. L must be
/// the number of blocks output_size gives.
Var fold(const Var& input, Size2 output_size, Size2 kernel_size, Size2 dilation = 1,
         Size2 padding = 0, Size2 stride = 1);

}  // namespace tg
