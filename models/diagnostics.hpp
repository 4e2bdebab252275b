#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/module.hpp"

namespace tg {

/// What `diagnose` found for one Linear layer (its units are the rows of the weight).
struct LinearDiagnostics {
  std::string name;  // dotted module path, e.g. "layers.0"
  int64_t in_features = 0;
  int64_t out_features = 0;
  /// Groups (size >= 2, ascending) of units whose incoming weight rows and biases are
  /// exactly equal: such units compute the same function.
  std::vector<std::vector<int64_t>> identical_weights;
  /// Groups of units whose weight and bias gradients are exactly equal (empty without
  /// gradients).
  std::vector<std::vector<int64_t>> identical_grads;
  bool has_grad = false;
  double weight_norm = 0.0;  // Frobenius norm of the weight
  double bias_norm = 0.0;
  double grad_norm = 0.0;  // of the weight's gradient (0 without one)
  double bias_grad_norm = 0.0;

  /// True when every unit of the layer is identical to every other (and there are >= 2).
  bool all_units_identical() const {
    return out_features > 1 && identical_weights.size() == 1 &&
           static_cast<int64_t>(identical_weights[0].size()) == out_features;
  }
};

/// What `diagnose` saw at the output of one activation layer over a batch.
struct ActivationDiagnostics {
  std::string name;  // dotted module path
  std::string kind;  // "ReLU", "Sigmoid", "Tanh"
  int64_t units = 0;
  int64_t batch = 0;
  /// ReLU: units that are zero on every example of the batch.
  std::vector<int64_t> dead;
  /// Sigmoid (output < low or > high) / Tanh (|output| > 2 * high - 1) on every example.
  std::vector<int64_t> saturated;
};

struct DiagnosticsOptions {
  double saturation_low = 0.01;
  double saturation_high = 0.99;
};

/// The seed question (docs/seed.md) answered for a model: which units are identical, dead
/// or saturated.
struct DiagnosticsReport {
  std::vector<LinearDiagnostics> linear;
  std::vector<ActivationDiagnostics> activations;
  /// The entry for the Linear layer at `name`; throws Error when there is none.
  const LinearDiagnostics& layer(const std::string& name) const;
  /// Readable text, one block per layer.
  std::string str() const;
};

/// Weights and gradients of every Linear layer in `model`.
DiagnosticsReport diagnose(const Module& model, const DiagnosticsOptions& options = {});
/// The same, plus the outputs of every ReLU / Sigmoid / Tanh layer while `model` runs on
/// `batch` (rows = examples, last axis = units), in eval mode and without recording; the
/// model's train/eval flags are restored afterwards. Activation modules called from the
/// model's forward are seen; activation *functions* called directly are not.
DiagnosticsReport diagnose(Layer& model, const Var& batch, const DiagnosticsOptions& options = {});
/// The same for any module, run on `batch` through `forward` (e.g. a user module's own
/// forward method: `[&](const tg::Var& x) { return net.forward(x); }`).
DiagnosticsReport diagnose(Module& model, const std::function<Var(const Var&)>& forward,
                           const Var& batch, const DiagnosticsOptions& options = {});

}  // namespace tg
