// Fuzzes the ops and the engine: the input describes 1-3 leaves (rank 0-3, extents 0-4,
// f32 or f64) and 1-6 ops, each applied to earlier values with fuzzed axes, indices and
// shapes; some ops make i64 and bool values (comparisons, conversions, indices) that later
// ops take as operands, where float ones are needed too. Contract:
//   - an invalid combination throws a tg::Error subclass (ShapeError, IndexError,
//     DtypeError, ...) and nothing else;
//   - a valid graph differentiates without throwing;
//   - where the function is smooth at the point (no input within 1e-3 of a kink or of the
//     edge of a domain, every value finite and below 1e4), its full Jacobian passes
//     tg::gradcheck in float64.
// Anything else is a finding: the fuzzer aborts with the program it ran.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "graph/error.hpp"
#include "graph/gradcheck.hpp"
#include "graph/tensor.hpp"
#include "graph/var.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/compare.hpp"
#include "ops/index.hpp"
#include "ops/loss.hpp"
#include "ops/math.hpp"
#include "ops/matmul.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace {

using tg::Var;

struct Leaf {
  std::vector<int64_t> shape;
  std::vector<double> values;
  tg::Dtype dtype = tg::f64;
};

struct Instr {
  int op = 0;
  uint8_t a = 0, b = 0, c = 0;
  int i0 = 0, i1 = 0, i2 = 0;
  std::vector<int64_t> list;
};

struct Program {
  std::vector<Leaf> leaves;
  std::vector<Instr> instrs;
};

const char* const kOpNames[] = {
    "add",
    "sub",
    "mul",
    "div",
    "pow(var)",
    "pow(const)",
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "clamp",
    "softplus",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "softmax",
    "log_softmax",
    "matmul",
    "linear",
    "transpose",
    "permute",
    "reshape",
    "flatten",
    "slice",
    "index_select",
    "concat",
    "sum",
    "sum(axes)",
    "mean(axes)",
    "max",
    "max(axis)",
    "sum_to",
    "expand",
    "mse_loss",
    "cross_entropy",
    "nll_loss",
    "bce_with_logits",
    "add_scalar",
    "mul_scalar",
    "concat3",
    "where(gt)",
    "masked_fill",
    "gather",
    "scatter_add",
    "scatter",
    "index_select(var)",
    "index_add",
    "embedding",
    "min",
    "max_dim",
    "to(i64)",
    "to(bool)",
    "lt",
    "logical_and",
    "any(dim)",
    "argmax(dim)",
    "where(bool a)",
};
constexpr int kNumOps = sizeof(kOpNames) / sizeof(kOpNames[0]);

Program parse(FuzzedDataProvider& in) {
  Program p;
  const int n_leaves = in.ConsumeIntegralInRange(1, 3);
  for (int l = 0; l < n_leaves; ++l) {
    Leaf leaf;
    const int rank = in.ConsumeIntegralInRange(0, 3);
    int64_t numel = 1;
    for (int d = 0; d < rank; ++d) {
      leaf.shape.push_back(in.ConsumeIntegralInRange(0, 4));
      numel *= leaf.shape.back();
    }
    leaf.dtype = in.ConsumeIntegralInRange(0, 7) == 0 ? tg::f32 : tg::f64;
    // Multiples of 1/16 shifted by 1/32: in [-4, 4], never exactly 0.
    for (int64_t i = 0; i < numel; ++i)
      leaf.values.push_back(in.ConsumeIntegralInRange(-64, 63) / 16.0 + 1.0 / 32);
    p.leaves.push_back(std::move(leaf));
  }
  const int n_instr = in.ConsumeIntegralInRange(1, 6);
  for (int k = 0; k < n_instr; ++k) {
    Instr ins;
    ins.op = in.ConsumeIntegralInRange(0, kNumOps - 1);
    ins.a = in.ConsumeIntegral<uint8_t>();
    ins.b = in.ConsumeIntegral<uint8_t>();
    ins.c = in.ConsumeIntegral<uint8_t>();
    ins.i0 = in.ConsumeIntegralInRange(-4, 4);
    ins.i1 = in.ConsumeIntegralInRange(-4, 4);
    ins.i2 = in.ConsumeIntegralInRange(-4, 4);
    const int n = in.ConsumeIntegralInRange(0, 4);
    for (int j = 0; j < n; ++j) ins.list.push_back(in.ConsumeIntegralInRange(-5, 5));
    p.instrs.push_back(std::move(ins));
  }
  return p;
}

std::string describe(const Program& p) {
  std::ostringstream os;
  for (size_t l = 0; l < p.leaves.size(); ++l) {
    os << "leaf " << l << " " << tg::dtype_name(p.leaves[l].dtype) << " [";
    for (auto e : p.leaves[l].shape) os << e << ",";
    os << "] = {";
    for (double v : p.leaves[l].values) os << v << ",";
    os << "}\n";
  }
  for (const auto& i : p.instrs) {
    os << kOpNames[i.op] << " a=" << int(i.a) << " b=" << int(i.b) << " c=" << int(i.c)
       << " i=" << i.i0 << "," << i.i1 << "," << i.i2 << " list={";
    for (auto e : i.list) os << e << ",";
    os << "}\n";
  }
  return os.str();
}

// Kink / domain tests on concrete values (they decide whether gradcheck applies).
bool any_near(const Var& v, double point, double tol) {
  for (double x : v.value().to_vector())
    if (std::abs(x - point) < tol) return true;
  return false;
}
bool any_below(const Var& v, double bound) {
  for (double x : v.value().to_vector())
    if (!(x >= bound)) return true;
  return false;
}
bool has_ties(const Var& v) {
  auto xs = v.value().to_vector();
  std::sort(xs.begin(), xs.end());
  for (size_t i = 1; i < xs.size(); ++i)
    if (xs[i] - xs[i - 1] < 1e-3) return true;
  return false;
}
bool tame(const Var& v) {
  for (double x : v.value().to_vector())
    if (!std::isfinite(x) || std::abs(x) > 1e4) return false;
  return true;
}

tg::Reduction reduction(uint8_t c) {
  return c % 3 == 0 ? tg::Reduction::mean : c % 3 == 1 ? tg::Reduction::sum : tg::Reduction::none;
}

/// An i64 index tensor of `shape` whose values cycle through `list` (0 when empty).
Var index_tensor(const std::vector<int64_t>& list, const tg::Shape& shape) {
  tg::Tensor t = tg::Tensor::empty(shape, tg::i64);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<int64_t>()[i] = list.empty() ? 0 : list[static_cast<size_t>(i) % list.size()];
  return tg::constant(t);
}
/// a's shape with extent n at `dim` (a's own shape when dim is out of range).
tg::Shape with_extent(const Var& a, int dim, int64_t n) {
  tg::Shape s = a.shape();
  if (dim >= -s.rank() && dim < s.rank() && s.rank() > 0) s[dim < 0 ? dim + s.rank() : dim] = n;
  return s;
}

/// Runs the program on `leaves`; `smooth` turns false where gradcheck does not apply.
Var run(const Program& p, const std::vector<Var>& leaves, bool& smooth) {
  std::vector<Var> vals = leaves;
  for (const auto& ins : p.instrs) {
    const size_t n = vals.size();
    const Var a = vals[ins.a % n], b = vals[ins.b % n], c = vals[ins.c % n];
    Var out;
    switch (ins.op) {
      case 0:
        out = tg::add(a, b);
        break;
      case 1:
        out = tg::sub(a, b);
        break;
      case 2:
        out = tg::mul(a, b);
        break;
      case 3:
        if (any_near(b, 0.0, 0.1)) smooth = false;
        out = tg::div(a, b);
        break;
      case 4:
        if (any_below(a, 0.1)) smooth = false;
        out = tg::pow(a, b);
        break;
      case 5: {
        static const double ps[] = {2.0, 3.0, 0.5, -1.0, 1.5, 0.0};
        const double e = ps[ins.c % 6];
        if ((e != std::floor(e) || e < 0) && any_below(a, 0.1)) smooth = false;
        out = tg::pow(a, e);
        break;
      }
      case 6:
        out = tg::neg(a);
        break;
      case 7:
        out = tg::exp(a);
        break;
      case 8:
        if (any_below(a, 1e-2)) smooth = false;
        out = tg::log(a);
        break;
      case 9:
        if (any_below(a, 1e-2)) smooth = false;
        out = tg::sqrt(a);
        break;
      case 10:
        if (any_near(a, 0.0, 1e-3)) smooth = false;
        out = tg::abs(a);
        break;
      case 11: {
        const double lo = ins.i0 / 4.0, hi = ins.i1 / 4.0;
        if (any_near(a, lo, 1e-3) || any_near(a, hi, 1e-3)) smooth = false;
        out = tg::clamp(a, lo, hi);
        break;
      }
      case 12:
        out = tg::softplus(a);
        break;
      case 13:
        out = tg::sigmoid(a);
        break;
      case 14:
        out = tg::tanh(a);
        break;
      case 15:
        if (any_near(a, 0.0, 1e-3)) smooth = false;
        out = tg::relu(a);
        break;
      case 16:
        if (any_near(a, 0.0, 1e-3)) smooth = false;
        out = tg::leaky_relu(a, 0.1);
        break;
      case 17:
        out = tg::softmax(a, ins.i0);
        break;
      case 18:
        out = tg::log_softmax(a, ins.i0);
        break;
      case 19:
        out = ins.c % 2 ? tg::matmul(a, b, ins.i0 & 1, ins.i1 & 1) : tg::matmul(a, b);
        break;
      case 20:
        out = tg::linear(a, b, ins.i2 & 1 ? c : Var());
        break;
      case 21:
        out = ins.c % 2 ? tg::transpose(a, ins.i0, ins.i1) : tg::transpose(a);
        break;
      case 22:
        out = tg::permute(a, ins.list);
        break;
      case 23:
        out = tg::reshape(a, ins.list);
        break;
      case 24:
        out = tg::flatten(a, ins.i0);
        break;
      case 25:
        out = tg::slice(a, ins.i0, ins.i1, ins.i2, ins.c % 4 - 1);
        break;
      case 26:
        out = tg::index_select(a, ins.i0, ins.list);
        break;
      case 27:
        out = tg::concat({a, b}, ins.i0);
        break;
      case 28:
        out = tg::sum(a);
        break;
      case 29:
        out = tg::sum(a, ins.list, ins.c & 1);
        break;
      case 30:
        out = tg::mean(a, ins.list, ins.c & 1);
        break;
      case 31:
        if (has_ties(a)) smooth = false;
        out = tg::max(a);
        break;
      case 32:
        if (has_ties(a)) smooth = false;
        out = tg::max(a, ins.i0, ins.c & 1);
        break;
      case 33:
        out = tg::sum_to(a, b.shape());
        break;
      case 34:
        out = tg::expand(a, b.shape());
        break;
      case 35:
        out = tg::mse_loss(a, b, reduction(ins.c));
        break;
      case 36:
        out = tg::cross_entropy(a, ins.list, reduction(ins.c));
        break;
      case 37:
        out = tg::nll_loss(a, ins.list, reduction(ins.c));
        break;
      case 38:
        out = tg::binary_cross_entropy_with_logits(a, b, reduction(ins.c));
        break;
      case 39:
        out = tg::add_scalar(a, ins.i0 / 2.0);
        break;
      case 40:
        out = tg::mul_scalar(a, ins.i0 / 2.0);
        break;
      case 41:
        out = tg::concat({a, b, c}, ins.i0);
        break;
      case 42:
        if (any_near(a, 0.0, 1e-3)) smooth = false;  // the selection flips at 0
        out = tg::where(tg::gt(a, 0.0), b, c);
        break;
      case 43:
        if (any_near(b, 0.0, 1e-3)) smooth = false;
        out = tg::masked_fill(a, tg::lt(b, 0.0), ins.i0 / 2.0);
        break;
      case 44:
        out = tg::gather(a, ins.i0, index_tensor(ins.list, with_extent(a, ins.i0, ins.c % 3)));
        break;
      case 45:
        out = tg::scatter_add(a, ins.i0, index_tensor(ins.list, b.shape()), b);
        break;
      case 46:
        out = tg::scatter(a, ins.i0, index_tensor(ins.list, b.shape()), b);
        smooth = false;  // repeated indices: which write wins decides the gradient
        break;
      case 47:
        out = tg::index_select(a, ins.i0,
                               index_tensor(ins.list, {static_cast<int64_t>(ins.list.size())}));
        break;
      case 48:
        out = tg::index_add(a, ins.i0,
                            index_tensor(ins.list, {static_cast<int64_t>(ins.list.size())}), b,
                            ins.i1 / 2.0);
        break;
      case 49:
        out = tg::embedding(index_tensor(ins.list, with_extent(b, 0, ins.c % 4)), a,
                            ins.i2 & 1 ? std::optional<int64_t>(ins.i1) : std::nullopt);
        if (ins.i2 & 1) smooth = false;  // padding rows get no gradient by definition
        break;
      case 50:
        if (has_ties(a)) smooth = false;
        out = ins.c % 2 ? tg::min(a) : tg::min(a, ins.i0, ins.c & 2);
        break;
      case 51:
        if (has_ties(a)) smooth = false;
        out = tg::max_dim(a, ins.i0, ins.c & 1).values;
        break;
      case 52:
        out = tg::constant(a.value().to(tg::i64));
        break;
      case 53:
        out = tg::constant(a.value().to(tg::boolean));
        break;
      case 54:
        out = tg::lt(a, b);
        break;
      case 55:
        out = tg::logical_and(a, b);
        break;
      case 56:
        out = tg::any(a, ins.i0, ins.c & 1);
        break;
      case 57:
        out = tg::argmax(a, ins.i0, ins.c & 1);
        break;
      case 58:
        if (any_near(a, 0.0, 1e-3)) smooth = false;  // the condition a != 0 flips at 0
        out = tg::where(tg::constant(a.value().to(tg::boolean)), b, c);
        break;
      case 59:
        if (has_ties(tg::concat({tg::reshape(a, {-1}), tg::reshape(b, {-1})}))) smooth = false;
        out = ins.c % 2 ? tg::maximum(a, b) : tg::minimum(a, b);
        break;
      case 60:
        out = ins.c % 2 ? tg::sin(a) : tg::cos(a);
        break;
      case 61:
        out = tg::gelu(a);
        break;
      case 62:
        out = tg::gelu(a, "tanh");
        break;
      case 63:
        out = ins.c % 2 ? tg::silu(a) : tg::mish(a);
        break;
      case 64:
        if (any_near(a, 0.0, 1e-3)) smooth = false;
        out = tg::elu(a, 0.5 + (ins.c % 3));
        break;
      case 65: {
        const double lo = ins.i0 / 4.0, hi = lo + std::abs(ins.i1) / 4.0;
        if (any_near(a, lo, 1e-3) || any_near(a, hi, 1e-3)) smooth = false;
        out = tg::hardtanh(a, lo, hi);
        break;
      }
      case 66:
        smooth = false;  // the selection switches where x meets a bound
        out = tg::clamp(a, ins.c % 2 ? b : Var(), ins.c % 3 ? c : Var());
        break;
      case 67:
        smooth = false;  // steps: a zero gradient, not the finite difference across a step
        out = ins.c % 4 == 0   ? tg::round(a)
              : ins.c % 4 == 1 ? tg::floor(a)
              : ins.c % 4 == 2 ? tg::ceil(a)
                               : tg::sign(a);
        break;
      case 68:
        out = ins.c % 2 ? tg::squeeze(a) : tg::squeeze(a, ins.i0);
        break;
      case 69:
        out = tg::unsqueeze(a, ins.i0);
        break;
      case 70:
        out = tg::stack({a, b}, ins.i0);
        break;
      case 71:
        out = tg::narrow(a, ins.i0, ins.i1, ins.i2);
        break;
      case 72: {
        static const char* modes[] = {"constant", "reflect", "replicate"};
        out = tg::pad(a, ins.list, modes[ins.c % 3], ins.i0 / 2.0);
        break;
      }
      case 73:
        out = tg::flip(a, ins.list);
        break;
      case 74:
        out = tg::repeat(a, ins.list);
        break;
      case 75:
        out = ins.c % 2 ? tg::tril(a, ins.i0) : tg::triu(a, ins.i0);
        break;
      case 76: {
        const auto parts = tg::chunk(a, ins.c % 4, ins.i0);
        if (parts.empty()) tgfuzz::fail("chunk returned no pieces");
        out = parts[static_cast<size_t>(ins.i1 & 0xff) % parts.size()];
        break;
      }
      case 77: {
        tg::CrossEntropyOptions o;
        o.reduction = reduction(ins.c);
        o.ignore_index = ins.i2;
        o.label_smoothing = (ins.c >> 2) % 3 / 4.0;
        tg::Shape ts = a.shape();  // the class-index shape: the input's without dim 1 (C)
        if (ts.rank() >= 2)
          ts.erase(1);
        else
          ts = tg::Shape{};
        out = tg::cross_entropy(a, ins.c & 64 ? b : index_tensor(ins.list, ts), o);
        break;
      }
      case 78:
        if (any_near(tg::sub(a, b), 0.0, 1e-3)) smooth = false;
        out = tg::l1_loss(a, b, reduction(ins.c));
        break;
      case 79: {
        const double beta = (ins.c % 3) / 2.0;
        smooth = false;  // kinks where |a - b| meets beta
        out = ins.c % 2 ? tg::smooth_l1_loss(a, b, reduction(ins.c), beta)
                        : tg::huber_loss(a, b, reduction(ins.c), beta + 0.5);
        break;
      }
      case 80:
        if (any_below(b, 1e-2)) smooth = false;
        out = tg::kl_div(a, b, reduction(ins.c), ins.c & 4);
        break;
      case 81:
        if (has_ties(a)) smooth = false;
        out = tg::sort(a, ins.i0, ins.c & 1).values;
        break;
      case 82:
        if (has_ties(a)) smooth = false;
        out = tg::topk(a, ins.i1, ins.i0, ins.c & 1).values;
        break;
      case 83:
        out = tg::logsumexp(a, ins.list, ins.c & 1);
        break;
      case 84:
        out = ins.c % 2 ? tg::var(a, ins.list, ins.i1, ins.c & 2)
                        : tg::std(a, ins.list, ins.i1, ins.c & 2);
        if (!(ins.c % 2)) smooth = false;  // std's kink where the spread is 0
        break;
      case 85: {
        static const double ps[] = {1.0, 2.0, INFINITY};
        smooth = false;  // kinks at 0 (p = 1, 2) and at ties (inf)
        out = tg::norm(a, ps[ins.c % 3], ins.list, ins.c & 4);
        break;
      }
      case 86:
        out = ins.c % 2 ? tg::prod(a) : tg::prod(a, ins.i0, ins.c & 2);
        break;
      case 87:
        out = tg::cumsum(a, ins.i0);
        break;
      case 88:
        out = tg::matmul(a, b);  // torch.matmul's rules: rank 1, broadcast batch dims
        break;
      default:
        tgfuzz::fail("bad op code");
    }
    if (!out.defined()) tgfuzz::fail(std::string(kOpNames[ins.op]) + " returned undefined");
    if (!tame(out)) smooth = false;
    vals.push_back(std::move(out));
  }
  return vals.back();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const Program prog = parse(in);
  std::vector<Var> leaves;
  std::vector<tg::Tensor> values;
  int64_t total = 0;
  for (const auto& l : prog.leaves) {
    values.push_back(tg::tensor(l.values, tg::Shape(l.shape), l.dtype));
    leaves.push_back(tg::param(values.back()));
    total += values.back().numel();
  }
  bool smooth = true;
  Var out;
  try {
    out = run(prog, leaves, smooth);
  } catch (const tg::Error&) {
    return 0;  // an invalid combination, reported as the library's own error
  }
  if (!tg::is_floating(out.dtype())) {
    if (out.requires_grad()) tgfuzz::fail("an int or bool result requires grad\n" + describe(prog));
    return 0;  // comparisons, indices: nothing to differentiate
  }
  try {
    Var s = tg::sum(out);
    if (s.requires_grad()) s.backward();
  } catch (const tg::Error& e) {
    tgfuzz::fail(std::string("backward of a valid graph threw: ") + e.what() + "\n" +
                 describe(prog));
  }
  if (!smooth || total > 64 || out.numel() > 64) return 0;
  tg::GradcheckReport report;
  try {
    report = tg::gradcheck(
        [&prog](const std::vector<Var>& v) {
          bool ignored = true;
          return run(prog, v, ignored);
        },
        values);
  } catch (const tg::Error& e) {
    tgfuzz::fail(std::string("gradcheck threw: ") + e.what() + "\n" + describe(prog));
  }
  if (!report.passed) tgfuzz::fail("gradcheck failed: " + report.message + "\n" + describe(prog));
  return 0;
}
