#pragma once

#include <optional>
#include <string>

#include "graph/var.hpp"

// Differentiable linear algebra with torch.linalg's names, argument order, defaults and
// batching: every op takes a matrix [..., m, n] and runs over its leading (batch) dims, in
// f32 or f64; solve / solve_triangular broadcast the batch dims of A and B. The kernels are
// LAPACK's (OpenBLAS); every backward formula is written with differentiable ops, so
// second derivatives work. Singular or non-positive-definite input throws tg::LinalgError
// naming the op, the batch entry and LAPACK's info. docs/linalg.md lists the formulas and
// their sources.

namespace tg::linalg {

/// The lower (or upper) Cholesky factor L of a symmetric positive-definite A = L L^T. Only
/// the lower (upper) triangle of A is read.
Var cholesky(const Var& A, bool upper = false);

/// X with A X = B (left) or X A = B (right). B is [..., n, k], or [n] / [..., n] (a vector:
/// torch.linalg.solve's rule, B.dim() == 1 or B.shape == A.shape[:-1]).
Var solve(const Var& A, const Var& B, bool left = true);

/// X with A X = B (left) or X A = B (right) for a triangular A; only its `upper` (or lower)
/// triangle is read, and its diagonal taken as ones when unitriangular.
Var solve_triangular(const Var& A, const Var& B, bool upper, bool left = true,
                     bool unitriangular = false);

/// The inverse of a square matrix.
Var inv(const Var& A);

/// The determinant [...].
Var det(const Var& A);

struct SignLogAbsDet {
  Var sign;       // -1, 0 or 1; no gradient
  Var logabsdet;  // log |det A| (-inf for a singular A)
};
/// The sign and the log of the absolute value of the determinant.
SignLogAbsDet slogdet(const Var& A);

struct Eigh {
  Var eigenvalues;   // [..., n], ascending
  Var eigenvectors;  // [..., n, n], the columns
};
/// Eigenvalues (ascending) and eigenvectors of a symmetric matrix, reading its lower ("L")
/// or upper ("U") triangle (either case, as PyTorch; the other is never read). The eigenvector
/// gradient is finite only for distinct eigenvalues, and meaningful only for a loss that does not
/// depend on each vector's sign.
Eigh eigh(const Var& A, const std::string& UPLO = "L");
/// The eigenvalues alone (gradient defined for repeated eigenvalues too).
Var eigvalsh(const Var& A, const std::string& UPLO = "L");

struct Svd {
  Var U;   // [..., m, k] (m x m with full_matrices)
  Var S;   // [..., k], descending, k = min(m, n)
  Var Vh;  // [..., k, n] (n x n with full_matrices)
};
/// A = U diag(S) Vh. With full_matrices, the gradients of U's columns and Vh's rows past k
/// are ignored, as PyTorch (they are any basis of the complement). Gradients are finite
/// only for distinct non-zero singular values, and right only for a loss that does not
/// depend on the signs of the singular vectors.
Svd svd(const Var& A, bool full_matrices = true);
/// The singular values alone, descending.
Var svdvals(const Var& A);

struct QR {
  Var Q;
  Var R;
};
/// A = Q R. mode "reduced" (Q [m, k], R [k, n]), "complete" (Q [m, m], R [m, n]) or "r" (R
/// only, Q empty). Gradients in "reduced" mode, and in "complete" for m <= n (as PyTorch).
QR qr(const Var& A, const std::string& mode = "reduced");

struct Lstsq {
  Var solution;  // [..., n, k] ([..., n] for a vector B)
};
/// The least-squares solution of A X = B, A [..., m, n], B [..., m, k] or a vector [..., m]
/// (B.dim() == A.dim() - 1, torch.linalg.lstsq's rule), the minimum-norm one when it is not
/// unique. A full-rank A goes through QR; a rank-deficient one (a singular value at or below
/// rcond times the largest; rcond defaults to max(m, n) eps) gives pinv(A) B, as PyTorch's
/// default driver gelsy (and gelsd, gelss). driver "" (PyTorch's None), "gelsy", "gelsd" or
/// "gelss" alike; "gels" assumes a full rank (QR always, as LAPACK's); another: tg::Error.
Lstsq lstsq(const Var& A, const Var& B, std::optional<double> rcond = {},
            const std::string& driver = "");

/// The Moore-Penrose pseudo-inverse [..., n, m], from the SVD (from eigh for a symmetric A
/// with hermitian = true, which reads its lower triangle): singular values at or below
/// max(atol, rtol * the largest) are dropped. As PyTorch, rtol defaults to max(m, n) * eps
/// when atol is not given, else to 0.
Var pinv(const Var& A, std::optional<double> atol = {}, std::optional<double> rtol = {},
         bool hermitian = false);

}  // namespace tg::linalg
