#pragma once

#include <optional>
#include <string>
#include <vector>

#include "graph/var.hpp"

namespace tg {

/// PyTorch's torch.nn.functional.interpolate for modes "nearest" (PyTorch's legacy nearest:
/// src = min(floor(dst * scale), in - 1), scale = 1 / scale_factor when given, else in / out,
/// computed in float as PyTorch's CPU kernel), "bilinear" (4-D [N, C, H, W]) and "linear"
/// (3-D [N, C, L]); "nearest" takes 3-D and 4-D input. Exactly one of `size` and
/// `scale_factor` is given; each holds one value (used for every spatial dim) or one per
/// spatial dim. With `scale_factor` the output extent is floor(in * scale_factor) and the
/// scale factor itself is used to map coordinates (PyTorch's recompute_scale_factor=None).
/// `align_corners` (default false) is for the interpolating modes only, as PyTorch; with it
/// the corner pixels of input and output are aligned and scale_factor only sets the size.
/// x is floating (a DtypeError naming interpolate otherwise). Bad arguments (both or neither
/// of size and scale_factor, a wrong count of values, a non-positive size or scale, an empty
/// output, an unknown mode, align_corners with "nearest", a rank the mode does not take)
/// throw Error / ShapeError naming interpolate and the values. The gradient is the transpose
/// of the interpolation weights (recorded as interpolate_backward, whose gradient is
/// interpolate again), so second derivatives work. (No antialias, no bicubic / trilinear /
/// area / nearest-exact.)
Var interpolate(const Var& x, std::optional<std::vector<int64_t>> size,
                std::optional<std::vector<double>> scale_factor = std::nullopt,
                const std::string& mode = "nearest",
                std::optional<bool> align_corners = std::nullopt);

}  // namespace tg
