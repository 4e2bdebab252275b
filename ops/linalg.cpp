#include "ops/linalg.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "graph/engine_ops.hpp"
#include "graph/error.hpp"
#include "graph/kernels.hpp"
#include "ops/arith.hpp"
#include "ops/compare.hpp"
#include "ops/index.hpp"
#include "ops/math.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

// LAPACK and the BLAS triangular solve through their Fortran interface (column-major, the
// LP64 ints of OpenBLAS, which ships LAPACK). The trailing size_t are the hidden lengths of
// the character arguments.
extern "C" {
void spotrf_(const char*, const int*, float*, const int*, int*, size_t);
void dpotrf_(const char*, const int*, double*, const int*, int*, size_t);
void sgetrf_(const int*, const int*, float*, const int*, int*, int*);
void dgetrf_(const int*, const int*, double*, const int*, int*, int*);
void strsm_(const char*, const char*, const char*, const char*, const int*, const int*,
            const float*, const float*, const int*, float*, const int*, size_t, size_t, size_t,
            size_t);
void dtrsm_(const char*, const char*, const char*, const char*, const int*, const int*,
            const double*, const double*, const int*, double*, const int*, size_t, size_t, size_t,
            size_t);
void ssyevd_(const char*, const char*, const int*, float*, const int*, float*, float*, const int*,
             int*, const int*, int*, size_t, size_t);
void dsyevd_(const char*, const char*, const int*, double*, const int*, double*, double*,
             const int*, int*, const int*, int*, size_t, size_t);
void sgesdd_(const char*, const int*, const int*, float*, const int*, float*, float*, const int*,
             float*, const int*, float*, const int*, int*, int*, size_t);
void dgesdd_(const char*, const int*, const int*, double*, const int*, double*, double*, const int*,
             double*, const int*, double*, const int*, int*, int*, size_t);
void sgeqrf_(const int*, const int*, float*, const int*, float*, float*, const int*, int*);
void dgeqrf_(const int*, const int*, double*, const int*, double*, double*, const int*, int*);
void sorgqr_(const int*, const int*, const int*, float*, const int*, const float*, float*,
             const int*, int*);
void dorgqr_(const int*, const int*, const int*, double*, const int*, const double*, double*,
             const int*, int*);
}

namespace tg::linalg {

namespace {

// One overload set per routine, so the kernels are written once for float and double.
struct Lapack {
  static void potrf(char uplo, int n, float* a, int lda, int* info) {
    spotrf_(&uplo, &n, a, &lda, info, 1);
  }
  static void potrf(char uplo, int n, double* a, int lda, int* info) {
    dpotrf_(&uplo, &n, a, &lda, info, 1);
  }
  static void getrf(int n, float* a, int* piv, int* info) { sgetrf_(&n, &n, a, &n, piv, info); }
  static void getrf(int n, double* a, int* piv, int* info) { dgetrf_(&n, &n, a, &n, piv, info); }
  static void trsm(char side, char uplo, char ta, char diag, int m, int n, const float* a, int lda,
                   float* b, int ldb) {
    const float one = 1;
    strsm_(&side, &uplo, &ta, &diag, &m, &n, &one, a, &lda, b, &ldb, 1, 1, 1, 1);
  }
  static void trsm(char side, char uplo, char ta, char diag, int m, int n, const double* a, int lda,
                   double* b, int ldb) {
    const double one = 1;
    dtrsm_(&side, &uplo, &ta, &diag, &m, &n, &one, a, &lda, b, &ldb, 1, 1, 1, 1);
  }
  static void syevd(char uplo, int n, float* a, float* w, float* work, int lwork, int* iwork,
                    int liwork, int* info) {
    const char v = 'V';
    ssyevd_(&v, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, info, 1, 1);
  }
  static void syevd(char uplo, int n, double* a, double* w, double* work, int lwork, int* iwork,
                    int liwork, int* info) {
    const char v = 'V';
    dsyevd_(&v, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, info, 1, 1);
  }
  static void gesdd(char job, int m, int n, float* a, float* s, float* u, int ldu, float* vt,
                    int ldvt, float* work, int lwork, int* iwork, int* info) {
    sgesdd_(&job, &m, &n, a, &m, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info, 1);
  }
  static void gesdd(char job, int m, int n, double* a, double* s, double* u, int ldu, double* vt,
                    int ldvt, double* work, int lwork, int* iwork, int* info) {
    dgesdd_(&job, &m, &n, a, &m, s, u, &ldu, vt, &ldvt, work, &lwork, iwork, info, 1);
  }
  static void geqrf(int m, int n, float* a, float* tau, float* work, int lwork, int* info) {
    sgeqrf_(&m, &n, a, &m, tau, work, &lwork, info);
  }
  static void geqrf(int m, int n, double* a, double* tau, double* work, int lwork, int* info) {
    dgeqrf_(&m, &n, a, &m, tau, work, &lwork, info);
  }
  static void orgqr(int m, int n, int k, float* a, const float* tau, float* work, int lwork,
                    int* info) {
    sorgqr_(&m, &n, &k, a, &m, tau, work, &lwork, info);
  }
  static void orgqr(int m, int n, int k, double* a, const double* tau, double* work, int lwork,
                    int* info) {
    dorgqr_(&m, &n, &k, a, &m, tau, work, &lwork, info);
  }
};

// The size a LAPACK workspace query reports (in T), rounded up: f32 holds integers exactly
// only up to 2^24, and a LAPACK before 3.11 (which rounds up on its side, sroundup_lwork)
// may report a size rounded down, too small a buffer.
template <class T>
size_t workspace_size(T reported) {
  return static_cast<size_t>(
             std::ceil(static_cast<double>(reported) * (1.0 + std::numeric_limits<T>::epsilon()))) +
         1;
}

// ---- shapes, checks, errors -------------------------------------------------------------

Shape batch_of(const Shape& s) { return Shape(s.begin(), s.end() - 2); }

Shape with_matrix(const Shape& batch, int64_t rows, int64_t cols) {
  std::vector<int64_t> d(batch.begin(), batch.end());
  d.push_back(rows);
  d.push_back(cols);
  return Shape(d);
}

Shape with_last(const Shape& batch, int64_t n) {
  std::vector<int64_t> d(batch.begin(), batch.end());
  d.push_back(n);
  return Shape(d);
}

int64_t batch_count(const Shape& s) {
  int64_t b = 1;
  for (int i = 0; i + 2 < s.rank(); ++i) b *= s[i];
  return b;
}

// A floating tensor of rank >= 2 (a batch of matrices).
void check_matrix(const Var& x, const char* op, const char* what = "A") {
  kern::check_floating(x.value(), op);
  if (x.dim() < 2)
    throw ShapeError(std::string(op) + ": " + what + " must be a matrix or a batch of matrices " +
                     "[..., m, n], got shape " + x.shape().str());
}

void check_square(const Var& x, const char* op) {
  check_matrix(x, op);
  if (x.shape()[x.dim() - 1] != x.shape()[x.dim() - 2])
    throw ShapeError(std::string(op) + ": A must be a batch of square matrices, got shape " +
                     x.shape().str());
}

[[noreturn]] void throw_linalg(const char* op, const std::string& what, const char* routine,
                               int info, int64_t b, int64_t batches) {
  std::string msg =
      std::string(op) + ": " + what + " (LAPACK " + routine + " info = " + std::to_string(info);
  if (batches > 1) msg += ", batch entry " + std::to_string(b);
  throw LinalgError(msg + ")");
}

template <class T>
bool any_nan(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(p[i])) return true;
  return false;
}

// A NaN in the triangle of the n x n row-major matrix p that an op reads (the lower one with
// the diagonal, or the upper one): the other triangle is never read, as PyTorch's.
template <class T>
bool any_nan_in_triangle(const T* p, int64_t n, bool lower) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = lower ? 0 : i; j < (lower ? i + 1 : n); ++j)
      if (std::isnan(p[i * n + j])) return true;
  return false;
}

// The triangle eigh reads: "L" or "U", either case (as PyTorch); else tg::Error.
bool reads_lower(const std::string& UPLO) {
  if (UPLO.size() == 1 && (UPLO[0] == 'L' || UPLO[0] == 'l')) return true;
  if (UPLO.size() == 1 && (UPLO[0] == 'U' || UPLO[0] == 'u')) return false;
  throw Error("eigh: UPLO must be \"L\" or \"U\", got \"" + UPLO + "\"");
}

template <class T>
void fill_nan(T* p, int64_t n) {
  std::fill(p, p + n, std::numeric_limits<T>::quiet_NaN());
}

// dst (cols x rows, row-major) = src^T (src rows x cols, row-major).
template <class T>
void transpose_into(const T* src, T* dst, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
}

int as_int(int64_t v) { return static_cast<int>(v); }

// ---- differentiable helpers ----------------------------------------------------------

Var mT(const Var& x) { return transpose(x, -2, -1); }

Var eye_like(int64_t n, Dtype d) {
  Tensor e = zeros(Shape{n, n}, d);
  for (int64_t i = 0; i < n; ++i) dispatch(d, [&]<class T>() { e.data<T>()[i * n + i] = T(1); });
  return constant(e);
}

// [..., n] -> [..., n, n] with v on the diagonal.
Var diag_embed(const Var& v) {
  return unsqueeze(v, -1) * eye_like(v.shape()[v.dim() - 1], v.dtype());
}

// [...] -> [..., 1, 1], to scale a batch of matrices.
Var per_matrix(const Var& v) { return unsqueeze(unsqueeze(v, -1), -1); }

// A gradient nobody sent: the zeros a packed output's unused part gets (Note [Packed
// outputs]), which a formula skips, as PyTorch skips an undefined gradient.
bool is_zero_constant(const Var& g) {
  if (g.requires_grad()) return false;
  for (double v : g.value().to_vector())
    if (v != 0.0) return false;
  return true;
}

// Both operands expanded to their broadcast batch dims (the gradients are summed back by
// the engine).
std::pair<Var, Var> broadcast_batch(const Var& A, const Var& B, const char* op) {
  const Shape ba = batch_of(A.shape()), bb = batch_of(B.shape());
  if (ba == bb) return {A, B};
  const Shape b = broadcast_shapes(ba, bb, op);
  const Shape sa = with_matrix(b, A.shape()[A.dim() - 2], A.shape()[A.dim() - 1]);
  const Shape sb = with_matrix(b, B.shape()[B.dim() - 2], B.shape()[B.dim() - 1]);
  return {A.shape() == sa ? A : expand(A, sa), B.shape() == sb ? B : expand(B, sb)};
}

// Note [Packed outputs]
// eigh, svd and qr have several differentiable outputs from one LAPACK call. They are
// recorded as one node whose value is every output flattened and concatenated; each output
// is a slice of it, reshaped. The backward formula sees the outputs and their gradients
// unpacked the same way (ctx.output() sliced, so a second derivative runs through this very
// node), and an output the loss does not use sends zeros.
std::vector<Var> unpack(const Var& packed, const std::vector<Shape>& shapes) {
  std::vector<Var> out;
  int64_t off = 0;
  for (const Shape& s : shapes) {
    const int64_t n = s.numel();
    out.push_back(
        reshape(slice(packed, 0, off, off + n), std::vector<int64_t>(s.begin(), s.end())));
    off += n;
  }
  return out;
}

// Note [linalg JVP rules]
// The JVP rule of every tg::linalg op is its backward formula transposed: the formula is
// linear in its output gradient u and written with ops, so for a dummy u (zeros that want a
// gradient) J t = d<J^T u, t> / du, one reverse sweep over the formula's few ops (the
// double-vjp trick, local to the op), recorded when grad mode is on so reverse mode can
// differentiate the tangent. It costs about one backward of the op per JVP; the formulas
// themselves (their sources in each op's Note) are checked by gradcheck, gradgradcheck and
// against torch.linalg, and the rules by fwdcheck on every linalg row.
// When nothing differentiates the tangent (grad mode off), the formula reads the inputs and
// the output cut from their graph, so the sweep stays inside the formula (no pass over the
// graph the inputs came from, none of its hooks); otherwise the tangent must depend on
// them, and the sweep keeps their graph (retain_graph) for the backward still to come.
struct TransposeCtx {  // what a backward formula reads, inside a JVP rule
  const JvpCtx& c;
  std::vector<Var> ins;
  Var out;
  TransposeCtx(const JvpCtx& ctx, bool cut) : c(ctx) {
    for (size_t i = 0; i < c.num_inputs(); ++i)
      ins.push_back(cut ? c.input(i).detach() : c.input(i));
    out = cut ? c.output().detach() : c.output();
  }
  const Var& input(size_t i) const { return ins[i]; }
  const Shape& input_shape(size_t i) const { return c.input_shape(i); }
  const Var& output() const { return out; }
  size_t num_inputs() const { return c.num_inputs(); }
  bool needs_grad(size_t i) const { return c.has_tangent(i); }
};

template <class Bw>
Var jvp_by_transpose(const JvpCtx& c, const Bw& backward) {
  const bool create_graph = is_grad_enabled();
  const GradModeGuard on(true);
  const Var& y = c.output();
  const Var u(zeros(y.shape(), y.dtype()), true);
  const Grads g = backward(TransposeCtx(c, !create_graph), u);
  std::vector<Var> gs, ts;
  for (size_t i = 0; i < g.size(); ++i) {
    if (!c.has_tangent(i) || !g[i].defined() || !g[i].requires_grad()) continue;
    const Var& t = c.tangent(i);
    gs.push_back(g[i]);
    ts.push_back(t.shape() == g[i].shape() ? t : expand(t, g[i].shape()));
  }
  if (gs.empty()) return Var();
  return grad(gs, {u}, ts,
              {.retain_graph = true, .create_graph = create_graph, .allow_unused = true})[0];
}

// record with the backward formula `backward` (generic in its context) and its transpose as
// the JVP rule (Note [linalg JVP rules]).
template <class Bw>
Var record_linalg(const char* op, Tensor value, std::initializer_list<VarRef> inputs, Bw backward) {
  return record(op, std::move(value), inputs, backward,
                [backward](const JvpCtx& c) { return jvp_by_transpose(c, backward); });
}

template <class F>
std::vector<Var> record_packed(const char* op, std::vector<Tensor> outs, const Var& A, F formula) {
  if ((!detail::grad_enabled || !A.requires_grad()) &&
      !(detail::fw_enabled && detail::has_tangent(A))) {
    std::vector<Var> vs;
    for (Tensor& t : outs) vs.push_back(constant(std::move(t)));
    return vs;
  }
  std::vector<Shape> shapes;
  int64_t total = 0;
  for (const Tensor& t : outs) {
    shapes.push_back(t.shape());
    total += t.numel();
  }
  Tensor packed = Tensor::empty(Shape{total}, A.dtype());
  size_t off = 0;
  for (const Tensor& t : outs) {
    if (t.nbytes())
      std::memcpy(static_cast<char*>(packed.raw_data()) + off, t.raw_data(), t.nbytes());
    off += t.nbytes();
  }
  const Var p =
      record_linalg(op, std::move(packed), {A}, [shapes, formula](const auto& ctx, const Var& g) {
        return Grads{formula(ctx, unpack(ctx.output(), shapes), unpack(g, shapes))};
      });
  return unpack(p, shapes);
}

// ---- triangular solve ----------------------------------------------------------------

struct Tri {
  bool upper;  // A's stored triangle
  bool left;   // op(A) X = B, else X op(A) = B
  bool unit;   // A's diagonal taken as ones
  bool trans;  // op(A) = A^T (no transposed copy is made)
};

// X with op(A) X = B (or X op(A) = B) for A [b, n, n] and B of the same batch b. A row-major
// buffer is the column-major transpose, so LAPACK sees A^T, X^T and B^T: the side flips
// and the triangle flips.
Tensor tri_solve_kernel(const Tensor& A, const Tensor& B, Tri o) {
  Tensor X = B.clone();
  const int64_t n = A.shape()[A.dim() - 1], r = B.shape()[B.dim() - 2], c = B.shape()[B.dim() - 1];
  const int64_t batches = batch_count(A.shape());
  if (X.numel() == 0 || n == 0) return X;
  dispatch(A.dtype(), "solve_triangular", [&]<class T>() {
    const T* a = A.data<T>();
    T* x = X.data<T>();
    const char uplo = o.upper ? 'L' : 'U', ta = o.trans ? 'T' : 'N', diag = o.unit ? 'U' : 'N';
    for (int64_t b = 0; b < batches; ++b) {
      const T* ab = a + b * n * n;
      T* xb = x + b * r * c;
      if (o.left)  // X^T op(A)^T = B^T: X^T is c x r column-major
        Lapack::trsm('R', uplo, ta, diag, as_int(c), as_int(n), ab, as_int(n), xb, as_int(c));
      else  // op(A)^T X^T = B^T
        Lapack::trsm('L', uplo, ta, diag, as_int(n), as_int(r), ab, as_int(n), xb, as_int(n));
    }
  });
  return X;
}

// Note [solve_triangular backward]
// For op(A) X = B: gB = op(A)^{-T} gX (the same solve with op transposed) and
// g op(A) = -gB X^T; for X op(A) = B: gB = gX op(A)^{-T} and g op(A) = -X^T gB (Giles 2008,
// "An extended collection of matrix derivative results", sec. 2.2.3; PyTorch's
// linalg_solve_triangular_backward). gA is the transpose when op transposes, restricted
// to the triangle A's values came from (strictly, when unitriangular).
Var tri_solve(const Var& A, const Var& B, Tri o) {
  return record_linalg(
      "solve_triangular", tri_solve_kernel(A.value(), B.value(), o), {A, B},
      [o](const auto& ctx, const Var& g) {
        const Var& X = ctx.output();
        const Var gB = tri_solve(ctx.input(0), g, Tri{o.upper, o.left, o.unit, !o.trans});
        Var gA;
        if (ctx.needs_grad(0)) {
          const Var G = o.left
                            ? (o.trans ? matmul(X, gB, false, true) : matmul(gB, X, false, true))
                            : (o.trans ? matmul(gB, X, true, false) : matmul(X, gB, true, false));
          gA = o.upper ? triu(-G, o.unit ? 1 : 0) : tril(-G, o.unit ? -1 : 0);
        }
        return Grads{gA, ctx.needs_grad(1) ? gB : Var()};
      });
}

// ---- LU: solve, inv, det ---------------------------------------------------------------

// The LU factors of every matrix of a batch (of A^T, which is what the row-major buffer is
// to LAPACK), kept by solve's backward to solve with A^T without factoring again.
struct LuFactors {
  Tensor lu;
  std::vector<int> piv;
  int64_t n = 0;
};

// Factors A [b, n, n]. A matrix holding a NaN gets NaN factors (every solve with it is NaN);
// a singular one throws LinalgError naming `op`, unless `info` collects the infos.
std::shared_ptr<const LuFactors> lu_factor(const Tensor& A, const char* op,
                                           std::vector<int>* infos = nullptr) {
  auto f = std::make_shared<LuFactors>();
  f->n = A.shape()[A.dim() - 1];
  f->lu = A.clone();
  const int64_t n = f->n, batches = batch_count(A.shape());
  f->piv.assign(static_cast<size_t>(batches * n), 0);
  if (infos) infos->assign(static_cast<size_t>(batches), 0);
  if (n == 0) return f;
  dispatch(A.dtype(), op, [&]<class T>() {
    for (int64_t b = 0; b < batches; ++b) {
      T* a = f->lu.data<T>() + b * n * n;
      int* piv = f->piv.data() + b * n;
      if (any_nan(a, n * n)) {
        fill_nan(a, n * n);
        for (int64_t i = 0; i < n; ++i) piv[i] = as_int(i + 1);
        continue;
      }
      int info = 0;
      Lapack::getrf(as_int(n), a, piv, &info);
      if (info < 0) throw_linalg(op, "bad argument", "getrf", info, b, batches);
      if (info > 0 && !infos)
        throw_linalg(op,
                     "the matrix is singular (U[" + std::to_string(info - 1) + ", " +
                         std::to_string(info - 1) + "] of its LU factorization is zero)",
                     "getrf", info, b, batches);
      if (infos) (*infos)[static_cast<size_t>(b)] = info;
    }
  });
  return f;
}

// Swaps rows i and piv[i] - 1 of the row-major rows x n matrix x, for i in [first, last)
// stepping by `step` (+1 or -1).
template <class T>
void swap_rows(T* x, int64_t cols, const int* piv, int64_t first, int64_t last, int64_t step) {
  for (int64_t i = first; i != last; i += step) {
    const int64_t p = piv[i] - 1;
    if (p != i) std::swap_ranges(x + i * cols, x + (i + 1) * cols, x + p * cols);
  }
}

// X with op(A) X = B, B [b, n, k], from A's factors. LAPACK's factors are of M = A^T =
// P L U (the row-major A is the column-major A^T), and the row-major X is the column-major
// X^T, so both systems are right-side solves on X^T with no transposed copy:
//   A X = B:   X^T P L U = B^T:  X^T = B^T U^{-1} L^{-1} P^T (rows of X swapped last)
//   A^T X = B: X^T U^T L^T = B^T P (rows of B swapped first), then L^{-T}, U^{-T}.
Tensor lu_solve_kernel(const LuFactors& f, const Tensor& B, bool trans) {
  Tensor X = B.clone();
  const int64_t n = f.n, k = B.shape()[B.dim() - 1], batches = batch_count(B.shape());
  if (X.numel() == 0) return X;
  dispatch(B.dtype(), "solve", [&]<class T>() {
    for (int64_t b = 0; b < batches; ++b) {
      T* x = X.data<T>() + b * n * k;
      const T* lu = f.lu.data<T>() + b * n * n;
      const int* piv = f.piv.data() + b * n;
      const int ni = as_int(n), ki = as_int(k);
      if (!trans) {
        Lapack::trsm('R', 'U', 'N', 'N', ki, ni, lu, ni, x, ki);
        Lapack::trsm('R', 'L', 'N', 'U', ki, ni, lu, ni, x, ki);
        swap_rows(x, k, piv, n - 1, -1, -1);
      } else {
        swap_rows(x, k, piv, 0, n, 1);
        Lapack::trsm('R', 'L', 'T', 'U', ki, ni, lu, ni, x, ki);
        Lapack::trsm('R', 'U', 'T', 'N', ki, ni, lu, ni, x, ki);
      }
    }
  });
  return X;
}

// Note [solve backward]
// X = op(A)^{-1} B: gB = op(A)^{-T} gX, g op(A) = -gB X^T (Giles 2008, sec. 2.2.3; PyTorch's
// linalg_solve_backward). gB reuses the forward's LU factors; the solve it records is this
// op again (op transposed), so every derivative order is a solve with the same factors.
Var lu_solve(const Var& A, const Var& B, std::shared_ptr<const LuFactors> f, bool trans) {
  Tensor X = lu_solve_kernel(*f, B.value(), trans);
  return record_linalg("solve", std::move(X), {A, B},
                       [f = std::move(f), trans](const auto& ctx, const Var& g) {
                         const Var gB = lu_solve(ctx.input(0), g, f, !trans);
                         Var gA;
                         if (ctx.needs_grad(0)) {
                           const Var& X = ctx.output();
                           gA = -(trans ? matmul(X, gB, false, true) : matmul(gB, X, false, true));
                         }
                         return Grads{gA, ctx.needs_grad(1) ? gB : Var()};
                       });
}

// What det and slogdet read from the LU factors of each matrix of A [b, n, n]: det itself,
// the product of U's diagonal times the permutation's sign (Note [det backward]), its sign (-1, 0,
// 1) and log|det|. A singular matrix gives det +-0, sign 0 and -inf; a NaN one NaN in all three.
struct LuDet {
  Tensor det, sign, logabs;
  Tensor
      singular;  // bool, batch shape: a pivot at most n eps times the largest (Note [det backward])
};

LuDet lu_det(const Tensor& A, const char* op) {
  std::vector<int> infos;
  const auto f = lu_factor(A, op, &infos);
  const Shape bs = batch_of(A.shape());
  LuDet r{Tensor::empty(bs, A.dtype()), Tensor::empty(bs, A.dtype()), Tensor::empty(bs, A.dtype()),
          Tensor::empty(bs, boolean)};
  const int64_t n = f->n, batches = r.sign.numel();
  dispatch(A.dtype(), [&]<class T>() {
    for (int64_t b = 0; b < batches; ++b) {
      const T* a = f->lu.data<T>() + b * n * n;
      const int* piv = f->piv.data() + b * n;
      T s = 1, l = 0, d = 1, lo = std::numeric_limits<T>::infinity(), hi = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T u = a[i * n + i];
        if (piv[i] != i + 1) s = -s, d = -d;
        if (u < 0) s = -s;
        l += std::log(std::abs(u));
        d *= u;
        lo = std::min(lo, std::abs(u));
        hi = std::max(hi, std::abs(u));
      }
      r.singular.data<bool>()[b] =
          n > 0 && lo <= static_cast<T>(n) * std::numeric_limits<T>::epsilon() * hi;
      if (infos[static_cast<size_t>(b)] > 0) s = 0, l = -std::numeric_limits<T>::infinity();
      if (std::isnan(l)) s = l;
      r.det.data<T>()[b] = d;
      r.sign.data<T>()[b] = s;
      r.logabs.data<T>()[b] = l;
    }
  });
  return r;
}

Tensor eye_batch(const Shape& shape, Dtype d) {
  Tensor e = zeros(shape, d);
  const int64_t n = shape[shape.rank() - 1], batches = batch_count(shape);
  dispatch(d, [&]<class T>() {
    for (int64_t b = 0; b < batches; ++b)
      for (int64_t i = 0; i < n; ++i) e.data<T>()[(b * n + i) * n + i] = T(1);
  });
  return e;
}

}  // namespace

Var solve_triangular(const Var& A, const Var& B, bool upper, bool left, bool unitriangular) {
  check_square(A, "solve_triangular");
  check_matrix(B, "solve_triangular", "B");
  kern::check_same_dtype(A.value(), B.value(), "solve_triangular");
  const int64_t n = A.shape()[A.dim() - 1];
  const int64_t bn = left ? B.shape()[B.dim() - 2] : B.shape()[B.dim() - 1];
  if (bn != n)
    throw ShapeError("solve_triangular: A " + A.shape().str() + " and B " + B.shape().str() +
                     " do not match (left = " + (left ? "true" : "false") + ")");
  const auto [a, b] = broadcast_batch(A, B, "solve_triangular");
  return tri_solve(a, b, Tri{upper, left, unitriangular, false});
}

Var solve(const Var& A, const Var& B, bool left) {
  check_square(A, "solve");
  kern::check_floating(B.value(), "solve");
  kern::check_same_dtype(A.value(), B.value(), "solve");
  const Shape& sa = A.shape();
  const int64_t n = sa[sa.rank() - 1];
  // torch.linalg.solve's vector rule.
  const bool vector = B.dim() == 1 || (B.dim() == A.dim() - 1 &&
                                       std::equal(B.shape().begin(), B.shape().end(), sa.begin()));
  const Var Bm = vector ? unsqueeze(B, -1) : B;
  if (Bm.dim() < 2 || Bm.shape()[Bm.dim() - (left || vector ? 2 : 1)] != n)
    throw ShapeError("solve: A " + sa.str() + " and B " + B.shape().str() +
                     " do not match (left = " + (left ? "true" : "false") + ")");
  const auto [a, b] = broadcast_batch(A, Bm, "solve");
  const auto f = lu_factor(a.value(), "solve");
  Var X;
  if (left || vector)
    X = lu_solve(a, b, f, !left);
  else
    X = mT(lu_solve(a, mT(b), f, true));
  return vector ? squeeze(X, -1) : X;
}

Var inv(const Var& A) {
  check_square(A, "inv");
  const auto f = lu_factor(A.value(), "inv");
  return lu_solve(A, constant(eye_batch(A.shape(), A.dtype())), f, false);
}

// Note [det backward]
// d det(A) = det(A) tr(A^{-1} dA), so gA = g det(A) A^{-T}, and for log|det A| gA = g A^{-T}
// (Giles 2008, sec. 2.1.4; PyTorch's linalg_det_backward / slogdet_backward). A^{-T} is
// inv(A) transposed, a differentiable op. When a matrix of the batch is singular (its det
// exactly 0), det's gradient is the transposed adjugate instead, from the SVD A = U S Vh:
// adj(A)^T = det(U) det(Vh) U diag(prod_{j != i} S_j) Vh, as PyTorch does; the products of
// the others are a prod over S with ones on the diagonal, so they hold with zeros too.
// In a batch of both, each matrix takes its own route, as PyTorch (the SVD route's second
// derivative is infinite at repeated singular values, the identity's). Where PyTorch takes
// the adjugate route only at det exactly 0, here a matrix is singular when a pivot of its LU
// factorization is at most n eps times the largest: a matrix singular in exact arithmetic
// often gets a pivot of 1e-17 rather than 0, and there A^{-T} is rounding noise times
// 1e17 (the second derivative through it is off by orders of magnitude), while the
// adjugate from the SVD stays accurate. slogdet's gradient at a singular A is infinite: its
// backward throws inv's LinalgError.
// det's value is the product of the LU factorization's pivots times the permutation's sign,
// as torch.linalg.det, not sign * exp(logabsdet): the product's relative error is about
// n eps, the exponential's |log det| eps (690 eps at 1e300), the same magnitude as n eps
// only for n in the hundreds. Like torch's, the product overflows (underflows) where a
// partial product does, even when det itself is in range: det(diag(1e200, 1e200, 1e-200,
// 1e-200)) is inf; slogdet is the function for such matrices.
namespace {
Var det_grad_adjugate(const Var& A, const Var& g) {
  const Svd f = svd(A, false);
  Var alpha;
  {
    NoGradGuard no_grad;  // the signs det(U) det(Vh) are locally constant
    alpha = constant((det(f.U) * det(f.Vh)).value());
  }
  const Var I = eye_like(A.shape()[A.dim() - 1], A.dtype());
  const Var others = prod(unsqueeze(f.S, -2) * (1.0 - I) + I, -1);
  return per_matrix(g * alpha) * matmul(f.U * unsqueeze(others, -2), f.Vh);
}
}  // namespace

Var det(const Var& A) {
  check_square(A, "det");
  LuDet r = lu_det(A.value(), "det");
  const Tensor& mask = r.singular;
  const auto count = std::count(mask.data<bool>(), mask.data<bool>() + mask.numel(), true);
  return record_linalg(
      "det", std::move(r.det), {A}, [mask = r.singular, count](const auto& ctx, const Var& g) {
        const Var &D = ctx.output(), &A = ctx.input(0);
        if (count == 0) return Grads{per_matrix(g * D) * mT(inv(A))};
        if (count == mask.numel()) return Grads{det_grad_adjugate(A, g)};
        // A batch of both: each route on its own matrices, the others replaced by constants
        // (the identity for inv, distinct singular values for the SVD's backward), and the
        // results picked matrix by matrix.
        const Var m = per_matrix(constant(mask));
        const int64_t n = A.shape()[A.dim() - 1];
        Tensor distinct = zeros(Shape{n, n}, A.dtype());
        dispatch(A.dtype(), [&]<class T>() {
          for (int64_t i = 0; i < n; ++i) distinct.data<T>()[i * n + i] = T(i + 1);
        });
        const Var adjugate = det_grad_adjugate(where(m, A, constant(std::move(distinct))), g);
        const Var invertible = per_matrix(g * D) * mT(inv(where(m, eye_like(n, A.dtype()), A)));
        return Grads{where(m, adjugate, invertible)};
      });
}

SignLogAbsDet slogdet(const Var& A) {
  check_square(A, "slogdet");
  LuDet r = lu_det(A.value(), "slogdet");
  Var l = record_linalg("slogdet", std::move(r.logabs), {A}, [](const auto& ctx, const Var& g) {
    return Grads{per_matrix(g) * mT(inv(ctx.input(0)))};
  });
  return {constant(std::move(r.sign)), std::move(l)};
}

// ---- Cholesky -----------------------------------------------------------------------------

// Note [cholesky backward]
// With A = L L^T and Phi(X) = tril(X) with its diagonal halved, gA = L^{-T} Phi(L^T gL) L^{-1},
// symmetrized: gA = L^{-T} P L^{-1} with P = (T + tril(T, -1)^T) / 2, T = tril(L^T gL)
// (Murray 2016, "Differentiation of the Cholesky decomposition", eq. 10; PyTorch's
// cholesky_backward). The two triangular solves are solve_triangular ops on L itself (the
// transposed one by a flag), so the formula is differentiable again. For upper = true,
// U = L^T.
Var cholesky(const Var& A, bool upper) {
  check_square(A, "cholesky");
  const Tensor& a = A.value();
  Tensor out = a.clone();
  const int64_t n = a.shape()[a.dim() - 1], batches = batch_count(a.shape());
  if (n > 0)
    dispatch(a.dtype(), "cholesky", [&]<class T>() {
      for (int64_t b = 0; b < batches; ++b) {
        T* m = out.data<T>() + b * n * n;
        if (any_nan_in_triangle(m, n, !upper)) {
          fill_nan(m, n * n);
          continue;
        }
        int info = 0;
        // Row-major lower is column-major upper.
        Lapack::potrf(upper ? 'L' : 'U', as_int(n), m, as_int(n), &info);
        if (info > 0)
          throw_linalg("cholesky",
                       "the matrix is not positive-definite (its leading minor of order " +
                           std::to_string(info) + " is not positive)",
                       "potrf", info, b, batches);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            if (upper ? j < i : j > i) m[i * n + j] = T(0);
      }
    });
  return record_linalg("cholesky", std::move(out), {A}, [upper](const auto& ctx, const Var& g) {
    const Var& L = ctx.output();  // U when upper
    const Var T = tril(upper ? matmul(L, g, false, true) : matmul(L, g, true, false));
    const Var P = (T + mT(tril(T, -1))) * 0.5;
    const Var Y = tri_solve(L, P, Tri{upper, true, false, !upper});  // L^{-T} P
    return Grads{tri_solve(L, Y, Tri{upper, false, false, upper})};  // Y L^{-1}
  });
}

// ---- eigh -----------------------------------------------------------------------------------

// Note [eigh backward]
// With A = Q diag(L) Q^T: gA = Q (diag(gL) + sym(Q^T gQ) / E) Q^T, where the skew part of
// Q^T gQ, (X - X^T) / 2, is divided elementwise by E_ij = L_j - L_i (diagonal 1)
// (Giles 2008, sec. 3.1; Seeger et al. 2017, "Auto-differentiating linear algebra";
// PyTorch's linalg_eig_backward, Hermitian case). Two equal eigenvalues make E_ij = 0 and
// the eigenvector gradient inf/NaN, as in PyTorch: the eigenvectors of a repeated
// eigenvalue are not unique. The formula is right only for a loss that does not depend on
// each eigenvector's sign (gauge invariance: Q and Q diag(+-1) are equally valid); a loss
// of the eigenvalues alone has a finite gradient (Q diag(gL) Q^T) for repeated ones too.
Eigh eigh(const Var& A, const std::string& UPLO) {
  check_square(A, "eigh");
  const bool lower = reads_lower(UPLO);
  const Tensor& a = A.value();
  const int64_t n = a.shape()[a.dim() - 1], batches = batch_count(a.shape());
  const Shape bs = batch_of(a.shape());
  Tensor w = Tensor::empty(with_last(bs, n), a.dtype());
  Tensor Q = Tensor::empty(a.shape(), a.dtype());
  if (n > 0)
    dispatch(a.dtype(), "eigh", [&]<class T>() {
      std::vector<T> m(static_cast<size_t>(n * n));
      T wq;
      int iwq, info = 0;
      Lapack::syevd(lower ? 'U' : 'L', as_int(n), m.data(), &wq, &wq, -1, &iwq, -1, &info);
      std::vector<T> work(workspace_size(wq));
      std::vector<int> iwork(static_cast<size_t>(std::max(iwq, 1)));
      for (int64_t b = 0; b < batches; ++b) {
        const T* ab = a.data<T>() + b * n * n;
        T* wb = w.data<T>() + b * n;
        T* qb = Q.data<T>() + b * n * n;
        if (any_nan_in_triangle(ab, n, lower)) {
          fill_nan(wb, n);
          fill_nan(qb, n * n);
          continue;
        }
        std::copy(ab, ab + n * n, m.data());
        Lapack::syevd(lower ? 'U' : 'L', as_int(n), m.data(), wb, work.data(),
                      as_int(static_cast<int64_t>(work.size())), iwork.data(),
                      as_int(static_cast<int64_t>(iwork.size())), &info);
        if (info != 0)
          throw_linalg("eigh", "the eigenvalue iteration did not converge", "syevd", info, b,
                       batches);
        transpose_into(m.data(), qb, n, n);  // column-major eigenvectors: the columns of Q
      }
    });
  auto outs = record_packed("eigh", {std::move(w), std::move(Q)}, A,
                            [](const auto&, const std::vector<Var>& o, const std::vector<Var>& g) {
                              const Var &L = o[0], &V = o[1];
                              const Var& gw = g[0];
                              const Var& gV = g[1];
                              Var inner = diag_embed(gw);
                              if (!is_zero_constant(gV)) {
                                const Var VhgV = matmul(V, gV, true, false);
                                const Var skew = (VhgV - mT(VhgV)) * 0.5;
                                const int64_t n = L.shape()[L.dim() - 1];
                                const Var E =
                                    unsqueeze(L, -2) - unsqueeze(L, -1) + eye_like(n, L.dtype());
                                inner = inner + skew / E;
                              }
                              return matmul(matmul(V, inner), V, false, true);
                            });
  return {outs[0], outs[1]};
}

Var eigvalsh(const Var& A, const std::string& UPLO) { return eigh(A, UPLO).eigenvalues; }

// ---- SVD ----------------------------------------------------------------------------------

namespace {

struct SvdValues {
  Tensor U, S, Vh;
};

// gesdd on every matrix of A [b, m, n]. LAPACK sees the row-major A as A^T (n x m) =
// U' S V'^T, so A = V' S U'^T: its column-major V'^T is A's U read row-major, and its U' is
// A's Vh, with no transposed copy. job 'N' computes S alone, 'S' the reduced and 'A' the
// full factors.
SvdValues svd_kernel(const Tensor& a, char job) {
  const int64_t m = a.shape()[a.dim() - 2], n = a.shape()[a.dim() - 1], k = std::min(m, n);
  const int64_t batches = batch_count(a.shape());
  const Shape bs = batch_of(a.shape());
  const int64_t ucols = job == 'A' ? m : k, vrows = job == 'A' ? n : k;
  SvdValues r;
  r.S = Tensor::empty(with_last(bs, k), a.dtype());
  if (job != 'N') {
    r.U = zeros(with_matrix(bs, m, ucols), a.dtype());
    r.Vh = zeros(with_matrix(bs, vrows, n), a.dtype());
  }
  if (batches == 0) return r;
  dispatch(a.dtype(), "svd", [&]<class T>() {
    if (k == 0) {  // an empty matrix: full factors are identities
      if (job == 'A') {
        r.U = eye_batch(r.U.shape(), a.dtype());
        r.Vh = eye_batch(r.Vh.shape(), a.dtype());
      }
      return;
    }
    std::vector<T> m_(static_cast<size_t>(m * n));
    std::vector<int> iwork(static_cast<size_t>(8 * k));
    T dummy = 0, wq = 0;
    int info = 0;
    const int ldu = as_int(n), ldvt = as_int(job == 'A' ? m : k);
    Lapack::gesdd(job, as_int(n), as_int(m), m_.data(), &dummy, &dummy, ldu, &dummy, ldvt, &wq, -1,
                  iwork.data(), &info);
    std::vector<T> work(workspace_size(wq));
    for (int64_t b = 0; b < batches; ++b) {
      const T* ab = a.data<T>() + b * m * n;
      T* sb = r.S.data<T>() + b * k;
      T* ub = job == 'N' ? &dummy : r.U.data<T>() + b * m * ucols;
      T* vb = job == 'N' ? &dummy : r.Vh.data<T>() + b * vrows * n;
      if (any_nan(ab, m * n)) {
        fill_nan(sb, k);
        if (job != 'N') fill_nan(ub, m * ucols), fill_nan(vb, vrows * n);
        continue;
      }
      std::copy(ab, ab + m * n, m_.data());
      Lapack::gesdd(job, as_int(n), as_int(m), m_.data(), sb, vb, job == 'N' ? 1 : ldu, ub,
                    job == 'N' ? 1 : ldvt, work.data(), as_int(static_cast<int64_t>(work.size())),
                    iwork.data(), &info);
      if (info != 0)
        throw_linalg("svd", "the singular value iteration did not converge", "gesdd", info, b,
                     batches);
    }
  });
  return r;
}

// Note [svd backward]
// With A = U diag(S) Vh (reduced, k = min(m, n)), E_ij = S_j^2 - S_i^2 (diagonal 1) and
// skew(X) = X - X^T:
//   gA = U [(skew(U^T gU) S + S skew(V^T gV)) / E + diag(gS)] Vh
//        + (I - U U^T) gU S^{-1} Vh        (m > k)
//        + U S^{-1} gV^T (I - V V^T)       (n > k)
// (Townsend 2016, "Differentiating the singular value decomposition"; PyTorch's
// svd_backward). Repeated singular values make E_ij = 0 and the singular-vector gradient
// inf/NaN, and a zero singular value makes S^{-1} infinite, as in PyTorch; a loss of the
// singular values alone has the finite gradient U diag(gS) Vh. The formula is right only for
// a loss that does not depend on the signs of the singular vector pairs (u_i, v_i) (gauge
// invariance).
Var svd_grad(const std::vector<Var>& o, const std::vector<Var>& g) {
  const Var &U = o[0], &S = o[1], &Vh = o[2], &gU = g[0], &gS = g[1], &gVh = g[2];
  const int64_t m = U.shape()[U.dim() - 2], n = Vh.shape()[Vh.dim() - 1],
                k = S.shape()[S.dim() - 1];
  if (is_zero_constant(gU) && is_zero_constant(gVh)) return matmul(U * unsqueeze(gS, -2), Vh);
  const Var UhgU0 = matmul(U, gU, true, false), VhgV0 = matmul(Vh, gVh, false, true);
  const Var UhgU = UhgU0 - mT(UhgU0), VhgV = VhgV0 - mT(VhgV0);
  const Var S2 = S * S;
  const Var E = unsqueeze(S2, -2) - unsqueeze(S2, -1) + eye_like(k, S.dtype());
  const Var inner = (UhgU * unsqueeze(S, -2) + unsqueeze(S, -1) * VhgV) / E + diag_embed(gS);
  if (m > k) {
    const Var gUSinv = gU / unsqueeze(S, -2);
    const Var G = matmul(U, inner) + gUSinv - matmul(U, matmul(U, gUSinv, true, false));
    return matmul(G, Vh);
  }
  if (n > k) {
    const Var gVSinvT = gVh / unsqueeze(S, -1);  // (gV S^{-1})^T
    const Var G = matmul(inner, Vh) + gVSinvT - matmul(matmul(gVSinvT, Vh, false, true), Vh);
    return matmul(U, G);
  }
  return matmul(U, matmul(inner, Vh));
}

}  // namespace

Svd svd(const Var& A, bool full_matrices) {
  check_matrix(A, "svd");
  const int64_t m = A.shape()[A.dim() - 2], n = A.shape()[A.dim() - 1];
  SvdValues r = svd_kernel(A.value(), full_matrices ? 'A' : 'S');
  const int64_t k = std::min(m, n);
  const bool full_rect = full_matrices && m != n;
  auto outs = record_packed(
      "svd", {std::move(r.U), std::move(r.S), std::move(r.Vh)}, A,
      [full_rect, k](const auto&, const std::vector<Var>& o, const std::vector<Var>& g) {
        if (!full_rect) return svd_grad(o, g);
        // As PyTorch, the gradients of the full factors' extra columns of U (rows of Vh) are
        // ignored: those vectors are any basis of the complement, not functions of A.
        const auto cols = [k](const Var& x) { return slice(x, -1, 0, k); };
        const auto rows = [k](const Var& x) { return slice(x, -2, 0, k); };
        return svd_grad({cols(o[0]), o[1], rows(o[2])}, {cols(g[0]), g[1], rows(g[2])});
      });
  return {outs[0], outs[1], outs[2]};
}

Var svdvals(const Var& A) {
  check_matrix(A, "svdvals");
  if ((detail::grad_enabled && A.requires_grad()) || (detail::fw_enabled && detail::has_tangent(A)))
    return svd(A, false).S;  // (a tangent goes through svd's rule)
  return constant(svd_kernel(A.value(), 'N').S);
}

// ---- QR -----------------------------------------------------------------------------------

// Note [qr backward]
// For m >= n (reduced), with M = gR R^T - Q^T gQ and copyltu(X) = triu(X) + triu(X, 1)^T:
//   gA = (gQ + Q copyltu(M)) R^{-T}
// (Walter & Lehmann 2018, "Algorithmic differentiation of linear algebra functions with
// application in optimum experimental design"; Seeger et al. 2017; PyTorch's
// linalg_qr_backward). R^{-T} is a solve_triangular with R, so the formula differentiates
// again. For m < n, A = [U | V] with U square: Q R = Q [X | Y] where (Q, X) = qr(U) and
// Y = Q^T V, so gV = Q gY and U's formula takes gQ + V gY^T with V = Q Y (PyTorch's wide
// case; Liao et al. 2019, "Differentiable programming tensor networks"). As PyTorch, mode
// "complete" with m > n has no gradient (Q's extra columns are not unique), and neither has
// mode "r".
QR qr(const Var& A, const std::string& mode) {
  check_matrix(A, "qr");
  if (mode != "reduced" && mode != "complete" && mode != "r")
    throw Error("qr: mode must be \"reduced\", \"complete\" or \"r\", got \"" + mode + "\"");
  const Tensor& a = A.value();
  const int64_t m = a.shape()[a.dim() - 2], n = a.shape()[a.dim() - 1], k = std::min(m, n);
  const int64_t batches = batch_count(a.shape());
  const Shape bs = batch_of(a.shape());
  const int64_t qc = mode == "complete" ? m : k, rr = mode == "complete" ? m : k;
  Tensor Q =
      mode == "r" ? Tensor::empty(Shape{0}, a.dtype()) : zeros(with_matrix(bs, m, qc), a.dtype());
  Tensor R = zeros(with_matrix(bs, rr, n), a.dtype());
  if (batches > 0 && m > 0)
    dispatch(a.dtype(), "qr", [&]<class T>() {
      const int64_t cols = std::max(n, qc);
      std::vector<T> buf(static_cast<size_t>(m * cols)),
          tau(static_cast<size_t>(std::max<int64_t>(k, 1)));
      T wq = 0, wq2 = 0;
      int info = 0;
      if (n > 0) Lapack::geqrf(as_int(m), as_int(n), buf.data(), tau.data(), &wq, -1, &info);
      if (qc > 0)
        Lapack::orgqr(as_int(m), as_int(qc), as_int(k), buf.data(), tau.data(), &wq2, -1, &info);
      std::vector<T> work(workspace_size(std::max(wq, wq2)));
      const int lwork = as_int(static_cast<int64_t>(work.size()));
      for (int64_t b = 0; b < batches; ++b) {
        const T* ab = a.data<T>() + b * m * n;
        T* qb = mode == "r" ? nullptr : Q.data<T>() + b * m * qc;
        T* rb = R.data<T>() + b * rr * n;
        if (any_nan(ab, m * n)) {
          fill_nan(rb, rr * n);
          if (qb) fill_nan(qb, m * qc);
          continue;
        }
        std::fill(buf.begin(), buf.end(), T(0));
        transpose_into(ab, buf.data(), m, n);  // column-major A
        if (n > 0)
          Lapack::geqrf(as_int(m), as_int(n), buf.data(), tau.data(), work.data(), lwork, &info);
        for (int64_t i = 0; i < rr; ++i)
          for (int64_t j = i; j < n; ++j) rb[i * n + j] = buf[static_cast<size_t>(j * m + i)];
        if (!qb || qc == 0) continue;
        Lapack::orgqr(as_int(m), as_int(qc), as_int(k), buf.data(), tau.data(), work.data(), lwork,
                      &info);
        transpose_into(buf.data(), qb, qc, m);
      }
    });
  const bool has_grad = mode != "r" && (mode == "reduced" || m <= n);
  auto outs = record_packed(
      "qr", {std::move(Q), std::move(R)}, A,
      [has_grad, mode, m, n](const auto&, const std::vector<Var>& o, const std::vector<Var>& g) {
        if (mode == "r")
          throw Error(
              "qr: no gradient for mode \"r\" (its derivative needs Q, which it does not "
              "compute; use mode \"reduced\")");
        if (!has_grad)
          throw Error("qr: no gradient for mode \"complete\" with m > n (A is " +
                      std::to_string(m) + " x " + std::to_string(n) + "): Q's last " +
                      std::to_string(m - n) + " columns are not unique");
        // The formula for m >= n (R square or tall Q).
        const auto tall = [](const Var& Q, const Var& R, const Var& gQ, const Var& gR) {
          const Var M = matmul(gR, R, false, true) - matmul(Q, gQ, true, false);
          const Var T = triu(M);
          const Var G = matmul(Q, T + mT(triu(T, 1))) + gQ;
          return tri_solve(R, G, Tri{true, false, false, true});  // G R^{-T}
        };
        const Var &Q = o[0], &R = o[1], &gQ = g[0], &gR = g[1];
        if (m >= n) return tall(Q, R, gQ, gR);
        const Var X = slice(R, -1, 0, m), Y = slice(R, -1, m, n);
        const Var gX = slice(gR, -1, 0, m), gY = slice(gR, -1, m, n);
        const Var gU = tall(Q, X, gQ + matmul(matmul(Q, Y), gY, false, true), gX);
        return concat({gU, matmul(Q, gY)}, R.dim() - 1);
      });
  return {outs[0], outs[1]};
}

// ---- least squares, pseudo-inverse -------------------------------------------------------

// Note [lstsq]
// A full-rank A: for m >= n, A = QR and X = R^{-1} Q^T B; for m < n, A^T = QR and the
// minimum-norm X = Q R^{-T} B. Composed of qr, matmul and solve_triangular, so its
// gradients are theirs. A rank-deficient A (a singular value at or below rcond times the
// largest, rcond defaulting to max(m, n) eps: PyTorch's rank test) has no such solution (R
// is singular: the QR route returns rounding noise times 1 / eps), so the drivers that
// handle it (gelsy, PyTorch's CPU default, and gelsd, gelss) give the minimum-norm
// least-squares solution pinv(A) B, with pinv's singular values dropped at the same rcond;
// its gradient is pinv's, as PyTorch's lstsq backward (which differentiates pinv(A) B).
// "gels" assumes a full rank, as LAPACK's and PyTorch's gels: QR always. The rank test costs
// one singular-value pass (gesdd without vectors) per call of the other drivers.
namespace {
double eps_of(Dtype d) {
  return d == f32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
}

// Whether a matrix of the batch has a singular value at or below rtol times its largest
// (NaN: no).
bool rank_deficient(const Tensor& a, double rtol) {
  const int64_t k = std::min(a.shape()[a.dim() - 2], a.shape()[a.dim() - 1]);
  if (k == 0 || a.numel() == 0) return false;
  const Tensor S = svd_kernel(a, 'N').S;
  return dispatch(a.dtype(), "lstsq", [&]<class T>() {
    const T* s = S.data<T>();
    for (int64_t b = 0; b < S.numel() / k; ++b)
      if (s[b * k + k - 1] <= static_cast<T>(rtol) * s[b * k]) return true;
    return false;
  });
}
}  // namespace

Lstsq lstsq(const Var& A, const Var& B, std::optional<double> rcond, const std::string& driver) {
  check_matrix(A, "lstsq");
  if (!driver.empty() && driver != "gels" && driver != "gelsy" && driver != "gelsd" &&
      driver != "gelss")
    throw Error("lstsq: driver must be \"gels\", \"gelsy\", \"gelsd\" or \"gelss\", got \"" +
                driver + "\"");
  kern::check_floating(B.value(), "lstsq");
  kern::check_same_dtype(A.value(), B.value(), "lstsq");
  // torch.linalg.lstsq's vector rule: B [..., m] for A [..., m, n].
  const bool vector = B.dim() == A.dim() - 1;
  const Var Bm = vector ? unsqueeze(B, -1) : B;
  check_matrix(Bm, "lstsq", "B");
  const int64_t m = A.shape()[A.dim() - 2], n = A.shape()[A.dim() - 1];
  if (Bm.shape()[Bm.dim() - 2] != m)
    throw ShapeError("lstsq: A " + A.shape().str() + " and B " + B.shape().str() +
                     " do not match (A's rows and B's rows differ)");
  const auto [a, b] = broadcast_batch(A, Bm, "lstsq");
  const double rtol = rcond ? *rcond : eps_of(A.dtype()) * static_cast<double>(std::max(m, n));
  Var X;
  if (driver != "gels" && rank_deficient(a.value(), rtol)) {
    X = matmul(pinv(a, std::nullopt, rtol), b);
  } else if (m >= n) {
    const QR f = qr(a);
    X = tri_solve(f.R, matmul(f.Q, b, true, false), Tri{true, true, false, false});
  } else {
    const QR f = qr(mT(a));
    X = matmul(f.Q, tri_solve(f.R, b, Tri{true, true, false, true}));
  }
  return {vector ? squeeze(X, -1) : X};
}

// Note [pinv backward]
// With P = pinv(A) and the gradient G of P (Golub & Pereyra 1973, "The differentiation of
// pseudo-inverses and nonlinear least squares problems"; PyTorch's pinv_backward):
//   dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P, so
//   gA = -P^T G P^T + (I - A P) G^T P P^T + P^T P G^T (I - P A),
// grouped so the products stay smallest: for m <= n with K = G^T P,
//   gA = -(P K)^T + K P^T - A P K P^T + P^T P (G^T - K A)
// and the mirrored grouping for m > n. It holds where A's rank is locally constant,
// repeated singular values included (the SVD's own gradient does not); the forward drops
// singular values at or below the tolerance, as PyTorch.
Var pinv(const Var& A, std::optional<double> atol, std::optional<double> rtol, bool hermitian) {
  check_matrix(A, "pinv");
  const int64_t m = A.shape()[A.dim() - 2], n = A.shape()[A.dim() - 1];
  if (hermitian && m != n)
    throw ShapeError("pinv: hermitian = true needs square matrices, got shape " + A.shape().str());
  Tensor value;
  {
    NoGradGuard no_grad;
    // A = U diag(S) Vh, or for a symmetric A = Q diag(L) Q^T with |L| as the singular values.
    Var U, S, Vh, Sabs;
    if (hermitian) {
      const Eigh e = eigh(constant(A.value()));
      U = e.eigenvectors, S = e.eigenvalues, Vh = mT(e.eigenvectors), Sabs = abs(S);
    } else {
      const Svd f = svd(constant(A.value()), false);
      U = f.U, S = f.S, Vh = f.Vh, Sabs = f.S;
    }
    const double rt =
        rtol ? *rtol
             : (atol && *atol > 0 ? 0.0 : eps_of(A.dtype()) * static_cast<double>(std::max(m, n)));
    Var tol = constant(full(Shape{}, atol ? *atol : 0.0, A.dtype()));
    if (std::min(m, n) > 0) tol = maximum(tol, max(Sabs, -1, true) * rt);
    const Var Sinv = where(le(Sabs, tol), 0.0, 1.0 / S);  // NaN stays NaN
    value = matmul(Vh * unsqueeze(Sinv, -1), U, true, true).value();
  }
  return record_linalg("pinv", std::move(value), {A}, [m, n](const auto& ctx, const Var& g) {
    const Var& A = ctx.input(0);
    const Var& P = ctx.output();
    const Var Ph = mT(P), gh = mT(g);
    if (m <= n) {
      const Var K = matmul(gh, P);
      const Var KPh = matmul(K, Ph);
      return Grads{-mT(matmul(P, K)) + KPh - matmul(matmul(A, P), KPh) +
                   matmul(matmul(Ph, P), gh - matmul(K, A))};
    }
    const Var K = matmul(P, gh);
    const Var PhK = matmul(Ph, K);
    return Grads{-mT(matmul(K, P)) + matmul(matmul(gh - matmul(A, K), P), Ph) + PhK -
                 matmul(matmul(PhK, P), A)};
  });
}

}  // namespace tg::linalg
