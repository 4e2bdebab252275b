#pragma once

#include <stdexcept>
#include <string>

namespace tg {

/// Base class of every exception tapegrad throws on bad input.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Shapes that do not fit the op (message names the op and the shapes).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// Mixed or unsupported dtypes.
class DtypeError : public Error {
 public:
  using Error::Error;
};

/// Misuse of the recorded graph: backward through a freed graph, backward of a
/// non-scalar without a gradient, a gradient of the wrong shape.
class GraphError : public Error {
 public:
  using Error::Error;
};

/// NaN or Inf found by anomaly mode; the message names the op that produced it.
class AnomalyError : public Error {
 public:
  using Error::Error;
};

/// An index or a value outside its valid range.
class IndexError : public Error {
 public:
  using Error::Error;
};

/// A linear-algebra routine that cannot finish on its input: a singular matrix, one that is
/// not positive-definite, an eigen or singular value iteration that does not converge. The
/// message names the op, the batch entry and LAPACK's `info` (tg::linalg, docs/linalg.md).
class LinalgError : public Error {
 public:
  using Error::Error;
};

/// Reading or writing files (checkpoints, data).
class IoError : public Error {
 public:
  using Error::Error;
};

}  // namespace tg
