#include "graph/dot.hpp"

#include <sstream>
#include <unordered_map>

namespace tg {

std::string to_dot(const std::vector<Var>& roots) {
  std::ostringstream os;
  os << "digraph tapegrad {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n";
  std::unordered_map<const Node*, int> ids;
  std::vector<const Node*> stack;
  auto id_of = [&](const Node* n) {
    auto [it, fresh] = ids.emplace(n, static_cast<int>(ids.size()));
    if (fresh) stack.push_back(n);
    return it->second;
  };
  for (const Var& r : roots)
    if (r.defined()) id_of(r.node());
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    const int id = ids.at(n);
    std::string label = n->has_fn ? n->name : (n->requires_grad ? "param" : "constant");
    os << "  n" << id << " [label=\"" << label << "\\n"
       << n->value.shape().str() << " " << dtype_name(n->value.dtype())
       << "\", shape=" << (n->has_fn ? "box" : "ellipse") << (n->released ? ", style=dashed" : "")
       << "];\n";
    for (const Var& in : n->inputs) {
      if (!in.defined()) continue;
      os << "  n" << id_of(in.node()) << " -> n" << id << ";\n";
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace tg
