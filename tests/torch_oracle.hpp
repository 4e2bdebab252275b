#pragma once

// PyTorch as an oracle: tests write a Python script that prints "name v0 v1 ..." lines and
// compare them with their own values (skipped, with a WARN, when torch is not installed).

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tgtest {

inline bool torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

// Skips the enclosing test case, saying so, when /usr/bin/python3 cannot import torch.
#define TGTEST_REQUIRE_TORCH()                                                                    \
  do {                                                                                            \
    if (!tgtest::torch_available()) {                                                             \
      WARN("SKIPPED: /usr/bin/python3 cannot import torch; the PyTorch oracle test did not run"); \
      return;                                                                                     \
    }                                                                                             \
  } while (false)

// The two passes of an oracle test: f64 to 1e-10, then f32 to `f32_tol`.
struct OracleDtype {
  bool single;        // the f32 pass
  std::string torch;  // the dtype's name in Python
  tg::Dtype dtype;
  double tol;
};
inline std::vector<OracleDtype> oracle_dtypes(double f32_tol = 2e-5) {
  return {{false, "torch.float64", tg::f64, 1e-10}, {true, "torch.float32", tg::f32, f32_tol}};
}

// Deterministic inputs both sides can build: x[i] = sin(0.37 i + k) * scale.
inline tg::Tensor pattern(const tg::Shape& s, double k, double scale = 1.0) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + k) * scale;
  return tg::tensor(v, s, tg::f64);
}

// The same pattern in Python, and emit(name, tensor) printing a line run_python reads.
inline const char* kPythonPrelude = R"PY(
import math, torch
def pattern(shape, k, scale=1.0, dtype=torch.float64):
    n = math.prod(shape)
    return torch.tensor([math.sin(0.37 * i + k) * scale for i in range(n)], dtype=torch.float64).reshape(shape).to(dtype)
def emit(name, t):
    print(name, " ".join(repr(float(v)) for v in t.detach().reshape(-1)))
)PY";

// Python for the usual op test, after kPythonPrelude and a line "D = torch.float64" (or
// float32): P(shape, k, scale) is a leaf of pattern values wanting a gradient, and
// run(name, y, *xs) prints y as `name` and the gradients of sum(y * w) (w = pattern(k = 9))
// with respect to each x as `name_g0`, `name_g1`, ... (zeros where y does not use x).
inline const char* kPythonRun = R"PY(
def P(shape, k, scale=1.0):
    return pattern(shape, k, scale, D).requires_grad_()
def run(name, y, *xs):
    w = pattern(tuple(y.shape), 9.0, 1.0, D)
    emit(name, y)
    gs = torch.autograd.grad((y * w).sum(), xs, allow_unused=True)
    for i, g in enumerate(gs):
        emit(name + "_g%d" % i, torch.zeros_like(xs[i]) if g is None else g)
)PY";

inline std::map<std::string, std::vector<double>> run_python(const std::string& script) {
  // One file per process and call: CTest runs test cases in parallel processes.
  static int calls = 0;
  const std::string path = std::string(TAPEGRAD_BINARY_DIR) + "/torch_oracle_" +
                           std::to_string(::getpid()) + "_" + std::to_string(calls++) + ".py";
  std::ofstream(path) << script;
  std::map<std::string, std::vector<double>> out;
  FILE* f = popen(("/usr/bin/python3 " + path).c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[1 << 16];
  std::string text;
  while (size_t n = fread(buf, 1, sizeof buf, f)) text.append(buf, n);
  REQUIRE(pclose(f) == 0);
  std::remove(path.c_str());
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    auto& values = out[name];  // an empty tensor prints its name alone
    std::string v;             // strtod reads nan, inf and -inf as Python prints them
    while (ls >> v) values.push_back(std::strtod(v.c_str(), nullptr));
  }
  return out;
}

// Each element within tol of PyTorch's, relative to its size past 1 (|got - want| <= tol *
// max(1, |want|)); NaN only against NaN, an infinity only against the same one. (Catch's
// Approx would also allow a relative 1e-5 whatever tol says.)
inline void check_close(const std::vector<double>& got, const std::vector<double>& want,
                        double tol = 1e-9) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": " << got[i] << " against " << want[i]);
    if (got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]))) continue;
    CHECK(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i])));
  }
}

// The C++ half of kPythonRun's run(): y against `name`, and the gradients of sum(y * w)
// against `name_g<i>`, each within tol (check_close).
inline void check_run(const std::map<std::string, std::vector<double>>& torch,
                      const std::string& name, const tg::Var& y, const std::vector<tg::Var>& xs,
                      double tol) {
  INFO(name << " " << tg::dtype_name(y.dtype()));
  REQUIRE(torch.count(name) == 1);
  check_close(y.value().to_vector(), torch.at(name), tol);
  const tg::Var w = tg::constant(pattern(y.shape(), 9.0).to(y.dtype()));
  const auto gs = tg::grad({tg::sum(y * w)}, xs, {}, {.allow_unused = true});
  for (size_t i = 0; i < xs.size(); ++i) {
    INFO("gradient " << i);
    const std::string key = name + "_g" + std::to_string(i);
    REQUIRE(torch.count(key) == 1);
    check_close(
        gs[i].defined() ? gs[i].value().to_vector() : std::vector<double>(torch.at(key).size()),
        torch.at(key), tol);
  }
}

}  // namespace tgtest
