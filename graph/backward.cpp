// The entry points of a backward sweep: tg::backward, tg::grad and Var::backward check
// their arguments here and hand the sweep to the engine (graph/engine.cpp).

#include <string>
#include <vector>

#include "graph/engine.hpp"
#include "graph/var.hpp"

namespace tg {

namespace detail {

std::string describe(const Node& n) {
  return "op '" + std::string(n.name) + "' (node #" + std::to_string(n.seq) + ", output " +
         n.value.shape().str() + ")";
}

}  // namespace detail

namespace {

void check_roots(const std::vector<Var>& roots, const std::vector<Var>& grad_outputs) {
  if (!grad_outputs.empty() && grad_outputs.size() != roots.size())
    throw GraphError("backward: " + std::to_string(roots.size()) + " outputs but " +
                     std::to_string(grad_outputs.size()) + " gradients");
  for (size_t k = 0; k < roots.size(); ++k) {
    const Var& r = roots[k];
    const std::string which = "backward: output " + std::to_string(k);
    if (!r.defined()) throw GraphError(which + " is undefined");
    if (!r.requires_grad())
      throw GraphError(which + " does not require grad (no leaf it depends on wants a gradient)");
    const Var* go =
        k < grad_outputs.size() && grad_outputs[k].defined() ? &grad_outputs[k] : nullptr;
    if (!go && r.numel() != 1)
      throw GraphError(which + " has shape " + r.shape().str() +
                       "; backward without a gradient needs a one-element output (reduce it, "
                       "or pass a gradient of that shape)");
    if (go && (go->shape() != r.shape() || go->dtype() != r.dtype()))
      throw GraphError("backward: gradient " + go->shape().str() + " " +
                       std::string(dtype_name(go->dtype())) + " does not match output " +
                       r.shape().str() + " " + std::string(dtype_name(r.dtype())));
  }
}

}  // namespace

void backward(const std::vector<Var>& outputs, const std::vector<Var>& grad_outputs,
              const BackwardOptions& options) {
  check_roots(outputs, grad_outputs);
  detail::Targets fields;
  detail::run(outputs, grad_outputs, options.retain_graph || options.create_graph,
              options.create_graph, fields);
}

std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& inputs,
                      const std::vector<Var>& grad_outputs, const GradOptions& options) {
  check_roots(outputs, grad_outputs);
  detail::Targets targets{.capture = true, .nodes = {}, .grads = std::vector<Var>(inputs.size())};
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].requires_grad())
      throw GraphError("grad: input " + std::to_string(i) + " does not require grad");
    targets.nodes.push_back(inputs[i].node());
  }
  detail::run(outputs, grad_outputs, options.retain_graph || options.create_graph,
              options.create_graph, targets);
  for (size_t i = 0; i < targets.grads.size(); ++i) {
    if (targets.grads[i].defined() || options.allow_unused) continue;
    throw GraphError("grad: input " + std::to_string(i) +
                     " is not reachable from the outputs (pass allow_unused = true)");
  }
  return std::move(targets.grads);
}

}  // namespace tg
