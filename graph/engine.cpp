// The reverse-mode engine: one topological sort, one reverse sweep. The public entry
// points (tg::backward, tg::grad, Var::backward) and their argument checks are in
// graph/backward.cpp.

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "graph/engine.hpp"
#include "graph/engine_ops.hpp"
#include "graph/kernels.hpp"
#include "graph/var.hpp"

namespace tg {

// Note [Engine scratch]
// During one backward the engine keeps each node's incoming gradient in `Node::pending`
// and its visit mark in `Node::mark` (a per-backward epoch, so no clearing pass and no
// hash set). A graph is differentiated by one thread at a time; independent graphs on
// different threads never share these fields. Leaves shared between threads must not be
// differentiated concurrently (their `.grad` accumulation would race, as in any library).
//
// Note [Gradient accumulation]
// Ops return gradients; only the engine adds them up. The first gradient to reach a node
// is kept as is (it may alias another gradient, e.g. add's backward hands dy to both
// inputs). A second one is added out of place into a fresh buffer, which the node then owns
// (`pending_owned`), so later ones are added in place. With create_graph every sum is a
// recorded `add`, so it can be differentiated.
// An op may also add its part into that owned buffer itself (BackwardCtx::accumulating_grad):
// linear's weight gradient is then one gemm with beta = 1 into the sum, not a fresh product
// added afterwards (a weight used at every step of a recurrence, an LSTMCell loop's W_hh).

namespace {

using detail::describe;

std::atomic<uint64_t> g_epoch{0};

// Note [Backward callbacks]
// queue_backward_callback appends to the sweep that is running on this thread, the
// innermost one when a backward is started inside another (from a hook, from an op's
// backward, from a checkpoint's replay): each sweep has its own list, run when that sweep
// ends, as PyTorch's queue_callback appends to the current graph task. A callback queued by
// a hook of a nested sweep therefore runs when the nested sweep ends, before the outer one
// resumes; the outer sweep's list is not touched. A sweep that throws drops its own list
// (unrun) and no other, so an outer sweep that catches a nested failure still runs its own.
// A callback may queue another (it runs in the same pass) or start a backward (with a list
// of its own). The lists are per thread: a backward on another thread started from a hook
// is a sweep of that thread.
thread_local std::vector<std::vector<std::function<void()>>> t_callbacks;  // one per sweep

// The running sweep's callback list, from its start to its end (dropped unrun on a throw).
struct CallbackFrame {
  CallbackFrame() { t_callbacks.emplace_back(); }
  ~CallbackFrame() { t_callbacks.pop_back(); }
  CallbackFrame(const CallbackFrame&) = delete;
  CallbackFrame& operator=(const CallbackFrame&) = delete;

  // This sweep's callbacks, in the order queued (one may queue another). By index: a
  // callback that starts a backward pushes a list while this one runs.
  void run() const {
    const size_t level = t_callbacks.size() - 1;
    for (size_t i = 0; i < t_callbacks[level].size(); ++i) {
      std::function<void()> fn = std::move(t_callbacks[level][i]);
      fn();
    }
    t_callbacks[level].clear();
  }
};

bool sole_owner(const Var& v) {
  return v.node_ptr().use_count() == 1 && v.value().storage_use_count() == 1;
}

void accumulate_pending(Node& n, Var g, bool create_graph) {
  if (!n.pending.defined()) {
    n.pending = std::move(g);
    n.pending_owned = false;
    return;
  }
  if (create_graph) {
    n.pending = add(n.pending, g);
    return;
  }
  if (n.pending_owned || sole_owner(n.pending)) {
    Tensor dst = n.pending.value();
    kern::add_(dst, g.value());
  } else {
    n.pending =
        Var(kern::zip(n.pending.value(), g.value(), "add", [](auto a, auto b) { return a + b; }));
  }
  n.pending_owned = true;
}

}  // namespace

Tensor BackwardCtx::accumulating_grad(size_t i) const {
  const Var& in = node_->inputs[i];
  if (detail::grad_enabled || detail::anomaly_enabled || !in.defined() || !in.node()->requires_grad)
    return {};
  Node& n = *in.node();
  if (!n.pending.defined() || !(n.pending_owned || sole_owner(n.pending))) return {};
  const Tensor& g = n.pending.value();
  if (g.dtype() != in.dtype() || g.shape() != in.shape()) return {};
  n.pending_owned = true;
  return g;
}

namespace {

// Adds a finished gradient into a leaf's (or retained non-leaf's) `.grad`.
void accumulate_grad_field(Node& n, Var g, bool create_graph) {
  if (!n.grad.defined()) {
    if (create_graph || sole_owner(g)) {
      n.grad = std::move(g);
    } else {
      n.grad = Var(g.value().clone());
    }
    return;
  }
  if (create_graph || n.grad.requires_grad()) {
    n.grad = add(n.grad, g);
  } else {
    Tensor dst = n.grad.value();
    kern::add_(dst, g.value());
  }
}

GraphError freed_error(const Node& n) {
  return GraphError("backward: trying to go backward through " + describe(n) +
                    " a second time, but its graph was freed by the first backward; pass "
                    "retain_graph = true to the first one");
}

// Every node the roots depend on through inputs that want gradients, in post-order (an
// iterative depth-first search): walked backwards, each node comes after all its consumers.
std::vector<NodePtr> topological_order(const std::vector<Var>& roots) {
  const uint64_t epoch = g_epoch.fetch_add(1, std::memory_order_relaxed) + 1;
  std::vector<NodePtr> post;
  std::vector<std::pair<NodePtr, size_t>> stack;  // node, next input to visit
  auto visit = [&](const NodePtr& n) {
    if (n->mark.load(std::memory_order_relaxed) == epoch) return;
    if (n->released) throw freed_error(*n);
    n->mark.store(epoch, std::memory_order_relaxed);
    stack.emplace_back(n, 0);
  };
  for (const Var& r : roots) {
    visit(r.node_ptr());
    while (!stack.empty()) {
      Node* n = stack.back().first.get();
      size_t& i = stack.back().second;
      if (i < n->inputs.size()) {
        const Var& in = n->inputs[i++];
        if (in.defined() && in.node()->requires_grad) visit(in.node_ptr());
      } else {
        post.push_back(std::move(stack.back().first));
        stack.pop_back();
      }
    }
  }
  return post;
}

// Note [Nested sweeps]
// A backward may start inside another on the same graph: from a hook, from an op's backward
// (a checkpoint's replay), from another thread a hook waits for. Each node holds one
// pending gradient, so the nested sweep first sets aside what the outer sweep has already
// sent to the nodes it will visit, and puts it back when it ends, normally or by an
// exception: the nested sweep neither takes the outer one's partial sums nor drops them,
// as PyTorch's graph tasks each keep their own input buffers. A node the nested sweep frees
// (no retain_graph) is one the outer sweep cannot go through any more: it throws as for a
// second backward.
class OuterPending {
 public:
  explicit OuterPending(const std::vector<NodePtr>& post) {
    for (const NodePtr& n : post)
      if (n->pending.defined()) {
        saved_.push_back({n.get(), std::move(n->pending), n->pending_owned});
        n->pending = Var();
        n->pending_owned = false;
      }
  }
  ~OuterPending() {
    for (Saved& s : saved_) {
      s.node->pending = std::move(s.pending);
      s.node->pending_owned = s.owned;
    }
  }
  OuterPending(const OuterPending&) = delete;
  OuterPending& operator=(const OuterPending&) = delete;

 private:
  struct Saved {
    Node* node;  // kept alive by the sweep's `post`, which outlives this
    Var pending;
    bool owned;
  };
  std::vector<Saved> saved_;
};

// The node's hooks, in registration order; each may replace the gradient.
Var run_hooks(Node& n, Var g) {
  for (auto& [id, hook] : n.hooks) {
    Var r = hook(g);
    if (!r.defined()) continue;
    if (r.shape() != g.shape() || r.dtype() != g.dtype())
      throw GraphError("hook on " + describe(n) + " returned a gradient of shape " +
                       r.shape().str() + ", expected " + g.shape().str());
    g = std::move(r);
  }
  return g;
}

// Applies the node's backward formula to its full gradient `g` and hands each input its
// gradient, summed back to the input's shape (Note [Gradient accumulation]).
void propagate(const NodePtr& np, const Var& g, bool create_graph) {
  Node& n = *np;
  Grads grads;
  try {
    grads = n.apply(BackwardCtx(np), g);
  } catch (const AnomalyError& e) {
    throw AnomalyError("anomaly: in the backward of " + describe(n) + ": " + e.what());
  }
  if (grads.size() != n.inputs.size())
    throw GraphError("backward of " + describe(n) + " returned " + std::to_string(grads.size()) +
                     " gradients for " + std::to_string(n.inputs.size()) + " inputs");
  for (size_t i = 0; i < grads.size(); ++i) {
    const Var& in = n.inputs[i];
    if (!grads[i].defined() || !in.defined() || !in.node()->requires_grad) continue;
    Var gi = std::move(grads[i]);
    if (gi.dtype() != in.dtype())
      throw GraphError("backward of " + describe(n) + " returned a " +
                       std::string(dtype_name(gi.dtype())) + " gradient for a " +
                       std::string(dtype_name(in.dtype())) + " input " + std::to_string(i));
    if (gi.shape() != in.shape()) gi = sum_to(gi, in.shape());
    if (detail::anomaly_enabled && has_nonfinite(gi.value()))
      throw AnomalyError("anomaly: backward of " + describe(n) +
                         " produced NaN/Inf in the gradient of input " + std::to_string(i) + " " +
                         in.shape().str());
    accumulate_pending(*in.node(), std::move(gi), create_graph);
  }
}

// Frees what only backward needed. A freed node never receives a gradient again: its hooks
// go too, so a hook that captured its own Var does not keep the node alive.
void release(Node& n) {
  n.inputs.clear();
  n.hooks.clear();
  n.released = true;
}

}  // namespace

namespace detail {

// One backward: seed the roots, then each node in reverse topological order takes its
// pending gradient, runs its hooks, stores the gradient where it is wanted, propagates it.
void run(const std::vector<Var>& roots, const std::vector<Var>& grad_outputs, bool keep_graph,
         bool create_graph, Targets& targets) {
  const CallbackFrame callbacks;
  const std::vector<NodePtr> post = topological_order(roots);
  const OuterPending outer(post);  // Note [Nested sweeps]
  GradModeGuard mode(create_graph);
  try {
    for (size_t k = 0; k < roots.size(); ++k) {
      const bool given = k < grad_outputs.size() && grad_outputs[k].defined();
      Var g = given ? grad_outputs[k] : Var(ones(roots[k].shape(), roots[k].dtype()));
      accumulate_pending(*roots[k].node(), std::move(g), create_graph);
    }
    for (auto it = post.rbegin(); it != post.rend(); ++it) {
      Node& n = **it;
      Var g = std::move(n.pending);
      n.pending = Var();
      n.pending_owned = false;
      // As torch.autograd.grad: a leaf tg::grad was not asked for takes nothing, and its
      // hooks do not run (a DistributedDataParallel's would start a sync and write .grad).
      if (g.defined() && targets.capture && !n.has_fn &&
          std::find(targets.nodes.begin(), targets.nodes.end(), &n) == targets.nodes.end())
        continue;
      if (g.defined()) {
        g = run_hooks(n, std::move(g));
        if (targets.capture) {
          for (size_t i = 0; i < targets.nodes.size(); ++i)
            if (targets.nodes[i] == &n) targets.grads[i] = g;
        } else if (!n.has_fn) {
          accumulate_grad_field(n, std::move(g), create_graph);  // a leaf: its gradient ends here
        } else if (n.retains_grad) {
          accumulate_grad_field(n, g, create_graph);
        }
        if (n.has_fn) {
          if (n.released) throw freed_error(n);  // by a nested sweep (Note [Nested sweeps])
          propagate(*it, g, create_graph);
        }
      }
      if (!keep_graph && n.has_fn) release(n);
    }
  } catch (...) {
    for (const NodePtr& n : post) {
      n->pending = Var();
      n->pending_owned = false;
    }
    throw;
  }
  callbacks.run();
}

}  // namespace detail

void queue_backward_callback(std::function<void()> fn) {
  if (t_callbacks.empty())
    throw GraphError("queue_backward_callback: no backward is running on this thread");
  t_callbacks.back().push_back(std::move(fn));
}

}  // namespace tg
