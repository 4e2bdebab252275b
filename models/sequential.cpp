#include "models/sequential.hpp"

#include <string>

namespace tg {

Layer& Sequential::push_back(std::unique_ptr<Layer> layer) {
  if (!layer) throw Error("Sequential::push_back: null layer");
  register_module(std::to_string(layers_.size()), *layer);
  layers_.push_back(std::move(layer));
  return *layers_.back();
}

Var Sequential::forward(const Var& x) {
  Var y = x;
  for (auto& layer : layers_) y = (*layer)(y);
  return y;
}

MLP::MLP(std::vector<int64_t> sizes, Activation hidden, Activation output, Rng& rng, bool bias,
         Dtype dtype)
    : MLP(std::move(sizes), activation_name(hidden), activation_name(output), rng, bias, dtype) {}

MLP::MLP(std::vector<int64_t> sizes, std::string_view hidden, std::string_view output, Rng& rng,
         bool bias, Dtype dtype)
    : sizes_(std::move(sizes)) {
  if (sizes_.size() < 2) throw ShapeError("MLP: needs at least an input and an output size");
  const ActivationInfo& h = find_activation(hidden);
  const ActivationInfo& o = find_activation(output);
  register_module("layers", layers);
  for (size_t i = 0; i + 1 < sizes_.size(); ++i) {
    linears_.push_back(&layers.emplace_back<Linear>(sizes_[i], sizes_[i + 1], rng, bias, dtype));
    const ActivationInfo& a = i + 2 < sizes_.size() ? h : o;
    // NOTE: no Identity layer, so the Linear layers keep their names (layers.0, layers.2, ...
    // with an activation between them; layers.0, layers.1 without).
    if (a.value != Activation::identity) layers.push_back(a.make());
  }
}

}  // namespace tg
