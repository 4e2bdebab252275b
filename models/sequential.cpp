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

std::unique_ptr<Layer> make_activation(Activation a) {
  switch (a) {
    case Activation::sigmoid:
      return std::make_unique<Sigmoid>();
    case Activation::tanh:
      return std::make_unique<Tanh>();
    case Activation::relu:
      return std::make_unique<ReLU>();
    case Activation::identity:
      break;
  }
  return std::make_unique<Identity>();
}

std::string_view activation_name(Activation a) {
  switch (a) {
    case Activation::sigmoid:
      return "sigmoid";
    case Activation::tanh:
      return "tanh";
    case Activation::relu:
      return "relu";
    case Activation::identity:
      break;
  }
  return "identity";
}

Activation activation_from_name(std::string_view name) {
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "identity" || name == "none" || name == "linear") return Activation::identity;
  throw Error("unknown activation '" + std::string(name) +
              "' (expected sigmoid, tanh, relu or identity)");
}

MLP::MLP(std::vector<int64_t> sizes, Activation hidden, Activation output, Rng& rng, bool bias,
         Dtype dtype)
    : sizes_(std::move(sizes)) {
  if (sizes_.size() < 2) throw ShapeError("MLP: needs at least an input and an output size");
  register_module("layers", layers);
  for (size_t i = 0; i + 1 < sizes_.size(); ++i) {
    linears_.push_back(&layers.emplace_back<Linear>(sizes_[i], sizes_[i + 1], rng, bias, dtype));
    const Activation a = i + 2 < sizes_.size() ? hidden : output;
    if (a != Activation::identity) layers.push_back(make_activation(a));
  }
}

}  // namespace tg
