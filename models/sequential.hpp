#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "models/activations.hpp"
#include "models/layers.hpp"

namespace tg {

/// Layers applied in order; owns them and names them "0", "1", ...
class Sequential : public Layer {
 public:
  Sequential() = default;
  /// E.g. `Sequential(std::make_unique<Linear>(2, 3, rng), std::make_unique<Sigmoid>())`.
  template <class... Ms>
  explicit Sequential(std::unique_ptr<Ms>... layers) {
    (push_back(std::move(layers)), ...);
  }

  /// Appends an owned layer; returns it.
  Layer& push_back(std::unique_ptr<Layer> layer);
  /// Constructs a layer of type M at the end; returns it.
  template <class M, class... Args>
  M& emplace_back(Args&&... args) {
    auto layer = std::make_unique<M>(std::forward<Args>(args)...);
    M& ref = *layer;
    push_back(std::move(layer));
    return ref;
  }

  Var forward(const Var& x) override;

  size_t size() const { return layers_.size(); }
  Layer& operator[](size_t i) const { return *layers_.at(i); }
  std::string type_name() const override { return "Sequential"; }

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
};

/// Linear layers of the given sizes with `hidden` after each but the last and `output`
/// after the last (nothing for identity), in one Sequential registered as "layers": for
/// MLP({2, 8, 1}, tanh, sigmoid) the parameters are layers.0.weight, layers.0.bias,
/// layers.2.weight, layers.2.bias.
class MLP : public Layer {
 public:
  MLP(std::vector<int64_t> sizes, Activation hidden, Activation output, Rng& rng, bool bias = true,
      Dtype dtype = f32);
  /// The same with activations named as in `activations()`, e.g. "leaky_relu" (throws Error
  /// for an unknown name).
  MLP(std::vector<int64_t> sizes, std::string_view hidden, std::string_view output, Rng& rng,
      bool bias = true, Dtype dtype = f32);
  Var forward(const Var& x) override { return layers(x); }
  std::string type_name() const override { return "MLP"; }

  /// The i-th Linear layer (0 = first).
  Linear& linear(size_t i) const { return *linears_.at(i); }
  size_t num_linear() const { return linears_.size(); }
  const std::vector<int64_t>& sizes() const { return sizes_; }

  Sequential layers;

 private:
  std::vector<int64_t> sizes_;
  std::vector<Linear*> linears_;
};

}  // namespace tg
