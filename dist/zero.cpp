// ZeroRedundancyOptimizer: ZeRO stage 1 (optimizer state sharded) over DDP's buckets.
//
// Note [Sharded optimizer]
// - Layout. DDP pads each bucket to a multiple of the world size p and reduce-scatters it
//   (DistributedDataParallel::shard_gradients): rank r receives the averaged elements
//   [r S, (r + 1) S) of the bucket, S = padded size / p. A parameter may straddle two
//   ranks' slices: each rank's share of it is a piece, a 1-D view into a flat parameter
//   buffer per bucket (laid out as the gradient bucket), whose gradient is the matching
//   view of the averaged slice. The wrapped optimizer is built over the pieces, so it holds
//   state for 1/p of the elements; every optimizer here updates each element from its own
//   value, gradient and state, so updating pieces is updating the whole parameters.
// - Step. The parameters themselves become views into the flat buffers (laid out as the
//   gradient buckets, each parameter on a cache line), so the optimizer updates this rank's
//   slices in place and each bucket's flat buffer is all-gathered in place
//   (MPI_Iallgather: every rank's slice to every rank, started for all buckets before the
//   first wait): no copies. Bytes moved per step: the reduce-scatter's and the
//   all-gather's, together those of the all-reduce. In-place changes of the parameters
//   (loading a checkpoint) go into the buffers; replacing a parameter's tensor, or
//   converting the model's dtype, while the optimizer lives is not supported.
// - Differences from PyTorch's ZeroRedundancyOptimizer, which keeps DDP's all-reduce and
//   assigns whole parameters to ranks (then broadcasts each rank's parameters): here the
//   gradients are reduce-scattered (half the all-reduce's bytes) and the slices are equal
//   whatever the parameter sizes (balanced to one element). The parameters' `.grad` are
//   empty after a sync: each rank has only its slice's averages, so clipping by the global
//   norm goes through clip_grad_norm here (FSDP's clip_grad_norm_: partial norms of the
//   slices, combined over the ranks), not through `.grad`.
// - State dict. consolidate_state_dict gathers each state tensor's slices bucket by bucket
//   (MPI all-gather of the flat state, then cut into parameters) and builds the unsharded
//   optimizer's state_dict on `to`; load_state_dict cuts an unsharded state_dict into this
//   rank's pieces. Neither depends on the world size, so a checkpoint moves between world
//   sizes and between sharded and unsharded runs.

#include "dist/zero.hpp"

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "dist/mpi_util.hpp"
#include "optim/clip.hpp"

namespace tg::dist {

namespace {

constexpr const char* kOp = "ZeroRedundancyOptimizer";

// dst[doff, doff + n) = src[soff, soff + n), elements of one dtype, contiguous tensors.
void copy_elems(Tensor& dst, int64_t doff, const Tensor& src, int64_t soff, int64_t n) {
  if (n <= 0) return;
  const size_t is = itemsize(dst.dtype());
  std::memcpy(static_cast<char*>(dst.raw_data()) + static_cast<size_t>(doff) * is,
              static_cast<const char*>(src.raw_data()) + static_cast<size_t>(soff) * is,
              static_cast<size_t>(n) * is);
}

// "state.<i>.<name>" after `prefix`: i and name; false for another key.
bool parse_state_key(const std::string& key, const std::string& prefix, size_t& i,
                     std::string& name) {
  const std::string head = prefix + "state.";
  if (key.compare(0, head.size(), head) != 0) return false;
  const size_t dot = key.find('.', head.size());
  if (dot == std::string::npos || dot == head.size()) return false;
  const std::string num = key.substr(head.size(), dot - head.size());
  if (!std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  i = std::stoul(num);
  name = key.substr(dot + 1);
  return true;
}

// The union of every rank's `names` (a collective).
std::set<std::string> union_across_ranks(const std::set<std::string>& names) {
  if (!is_launched() || get_world_size() == 1) return names;
  std::string joined;
  for (const auto& n : names) joined += n + '\n';
  std::set<std::string> out;
  for (const std::string& text : detail::gather_strings(joined, kOp))
    for (std::string& line : detail::split_lines(text)) out.insert(std::move(line));
  return out;
}

}  // namespace

struct ZeroRedundancyOptimizer::Impl {
  // This rank's share of parameter `param`: elements [param_off, param_off + n) of it,
  // at `bucket_off` in bucket `bucket`.
  struct Piece {
    size_t param;
    int bucket;
    int64_t param_off, bucket_off, n;
  };

  DistributedDataParallel& ddp;
  const std::vector<DistributedDataParallel::Shard>& shards;
  std::vector<Var> params;
  std::vector<Tensor> flat;  // per bucket: the parameters, laid out as the gradient bucket
  std::vector<Piece> pieces;
  std::vector<Var> piece_vars;
  std::vector<std::vector<size_t>> pieces_of;  // per parameter
  std::vector<std::vector<size_t>> index_of;   // per bucket, per parameter in it: its index
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<NpzArchive> consolidated;

  Impl(DistributedDataParallel& d) : ddp(d), shards(d.shard_gradients()) {}

  int64_t lo(int k) const { return get_rank() * shards[k].shard_numel; }

  // Piece j's averaged gradient: a view of its bucket's slice.
  Tensor piece_grad(size_t j) const {
    const Piece& pc = pieces[j];
    return shards[pc.bucket].grad.view_range(pc.bucket_off - lo(pc.bucket), {pc.n});
  }

  void set_piece_grads(bool on) {
    for (size_t j = 0; j < pieces.size(); ++j) {
      if (on)
        piece_vars[j].set_grad(Var(piece_grad(j)));
      else
        piece_vars[j].zero_grad();
    }
  }
};

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(DistributedDataParallel& ddp,
                                                 OptimizerFactory make) {
  if (!make) throw Error(std::string(kOp) + ": no optimizer factory");
  impl_ = std::make_unique<Impl>(ddp);
  Impl& m = *impl_;
  std::unordered_map<const Node*, size_t> index;
  for (const Var& p : ddp.module().parameters())
    if (p.requires_grad()) {
      index[p.node()] = m.params.size();
      m.params.push_back(p);
    }
  m.pieces_of.resize(m.params.size());
  for (size_t k = 0; k < m.shards.size(); ++k) {
    const auto& sh = m.shards[k];
    m.flat.push_back(zeros({sh.padded_numel}, sh.dtype));
    for (size_t s = 0; s < sh.params.size(); ++s) {  // the parameters become views
      Tensor& v = sh.params[s].value();
      copy_elems(m.flat[k], sh.offsets[s], v, 0, v.numel());
      v = m.flat[k].view_range(sh.offsets[s], v.shape());
    }
    const int64_t lo = m.lo(static_cast<int>(k)), hi = lo + sh.shard_numel;
    m.index_of.emplace_back();
    for (size_t s = 0; s < sh.params.size(); ++s) {
      const size_t i = index.at(sh.params[s].node());
      m.index_of.back().push_back(i);
      const int64_t off = sh.offsets[s];
      const int64_t a = std::max(off, lo), b = std::min(off + sh.params[s].numel(), hi);
      if (a >= b) continue;
      m.pieces_of[i].push_back(m.pieces.size());
      m.pieces.push_back({i, static_cast<int>(k), a - off, a, b - a});
      m.piece_vars.emplace_back(m.flat[k].view_range(a, {b - a}), true);
    }
  }
  m.opt = make(m.piece_vars);
  if (!m.opt) throw Error(std::string(kOp) + ": the optimizer factory returned nothing");
  if (m.opt->num_groups() != 1)
    throw Error(std::string(kOp) + ": the optimizer has " + std::to_string(m.opt->num_groups()) +
                " parameter groups; one is supported");
  check_same_across_ranks(kOp, "optimizers", {"optimizer " + m.opt->name()});
}

ZeroRedundancyOptimizer::~ZeroRedundancyOptimizer() = default;

void ZeroRedundancyOptimizer::step() {
  Impl& m = *impl_;
  NoGradGuard no_grad;
  const bool has = m.ddp.has_shard_grads();
  m.set_piece_grads(has);
  m.opt->step();
  if (!has) return;
  if (get_world_size() > 1) {
    std::vector<MPI_Request> reqs(m.flat.size(), MPI_REQUEST_NULL);
    for (size_t k = 0; k < m.flat.size(); ++k)
      detail::check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, m.flat[k].raw_data(),
                                   static_cast<int>(m.shards[k].shard_numel),
                                   detail::mpi_type(m.shards[k].dtype), detail::comm(), &reqs[k]),
                    kOp);
    for (auto& r : reqs) detail::wait(r, kOp);
  }
  // The parameters are views into the flat buffers: each changed in place.
  for (Tensor& f : m.flat) f.bump_version();
}

void ZeroRedundancyOptimizer::zero_grad() {
  for (Var& p : impl_->params) p.zero_grad();
  impl_->ddp.zero_shard_grads();
}

double ZeroRedundancyOptimizer::clip_grad_norm(double max_norm, double norm_type,
                                               bool error_if_nonfinite) {
  Impl& m = *impl_;
  const tg::detail::GradNorm norm(norm_type, std::string(kOp) + "::clip_grad_norm");
  if (!m.ddp.has_shard_grads()) return 0.0;
  std::vector<Tensor> grads;
  for (size_t j = 0; j < m.pieces.size(); ++j) grads.push_back(m.piece_grad(j));
  // NOTE: the ranks' partial norms are gathered and combined in rank order (PyTorch
  // all-reduces them), so every rank computes the very same total: the coefficient, and
  // whether error_if_nonfinite throws, agree on every rank.
  double partial = norm.none();
  for (const Tensor& t : all_gather(tensor({norm.partial(grads)}, {1}, f64)))
    partial = norm.combine(partial, t.data<double>()[0]);
  const double total = norm.total(partial);
  const double coef = norm.coefficient(total, max_norm, error_if_nonfinite);
  if (coef != 1.0)
    for (Tensor& g : grads) tg::detail::scale_in_place(g, coef);
  return total;
}

double ZeroRedundancyOptimizer::lr() const { return impl_->opt->lr(); }
void ZeroRedundancyOptimizer::set_lr(double lr) { impl_->opt->set_lr(lr); }
int64_t ZeroRedundancyOptimizer::steps() const { return impl_->opt->steps(); }
const std::vector<Var>& ZeroRedundancyOptimizer::params() const { return impl_->params; }
Optimizer& ZeroRedundancyOptimizer::local_optimizer() { return *impl_->opt; }

void ZeroRedundancyOptimizer::consolidate_state_dict(int to) {
  Impl& m = *impl_;
  const int p = get_world_size(), me = get_rank();
  if (to < 0 || to >= p)
    throw IndexError(std::string(kOp) + "::consolidate_state_dict: rank " + std::to_string(to) +
                     " is not in a world of " + std::to_string(p));
  NpzArchive local;
  m.opt->state_dict(local);
  std::set<std::string> mine;
  for (const auto& key : local.names()) {
    size_t j;
    std::string name;
    if (parse_state_key(key, "", j, name)) mine.insert(name);
  }
  const std::set<std::string> names = union_across_ranks(mine);
  const size_t n = m.params.size();
  // Step counts per parameter: every piece of a parameter has its count.
  Tensor steps = zeros({static_cast<int64_t>(n)}, i64);
  const auto local_steps = local.i64s("param_steps");
  for (size_t j = 0; j < m.pieces.size(); ++j)
    steps.data<int64_t>()[m.pieces[j].param] = local_steps[j];
  all_reduce(steps, ReduceOp::max);
  auto out = std::make_unique<NpzArchive>();
  for (const std::string& name : names) {
    Tensor defined = zeros({static_cast<int64_t>(n)}, i64);
    for (size_t j = 0; j < m.pieces.size(); ++j)
      if (local.contains("state." + std::to_string(j) + "." + name))
        defined.data<int64_t>()[m.pieces[j].param] = 1;
    all_reduce(defined, ReduceOp::max);
    for (size_t k = 0; k < m.shards.size(); ++k) {
      const auto& sh = m.shards[k];
      Tensor slice = zeros({sh.shard_numel}, sh.dtype);
      for (size_t j = 0; j < m.pieces.size(); ++j) {
        const auto& pc = m.pieces[j];
        const std::string key = "state." + std::to_string(j) + "." + name;
        if (pc.bucket != static_cast<int>(k) || !local.contains(key)) continue;
        copy_elems(slice, pc.bucket_off - m.lo(static_cast<int>(k)), local.tensor(key).to(sh.dtype),
                   0, pc.n);
      }
      const std::vector<Tensor> all = all_gather(slice);
      if (me != to) continue;
      Tensor whole = zeros({sh.padded_numel}, sh.dtype);
      for (int r = 0; r < p; ++r) copy_elems(whole, r * sh.shard_numel, all[r], 0, sh.shard_numel);
      for (size_t s = 0; s < sh.params.size(); ++s) {
        const Var& q = sh.params[s];
        const size_t idx = m.index_of[k][s];
        if (!defined.data<int64_t>()[idx]) continue;
        Tensor t = zeros(q.shape(), sh.dtype);
        copy_elems(t, 0, whole, sh.offsets[s], q.numel());
        out->put("state." + std::to_string(idx) + "." + name, t);
      }
    }
  }
  if (me == to) {
    out->put("lr", local.array("lr"));
    out->put("group_lrs", local.array("group_lrs"));
    out->put_i64("group_sizes", {static_cast<int64_t>(n)});
    out->put("steps", local.array("steps"));
    out->put_i64("param_steps",
                 std::vector<int64_t>(steps.data<int64_t>(), steps.data<int64_t>() + n));
    m.consolidated = std::move(out);
  } else {
    m.consolidated.reset();
  }
}

void ZeroRedundancyOptimizer::state_dict(NpzArchive& archive, const std::string& prefix) const {
  if (!impl_->consolidated)
    throw Error(std::string(kOp) +
                "::state_dict: call consolidate_state_dict(to) on every rank "
                "first; the state is then on rank `to` (this is " +
                detail::where() + ")");
  for (const auto& [key, arr] : impl_->consolidated->entries()) archive.put(prefix + key, arr);
}

void ZeroRedundancyOptimizer::load_state_dict(const NpzArchive& a, const std::string& prefix) {
  Impl& m = *impl_;
  const std::string src = tg::detail::state_source(a, "optimizer state");
  const size_t n = m.params.size();
  const auto steps = a.i64s(prefix + "param_steps");
  if (steps.size() != n)
    throw IoError(src + ": state for " + std::to_string(steps.size()) + " parameters, the " +
                  std::string(kOp) + " has " + std::to_string(n));
  if (a.contains(prefix + "group_sizes") &&
      a.i64s(prefix + "group_sizes") != std::vector<int64_t>{static_cast<int64_t>(n)})
    throw IoError(src + ": the parameter groups in the file differ from the " + std::string(kOp) +
                  "'s single group of " + std::to_string(n));
  NpzArchive in;
  in.put_scalar("lr", a.scalar(prefix + "lr"));
  if (a.contains(prefix + "group_lrs")) in.put("group_lrs", a.array(prefix + "group_lrs"));
  in.put_int("steps", a.integer(prefix + "steps"));
  std::vector<int64_t> piece_steps;
  for (const auto& pc : m.pieces) piece_steps.push_back(steps[pc.param]);
  in.put_i64("param_steps", piece_steps);
  for (const auto& key : a.names()) {
    size_t i;
    std::string name;
    if (!parse_state_key(key, prefix, i, name)) continue;
    if (i >= n)
      throw IoError(src + ": entry '" + key + "' names parameter " + std::to_string(i) + " of " +
                    std::to_string(n));
    const NpyArray& arr = a.array(key);
    if (Shape(arr.shape) != m.params[i].shape())
      throw IoError(src + ": '" + key + "' has shape " + Shape(arr.shape).str() + ", parameter " +
                    std::to_string(i) + " has " + m.params[i].shape().str());
    const Tensor t = arr.to_tensor();
    for (size_t j : m.pieces_of[i]) {
      Tensor part = zeros({m.pieces[j].n}, t.dtype());
      copy_elems(part, 0, t, m.pieces[j].param_off, m.pieces[j].n);
      in.put("state." + std::to_string(j) + "." + name, part);
    }
  }
  m.opt->load_state_dict(in);
}

}  // namespace tg::dist
