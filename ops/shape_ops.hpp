#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "graph/var.hpp"

namespace tg {

/// Same elements, new shape (one extent may be -1). Shares the buffer.
Var reshape(const Var& x, const std::vector<int64_t>& shape);
/// Keeps axes before `start_axis` and flattens the rest into one.
Var flatten(const Var& x, int64_t start_axis = 1);
/// Swaps the last two axes (rank >= 2).
Var transpose(const Var& x);
/// Swaps two axes.
Var transpose(const Var& x, int64_t axis0, int64_t axis1);
/// Reorders axes: output axis i is input axis `order[i]`.
Var permute(const Var& x, const std::vector<int64_t>& order);
/// Elements start, start+step, ... before stop along `axis` (Python semantics for negative
/// start/stop; step > 0).
Var slice(const Var& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
/// The entries at `indices` along `axis` (repeats allowed; gradients of repeats add up).
Var index_select(const Var& x, int64_t axis, const std::vector<int64_t>& indices);
inline Var index_select(const Var& x, int64_t axis, std::initializer_list<int64_t> indices) {
  return index_select(x, axis, std::vector<int64_t>(indices));
}
namespace detail {
/// index_select's adjoint: zeros of `shape` with dy's entries added at `indices` (in range,
/// non-negative) along `axis`; differentiable (its adjoint is index_select).
Var index_select_backward(const Var& dy, const Shape& shape, int axis,
                          std::vector<int64_t> indices);
}  // namespace detail
/// Joins tensors along `axis` (all other extents equal).
Var concat(const std::vector<Var>& xs, int64_t axis = 0);

// PyTorch's shape ops (torch.squeeze, unsqueeze, stack, split, chunk, narrow, flip, tril,
// triu, Tensor.repeat and F.pad), with PyTorch's names, argument order, defaults and dim
// rules: a negative dim counts from the end, and a rank-0 tensor takes dim 0 or -1 where
// PyTorch wraps it as a rank-1 one. They move data only, so they take every dtype (f32,
// f64, i64, bool), return that dtype, and record only for floating outputs. A dim out of
// range is an IndexError, a bad extent or size a ShapeError, another bad argument an Error,
// each naming the op and the values.

/// x without its size-1 dims (a view: shares the buffer, as reshape).
Var squeeze(const Var& x);
/// x without `dim` when its extent is 1, else x's shape unchanged (dim in [-rank, rank - 1]).
Var squeeze(const Var& x, int64_t dim);
/// x with a new size-1 dim at `dim`, in [-rank - 1, rank] (a view, as reshape).
Var unsqueeze(const Var& x, int64_t dim);
/// Joins tensors of one shape and dtype along a new dim `dim` in [-rank - 1, rank].
Var stack(const std::vector<Var>& xs, int64_t dim = 0);
/// The extents [start, start + length) of `dim` (a copy; start may be negative, from the
/// end; start + length must not pass the extent). Its gradient is dy padded with zeros.
Var narrow(const Var& x, int64_t dim, int64_t start, int64_t length);
/// Pieces of `split_size` along `dim` (the last one smaller when the extent does not
/// divide). Design: one `narrow` node per piece, so each piece is differentiated on its own
/// and unused pieces cost nothing in backward; the engine adds the pieces' zero-padded
/// gradients, so a backward through k pieces touches k buffers of x's size.
std::vector<Var> split(const Var& x, int64_t split_size, int64_t dim = 0);
/// Pieces of the given extents along `dim` (non-negative, summing to the extent).
std::vector<Var> split(const Var& x, const std::vector<int64_t>& split_sizes, int64_t dim = 0);
/// At most `chunks` pieces of ceil(extent / chunks) along `dim` (fewer when they run out, as
/// PyTorch; `chunks` empty pieces for an empty dim).
std::vector<Var> chunk(const Var& x, int64_t chunks, int64_t dim = 0);
/// F.pad: `pad` holds (before, after) pairs from the last dim backwards. "constant" fills
/// with `value` (negative pads crop); "reflect" mirrors without repeating the edge (each pad
/// below the extent); "replicate" repeats the edge. As PyTorch, reflect and replicate pad
/// the last 1, 2 or 3 dims of a tensor of rank pairs + 1 or pairs + 2, take no value other
/// than 0, and need padded dims that are not empty and outputs of at least one element
/// along them. Unlike PyTorch, they take i64 and bool tensors too, and other empty dims.
Var pad(const Var& x, const std::vector<int64_t>& pad, const std::string& mode = "constant",
        double value = 0.0);
/// x reversed along each of `dims` (distinct).
Var flip(const Var& x, const std::vector<int64_t>& dims);
/// torch.Tensor.repeat: x tiled `repeats[i]` times along dim i; more repeats than dims add
/// leading dims (fewer is a ShapeError). The gradient sums the tiles.
Var repeat(const Var& x, const std::vector<int64_t>& repeats);
/// The lower triangle of the last two dims: entries with j - i <= diagonal kept, the rest 0.
Var tril(const Var& x, int64_t diagonal = 0);
/// The upper triangle of the last two dims: entries with j - i >= diagonal kept, the rest 0.
Var triu(const Var& x, int64_t diagonal = 0);

}  // namespace tg
