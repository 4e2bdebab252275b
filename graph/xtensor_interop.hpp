#pragma once

// Conversions between tg::Tensor and xtensor containers. Header-only on purpose: the xarray
// type is compiled with the includer's own xtensor settings.

#include <cstring>
#include <xtensor/xarray.hpp>

#include "graph/tensor.hpp"

namespace tg {

/// A Tensor holding a copy of `a` (dtype from T: float -> f32, double -> f64).
template <class T, xt::layout_type L, class A, class SA>
Tensor from_xarray(const xt::xarray_container<xt::uvector<T, A>, L, SA>& a) {
  Shape shape;
  for (auto d : a.shape()) shape.push_back(static_cast<int64_t>(d));
  Tensor t = Tensor::empty(shape, dtype_of<T>);
  T* p = t.data<T>();
  size_t i = 0;
  // Iterating in row-major order copies correctly whatever the source layout.
  for (auto it = a.template cbegin<xt::layout_type::row_major>();
       it != a.template cend<xt::layout_type::row_major>(); ++it)
    p[i++] = *it;
  return t;
}

/// A copy of `t` as xt::xarray<T> (converted when T does not match t's dtype).
template <class T>
xt::xarray<T> to_xarray(const Tensor& t) {
  std::vector<size_t> shape(t.shape().begin(), t.shape().end());
  xt::xarray<T> out(shape);
  const Tensor c = t.to(dtype_of<T>);
  if (c.numel() > 0) std::memcpy(out.data(), c.template data<T>(), c.nbytes());
  return out;
}

}  // namespace tg
