#pragma once

// Internal: the engine's sweep (graph/engine.cpp) as the entry points (graph/backward.cpp)
// call it.

#include <string>
#include <vector>

#include "graph/var.hpp"

namespace tg::detail {

// Where finished gradients go: into `.grad` fields (backward), or, for tg::grad, returned
// for the chosen nodes only (no `.grad` is written).
struct Targets {
  bool capture = false;
  std::vector<Node*> nodes;  // tg::grad's inputs, in order
  std::vector<Var> grads;    // their gradients
};

/// "op 'mul' (node #12, output [3, 4])", for messages.
std::string describe(const Node& n);

/// One backward from `roots` (checked by the caller) seeded with `grad_outputs` (ones where
/// absent); keeps the graph when `keep_graph`, records the sweep when `create_graph`.
void run(const std::vector<Var>& roots, const std::vector<Var>& grad_outputs, bool keep_graph,
         bool create_graph, Targets& targets);

}  // namespace tg::detail
