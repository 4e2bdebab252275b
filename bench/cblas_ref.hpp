// Direct cblas_sgemm, the reference the matmul path is measured against. Declared here
// without <cblas.h> (its macros collide with xtensor-blas headers); defined in
// cblas_ref.cpp, the only file that includes it.
#pragma once

#include <cstdint>

namespace bench {

/// C = op(A) op(B) (beta = 0) or C += op(A) op(B) (beta = 1), row-major, float32; A is
/// [m, k] (or [k, m] when ta), B is [k, n] (or [n, k] when tb), C is [m, n].
void cblas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
                float beta, float* c);

/// OpenBLAS's thread count (openblas_get_num_threads).
int openblas_threads();

}  // namespace bench
