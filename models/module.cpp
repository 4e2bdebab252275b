#include "models/module.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_set>

namespace tg {

void Module::check_new_name(const std::string& name, const char* what) const {
  if (name.empty() || name.find('.') != std::string::npos)
    throw Error(std::string("Module::") + what + ": invalid name '" + name +
                "' (must be non-empty and contain no '.')");
  for (const auto& [n, p] : params_)
    if (n == name) throw Error(std::string("Module::") + what + ": name '" + name + "' taken");
  for (const auto& b : buffers_)
    if (b.name == name) throw Error(std::string("Module::") + what + ": name '" + name + "' taken");
  for (const auto& [n, c] : children_)
    if (n == name) throw Error(std::string("Module::") + what + ": name '" + name + "' taken");
}

Tensor& Module::register_buffer(std::string name, Tensor value, bool persistent) {
  check_new_name(name, "register_buffer");
  buffers_.push_back({std::move(name), std::move(value), persistent});
  return buffers_.back().value;
}

Tensor& Module::buffer(std::string_view name) {
  for (auto& b : buffers_)
    if (b.name == name) return b.value;
  throw Error("Module::buffer: no buffer '" + std::string(name) + "' in this " + type_name());
}

const Tensor& Module::buffer(std::string_view name) const {
  return const_cast<Module*>(this)->buffer(name);
}

bool Module::is_persistent_buffer(std::string_view name) const {
  for (const auto& b : buffers_)
    if (b.name == name) return b.persistent;
  throw Error("Module::is_persistent_buffer: no buffer '" + std::string(name) + "' in this " +
              type_name());
}

namespace {
void collect_buffers(Module& m, const std::string& prefix, std::vector<NamedBufferSlot>& out,
                     std::unordered_set<const Tensor*>& seen,
                     const std::function<void(Module&, const std::string&)>& own) {
  own(m, prefix);
  for (const auto& [name, child] : m.named_children())
    collect_buffers(*child, prefix + name + ".", out, seen, own);
}
}  // namespace

std::vector<NamedBufferSlot> named_buffer_slots(Module& root) {
  std::vector<NamedBufferSlot> out;
  std::unordered_set<const Tensor*> seen;
  collect_buffers(root, "", out, seen, [&](Module& m, const std::string& prefix) {
    for (auto& b : m.buffers_)
      if (b.value.defined() && seen.insert(&b.value).second)
        out.push_back({prefix + b.name, &b.value, b.persistent});
  });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& b : named_buffer_slots(const_cast<Module&>(*this))) out.emplace_back(b.name, *b.slot);
  return out;
}

std::vector<Tensor> Module::buffers() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_buffers()) out.push_back(t);
  return out;
}

Var Module::register_parameter(std::string name, Tensor value) {
  if (!value.defined()) throw Error("Module::register_parameter: '" + name + "' is undefined");
  return register_parameter(std::move(name), param(std::move(value)));
}

Var Module::register_parameter(std::string name, Var p) {
  check_new_name(name, "register_parameter");
  if (!p.defined()) throw Error("Module::register_parameter: '" + name + "' is undefined");
  if (!p.is_leaf())
    throw Error("Module::register_parameter: '" + name + "' is not a leaf (detach it first)");
  p.requires_grad_(true);
  params_.emplace_back(std::move(name), p);
  return p;
}

void Module::add_child(std::string name, Module& child) {
  check_new_name(name, "register_module");
  if (&child == this) throw Error("Module::register_module: a module cannot contain itself");
  children_.emplace_back(std::move(name), &child);
}

namespace {
void collect(const Module& m, const std::string& prefix,
             std::vector<std::pair<std::string, Var>>& out, std::unordered_set<const Node*>& seen) {
  for (const auto& [name, p] : m.own_parameters())
    if (seen.insert(p.node()).second) out.emplace_back(prefix + name, p);
  for (const auto& [name, child] : m.named_children())
    collect(*child, prefix + name + ".", out, seen);
}
}  // namespace

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  std::unordered_set<const Node*> seen;
  collect(*this, "", out, seen);
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [name, p] : named_parameters()) out.push_back(p);
  return out;
}

Var Module::parameter(std::string_view name) const {
  for (auto& [n, p] : named_parameters())
    if (n == name) return p;
  return {};
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::vector<Module*> Module::children() const {
  std::vector<Module*> out;
  for (const auto& [name, c] : children_) out.push_back(c);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (size_t i = 0; i < out.size(); ++i) {
    // Pre-order: insert the children right after their parent.
    const auto [path, m] = out[i];
    std::vector<std::pair<std::string, Module*>> kids;
    for (const auto& [name, c] : m->children_)
      kids.emplace_back(path.empty() ? name : path + "." + name, c);
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(i) + 1, kids.begin(), kids.end());
  }
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (auto& [n, m] : const_cast<Module*>(this)->named_modules()) out.emplace_back(n, m);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, c] : children_) c->train(on);
}

void Module::to(Dtype dtype) {
  for (auto& p : parameters()) {
    if (p.dtype() == dtype) continue;
    p.zero_grad();  // a gradient of the old dtype no longer fits
    p.set_value(p.value().to(dtype));
  }
  if (!is_floating(dtype)) return;
  for (auto& b : named_buffer_slots(*this))
    if (is_floating(b.slot->dtype()) && b.slot->dtype() != dtype) *b.slot = b.slot->to(dtype);
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

namespace {
void print_tree(const Module& m, std::ostringstream& os, int indent) {
  // As PyTorch's repr: the extra representation inline without children, else on its own
  // line above them.
  const std::string extra = m.extra_repr();
  if (m.named_children().empty()) {
    os << m.type_name() << '(' << extra << ')';
    return;
  }
  os << m.type_name() << "(\n";
  if (!extra.empty()) os << std::string(static_cast<size_t>(indent + 2), ' ') << extra << '\n';
  for (const auto& [name, c] : m.named_children()) {
    os << std::string(static_cast<size_t>(indent + 2), ' ') << '(' << name << "): ";
    print_tree(*c, os, indent + 2);
    os << '\n';
  }
  os << std::string(static_cast<size_t>(indent), ' ') << ')';
}
}  // namespace

std::string Module::str() const {
  std::ostringstream os;
  print_tree(*this, os, 0);
  return os.str();
}

Module& ModuleList::append(std::unique_ptr<Module> module) {
  if (!module) throw Error("ModuleList::append: null module");
  register_module(std::to_string(items_.size()), *module);
  items_.push_back(std::move(module));
  return *items_.back();
}

Module& ModuleList::operator[](int64_t i) const {
  const auto n = static_cast<int64_t>(items_.size());
  if (i < -n || i >= n)
    throw IndexError("ModuleList: index " + std::to_string(i) + " is out of range for " +
                     std::to_string(n) + " modules");
  return *items_[static_cast<size_t>(i < 0 ? i + n : i)];
}

Module& ModuleDict::insert(std::string key, std::unique_ptr<Module> module) {
  if (!module) throw Error("ModuleDict::insert: null module for '" + key + "'");
  register_module(key, *module);
  items_.emplace_back(std::move(key), std::move(module));
  return *items_.back().second;
}

bool ModuleDict::contains(std::string_view key) const {
  for (const auto& [k, m] : items_)
    if (k == key) return true;
  return false;
}

Module& ModuleDict::operator[](std::string_view key) const {
  for (const auto& [k, m] : items_)
    if (k == key) return *m;
  throw IndexError("ModuleDict: no module under key '" + std::string(key) + "'");
}

std::vector<std::string> ModuleDict::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, m] : items_) out.push_back(k);
  return out;
}

std::vector<std::pair<std::string, Module*>> ModuleDict::items() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [k, m] : items_) out.emplace_back(k, m.get());
  return out;
}

Var Layer::operator()(const Var& x) {
  Var y = forward(x);
  if (hooks_.empty()) return y;
  // Copy first: a hook may remove itself.
  auto hooks = hooks_;
  for (auto& [id, h] : hooks) h(*this, x, y);
  return y;
}

size_t Layer::register_forward_hook(ForwardHook hook) {
  hooks_.emplace_back(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

void Layer::remove_forward_hook(size_t id) {
  std::erase_if(hooks_, [id](const auto& h) { return h.first == id; });
}

}  // namespace tg
