#include "models/activations.hpp"

#include "models/layers.hpp"

namespace tg {

namespace {

template <class L>
std::unique_ptr<Layer> make_layer() {
  return std::make_unique<L>();
}

}  // namespace

const std::vector<ActivationInfo>& activations() {
  // NOTE: the one list of activations. A name is what checkpoints store: never rename or
  // remove a row (add an alias instead). The order is only that of listings.
  static const std::vector<ActivationInfo> table{
      {.name = "relu", .make = make_layer<ReLU>, .value = Activation::relu},
      {.name = "leaky_relu", .make = make_layer<LeakyReLU>},
      {.name = "sigmoid", .make = make_layer<Sigmoid>, .value = Activation::sigmoid},
      {.name = "tanh", .make = make_layer<Tanh>, .value = Activation::tanh},
      {.name = "identity",
       .make = make_layer<Identity>,
       .value = Activation::identity,
       .aliases = {"none", "linear"}},
      {.name = "gelu", .make = make_layer<GELU>},
      {.name = "silu", .make = make_layer<SiLU>},
  };
  return table;
}

std::vector<std::string> activation_names() {
  std::vector<std::string> names;
  for (const auto& a : activations()) names.emplace_back(a.name);
  return names;
}

const ActivationInfo& find_activation(std::string_view name) {
  for (const auto& a : activations()) {
    if (a.name == name) return a;
    for (std::string_view alias : a.aliases)
      if (alias == name) return a;
  }
  std::string known;
  for (const auto& a : activations()) known += (known.empty() ? "" : ", ") + std::string(a.name);
  throw Error("unknown activation '" + std::string(name) + "' (known: " + known + ")");
}

const ActivationInfo& find_activation(Activation value) {
  for (const auto& a : activations())
    if (a.value == value) return a;
  throw Error("activation " + std::to_string(static_cast<int>(value)) +
              " is not in the registry (models/activations.cpp)");
}

std::unique_ptr<Layer> make_activation(std::string_view name) {
  return find_activation(name).make();
}

std::unique_ptr<Layer> make_activation(Activation a) { return find_activation(a).make(); }

std::string_view activation_name(Activation a) { return find_activation(a).name; }

Activation activation_from_name(std::string_view name) {
  const ActivationInfo& a = find_activation(name);
  if (!a.value)
    throw Error("activation '" + std::string(a.name) +
                "' has no tg::Activation value: use its name (make_activation, MLP)");
  return *a.value;
}

}  // namespace tg
