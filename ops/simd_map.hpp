#pragma once

// Internal: elementwise maps through xsimd batches for the transcendental functions (exp,
// log, tanh, sigmoid, ...). Include only from op .cpp files.
//
// NOTE: every element, the ragged tail included (through a padded batch), goes through the
// same SIMD function, so a result never depends on the buffer's address or the tensor's
// size. xtensor's own assignment peels a scalar prologue up to the first aligned address;
// its scalar std::exp/std::tanh differ from xsimd's in the last bit, which made results
// depend on where malloc put the buffer (different between threads and runs).

// NOTE: g++ 12 warns "'__Y' is used uninitialized" inside its own AVX-512 intrinsics
// (_mm512_undefined_*, GCC bug 105593, fixed in g++ 13) wherever xsimd's exp is compiled out
// of line; the warning is false, so it is silenced for the intrinsics headers xsimd pulls in.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <xsimd/xsimd.hpp>
#pragma GCC diagnostic pop

#include "ops/kernels.hpp"

namespace tg::kern {

/// y = f(x) elementwise, where f maps an xsimd::batch<T> to a batch<T> (x floating;
/// DtypeError naming `op` otherwise).
template <class F>
Tensor simd_map(const Tensor& x, const char* op, F f) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch(x.dtype(), op, [&]<class T>() {
    using B = xsimd::batch<T>;
    constexpr int64_t w = static_cast<int64_t>(B::size);
    const T* in = x.data<T>();
    T* o = out.data<T>();
    const int64_t n = x.numel();
    int64_t i = 0;
    for (; i + w <= n; i += w) f(B::load_unaligned(in + i)).store_unaligned(o + i);
    if (i < n) {
      alignas(64) T buf[w] = {};
      for (int64_t j = i; j < n; ++j) buf[j - i] = in[j];
      f(B::load_aligned(buf)).store_aligned(buf);
      for (int64_t j = i; j < n; ++j) o[j] = buf[j - i];
    }
  });
  return out;
}

/// out = f(a, b) elementwise for a and b of the same shape and floating dtype, where f maps
/// two xsimd::batch<T> to one (the ragged tail through padded batches, as simd_map).
template <class F>
Tensor simd_zip(const Tensor& a, const Tensor& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  if (a.shape() != b.shape())
    throw ShapeError(std::string(op) + ": simd_zip needs equal shapes, got " + a.shape().str() +
                     " and " + b.shape().str());
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  dispatch(a.dtype(), op, [&]<class T>() {
    using B = xsimd::batch<T>;
    constexpr int64_t w = static_cast<int64_t>(B::size);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* o = out.data<T>();
    const int64_t n = a.numel();
    int64_t i = 0;
    for (; i + w <= n; i += w)
      f(B::load_unaligned(pa + i), B::load_unaligned(pb + i)).store_unaligned(o + i);
    if (i < n) {
      alignas(64) T ba[w] = {}, bb[w] = {};
      for (int64_t j = i; j < n; ++j) ba[j - i] = pa[j], bb[j - i] = pb[j];
      f(B::load_aligned(ba), B::load_aligned(bb)).store_aligned(ba);
      for (int64_t j = i; j < n; ++j) o[j] = ba[j - i];
    }
  });
  return out;
}

}  // namespace tg::kern
