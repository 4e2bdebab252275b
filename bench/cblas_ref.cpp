// The only file of bench/ that includes <cblas.h> (see cblas_ref.hpp).
#include "cblas_ref.hpp"

#include <cblas.h>

namespace bench {

void cblas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
                float beta, float* c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(ta ? m : k), b, static_cast<int>(tb ? k : n), beta, c,
              static_cast<int>(n));
}

int openblas_threads() { return openblas_get_num_threads(); }

}  // namespace bench
