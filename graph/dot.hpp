#pragma once

#include <string>
#include <vector>

#include "graph/var.hpp"

namespace tg {

/// The graph recorded behind `roots` in Graphviz DOT: one box per op (name, shape, dtype),
/// one ellipse per leaf, an edge from each input to its consumer.
std::string to_dot(const std::vector<Var>& roots);
inline std::string to_dot(const Var& root) { return to_dot(std::vector<Var>{root}); }

}  // namespace tg
