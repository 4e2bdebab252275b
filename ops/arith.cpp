#include "ops/arith.hpp"

#include <cmath>

#include "graph/fused_tangent.hpp"
#include "ops/kernels.hpp"
#include "ops/math.hpp"

namespace tg {

Var sub(const Var& a, const Var& b) {
  // d(a - b) = (dy, -dy)
  return record(
      "sub", kern::zip(a.value(), b.value(), "sub", [](auto x, auto y) { return x - y; }), {a, b},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{dy, c.needs_grad(1) ? neg(dy) : Var()};
      },
      detail::fused_jvp(
          [](const JvpCtx& c) {
            const Var& tb = c.tangent(1);
            return detail::add_defined(c.tangent(0), tb.defined() ? neg(tb) : Var());
          },
          [](const detail::FusedCtx& c, Tensor* t) { detail::sum_tangent(c, t, -1.0); }));
}

Var mul(const Var& a, const Var& b) {
  // d(a * b) = (dy * b, dy * a)
  return record(
      "mul", kern::zip(a.value(), b.value(), "mul", [](auto x, auto y) { return x * y; }), {a, b},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{c.needs_grad(0) ? mul(dy, c.input(1)) : Var(),
                     c.needs_grad(1) ? mul(dy, c.input(0)) : Var()};
      },
      detail::fused_jvp(
          [](const JvpCtx& c) {  // ta * b + a * tb
            const Var &ta = c.tangent(0), &tb = c.tangent(1);
            return detail::add_defined(ta.defined() ? mul(ta, c.input(1)) : Var(),
                                       tb.defined() ? mul(c.input(0), tb) : Var());
          },
          detail::binary_tangent(
              "mul", [](auto t, auto, auto y) { return t * y; },
              [](auto t, auto x, auto) { return x * t; })));
}

Var div(const Var& a, const Var& b) {
  // y = a / b: (dy / b, -dy * y / b)
  return record(
      "div", kern::zip(a.value(), b.value(), "div", [](auto x, auto y) { return x / y; }), {a, b},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{c.needs_grad(0) ? div(dy, c.input(1)) : Var(),
                     c.needs_grad(1) ? neg(div(mul(dy, c.output()), c.input(1))) : Var()};
      },
      detail::fused_jvp(
          [](const JvpCtx& c) {  // (ta - y * tb) / b
            const Var &ta = c.tangent(0), &tb = c.tangent(1);
            const Var num = tb.defined() ? neg(mul(c.output(), tb)) : Var();
            return div(detail::add_defined(ta, num), c.input(1));
          },
          detail::binary_tangent(
              "div", [](auto t, auto, auto y) { return t / y; },
              [](auto t, auto x, auto y) { return -(x / y) * t / y; })));
}

Var neg(const Var& x) {
  // d(-x) = -dy
  Tensor y = kern::map(x.value(), "neg", [](auto v) { return -v; });
  return record(
      "neg", std::move(y), {x}, [](const BackwardCtx&, const Var& dy) { return Grads{neg(dy)}; },
      detail::fused_jvp([](const JvpCtx& c) { return neg(c.tangent(0)); },
                        detail::unary_tangent("neg", [](auto t, auto, auto) { return -t; })));
}

Var pow(const Var& x, double p) {
  // d(x^p) = dy * p * x^(p-1)
  Tensor y = dispatch(x.dtype(), "pow", [&]<class T>() {
    const T tp = static_cast<T>(p);
    if (p == 2.0) return kern::map(x.value(), "pow", [](T v) { return v * v; });
    return kern::map(x.value(), "pow", [tp](T v) { return std::pow(v, tp); });
  });
  return record(
      "pow", std::move(y), {x},
      [p](const BackwardCtx& c, const Var& dy) {
        if (p == 1.0) return Grads{dy};
        if (p == 0.0) return Grads{Var()};  // x^0 is constant: 0 * x^-1 would be NaN at x = 0
        return Grads{mul(dy, mul_scalar(pow(c.input(0), p - 1.0), p))};
      },
      [p](const JvpCtx& c) {
        if (p == 1.0) return c.tangent(0);
        if (p == 0.0) return mul_scalar(c.tangent(0), 0.0);
        return mul(c.tangent(0), mul_scalar(pow(c.input(0), p - 1.0), p));
      });
}

namespace {
// The partial derivatives of y = a^b (see pow below): keep: 1 where the term is what its
// formula says, 0 where it is 0 by definition; the whole term goes through keep_where, so
// its own derivatives are 0 there too (PyTorch).
Var pow_term_a(const Var& A, const Var& B) {  // b * a^(b'-1), b' = b or 1 where b = 0
  const Tensor keep =
      kern::zip(A.value(), B.value(), "pow", [](auto, auto e) { return decltype(e)(e != 0); });
  const Tensor keep_b = kern::map(B.value(), "pow", [](auto e) { return decltype(e)(e != 0); });
  const Var term = mul(B, pow(A, add_scalar(detail::keep_where(B, keep_b, 1.0), -1.0)));
  return detail::keep_where(term, keep, 0.0);
}
Var pow_term_b(const Var& A, const Var& B, const Var& y) {  // y * log(a'), a' = a or 1 where
  const Tensor keep = kern::zip(A.value(), B.value(), "pow", [](auto x, auto e) {  // a = 0, b >= 0
    return decltype(e)(!(x == 0 && e >= 0));
  });
  const Var a_full = A.shape() == keep.shape() ? A : expand(A, keep.shape());
  const Var term = mul(y, log(detail::keep_where(a_full, keep, 1.0)));
  return detail::keep_where(term, keep, 0.0);
}
}  // namespace

Var pow(const Var& a, const Var& b) {
  // y = a^b: (dy * b * a^(b-1), dy * y * log(a))
  // NOTE: as PyTorch, b * a^(b-1) is 0 where b = 0 (not 0 * inf at a = 0), and y * log(a) is
  // 0 where a = 0 and b >= 0 (not 0 * -inf). Rather than zeroing a NaN afterwards, the
  // formulas read such an operand as 1 (a^0 = 1, log 1 = 0), so every derivative of them is
  // finite there too (the selection has gradient 0 at those points).
  Tensor y = kern::zip(a.value(), b.value(), "pow", [](auto x, auto e) { return std::pow(x, e); });
  return record(
      "pow", std::move(y), {a, b},
      [](const BackwardCtx& c, const Var& dy) {
        return Grads{
            c.needs_grad(0) ? mul(dy, pow_term_a(c.input(0), c.input(1))) : Var(),
            c.needs_grad(1) ? mul(dy, pow_term_b(c.input(0), c.input(1), c.output())) : Var()};
      },
      [](const JvpCtx& c) {  // ta * da + tb * db, the same terms
        const Var &ta = c.tangent(0), &tb = c.tangent(1);
        return detail::add_defined(
            ta.defined() ? mul(ta, pow_term_a(c.input(0), c.input(1))) : Var(),
            tb.defined() ? mul(tb, pow_term_b(c.input(0), c.input(1), c.output())) : Var());
      });
}

namespace detail {

Var keep_where(const Var& x, const Tensor& keep, double other) {
  // y = x where keep != 0, else `other`: a selection, so a NaN or Inf where keep = 0 is gone.
  // dx = dy where keep != 0, else 0 (keep_where(dy, keep, 0)): linear in dy.
  if (x.shape() != keep.shape() || x.dtype() != keep.dtype())
    throw ShapeError("keep_where: mask " + keep.shape().str() + " does not match " +
                     x.shape().str());
  Tensor y = dispatch(x.dtype(), "keep_where", [&]<class T>() {
    const T o = static_cast<T>(other);
    return kern::zip(x.value(), keep, "keep_where", [o](T v, T k) { return k != 0 ? v : o; });
  });
  return record(
      "keep_where", std::move(y), {x},
      [keep](const BackwardCtx&, const Var& dy) { return Grads{keep_where(dy, keep, 0.0)}; },
      [keep](const JvpCtx& c) { return keep_where(c.tangent(0), keep, 0.0); });
}

}  // namespace detail

Var add_scalar(const Var& x, double s) {
  // d(x + s) = dy
  Tensor y = dispatch(x.dtype(), "add_scalar", [&]<class T>() {
    const T ts = static_cast<T>(s);
    return kern::map(x.value(), "add_scalar", [ts](T v) { return v + ts; });
  });
  return record(
      "add_scalar", std::move(y), {x}, [](const BackwardCtx&, const Var& dy) { return Grads{dy}; },
      detail::fused_jvp([](const JvpCtx& c) { return c.tangent(0); }, detail::pass_tangent));
}

Var mul_scalar(const Var& x, double s) {
  // d(x * s) = dy * s
  Tensor y = dispatch(x.dtype(), "mul_scalar", [&]<class T>() {
    const T ts = static_cast<T>(s);
    return kern::map(x.value(), "mul_scalar", [ts](T v) { return v * ts; });
  });
  return record(
      "mul_scalar", std::move(y), {x},
      [s](const BackwardCtx&, const Var& dy) { return Grads{mul_scalar(dy, s)}; },
      detail::fused_jvp([s](const JvpCtx& c) { return mul_scalar(c.tangent(0), s); },
                        detail::unary_tangent(
                            "mul_scalar", [s](auto t, auto, auto) { return t * decltype(t)(s); })));
}

Var operator+(const Var& a, const Var& b) { return add(a, b); }
Var operator-(const Var& a, const Var& b) { return sub(a, b); }
Var operator*(const Var& a, const Var& b) { return mul(a, b); }
Var operator/(const Var& a, const Var& b) { return div(a, b); }
Var operator-(const Var& x) { return neg(x); }
Var operator+(const Var& a, double s) { return add_scalar(a, s); }
Var operator+(double s, const Var& a) { return add_scalar(a, s); }
Var operator-(const Var& a, double s) { return add_scalar(a, -s); }
Var operator-(double s, const Var& a) { return add_scalar(neg(a), s); }
Var operator*(const Var& a, double s) { return mul_scalar(a, s); }
Var operator*(double s, const Var& a) { return mul_scalar(a, s); }
Var operator/(const Var& a, double s) { return mul_scalar(a, 1.0 / s); }
Var operator/(double s, const Var& a) { return mul_scalar(pow(a, -1.0), s); }

}  // namespace tg
