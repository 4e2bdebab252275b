#include "optim/optimizer.hpp"

#include <cstring>
#include <unordered_set>

namespace tg {

Optimizer::Optimizer(std::vector<Var> params, double lr) {
  init({ParamGroup{std::move(params), {}}}, lr);
}

Optimizer::Optimizer(std::vector<ParamGroup> groups, double default_lr) {
  if (groups.empty()) throw Error("Optimizer: no parameter groups");
  init(groups, default_lr);
}

void Optimizer::init(const std::vector<ParamGroup>& groups, double default_lr) {
  for (size_t g = 0; g < groups.size(); ++g) {
    auto it = groups[g].options.find("lr");
    const double lr = it != groups[g].options.end() ? it->second : default_lr;
    if (!(lr >= 0.0))
      throw Error("Optimizer: invalid learning rate " + std::to_string(lr) +
                  (groups.size() > 1 ? " in parameter group " + std::to_string(g) : ""));
    group_lr_.push_back(lr);
    group_begin_.push_back(params_.size());
    overrides_.push_back(groups[g].options);
    for (const auto& p : groups[g].params) {
      params_.push_back(p);
      group_of_.push_back(g);
    }
  }
  group_begin_.push_back(params_.size());
  std::unordered_set<const Node*> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Var& p = params_[i];
    if (!p.defined()) throw Error("Optimizer: parameter " + std::to_string(i) + " is undefined");
    if (!p.is_leaf()) throw Error("Optimizer: parameter " + std::to_string(i) + " is not a leaf");
    if (!seen.insert(p.node()).second)
      throw Error("Optimizer: parameter " + std::to_string(i) + " appears more than once");
  }
  param_steps_.assign(params_.size(), 0);
}

void Optimizer::set_lr(double lr) {
  if (!(lr >= 0.0)) throw Error("Optimizer::set_lr: invalid learning rate " + std::to_string(lr));
  for (auto& r : group_lr_) r = lr;
}

void Optimizer::set_lr(size_t group, double lr) {
  if (group >= group_lr_.size())
    throw IndexError("Optimizer::set_lr: group " + std::to_string(group) + " of " +
                     std::to_string(group_lr_.size()));
  if (!(lr >= 0.0)) throw Error("Optimizer::set_lr: invalid learning rate " + std::to_string(lr));
  group_lr_[group] = lr;
}

std::vector<Var> Optimizer::group_params(size_t group) const {
  if (group >= group_lr_.size())
    throw IndexError("Optimizer::group_params: group " + std::to_string(group) + " of " +
                     std::to_string(group_lr_.size()));
  return {params_.begin() + static_cast<std::ptrdiff_t>(group_begin_[group]),
          params_.begin() + static_cast<std::ptrdiff_t>(group_begin_[group + 1])};
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

void Optimizer::register_state(std::string name, std::vector<Tensor>& slots) {
  slots.assign(params_.size(), Tensor());
  states_.emplace_back(std::move(name), &slots);
}

Tensor& Optimizer::state(std::vector<Tensor>& slots, size_t i, double fill) {
  Tensor& s = slots[i];
  const Tensor& p = params_[i].value();
  if (!s.defined())
    s = full(p.shape(), fill, p.dtype());
  else if (s.dtype() != p.dtype())  // the model was converted with Module::to
    s = s.to(p.dtype());
  return s;
}

void Optimizer::step() {
  NoGradGuard no_grad;
  // Check every gradient before touching anything, so a bad one leaves all unchanged.
  std::vector<Tensor> grads(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Var g = params_[i].grad();
    if (!g.defined()) continue;
    if (g.shape() != params_[i].shape())
      throw ShapeError(name() + "::step: gradient of parameter " + std::to_string(i) +
                       " has shape " + g.shape().str() + ", parameter " + params_[i].shape().str());
    grads[i] = g.dtype() == params_[i].dtype() ? g.value() : g.value().to(params_[i].dtype());
    if (maximize_) {  // a new tensor: the gradient itself stays as it is
      Tensor neg = Tensor::empty(grads[i].shape(), grads[i].dtype());
      dispatch(neg.dtype(), [&]<class T>() {
        const T* src = grads[i].data<T>();
        T* dst = neg.data<T>();
        for (int64_t k = 0; k < neg.numel(); ++k) dst[k] = -src[k];
      });
      grads[i] = std::move(neg);
    }
  }
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!grads[i].defined()) continue;
    ++param_steps_[i];
    Tensor value = params_[i].value();
    update(i, value, grads[i]);
    value.bump_version();  // an in-place change: a graph that saved the old value must not run
  }
}

void Optimizer::state_dict(NpzArchive& a, const std::string& prefix) const {
  a.put_scalar(prefix + "lr", group_lr_[0]);
  NpyArray lrs;
  lrs.type = NpyType::f64;
  lrs.shape = {static_cast<int64_t>(group_lr_.size())};
  lrs.bytes.resize(group_lr_.size() * sizeof(double));
  std::memcpy(lrs.bytes.data(), group_lr_.data(), lrs.bytes.size());
  a.put(prefix + "group_lrs", std::move(lrs));
  std::vector<int64_t> sizes;
  for (size_t g = 0; g < group_lr_.size(); ++g)
    sizes.push_back(static_cast<int64_t>(group_begin_[g + 1] - group_begin_[g]));
  a.put_i64(prefix + "group_sizes", sizes);
  a.put_int(prefix + "steps", steps_);
  a.put_i64(prefix + "param_steps", param_steps_);
  for (const auto& [name, slots] : states_)
    for (size_t i = 0; i < slots->size(); ++i)
      if ((*slots)[i].defined())
        a.put(prefix + "state." + std::to_string(i) + "." + name, (*slots)[i]);
}

std::string detail::state_source(const NpzArchive& a, const std::string& what) {
  return a.source().empty() ? what : what + " '" + a.source() + "'";
}

void Optimizer::load_state_dict(const NpzArchive& a, const std::string& prefix) {
  const std::string src = detail::state_source(a, "optimizer state");
  const double lr = a.scalar(prefix + "lr");
  const int64_t steps = a.integer(prefix + "steps");
  const auto param_steps = a.i64s(prefix + "param_steps");
  if (param_steps.size() != params_.size())
    throw IoError(src + ": state for " + std::to_string(param_steps.size()) + " parameters, the " +
                  name() + " optimizer has " + std::to_string(params_.size()));
  if (!(lr >= 0.0)) throw IoError(src + ": invalid lr");
  // A parameter is updated at most once a step (Adam's bias correction divides by
  // 1 - beta^t: t = 0 would divide by zero).
  if (steps < 0) throw IoError(src + ": negative step count " + std::to_string(steps));
  for (size_t i = 0; i < param_steps.size(); ++i)
    if (param_steps[i] < 0 || param_steps[i] > steps)
      throw IoError(src + ": parameter " + std::to_string(i) + " has " +
                    std::to_string(param_steps[i]) + " updates in " + std::to_string(steps) +
                    " steps");
  std::vector<double> group_lrs(group_lr_.size(), lr);
  if (a.contains(prefix + "group_lrs")) {
    const Tensor t = a.tensor(prefix + "group_lrs").to(f64);
    if (t.dim() != 1 || static_cast<size_t>(t.numel()) != group_lr_.size())
      throw IoError(src + ": rates for " + std::to_string(t.numel()) + " parameter groups, the " +
                    name() + " optimizer has " + std::to_string(group_lr_.size()));
    for (size_t g = 0; g < group_lrs.size(); ++g) {
      group_lrs[g] = t.data<double>()[g];
      if (!(group_lrs[g] >= 0.0))
        throw IoError(src + ": invalid lr in parameter group " + std::to_string(g));
    }
  }
  if (a.contains(prefix + "group_sizes")) {
    const auto sizes = a.i64s(prefix + "group_sizes");
    bool same = sizes.size() == group_lr_.size();
    for (size_t g = 0; same && g < sizes.size(); ++g)
      same = sizes[g] == static_cast<int64_t>(group_begin_[g + 1] - group_begin_[g]);
    if (!same)
      throw IoError(src + ": the parameter groups in the file have other sizes than the " + name() +
                    " optimizer's");
  }
  // Stage every state tensor.
  std::vector<std::vector<Tensor>> staged(states_.size());
  std::unordered_set<std::string> used;
  for (size_t s = 0; s < states_.size(); ++s) {
    staged[s].resize(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      const std::string key = prefix + "state." + std::to_string(i) + "." + states_[s].first;
      if (!a.contains(key)) continue;  // not created yet (parameter never updated)
      used.insert(key);
      const NpyArray& arr = a.array(key);
      const Var& p = params_[i];
      if (Shape(arr.shape) != p.shape())
        throw IoError(src + ": '" + key + "' has shape " + Shape(arr.shape).str() + ", parameter " +
                      std::to_string(i) + " has " + p.shape().str());
      if (arr.type != NpyType::f32 && arr.type != NpyType::f64)
        throw IoError(src + ": '" + key + "' is stored as an array of " + npy_descr(arr.type) +
                      "; float32 or float64 expected");
      Tensor t = arr.to_tensor();
      if (t.dtype() != p.dtype()) {
        if (t.dtype() == f64)
          throw IoError(src + ": '" + key + "' is float64 but parameter " + std::to_string(i) +
                        " is float32");
        t = t.to(p.dtype());
      }
      staged[s][i] = std::move(t);
    }
  }
  const std::string state_prefix = prefix + "state.";
  for (const auto& key : a.names())
    if (key.compare(0, state_prefix.size(), state_prefix) == 0 && !used.count(key))
      throw IoError(src + ": entry '" + key + "' is not state of the " + name() + " optimizer");
  // Commit.
  group_lr_ = group_lrs;
  steps_ = steps;
  param_steps_ = param_steps;
  for (size_t s = 0; s < states_.size(); ++s) *states_[s].second = std::move(staged[s]);
}

void Optimizer::save(const std::string& path) const {
  NpzArchive a;
  state_dict(a);
  a.save(path);
}

void Optimizer::load(const std::string& path) { load_state_dict(NpzArchive::load(path)); }

}  // namespace tg
