#pragma once

// The activations tapegrad knows, by name: one table (models/activations.cpp) that MLP, the
// CLI's --activation and the checkpoints of `tapegrad train` all read.
//
// To add an activation: write its Layer (models/layers.hpp) and add one row to the table.
// Nothing else lists activations; the enum below only names the first four, for the API
// that takes it (an activation without an enum value is used by its name).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/module.hpp"

namespace tg {

/// The activation after a layer of an MLP (the four activations with an enum value; every
/// activation, these included, is also known by its name: see `activations()`).
enum class Activation { identity, sigmoid, tanh, relu };

/// One row of the registry.
struct ActivationInfo {
  /// The name files store and the CLI accepts, e.g. "tanh". Never rename a row: checkpoints
  /// hold this string.
  std::string_view name;
  /// A new layer computing it (default parameters, e.g. LeakyReLU's slope 0.01).
  std::unique_ptr<Layer> (*make)();
  /// Its `Activation` value, if the enum has one.
  std::optional<Activation> value = std::nullopt;
  /// Other names it is found by (never stored: `name` is).
  std::vector<std::string_view> aliases = {};
};

/// Every activation, in the order listings show them (the order means nothing else).
const std::vector<ActivationInfo>& activations();
/// The canonical names, in registry order.
std::vector<std::string> activation_names();
/// The row named `name` (or one of its aliases); throws Error naming `name` and listing the
/// known names.
const ActivationInfo& find_activation(std::string_view name);
/// The row of an enum value.
const ActivationInfo& find_activation(Activation a);

/// A new layer of the activation named `name` (see `find_activation`; throws Error).
std::unique_ptr<Layer> make_activation(std::string_view name);
/// A new Sigmoid / Tanh / ReLU / Identity layer.
std::unique_ptr<Layer> make_activation(Activation a);
/// "identity", "sigmoid", "tanh", "relu".
std::string_view activation_name(Activation a);
/// Inverse of `activation_name` (aliases too, e.g. "none" and "linear" for identity); throws
/// Error for an unknown name or one without an enum value.
Activation activation_from_name(std::string_view name);

}  // namespace tg
