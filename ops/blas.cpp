// Matrix products: OpenBLAS gemm with transpose flags (no transposed copies), a plain loop
// for tiny products. CBLAS stays in this file alone (its macros collide with xtensor-blas).

#include <cblas.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "ops/kernels.hpp"
#include "ops/matmul.hpp"
#include "parallel/parallel.hpp"

namespace tg::kern {

namespace {

// CBLAS counts in int: a larger extent of a non-empty product would be silently truncated.
// Checked before the result is allocated.
[[gnu::always_inline]] inline void check_blas_extents(int64_t m, int64_t n, int64_t k) {
  if (((m | n | k) >> 31) != 0 && m > 0 && n > 0 && k > 0) [[unlikely]]
    throw ShapeError("matmul: extents m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                     ", k=" + std::to_string(k) + " exceed BLAS's 32-bit range");
}

[[gnu::always_inline]] inline void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                                             const float* a, int64_t lda, const float* b,
                                             int64_t ldb, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(n));
}

void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(n));
}

// C (+)= op(A) op(B) by loops; for tiny products a BLAS call costs more than the work.
template <class T>
void loop_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
               bool accumulate, T* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      T s = accumulate ? c[i * n + j] : T(0);
      for (int64_t p = 0; p < k; ++p) {
        const T av = ta ? a[p * m + i] : a[i * k + p];
        const T bv = tb ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      c[i * n + j] = s;
    }
  }
}

constexpr int64_t kLoopGemmMaxFlops = 4096;

// OpenBLAS 0.3's threshold below which a product runs on the calling thread alone (65536
// times GEMM_MULTITHREAD_THRESHOLD, 4 by default), and the least work per chunk when a
// batch of such products is split over tapegrad's pool (Note [Small batched products]).
constexpr double kBlasOneThreadMaxMnk = 65536.0 * 4;
constexpr double kBatchChunkMnk = 65536.0;

// m n k <= kLoopGemmMaxFlops, without overflowing for huge extents.
bool tiny_product(int64_t m, int64_t n, int64_t k) {
  return m <= kLoopGemmMaxFlops && n <= kLoopGemmMaxFlops && k <= kLoopGemmMaxFlops &&
         m * n * k <= kLoopGemmMaxFlops;
}

}  // namespace

namespace {

// Checks the operands of op(a) op(b) (+ bias) and returns the result's shape.
Shape gemm_shape(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias,
                 const char* op, int64_t& batch, int64_t& m, int64_t& n, int64_t& k) {
  check_same_dtype(a, b, op);
  const int ra = a.dim(), rb = b.dim();
  auto fail = [&](const std::string& why) {
    throw ShapeError(std::string(op) + ": shapes " + a.shape().str() + (ta ? "^T" : "") + " and " +
                     b.shape().str() + (tb ? "^T" : "") + " " + why);
  };
  if (ra < 2 || rb < 2) fail("need rank >= 2 operands");
  if (ra != rb) fail("need equal ranks with transpose flags (matmul(a, b) broadcasts batch dims)");
  batch = 1;
  for (int d = 0; d < ra - 2; ++d) {
    if (a.shape()[d] != b.shape()[d]) fail("have different batch extents");
    batch *= a.shape()[d];
  }
  m = ta ? a.shape()[ra - 1] : a.shape()[ra - 2];
  k = ta ? a.shape()[ra - 2] : a.shape()[ra - 1];
  const int64_t kb = tb ? b.shape()[rb - 1] : b.shape()[rb - 2];
  n = tb ? b.shape()[rb - 2] : b.shape()[rb - 1];
  if (k != kb)
    fail("do not match: inner extents " + std::to_string(k) + " and " + std::to_string(kb));
  // Built through the checked constructor: op(a) and op(b) can each be empty while
  // [batch..., m, n] has more elements than int64 can count.
  Shape shape(a.shape().begin(), a.shape().end() - 2);
  shape.push_back(m);
  shape.push_back(n);
  if (bias) {
    check_same_dtype(a, *bias, "linear");
    if (bias->dim() != 1 || bias->shape()[0] != n)
      throw ShapeError("linear: bias shape " + bias->shape().str() + " does not match " +
                       std::to_string(n) + " output features");
  }
  return shape;
}

void gemm_run(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias, int64_t batch,
              int64_t m, int64_t n, int64_t k, Tensor& out) {
  dispatch(a.dtype(), "matmul", [&]<class T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = out.data<T>();
    if (bias) {
      const T* pbias = bias->data<T>();
      for (int64_t r = 0; r < batch * m; ++r)
        for (int64_t j = 0; j < n; ++j) pc[r * n + j] = pbias[j];
    }
    if (m == 0 || n == 0) return;
    if (k == 0) {
      if (!bias)
        for (int64_t i = 0; i < batch * m * n; ++i) pc[i] = T(0);
      return;
    }
    const bool tiny = tiny_product(m, n, k);
    auto products = [&](int64_t first, int64_t last) {
      for (int64_t s = first; s < last; ++s) {
        const T* as = pa + s * m * k;
        const T* bs = pb + s * k * n;
        T* cs = pc + s * m * n;
        if (tiny) {
          loop_gemm(ta, tb, m, n, k, as, bs, bias != nullptr, cs);
        } else {
          blas_gemm(ta, tb, m, n, k, as, ta ? m : k, bs, tb ? k : n, bias ? T(1) : T(0), cs);
        }
      }
    };
    // Note [Small batched products]: OpenBLAS runs a product of at most
    // kBlasOneThreadMaxMnk multiply-adds on the calling thread alone (its
    // GEMM_MULTITHREAD_THRESHOLD), so a batch of them (attention's per-head scores and
    // weighted sums: 64 x 64 x 32) would leave the other cores idle. The batch is split over
    // tapegrad's pool instead, each matrix on one thread (a result does not depend on the
    // split). Larger products keep OpenBLAS's own threads, one product at a time.
    const double mnk = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    if (batch > 1 && mnk <= kBlasOneThreadMaxMnk)
      detail::parallel_for(batch, std::max<int64_t>(1, static_cast<int64_t>(kBatchChunkMnk / mnk)),
                           products);
    else
      products(0, batch);
  });
}

bool overlaps(const Tensor& x, const Tensor& y) {
  const auto* x0 = static_cast<const std::byte*>(x.raw_data());
  const auto* y0 = static_cast<const std::byte*>(y.raw_data());
  return x.nbytes() > 0 && y.nbytes() > 0 && x0 < y0 + y.nbytes() && y0 < x0 + x.nbytes();
}

// Rank-2 operands of one dtype whose inner extents agree: the product's extents, found
// without building a Shape (gemm_shape's general checks are a visible part of a small
// product's call). False sends the caller to gemm_shape, which finds the fault and words the
// message. (What the general checks cost: bench/README.md, "Measurements behind the Notes".)
bool plain_dims(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t& m, int64_t& n,
                int64_t& k) {
  if (a.dim() != 2 || b.dim() != 2 || a.dtype() != b.dtype() || !a.defined() || !b.defined())
    return false;
  const Shape &sa = a.shape(), &sb = b.shape();
  m = ta ? sa[1] : sa[0];
  k = ta ? sa[0] : sa[1];
  n = tb ? sb[0] : sb[1];
  return k == (tb ? sb[1] : sb[0]);
}

// The product of operands plain_dims accepted, into `out` of the right shape and dtype: an
// f32 product of more than kLoopGemmMaxFlops multiply-adds straight to BLAS (gemm_run's
// dtype dispatch and per-pointer checks are a visible part of a small product's call).
// The rest takes gemm_run: f64, tiny products (loops), and empty extents (gemm_run writes a
// k = 0 product's zeros; BLAS rejects its leading dimension of 0).
[[gnu::always_inline]] inline void plain_gemm(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                              int64_t m, int64_t n, int64_t k, Tensor& out) {
  if (a.dtype() == f32 && m > 0 && n > 0 && k > 0 && !tiny_product(m, n, k)) [[likely]]
    blas_gemm(ta, tb, m, n, k, static_cast<const float*>(a.raw_data()), ta ? m : k,
              static_cast<const float*>(b.raw_data()), tb ? k : n, 0.0f,
              static_cast<float*>(out.raw_data()));
  else
    gemm_run(a, ta, b, tb, nullptr, 1, m, n, k, out);
}

}  // namespace

GemmPlan plan_gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias,
                   const char* op) {
  GemmPlan p;
  p.ta = ta;
  p.tb = tb;
  if (!bias && plain_dims(a, ta, b, tb, p.m, p.n, p.k)) {
    // The common case without the general checks (see plain_dims).
    check_blas_extents(p.m, p.n, p.k);
    p.shape = Shape::matrix(p.m, p.n);
    p.plain = true;
    return p;
  }
  p.shape = gemm_shape(a, ta, b, tb, bias, op, p.batch, p.m, p.n, p.k);
  check_blas_extents(p.m, p.n, p.k);
  return p;
}

void run_gemm(const GemmPlan& p, const Tensor& a, const Tensor& b, const Tensor* bias,
              Tensor& out) {
  if (p.plain && !bias)
    plain_gemm(a, p.ta, b, p.tb, p.m, p.n, p.k, out);
  else
    gemm_run(a, p.ta, b, p.tb, bias, p.batch, p.m, p.n, p.k, out);
}

BroadcastGemmPlan plan_gemm_broadcast(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                      const Shape& out_batch, const char* op) {
  check_same_dtype(a, b, op);
  check_floating(a, op);
  const int ra = a.dim(), rb = b.dim();
  auto fail = [&](const std::string& why) {
    throw ShapeError(std::string(op) + ": shapes " + a.shape().str() + (ta ? "^T" : "") + " and " +
                     b.shape().str() + (tb ? "^T" : "") + " " + why);
  };
  if (ra < 2 || rb < 2) fail("need rank >= 2 operands");
  BroadcastGemmPlan p;
  p.ta = ta;
  p.tb = tb;
  p.m = ta ? a.shape()[ra - 1] : a.shape()[ra - 2];
  p.k = ta ? a.shape()[ra - 2] : a.shape()[ra - 1];
  const int64_t kb = tb ? b.shape()[rb - 1] : b.shape()[rb - 2];
  p.n = tb ? b.shape()[rb - 2] : b.shape()[rb - 1];
  if (p.k != kb)
    fail("do not match: inner extents " + std::to_string(p.k) + " and " + std::to_string(kb));
  const Shape ab(a.shape().begin(), a.shape().end() - 2),
      bb(b.shape().begin(), b.shape().end() - 2);
  Shape full;
  try {
    full = broadcast_shapes(broadcast_shapes(ab, bb, op), out_batch, op);
  } catch (const ShapeError&) {
    fail("have batch dims " + ab.str() + " and " + bb.str() + " that cannot be broadcast together");
  }
  if (full.rank() + 2 > Shape::kMaxRank)
    fail("give a result of rank above " + std::to_string(Shape::kMaxRank));
  check_blas_extents(p.m, p.n, p.k);
  p.shape = out_batch;
  p.shape.push_back(p.m);
  p.shape.push_back(p.n);
  p.full = full;
  broadcast_strides(ab, full, p.sa);
  broadcast_strides(bb, full, p.sb);
  broadcast_strides(out_batch, full, p.sc);
  p.reduces = out_batch.numel() != full.numel();
  return p;
}

void run_gemm_broadcast(const BroadcastGemmPlan& p, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch(a.dtype(), "matmul", [&]<class T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = out.data<T>();
    const int64_t m = p.m, n = p.n, k = p.k, count = p.full.numel();
    if (m == 0 || n == 0) return;
    if (p.reduces || k == 0)
      for (int64_t i = 0, e = out.numel(); i < e; ++i) pc[i] = T(0);
    if (k == 0 || count == 0) return;
    const bool tiny = tiny_product(m, n, k);
    const int r = p.full.rank();
    int64_t idx[Shape::kMaxRank] = {};
    int64_t oa = 0, ob = 0, oc = 0;  // batch offsets, in matrices
    for (int64_t s = 0; s < count; ++s) {
      const T* as = pa + oa * m * k;
      const T* bs = pb + ob * k * n;
      T* cs = pc + oc * m * n;
      if (tiny)
        loop_gemm(p.ta, p.tb, m, n, k, as, bs, p.reduces, cs);
      else
        blas_gemm(p.ta, p.tb, m, n, k, as, p.ta ? m : k, bs, p.tb ? k : n, p.reduces ? T(1) : T(0),
                  cs);
      for (int d = r - 1; d >= 0; --d) {  // odometer over the batch dims
        oa += p.sa[d];
        ob += p.sb[d];
        oc += p.sc[d];
        if (++idx[d] < p.full[d]) break;
        oa -= p.sa[d] * p.full[d];
        ob -= p.sb[d] * p.full[d];
        oc -= p.sc[d] * p.full[d];
        idx[d] = 0;
      }
    }
  });
}

Tensor gemm(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor* bias) {
  const GemmPlan p = plan_gemm(a, ta, b, tb, bias, "matmul");
  Tensor out = Tensor::empty(p.shape, a.dtype());
  run_gemm(p, a, b, bias, out);
  return out;
}

void gemm_into(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const GemmPlan p = plan_gemm(a, ta, b, tb, nullptr, "matmul_out");
  if (!out.defined() || out.shape() != p.shape || out.dtype() != a.dtype()) [[unlikely]]
    throw ShapeError("matmul_out: out must be a " + std::string(dtype_name(a.dtype())) + " " +
                     p.shape.str() + " tensor, got " +
                     (out.defined() ? std::string(dtype_name(out.dtype())) + " " + out.shape().str()
                                    : std::string("an undefined tensor")));
  if (overlaps(out, a) || overlaps(out, b)) [[unlikely]]
    throw ShapeError("matmul_out: out shares memory with an operand (BLAS cannot write in place)");
  out.bump_version();  // an in-place change (Note [Saved versions])
  run_gemm(p, a, b, nullptr, out);
}

void gemm_accumulate(Tensor& out, const Tensor& a, bool ta, const Tensor& b, bool tb) {
  const GemmPlan p = plan_gemm(a, ta, b, tb, nullptr, "matmul");
  if (!p.plain || out.shape() != p.shape || out.dtype() != a.dtype() || overlaps(out, a) ||
      overlaps(out, b)) [[unlikely]]
    throw ShapeError("matmul: cannot add a " + p.shape.str() + " product into a " +
                     std::string(dtype_name(out.dtype())) + " " + out.shape().str() + " tensor");
  out.bump_version();
  dispatch(a.dtype(), "matmul", [&]<class T>() {
    gemm_raw(ta, tb, p.m, p.n, p.k, a.data<T>(), ta ? p.m : p.k, b.data<T>(), tb ? p.k : p.n, T(1),
             out.data<T>(), p.n);
  });
}

namespace {
template <class T>
void gemm_raw_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                   const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // no product: C = beta C (beta 0 writes zeros, whatever C held)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  check_blas_extents(m, n, k);
  const auto ia = [](int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                ia(m), ia(n), ia(k), 1.0f, a, ia(lda), b, ia(ldb), beta, c, ia(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                ia(m), ia(n), ia(k), 1.0, a, ia(lda), b, ia(ldb), beta, c, ia(ldc));
}
}  // namespace

void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_raw_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}
void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
              const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_raw_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tg::kern

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace tg {

void matmul_out(Tensor& out, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  kern::gemm_into(out, a, transpose_a, b, transpose_b);
}

void set_blas_threads(int n) {
  if (n < 1) throw Error("set_blas_threads: need at least 1 thread, got " + std::to_string(n));
  openblas_set_num_threads(n);
}

int blas_threads() { return openblas_get_num_threads(); }

}  // namespace tg
