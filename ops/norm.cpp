#include "ops/norm.hpp"

#include <string>
#include <vector>

#include "graph/error.hpp"
#include "graph/kernels.hpp"
#include "ops/arith.hpp"
#include "ops/math.hpp"
#include "ops/reduce.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

void check_float_arg(const Var& v, const char* op) {
  if (v.defined()) kern::check_floating(v.value(), op);
}

// A per-channel tensor ([C]) for x of rank `rank`: checked, and viewed as [1, C, 1, ...].
Var per_channel(const Var& v, int64_t C, int rank, const char* op, const char* what) {
  if (!v.defined()) return v;
  if (v.dim() != 1 || v.shape()[0] != C)
    throw ShapeError(std::string(op) + ": " + what + " of shape " + v.shape().str() +
                     " for an input with " + std::to_string(C) + " channels (expected [" +
                     std::to_string(C) + "])");
  std::vector<int64_t> s(static_cast<size_t>(rank), 1);
  s[1] = C;
  return reshape(v, s);
}

Var affine(Var y, const Var& w, const Var& b) {
  if (w.defined()) y = y * w;
  if (b.defined()) y = y + b;
  return y;
}

// (x - mean) / sqrt(var + eps) over `dims`, with the statistics (keepdim) returned too.
Var normalize(const Var& x, const std::vector<int64_t>& dims, double eps, Var* mean_out = nullptr,
              Var* var_out = nullptr) {
  const Var m = mean(x, dims, true);
  const Var v = var(x, dims, 0, true);
  if (mean_out) *mean_out = m;
  if (var_out) *var_out = v;
  return (x - m) * rsqrt(v + eps);
}

// running = (1 - momentum) running + momentum value, in place, unrecorded.
void update_running(const Var& running, const Var& value, double momentum) {
  if (!running.defined()) return;
  NoGradGuard ng;
  Var r = running;
  r.mul_(1.0 - momentum);
  r.add_(reshape(value.detach(), {running.numel()}), momentum);
}

}  // namespace

Var batch_norm(const Var& x, const Var& running_mean, const Var& running_var, const Var& weight,
               const Var& bias, bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  if (x.dim() < 2)
    throw ShapeError(std::string(op) + ": expected an input of rank 2 or more ([N, C, *]), got " +
                     "shape " + x.shape().str());
  for (const Var* v : {&x, &running_mean, &running_var, &weight, &bias}) check_float_arg(*v, op);
  const int r = x.dim();
  const int64_t C = x.shape()[1];
  const Var rm = per_channel(running_mean, C, r, op, "running_mean");
  const Var rv = per_channel(running_var, C, r, op, "running_var");
  const Var w = per_channel(weight, C, r, op, "weight");
  const Var b = per_channel(bias, C, r, op, "bias");
  std::vector<int64_t> dims{0};
  for (int d = 2; d < r; ++d) dims.push_back(d);
  if (training) {
    const int64_t n = C > 0 ? x.numel() / C : 0;
    if (n <= 1)
      throw Error(std::string(op) + ": expected more than 1 value per channel when training, " +
                  "got input of shape " + x.shape().str());
    Var m, v;
    Var y = normalize(x, dims, eps, &m, &v);
    update_running(running_mean, m, momentum);
    update_running(running_var, v * (static_cast<double>(n) / static_cast<double>(n - 1)),
                   momentum);
    return affine(y, w, b);
  }
  if (!rm.defined() || !rv.defined())
    throw Error(std::string(op) + ": running_mean and running_var must be given when not training");
  return affine((x - rm) * rsqrt(rv + eps), w, b);
}

Var layer_norm(const Var& x, const std::vector<int64_t>& normalized_shape, const Var& weight,
               const Var& bias, double eps) {
  const char* op = "layer_norm";
  for (const Var* v : {&x, &weight, &bias}) check_float_arg(*v, op);
  const Shape ns(normalized_shape);
  const int k = ns.rank(), r = x.dim();
  bool ok = k >= 1 && k <= r;
  for (int i = 0; ok && i < k; ++i) ok = x.shape()[r - k + i] == ns[i];
  if (!ok)
    throw ShapeError(std::string(op) + ": normalized_shape " + ns.str() +
                     " is not the trailing shape of the input " + x.shape().str());
  for (const auto& [v, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}})
    if (v->defined() && v->shape() != ns)
      throw ShapeError(std::string(op) + ": " + what + " of shape " + v->shape().str() +
                       " for normalized_shape " + ns.str());
  std::vector<int64_t> dims;
  for (int d = r - k; d < r; ++d) dims.push_back(d);
  return affine(normalize(x, dims, eps), weight, bias);
}

Var group_norm(const Var& x, int64_t num_groups, const Var& weight, const Var& bias, double eps) {
  const char* op = "group_norm";
  if (x.dim() < 2)
    throw ShapeError(std::string(op) + ": expected an input of rank 2 or more ([N, C, *]), got " +
                     "shape " + x.shape().str());
  for (const Var* v : {&x, &weight, &bias}) check_float_arg(*v, op);
  const int r = x.dim();
  const int64_t N = x.shape()[0], C = x.shape()[1];
  if (num_groups <= 0 || C % num_groups != 0)
    throw Error(std::string(op) + ": expected the number of channels " + std::to_string(C) +
                " to be divisible by num_groups " + std::to_string(num_groups));
  const Var w = per_channel(weight, C, r, op, "weight");
  const Var b = per_channel(bias, C, r, op, "bias");
  const int64_t per_group = N * num_groups > 0 ? x.numel() / (N * num_groups) : 0;
  const Var g = reshape(x, {N, num_groups, per_group});
  std::vector<int64_t> xs(x.shape().begin(), x.shape().end());
  return affine(reshape(normalize(g, {2}, eps), xs), w, b);
}

Var instance_norm(const Var& x, const Var& running_mean, const Var& running_var, const Var& weight,
                  const Var& bias, bool use_input_stats, double momentum, double eps) {
  const char* op = "instance_norm";
  if (x.dim() < 3)
    throw ShapeError(std::string(op) + ": expected an input of rank 3 or more ([N, C, *]), got " +
                     "shape " + x.shape().str());
  for (const Var* v : {&x, &running_mean, &running_var, &weight, &bias}) check_float_arg(*v, op);
  const int r = x.dim();
  const int64_t C = x.shape()[1];
  const Var rm = per_channel(running_mean, C, r, op, "running_mean");
  const Var rv = per_channel(running_var, C, r, op, "running_var");
  const Var w = per_channel(weight, C, r, op, "weight");
  const Var b = per_channel(bias, C, r, op, "bias");
  std::vector<int64_t> dims;
  for (int d = 2; d < r; ++d) dims.push_back(d);
  if (use_input_stats) {
    const int64_t n = x.shape()[0] * C > 0 ? x.numel() / (x.shape()[0] * C) : 0;
    if (n <= 1)
      throw Error(std::string(op) + ": expected more than 1 spatial element when training, " +
                  "got input of shape " + x.shape().str());
    Var m, v;
    Var y = normalize(x, dims, eps, &m, &v);
    if (running_mean.defined()) update_running(running_mean, mean(m, {0}), momentum);
    if (running_var.defined())
      update_running(running_var,
                     mean(v, {0}) * (static_cast<double>(n) / static_cast<double>(n - 1)),
                     momentum);
    return affine(y, w, b);
  }
  if (!rm.defined() || !rv.defined())
    throw Error(std::string(op) +
                ": running_mean and running_var must be given when use_input_stats is false");
  return affine((x - rm) * rsqrt(rv + eps), w, b);
}

}  // namespace tg
