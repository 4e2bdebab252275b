// Gradient checkpointing: one recorded node per checkpointed call, whose backward replays
// the call with recording and differentiates the replay with a nested tg::grad.
#include "models/grad_checkpoint.hpp"

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>

#include "graph/engine.hpp"
#include "graph/error.hpp"
#include "graph/forward_ad.hpp"
#include "graph/kernels.hpp"
#include "ops/shape_ops.hpp"

namespace tg {
namespace {

struct RngSnapshot {
  Rng::State state;
  bool has_spare;
  double spare;
};

std::vector<RngSnapshot> snapshot(const std::vector<Rng*>& rngs) {
  std::vector<RngSnapshot> out;
  for (const Rng* r : rngs) out.push_back({r->state(), r->has_spare(), r->spare()});
  return out;
}

void restore(const std::vector<Rng*>& rngs, const std::vector<RngSnapshot>& s) {
  for (size_t i = 0; i < rngs.size(); ++i) {
    rngs[i]->set_state(s[i].state);
    rngs[i]->set_spare(s[i].has_spare, s[i].spare);
  }
}

// What a checkpoint node replays: fn on its `n_in` inputs, reading `params`, with `rngs` set
// to the states `before` the forward.
struct Replay {
  CheckpointFn fn;
  size_t n_in = 0;
  std::vector<Var> params;
  std::vector<Rng*> rngs;
  std::vector<RngSnapshot> before;
};

// Note [Nested replay]
// A checkpoint node's backward runs a second backward (tg::grad over the replayed graph)
// while the outer one is half done. The replayed graph starts from copies of the inputs cut
// from the graph, so the nested sweep reaches a node of the outer graph only where the
// function reads one: the params, leaves the replay reads as they are, and values computed
// from them outside it (a weight times a scale). The engine keeps the outer sweep's partial
// gradients on those nodes out of the nested sweep (Note [Nested sweeps] in
// graph/engine.cpp); the params' hooks, which must see the full gradient once, are set
// aside here during the nested sweep and put back after it. The sweep through such a value
// keeps its graph: the outer backward may go through it later.
class HooksAside {
 public:
  explicit HooksAside(const std::vector<Var>& params) {
    for (const Var& p : params) {
      Node& n = *p.node();
      saved_.emplace_back(&n, std::move(n.hooks));
      n.hooks.clear();
    }
  }
  ~HooksAside() {
    for (auto& [node, hooks] : saved_) node->hooks = std::move(hooks);
  }
  HooksAside(const HooksAside&) = delete;
  HooksAside& operator=(const HooksAside&) = delete;

 private:
  std::vector<std::pair<Node*, std::vector<std::pair<size_t, Hook>>>> saved_;
};

// Throws when the replayed graph reads a leaf that wants a gradient and is neither an input
// copy nor a param: its gradient would be dropped without a word.
void check_reads(const std::vector<Var>& roots, const std::vector<Var>& wrt) {
  std::unordered_set<const Node*> known, seen;
  for (const Var& w : wrt) known.insert(w.node());
  std::vector<const Node*> stack;
  for (const Var& r : roots) stack.push_back(r.node());
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (known.count(n) || !seen.insert(n).second) continue;
    if (n->released)
      throw GraphError("checkpoint: the function reads a value computed outside it (" +
                       detail::describe(*n) +
                       ") whose graph the outer backward has already freed; pass that value "
                       "as one of the checkpoint's inputs");
    if (!n->has_fn)
      throw GraphError("checkpoint: the function reads a leaf of shape " + n->value.shape().str() +
                       " that wants a gradient but is neither one of its inputs nor in "
                       "CheckpointOptions::params; its gradient would be lost");
    for (const Var& in : n->inputs)
      if (in.defined() && in.requires_grad()) stack.push_back(in.node());
  }
}

// Replays r's function on `args` (its inputs) and returns the gradients of its outputs
// number `which` (one node's, Note [Mixed dtypes]), weighted by `dys`, with respect to the
// inputs and then the params (undefined where unused). Recorded (differentiable again) when
// grad mode is on at the call.
std::vector<Var> replay_vjp(const Replay& r, std::span<const Var> args,
                            const std::vector<size_t>& which, std::span<const Var> dys) {
  // Recorded only when this replay is itself replayed (a checkpoint's backward under
  // create_graph), whose args are then already copies cut from the outer graph.
  const bool create_graph = is_grad_enabled();
  std::vector<Var> xs;
  for (const Var& a : args)
    xs.push_back(create_graph || !is_floating(a.dtype()) ? a : a.detach().requires_grad_(true));
  std::vector<Var> outs;
  {
    const std::vector<RngSnapshot> now = snapshot(r.rngs);
    restore(r.rngs, r.before);
    GradModeGuard on(true);
    outs = r.fn(xs);
    restore(r.rngs, now);
  }
  // Gradients go to the floating inputs (which want one) and the params.
  std::vector<Var> wrt;
  std::vector<size_t> slot;
  for (size_t i = 0; i < xs.size(); ++i)
    if (xs[i].requires_grad()) wrt.push_back(xs[i]), slot.push_back(i);
  std::vector<Var> roots, gos;
  for (size_t k = 0; k < which.size(); ++k)
    if (outs[which[k]].requires_grad()) roots.push_back(outs[which[k]]), gos.push_back(dys[k]);
  for (size_t k = 0; k < r.params.size(); ++k)
    wrt.push_back(r.params[k]), slot.push_back(xs.size() + k);
  std::vector<Var> out(xs.size() + r.params.size());
  if (roots.empty() || wrt.empty()) return out;
  check_reads(roots, wrt);
  const HooksAside aside(r.params);
  // retain_graph: the sweep may pass through a value of the outer graph the function reads
  // (Note [Nested replay]), which the outer backward still has to go through; the replay's
  // own graph is freed when this function returns.
  std::vector<Var> gs = grad(
      roots, wrt, gos, {.retain_graph = true, .create_graph = create_graph, .allow_unused = true});
  for (size_t k = 0; k < gs.size(); ++k) out[slot[k]] = std::move(gs[k]);
  return out;
}

std::vector<Var> record_checkpoint(std::shared_ptr<const Replay> r, const std::vector<Var>& args);

// Note [Mixed dtypes]
// A recorded node has one value, of one dtype, while torch.utils.checkpoint's node has an
// output per tensor. So a checkpoint records one node per floating dtype among its outputs,
// each holding those outputs (flattened and joined when there are several) and replaying
// the function to differentiate them alone; an integer or bool output has no gradient and
// is returned as computed, recording nothing. Under create_graph the backward is a
// checkpoint whose outputs are the inputs' and params' gradients, f32 and f64 alike when
// they are, so it is the same rule one level down. No op turns one floating dtype into
// another, so an output depends only on the inputs and params of its dtype, and each input
// gets its whole gradient from one node's replay: the gradients are bit for bit those of
// the function run plainly. The price: when outputs of both dtypes get a gradient the
// function is replayed twice (each node's backward runs alone, without the other's output
// gradient).
struct Group {
  std::vector<size_t> outs;  // which of the function's outputs, in order
  std::vector<Shape> shapes;

  Tensor pack(const std::vector<Var>& all) const {
    if (outs.size() == 1) return all[outs[0]].value();
    std::vector<Var> flat;
    for (size_t i : outs) flat.push_back(reshape(all[i], {-1}));
    return concat(flat).value();
  }
  std::vector<Var> unpack(const Var& packed) const {
    if (shapes.size() == 1) return {packed};
    std::vector<Var> out;
    int64_t off = 0;
    for (const Shape& s : shapes) {
      out.push_back(reshape(narrow(packed, 0, off, s.numel()), s.to_vector()));
      off += s.numel();
    }
    return out;
  }
};

// A checkpoint node's JVP rule: fn re-run on its inputs with their tangents (forward mode
// on again, the RNGs as in the forward), the tangents of the node's outputs packed as its
// value. The replay is recorded when grad mode is on, so reverse-over-forward works (and
// keeps the replay's graph: checkpointing saves no memory for the tangent's graph).
Var replay_jvp(const Replay& r, const Group& group, const JvpCtx& c) {
  std::vector<Var> args;
  for (size_t i = 0; i < r.n_in; ++i) args.push_back(c.input(i));
  std::vector<Var> outs;
  {
    const std::vector<RngSnapshot> now = snapshot(r.rngs);
    restore(r.rngs, r.before);
    detail::FwModeGuard on(true);
    outs = r.fn(args);
    restore(r.rngs, now);
  }
  std::vector<Var> ts;
  for (size_t k = 0; k < group.outs.size(); ++k) {
    const Var& o = outs[group.outs[k]];
    Var t = fwd::unpack_dual(o).tangent;
    ts.push_back(t.defined() ? t : Var(zeros(group.shapes[k], o.dtype())));
  }
  if (ts.size() == 1) return ts[0];
  for (Var& t : ts) t = reshape(t, {-1});
  return concat(ts);
}

// The node of one group: its backward replays the function for the group's outputs.
Var record_group(const std::shared_ptr<const Replay>& r, const std::vector<Var>& args,
                 const Group& group, Tensor value) {
  std::vector<Var> node_inputs = args;
  node_inputs.insert(node_inputs.end(), r->params.begin(), r->params.end());
  return record(
      "checkpoint", std::move(value), std::span<const Var>(node_inputs),
      [r, group](const BackwardCtx& c, const Var& dy) {
        const std::vector<Var> dys = group.unpack(dy);
        std::vector<Var> args;
        for (size_t i = 0; i < r->n_in; ++i) args.push_back(c.input(i));
        std::vector<Var> gs;
        if (!is_grad_enabled()) {
          gs = replay_vjp(*r, args, group.outs, dys);
        } else {
          // create_graph: the backward is a checkpoint of the replay, so it is recorded as
          // nodes too and can be differentiated again (Notes [Nested replay], [Mixed
          // dtypes]). Its outputs are the gradients of the floating inputs and of the
          // params: an index input has none.
          std::vector<size_t> slots;
          for (size_t k = 0; k < r->n_in; ++k)
            if (is_floating(args[k].dtype())) slots.push_back(k);
          for (size_t k = 0; k < r->params.size(); ++k) slots.push_back(r->n_in + k);
          auto next = std::make_shared<Replay>();
          next->fn = [r, which = group.outs, slots](const std::vector<Var>& a) {
            const auto all = std::span<const Var>(a);
            std::vector<Var> g = replay_vjp(*r, all.first(r->n_in), which, all.subspan(r->n_in));
            std::vector<Var> out;
            for (size_t k : slots) {
              const Var& ref = k < r->n_in ? a[k] : r->params[k - r->n_in];
              out.push_back(g[k].defined() ? g[k] : Var(zeros(ref.shape(), ref.dtype())));
            }
            return out;
          };
          next->n_in = r->n_in + dys.size();
          next->params = r->params;
          std::vector<Var> next_args = args;
          next_args.insert(next_args.end(), dys.begin(), dys.end());
          const std::vector<Var> g = record_checkpoint(next, next_args);
          gs.assign(r->n_in + r->params.size(), Var());
          for (size_t k = 0; k < g.size(); ++k) gs[slots[k]] = g[k];
        }
        Grads out;
        for (Var& g : gs) out.push_back(std::move(g));
        return out;
      },
      [r, group](const JvpCtx& c) { return replay_jvp(*r, group, c); });
}

std::vector<Var> record_checkpoint(std::shared_ptr<const Replay> r, const std::vector<Var>& args) {
  std::vector<Var> outs;
  {
    NoGradGuard off;
    detail::FwSuspend no_tangents;  // the JVP rule below computes them
    outs = r->fn(args);
  }
  std::vector<Var> result(outs.size());
  std::vector<Group> groups;  // one per floating dtype, in the order of their first output
  std::vector<Dtype> dtypes;
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i].defined())
      throw Error("checkpoint: output " + std::to_string(i) + " of the function is undefined");
    if (!is_floating(outs[i].dtype())) {
      result[i] = outs[i];  // no gradient: as computed
      continue;
    }
    const auto k = static_cast<size_t>(std::find(dtypes.begin(), dtypes.end(), outs[i].dtype()) -
                                       dtypes.begin());
    if (k == dtypes.size()) dtypes.push_back(outs[i].dtype()), groups.emplace_back();
    Group& g = groups[k];
    g.outs.push_back(i);
    g.shapes.push_back(outs[i].shape());
  }
  std::vector<Tensor> values;
  {
    NoGradGuard off;
    detail::FwSuspend no_tangents;
    for (const Group& g : groups) values.push_back(g.pack(outs));
  }
  outs.clear();
  for (size_t k = 0; k < groups.size(); ++k) {
    const std::vector<Var> part =
        groups[k].unpack(record_group(r, args, groups[k], std::move(values[k])));
    for (size_t j = 0; j < part.size(); ++j) result[groups[k].outs[j]] = part[j];
  }
  return result;
}

bool wants_grad(const std::vector<Var>& vs) {
  return std::any_of(vs.begin(), vs.end(), [](const Var& v) { return v.requires_grad(); });
}

}  // namespace

std::vector<Var> checkpoint(const CheckpointFn& fn, const std::vector<Var>& inputs,
                            const CheckpointOptions& options) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].defined())
      throw Error("checkpoint: input " + std::to_string(i) + " is undefined");
  if (!is_grad_enabled() || !(wants_grad(inputs) || wants_grad(options.params))) return fn(inputs);
  auto r = std::make_shared<Replay>();
  r->fn = fn;
  r->n_in = inputs.size();
  for (const Var& p : options.params) {
    if (!p.defined()) throw Error("checkpoint: a param is undefined");
    const bool listed = std::any_of(r->params.begin(), r->params.end(),
                                    [&p](const Var& q) { return q.node() == p.node(); });
    if (p.requires_grad() && !listed) r->params.push_back(p);
  }
  r->rngs = options.rngs;
  r->before = snapshot(r->rngs);
  return record_checkpoint(std::move(r), inputs);
}

Var checkpoint(const std::function<Var(const Var&)>& fn, const Var& input,
               const CheckpointOptions& options) {
  auto many = [fn](const std::vector<Var>& xs) { return std::vector<Var>{fn(xs[0])}; };
  return checkpoint(many, {input}, options)[0];
}

Var checkpoint_sequential(Sequential& seq, int64_t segments, const Var& x,
                          const std::vector<Rng*>& rngs) {
  const auto n = static_cast<int64_t>(seq.size());
  if (segments < 1 || segments > n)
    throw Error("checkpoint_sequential: segments must be in [1, " + std::to_string(n) + "] for " +
                std::to_string(n) + " layers, got " + std::to_string(segments));
  const int64_t size = n / segments;
  auto run = [&seq](int64_t first, int64_t last, Var y) {
    for (int64_t i = first; i < last; ++i) y = seq[static_cast<size_t>(i)](y);
    return y;
  };
  Var y = x;
  for (int64_t s = 0; s + 1 < segments; ++s) {
    const int64_t first = s * size, last = first + size;
    CheckpointOptions options{.params = {}, .rngs = rngs};
    for (int64_t i = first; i < last; ++i) {
      Layer& layer = seq[static_cast<size_t>(i)];
      for (const Var& p : layer.parameters()) options.params.push_back(p);
      for (const auto& [name, m] : layer.named_modules())
        if (const auto* d = dynamic_cast<const Dropout*>(m)) options.rngs.push_back(&d->rng());
    }
    std::sort(options.rngs.begin(), options.rngs.end());
    options.rngs.erase(std::unique(options.rngs.begin(), options.rngs.end()), options.rngs.end());
    y = checkpoint([run, first, last](const Var& in) { return run(first, last, in); }, y, options);
  }
  return run((segments - 1) * size, n, y);
}

}  // namespace tg
