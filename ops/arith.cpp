#include "ops/arith.hpp"

#include <cmath>

#include "ops/kernels.hpp"
#include "ops/math.hpp"

namespace tg {

Var sub(const Var& a, const Var& b) {
  // d(a - b) = (dy, -dy)
  return record("sub", kern::zip(a.value(), b.value(), "sub", [](auto x, auto y) { return x - y; }),
                {a, b}, [](const BackwardCtx& c, const Var& dy) {
                  return Grads{dy, c.needs_grad(1) ? neg(dy) : Var()};
                });
}

Var mul(const Var& a, const Var& b) {
  // d(a * b) = (dy * b, dy * a)
  return record("mul", kern::zip(a.value(), b.value(), "mul", [](auto x, auto y) { return x * y; }),
                {a, b}, [](const BackwardCtx& c, const Var& dy) {
                  return Grads{c.needs_grad(0) ? mul(dy, c.input(1)) : Var(),
                               c.needs_grad(1) ? mul(dy, c.input(0)) : Var()};
                });
}

Var div(const Var& a, const Var& b) {
  // y = a / b: (dy / b, -dy * y / b)
  return record("div", kern::zip(a.value(), b.value(), "div", [](auto x, auto y) { return x / y; }),
                {a, b}, [](const BackwardCtx& c, const Var& dy) {
                  return Grads{c.needs_grad(0) ? div(dy, c.input(1)) : Var(),
                               c.needs_grad(1) ? neg(div(mul(dy, c.output()), c.input(1))) : Var()};
                });
}

Var neg(const Var& x) {
  // d(-x) = -dy
  return record("neg", kern::map(x.value(), [](auto v) { return -v; }), {x},
                [](const BackwardCtx&, const Var& dy) { return Grads{neg(dy)}; });
}

Var pow(const Var& x, double p) {
  // d(x^p) = dy * p * x^(p-1)
  Tensor y = dispatch(x.dtype(), [&]<class T>() {
    const T tp = static_cast<T>(p);
    if (p == 2.0) return kern::map(x.value(), [](T v) { return v * v; });
    return kern::map(x.value(), [tp](T v) { return std::pow(v, tp); });
  });
  return record("pow", std::move(y), {x}, [p](const BackwardCtx& c, const Var& dy) {
    if (p == 1.0) return Grads{dy};
    if (p == 0.0) return Grads{Var()};  // x^0 is constant: 0 * x^-1 would be NaN at x = 0
    return Grads{mul(dy, mul_scalar(pow(c.input(0), p - 1.0), p))};
  });
}

Var pow(const Var& a, const Var& b) {
  // y = a^b: (dy * b * a^(b-1), dy * y * log(a))
  Tensor y = kern::zip(a.value(), b.value(), "pow", [](auto x, auto e) { return std::pow(x, e); });
  return record("pow", std::move(y), {a, b}, [](const BackwardCtx& c, const Var& dy) {
    Var da, db;
    if (c.needs_grad(0))
      da = mul(dy, mul(c.input(1), pow(c.input(0), add_scalar(c.input(1), -1.0))));
    if (c.needs_grad(1)) db = mul(dy, mul(c.output(), log(c.input(0))));
    return Grads{da, db};
  });
}

Var add_scalar(const Var& x, double s) {
  // d(x + s) = dy
  Tensor y = dispatch(x.dtype(), [&]<class T>() {
    const T ts = static_cast<T>(s);
    return kern::map(x.value(), [ts](T v) { return v + ts; });
  });
  return record("add_scalar", std::move(y), {x},
                [](const BackwardCtx&, const Var& dy) { return Grads{dy}; });
}

Var mul_scalar(const Var& x, double s) {
  // d(x * s) = dy * s
  Tensor y = dispatch(x.dtype(), [&]<class T>() {
    const T ts = static_cast<T>(s);
    return kern::map(x.value(), [ts](T v) { return v * ts; });
  });
  return record("mul_scalar", std::move(y), {x},
                [s](const BackwardCtx&, const Var& dy) { return Grads{mul_scalar(dy, s)}; });
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
