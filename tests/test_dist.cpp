// tg::dist under mpirun (tests/CMakeLists.txt runs this program with 1 process, and under
// `mpirun -np 2` and `mpirun --oversubscribe -np 3`): every rank runs every test case in
// the same order, so their collectives match. Run alone it is a world of one.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

using namespace tg;
namespace dist = tg::dist;

namespace {

// Rank r's element i for a dtype: distinct per rank, exact in every dtype.
double value_of(int r, int64_t i, Dtype d) {
  if (d == boolean) return (r + i) % 3 == 0 ? 1.0 : 0.0;
  return static_cast<double>((r + 1) * 10 + i % 7) * (i % 2 ? -1.0 : 1.0);
}

Tensor rank_tensor(int r, const Shape& s, Dtype d) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = value_of(r, static_cast<int64_t>(i), d);
  return tensor(v, s, f64).to(d);
}

std::vector<double> values(const Tensor& t) {
  Tensor d = t.to(f64);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.numel());
}

// A small MLP; `seed` decides its initial parameters.
std::unique_ptr<Sequential> make_mlp(uint64_t seed, Dtype dtype, int64_t hidden = 8) {
  Rng rng(seed);
  auto m = std::make_unique<Sequential>();
  m->emplace_back<Linear>(6, hidden, rng, true, dtype);
  m->emplace_back<Tanh>();
  m->emplace_back<Linear>(hidden, hidden, rng, true, dtype);
  m->emplace_back<Tanh>();
  m->emplace_back<Linear>(hidden, 3, rng, true, dtype);
  return m;
}

Tensor batch(const Shape& s, double k, Dtype d) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37 * static_cast<double>(i) + k);
  return tensor(v, s, f64).to(d);
}

// Largest |a - b| / max(|a|, |b|, 1e-3) over every parameter of two models; NaN in both
// counts as equal, NaN in one as infinitely different.
double max_relative_difference(const Module& a, const Module& b) {
  auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  double worst = 0;
  for (size_t k = 0; k < pa.size(); ++k) {
    auto x = values(pa[k].value()), y = values(pb[k].value());
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(x[i]) || std::isnan(y[i])) {
        if (std::isnan(x[i]) != std::isnan(y[i])) return std::numeric_limits<double>::infinity();
        continue;
      }
      worst =
          std::max(worst, std::abs(x[i] - y[i]) / std::max({std::abs(x[i]), std::abs(y[i]), 1e-3}));
    }
  }
  return worst;
}

// Whether every rank has the same bits in `x`.
bool same_on_every_rank(double x) {
  for (const Tensor& t : dist::all_gather(tensor({x}, {1}, f64))) {
    const double y = t.data<double>()[0];
    if (!(y == x || (std::isnan(y) && std::isnan(x)))) return false;
  }
  return true;
}

// Whether every rank holds the same bytes in every parameter.
bool same_on_every_rank(const Module& m) {
  for (const Var& p : m.parameters()) {
    auto all = dist::all_gather(p.value());
    for (const Tensor& t : all)
      if (values(t) != values(all[0])) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("dist: the world comes from the launcher", "[dist]") {
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  CHECK(dist::get_world_size() == (size ? std::atoi(size) : 1));
  CHECK(dist::is_launched() == (size != nullptr));
  CHECK(dist::get_rank() >= 0);
  CHECK(dist::get_rank() < dist::get_world_size());
  if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK"))
    CHECK(dist::get_local_rank() == std::atoi(local));
  CHECK(dist::get_local_world_size() >= 1);
  CHECK(dist::is_initialized());
  CHECK_THROWS_AS(dist::set_timeout(0), Error);
}

TEST_CASE("dist: all_reduce, broadcast, all_gather on every dtype and size 0", "[dist]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  for (Dtype d : {f32, f64, i64, boolean}) {
    // [70001]: at least 64 KiB in every dtype, an all-reduce that takes the ring or
    // Rabenseifner's algorithm (Note [All-reduce algorithm] in dist/dist.cpp); odd, so its
    // shares are uneven.
    for (const Shape& s :
         {Shape{}, Shape{0}, Shape{5}, Shape{2, 0, 3}, Shape{3, 4}, Shape{70001}}) {
      INFO(dtype_name(d) << " " << s.str());
      // Expected results from every rank's values, computed locally.
      std::vector<double> sum(static_cast<size_t>(s.numel()), 0.0), mx(sum.size(), -1e300);
      for (int r = 0; r < p; ++r) {
        auto v = values(rank_tensor(r, s, d));
        for (size_t i = 0; i < v.size(); ++i) {
          sum[i] += v[i];
          mx[i] = std::max(mx[i], v[i]);
        }
      }
      if (d == boolean)
        for (double& x : sum) x = x != 0 ? 1.0 : 0.0;  // a bool sum is a logical or

      Tensor t = rank_tensor(me, s, d);
      dist::all_reduce(t);
      CHECK(t.dtype() == d);
      CHECK(t.shape() == s);
      CHECK(values(t) == sum);

      t = rank_tensor(me, s, d);
      dist::all_reduce(t, dist::ReduceOp::max);
      CHECK(values(t) == mx);

      t = rank_tensor(me, s, d);
      if (is_floating(d)) {
        dist::all_reduce(t, dist::ReduceOp::mean);
        auto got = values(t);
        for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(sum[i] / p).epsilon(1e-6));
      } else {
        CHECK_THROWS_WITH(
            dist::all_reduce(t, dist::ReduceOp::mean),
            Catch::StartsWith("all_reduce: ") && Catch::Contains(std::string(dtype_name(d))));
      }

      const int src = p - 1;
      t = rank_tensor(me, s, d);
      dist::broadcast(t, src);
      CHECK(values(t) == values(rank_tensor(src, s, d)));

      auto all = dist::all_gather(rank_tensor(me, s, d));
      REQUIRE(static_cast<int>(all.size()) == p);
      for (int r = 0; r < p; ++r) {
        CHECK(all[r].dtype() == d);
        CHECK(all[r].shape() == s);
        CHECK(values(all[r]) == values(rank_tensor(r, s, d)));
      }
    }
  }
  dist::barrier();
  Tensor t = zeros({2}, f32);
  CHECK_THROWS_AS(dist::broadcast(t, p), IndexError);
  CHECK_THROWS_WITH(dist::broadcast(t, -1), Catch::StartsWith("broadcast: src -1"));
}

TEST_CASE("dist: NaN on one rank reaches every rank through sum, mean and max", "[dist]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (Dtype d : {f32, f64})
    for (auto op : {dist::ReduceOp::sum, dist::ReduceOp::mean, dist::ReduceOp::max}) {
      Tensor t = tensor({1.0, dist::get_rank() == 0 ? nan : 2.0, 3.0}, {3}, f64).to(d);
      dist::all_reduce(t, op);
      auto v = values(t);
      CHECK(std::isnan(v[1]));
      CHECK(!std::isnan(v[0]));
      // The same through a large all-reduce (the ring or Rabenseifner's algorithm).
      std::vector<double> big(70001, 1.0);
      if (dist::get_rank() == 0) big[54321] = nan;
      t = tensor(big, {70001}, f64).to(d);
      dist::all_reduce(t, op);
      v = values(t);
      CHECK(std::isnan(v[54321]));
      CHECK(std::count_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }) == 1);
    }
}

TEST_CASE("DistributedSampler: the ranks' shares are disjoint and cover the dataset", "[dist]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  for (int64_t n : {0, 1, 23, 24})
    for (bool drop_last : {false, true}) {
      INFO("n " << n << " drop_last " << drop_last);
      data::DistributedSampler s(n, p, me, true, 42, drop_last);
      s.set_epoch(2);
      auto mine = s.indices();
      Tensor t = Tensor::empty({static_cast<int64_t>(mine.size())}, i64);
      for (size_t i = 0; i < mine.size(); ++i) t.data<int64_t>()[i] = mine[i];
      // Same number of steps on every rank, else this gather would not even match.
      Tensor count = Tensor::empty({1}, i64);
      count.data<int64_t>()[0] = static_cast<int64_t>(mine.size());
      for (const Tensor& c : dist::all_gather(count))
        CHECK(c.data<int64_t>()[0] == static_cast<int64_t>(mine.size()));
      std::multiset<int64_t> all;
      for (const Tensor& shard : dist::all_gather(t))
        for (int64_t i = 0; i < shard.numel(); ++i) all.insert(shard.data<int64_t>()[i]);
      std::set<int64_t> distinct(all.begin(), all.end());
      if (drop_last) {
        CHECK(distinct.size() == all.size());  // disjoint
        CHECK(static_cast<int64_t>(all.size()) == n / p * p);
      } else {
        CHECK(static_cast<int64_t>(distinct.size()) == n);  // covers the dataset
        CHECK(static_cast<int64_t>(all.size()) - n < p);    // repeats only the padding
      }
    }
}

TEST_CASE("DDP: p ranks with the global batch split hold 1 process's parameters", "[dist][ddp]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  const int64_t global = 12, local = global / p;  // 12: divisible by 1, 2 and 3
  const int steps = 6;
  const bool view = GENERATE(false, true);  // gradient_as_bucket_view
  for (Dtype d : {f32, f64}) {
    INFO(dtype_name(d) << (view ? ", gradients as bucket views" : ""));
    // Each rank starts from other parameters: the wrapper copies rank 0's.
    auto ref = make_mlp(1, d);
    auto model = make_mlp(1 + static_cast<uint64_t>(me), d);
    dist::DistributedDataParallel ddp(
        *model, {.bucket_cap_mb = 0.0005, .gradient_as_bucket_view = view});  // a few buckets
    REQUIRE(ddp.buckets().size() > 1);
    CHECK(max_relative_difference(*model, *ref) == 0.0);
    SGD opt_ref(ref->parameters(), {.lr = 0.1, .momentum = 0.9});
    SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9});
    for (int step = 0; step < steps; ++step) {
      Var x = constant(batch({global, 6}, step, d));
      Var y = constant(batch({global, 3}, 100 + step, d));
      opt_ref.zero_grad();
      mse_loss((*ref)(x), y).backward();
      opt_ref.step();
      opt.zero_grad();
      Var xs = narrow(x, 0, me * local, local), ys = narrow(y, 0, me * local, local);
      mse_loss((*model)(xs), ys).backward();  // the gradients are averaged when it returns
      opt.step();
    }
    const double diff = max_relative_difference(*model, *ref);
    INFO("largest relative difference from 1 process after " << steps << " steps: " << diff);
    CHECK(diff <= (d == f32 ? 1e-6 : 1e-13));
    if (me == 0)
      WARN("DDP " << dtype_name(d) << " with " << p << " rank(s) against 1 process after " << steps
                  << " steps: " << (diff == 0 ? "bit-identical" : "not bit-identical")
                  << ", largest relative difference " << diff);
    CHECK(same_on_every_rank(*model));
  }
}

TEST_CASE("DDP: buckets in reverse order, overlap recorded, no_sync accumulation", "[dist][ddp]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  const bool view = GENERATE(false, true);  // gradient_as_bucket_view
  INFO((view ? "gradients as bucket views" : "gradients copied out of the buckets"));
  auto model = make_mlp(5, f32, 32);
  dist::DistributedDataParallel ddp(*model,
                                    {.bucket_cap_mb = 0.002, .gradient_as_bucket_view = view});
  const auto buckets = ddp.buckets();
  REQUIRE(buckets.size() >= 3);
  CHECK(buckets.front().params.front() == "4.bias");  // the last registered comes first
  CHECK(buckets.back().params.back() == "0.weight");
  // A second copy of the same parameters, differentiated without the wrapper.
  auto plain = make_mlp(5, f32, 32);
  {
    NoGradGuard g;
    auto a = model->parameters(), b = plain->parameters();
    for (size_t k = 0; k < a.size(); ++k) b[k].value().copy_(a[k].value());
  }
  auto expected_average = [&](const std::vector<Var>& grads) {
    std::vector<std::vector<double>> out;
    for (const Var& g : grads) {
      Tensor t = g.value().clone();
      dist::all_reduce(t, dist::ReduceOp::mean);
      out.push_back(values(t));
    }
    return out;
  };
  auto check_grads = [&](const std::vector<std::vector<double>>& want) {
    auto params = model->parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      auto got = values(params[k].grad().value());
      for (size_t i = 0; i < got.size(); ++i)
        CHECK(got[i] == Approx(want[k][i]).epsilon(1e-6).margin(1e-7));
    }
  };
  Var x1 = constant(batch({4, 6}, 10 + me, f32)), y1 = constant(batch({4, 3}, 20 + me, f32));
  Var x2 = constant(batch({4, 6}, 30 + me, f32)), y2 = constant(batch({4, 3}, 40 + me, f32));

  // One synced backward: every rank gets the average of the ranks' gradients.
  mse_loss((*model)(x1), y1).backward();
  mse_loss((*plain)(x1), y1).backward();
  std::vector<Var> g1;
  for (const Var& q : plain->parameters()) g1.push_back(Var(q.grad().value().clone()));
  check_grads(expected_average(g1));

  // The events: an all-reduce started while backward still produced gradients.
  const auto& ev = ddp.last_sync_events();
  using K = dist::DistributedDataParallel::Event::Kind;
  size_t first_start = ev.size(), last_ready = 0, finished = 0;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].kind == K::bucket_started && first_start == ev.size()) first_start = i;
    if (ev[i].kind == K::grad_ready) last_ready = i;
    if (ev[i].kind == K::bucket_finished) ++finished;
  }
  CHECK(first_start < last_ready);
  CHECK(finished == buckets.size());
  CHECK(ev.back().kind == K::sync_finished);
  const auto stats = ddp.last_sync_stats();
  CHECK(stats.buckets == static_cast<int>(buckets.size()));
  int64_t bucket_elements = 0;
  for (const auto& b : buckets) bucket_elements += b.numel;
  CHECK(stats.bytes == bucket_elements * 4);
  // Views start on cache lines, so their buckets carry padding.
  if (!view) CHECK(bucket_elements == model->num_parameters());
  if (view) {  // every .grad is its slice of a bucket, not a copy
    for (const Var& q : model->parameters()) CHECK(q.grad().value().storage_use_count() > 1);
  }

  // Two synced backwards with no zero_grad between: .grad accumulates the averages (with
  // bucket views the second sync reads .grad out of the bucket it refills).
  mse_loss((*model)(x2), y2).backward();
  mse_loss((*plain)(x2), y2).backward();  // plain's .grad: g1 + g2, local
  {
    std::vector<Var> g2;
    auto q = plain->parameters();
    for (size_t k = 0; k < q.size(); ++k)
      g2.push_back(Var(q[k].grad().value().clone().add_(g1[k].value(), -1.0)));
    auto want = expected_average(g2);
    auto first = expected_average(g1);
    for (size_t k = 0; k < want.size(); ++k)
      for (size_t i = 0; i < want[k].size(); ++i) want[k][i] += first[k][i];
    check_grads(want);
  }

  // no_sync: the first backward accumulates locally, the next one reduces the sum.
  model->zero_grad();
  plain->zero_grad();
  {
    auto guard = ddp.no_sync();
    mse_loss((*model)(x1), y1).backward();
    CHECK(ddp.last_sync_events().back().kind == K::sync_finished);  // nothing new happened
    auto local = values(model->parameters()[0].grad().value());
    mse_loss((*plain)(x1), y1).backward();
    CHECK(local == values(plain->parameters()[0].grad().value()));  // not averaged
  }
  mse_loss((*model)(x2), y2).backward();
  mse_loss((*plain)(x2), y2).backward();
  std::vector<Var> g12;
  for (const Var& q : plain->parameters()) g12.push_back(q.grad());
  check_grads(expected_average(g12));
  ddp.finish_gradient_sync();  // nothing in progress: does nothing
  (void)p;
}

TEST_CASE("DDP: ranks with different models fail on every rank, naming the difference",
          "[dist][ddp]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  Rng rng(0);
  Linear model(4, me == p - 1 ? 5 : 3, rng);
  if (p == 1) {
    CHECK_NOTHROW(dist::DistributedDataParallel(model));
    return;
  }
  CHECK_THROWS_WITH(
      dist::DistributedDataParallel(model),
      Catch::Contains("the ranks' models or options differ") &&
          Catch::Contains("'parameter weight [3, 4] f32' on rank 0") &&
          Catch::Contains("'parameter weight [5, 4] f32' on rank " + std::to_string(p - 1)));
  // Options must agree too.
  Linear same(4, 3, rng);
  dist::DDPOptions o;
  o.bucket_cap_mb = me == 0 ? 25 : 1;
  CHECK_THROWS_WITH(dist::DistributedDataParallel(same, o), Catch::Contains("bucket_cap_mb"));
  dist::barrier();
}

TEST_CASE("DDP: a backward that throws after some hooks leaves the next backward synced",
          "[dist][ddp]") {
  // The engine drops the sync's queued finish when the backward throws; the wrapper must not
  // stay half-synced (no finish queued by the next backward, stale bucket contents).
  const int p = dist::get_world_size(), me = dist::get_rank();
  using K = dist::DistributedDataParallel::Event::Kind;
  // 1 MB: one bucket, not started when the backward throws; 100 bytes: the last layer's bias
  // is a bucket of its own, started before it throws.
  for (double cap : {1.0, 0.0001}) {
    INFO("bucket_cap_mb " << cap);
    auto model = make_mlp(7, f64);
    dist::DistributedDataParallel ddp(*model, {.bucket_cap_mb = cap});
    Var x = constant(batch({4, 6}, 50 + me, f64)), y = constant(batch({4, 3}, 60 + me, f64));
    auto& seq = *model;
    // An identity between the layers whose backward throws: the last layer's hooks have run.
    auto thrower = [](const Var& v) {
      return record(
          "identity_that_throws", v.value().clone(), {v},
          [](const BackwardCtx&, const Var&) -> Grads { throw Error("backward failed"); });
    };
    Var h = seq[3](seq[2](seq[1](seq[0](x))));
    CHECK_THROWS_WITH(mse_loss(seq[4](thrower(h)), y).backward(), "backward failed");
    bool started = false;
    for (const auto& e : ddp.last_sync_events()) started = started || e.kind == K::bucket_started;
    CHECK(started == (cap < 1));
    model->zero_grad();
    if (p == 1 || !started) {
      // Nothing in flight on the ranks' behalf: the next backward is a clean sync.
      mse_loss((*model)(x), y).backward();
      REQUIRE_FALSE(ddp.last_sync_events().empty());
      CHECK(ddp.last_sync_events().back().kind == K::sync_finished);
      CHECK(ddp.last_sync_stats().buckets == static_cast<int>(ddp.buckets().size()));
    } else {
      // An all-reduce was started for a backward that never finished: the ranks'
      // collectives can no longer be matched, so the next backward says so.
      CHECK_THROWS_AS(mse_loss((*model)(x), y).backward(), dist::DistError);
    }
  }
}

TEST_CASE("DDP: tg::grad for the inputs leaves the parameters' .grad alone", "[dist][ddp]") {
  // The parameters are not tg::grad's inputs: their hooks do not run, nothing is synced.
  const int me = dist::get_rank();
  auto model = make_mlp(3, f64);
  dist::DistributedDataParallel ddp(*model);
  const Var x = param(batch({4, 6}, 70 + me, f64));
  const Var y = constant(batch({4, 3}, 80 + me, f64));
  const auto g = grad({mse_loss((*model)(x), y)}, {x});
  CHECK(g[0].shape() == x.shape());
  for (const Var& p : model->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("DDP: a backward run on another thread averages the gradients", "[dist][ddp]") {
  // MPI is initialized with MPI_THREAD_SERIALIZED: the hooks' MPI calls run on whichever
  // thread runs backward, here not the one that initialized MPI.
  const int p = dist::get_world_size(), me = dist::get_rank();
  const int64_t global = 12, local = global / p;
  auto ref = make_mlp(3, f64);
  auto model = make_mlp(3, f64);
  dist::DistributedDataParallel ddp(*model, {.bucket_cap_mb = 0.0005});
  Var x = constant(batch({global, 6}, 0.5, f64)), y = constant(batch({global, 3}, 7.5, f64));
  mse_loss((*ref)(x), y).backward();
  std::string error;
  std::thread worker([&] {
    try {
      Var xs = narrow(x, 0, me * local, local), ys = narrow(y, 0, me * local, local);
      mse_loss((*model)(xs), ys).backward();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  worker.join();
  REQUIRE(error.empty());
  auto pr = ref->parameters(), pm = model->parameters();
  for (size_t k = 0; k < pr.size(); ++k) {
    auto a = values(pr[k].grad().value()), b = values(pm[k].grad().value());
    for (size_t i = 0; i < a.size(); ++i) CHECK(b[i] == Approx(a[i]).epsilon(1e-12).margin(1e-15));
  }
}

namespace {

// One step of data-parallel training on this rank's share of a global batch of 12 at step
// `step`: `mode` 0 is one backward, 1 two half backwards, the first under no_sync, 2 two
// half backwards both synced (the second adds its average to the first's).
void ddp_backward(Sequential& model, dist::DistributedDataParallel& ddp, int step, int mode,
                  Dtype d) {
  const int p = dist::get_world_size(), me = dist::get_rank();
  const int64_t local = 12 / p;  // 12: divisible by 1, 2 and 3, and 12 / p is even
  Var x = constant(batch({12, 6}, step, d)), y = constant(batch({12, 3}, 100 + step, d));
  Var xs = narrow(x, 0, me * local, local), ys = narrow(y, 0, me * local, local);
  if (mode == 0) {
    mse_loss(model(xs), ys).backward();
    return;
  }
  const int64_t h = local / 2;
  auto first_half = [&] { mse_loss(model(narrow(xs, 0, 0, h)), narrow(ys, 0, 0, h)).backward(); };
  if (mode == 1) {
    auto guard = ddp.no_sync();
    first_half();
  } else {
    first_half();
  }
  mse_loss(model(narrow(xs, 0, h, h)), narrow(ys, 0, h, h)).backward();
}

// Largest relative difference between two state dicts' state tensors (every key of `a` must
// be in `b`, with the same shape).
double max_state_difference(const NpzArchive& a, const NpzArchive& b) {
  double worst = 0;
  for (const auto& key : a.names()) {
    INFO(key);
    REQUIRE(b.contains(key));
    auto x = values(a.tensor(key)), y = values(b.tensor(key));
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i)
      worst =
          std::max(worst, std::abs(x[i] - y[i]) / std::max({std::abs(x[i]), std::abs(y[i]), 1e-3}));
  }
  return worst;
}

// Whether some parameter of `model` is split between two ranks' slices (a collective).
bool some_parameter_split(dist::ZeroRedundancyOptimizer& zero, const Module& model) {
  Tensor split = zeros({1}, i64);
  for (const Var& q : zero.local_optimizer().params())
    for (const Var& w : model.parameters())
      if (q.numel() < w.numel() && q.numel() > 0) split.data<int64_t>()[0] = 1;
  dist::all_reduce(split, dist::ReduceOp::max);
  return split.data<int64_t>()[0] == 1;
}

}  // namespace

TEST_CASE("ZeroRedundancyOptimizer: the sharded steps equal DDP with the whole optimizer",
          "[dist][zero]") {
  const int p = dist::get_world_size(), me = dist::get_rank();
  const bool adam = GENERATE(true, false);
  const int mode = GENERATE(0, 1, 2);       // ddp_backward's
  const bool view = GENERATE(false, true);  // gradient_as_bucket_view: no effect when sharded
  const dist::OptimizerFactory make =
      adam ? dist::optimizer_class<Adam>(AdamOptions{.lr = 0.01, .weight_decay = 0.01})
           : dist::optimizer_class<SGD>(SGDOptions{.lr = 0.1, .momentum = 0.9});
  for (Dtype d : {f32, f64}) {
    INFO(dtype_name(d) << (adam ? " Adam" : " SGD") << ", backward mode " << mode
                       << (view ? ", gradient_as_bucket_view" : ""));
    // Buckets of ~130 f32 elements: the shards' boundaries fall inside parameters.
    const dist::DDPOptions o{.bucket_cap_mb = 0.0005, .gradient_as_bucket_view = view};
    auto ref = make_mlp(1, d), model = make_mlp(1 + static_cast<uint64_t>(me), d);
    dist::DistributedDataParallel ddp_ref(*ref, o), ddp(*model, o);
    REQUIRE(ddp.buckets().size() > 1);
    auto opt_ref = make(ref->parameters());
    dist::ZeroRedundancyOptimizer zero(ddp, make);
    CHECK(zero.params().size() == model->parameters().size());
    if (p > 1) CHECK(some_parameter_split(zero, *model));
    auto run = [&](int first, int n) {
      for (int step = first; step < first + n; ++step) {
        opt_ref->zero_grad();
        ddp_backward(*ref, ddp_ref, step, mode, d);
        opt_ref->step();
        zero.zero_grad();
        ddp_backward(*model, ddp, step, mode, d);
        for (const Var& q : model->parameters()) CHECK(!q.grad().defined());
        zero.step();
      }
    };
    run(0, 5);
    // Two synced backwards (mode 2) round differently: the whole-gradient DDP re-averages the
    // first average with the second backward's gradients (sum over ranks of a / p + g / p),
    // the sharded one adds the second average to the first (a + sum of g / p).
    const double tol = d == f32 ? (mode == 2 ? 1e-5 : 1e-6) : 1e-12;
    double diff = max_relative_difference(*model, *ref);
    INFO("largest relative difference from DDP with the whole optimizer: " << diff);
    CHECK(diff <= tol);
    CHECK(same_on_every_rank(*model));
    CHECK(zero.steps() == 5);

    // The consolidated state is the whole optimizer's state_dict.
    CHECK_THROWS_WITH(
        [&] {
          NpzArchive a;
          zero.state_dict(a);
        }(),
        Catch::Contains("consolidate_state_dict"));
    CHECK_THROWS_AS(zero.consolidate_state_dict(p), IndexError);
    zero.consolidate_state_dict(0);
    NpzArchive want;
    opt_ref->state_dict(want);
    if (me == 0) {
      NpzArchive got;
      zero.state_dict(got);
      CHECK(got.names() == want.names());
      CHECK(max_state_difference(want, got) <= tol);
      CHECK(got.i64s("param_steps") == want.i64s("param_steps"));
      // Resumed by the whole optimizer in a world of one (no DDP: the global batch at once).
      auto solo = make_mlp(7, d);
      {
        NoGradGuard g;
        auto a = solo->parameters(), b = model->parameters();
        for (size_t k = 0; k < a.size(); ++k) a[k].value().copy_(b[k].value());
      }
      auto opt_solo = make(solo->parameters());
      opt_solo->load_state_dict(NpzArchive::decode(got.encode()));
      for (int step = 5; step < 8; ++step) {
        opt_solo->zero_grad();
        Var x = constant(batch({12, 6}, step, d)), y = constant(batch({12, 3}, 100 + step, d));
        if (mode == 0) {
          mse_loss((*solo)(x), y).backward();
        } else {  // the ranks' first halves, then their second halves
          const int64_t local = 12 / p, h = local / 2;
          for (int64_t half : {0, 1}) {
            std::vector<Var> xs, ys;
            for (int r = 0; r < p; ++r) {
              xs.push_back(narrow(x, 0, r * local + half * h, h));
              ys.push_back(narrow(y, 0, r * local + half * h, h));
            }
            mse_loss((*solo)(concat(xs)), concat(ys)).backward();
          }
        }
        opt_solo->step();
      }
      run(5, 3);
      diff = max_relative_difference(*model, *solo);
      INFO("resumed in a world of one: largest relative difference " << diff);
      CHECK(diff <= (d == f32 ? 1e-5 : 1e-12));
    } else {
      CHECK_THROWS_AS(
          [&] {
            NpzArchive a;
            zero.state_dict(a);
          }(),
          Error);
      run(5, 3);
    }

    // The whole optimizer's state_dict loaded into a fresh sharded one on this world size.
    auto model2 = make_mlp(9, d);
    dist::DistributedDataParallel ddp2(*model2, o);
    dist::ZeroRedundancyOptimizer zero2(ddp2, make);
    {  // ref has taken the same 8 steps as model
      NoGradGuard g;
      auto a = model2->parameters(), b = ref->parameters();
      for (size_t k = 0; k < a.size(); ++k) a[k].value().copy_(b[k].value());
    }
    NpzArchive ref_state;
    opt_ref->state_dict(ref_state);
    zero2.load_state_dict(NpzArchive::decode(ref_state.encode()));
    CHECK(zero2.steps() == 8);
    for (int step = 8; step < 11; ++step) {
      opt_ref->zero_grad();
      ddp_backward(*ref, ddp_ref, step, mode, d);
      opt_ref->step();
      zero2.zero_grad();
      ddp_backward(*model2, ddp2, step, mode, d);
      zero2.step();
    }
    diff = max_relative_difference(*model2, *ref);
    INFO("resumed sharded from the whole optimizer's state: largest relative difference " << diff);
    CHECK(diff <= tol);
    CHECK(same_on_every_rank(*model2));
  }
}

TEST_CASE("ZeroRedundancyOptimizer::clip_grad_norm equals clip_grad_norm over DDP's gradients",
          "[dist][zero][clip]") {
  const int p = dist::get_world_size();
  const double inf = std::numeric_limits<double>::infinity();
  const double norm_type =
      std::vector<double>{2.0, 1.0, inf, -inf, 3.0}[GENERATE(0u, 1u, 2u, 3u, 4u)];
  // Below the first steps' totals (2-norm about 0.3 to 0.5), so that the steps clip.
  const double max_norm = norm_type == 1.0 ? 1.0 : norm_type == -inf ? 1e-5 : 0.1;
  const dist::OptimizerFactory make =
      dist::optimizer_class<SGD>(SGDOptions{.lr = 0.1, .momentum = 0.9});
  for (Dtype d : {f32, f64}) {
    INFO(dtype_name(d) << ", norm_type " << norm_type);
    const dist::DDPOptions o{.bucket_cap_mb = 0.0005};  // slices split parameters
    auto ref = make_mlp(1, d), model = make_mlp(1, d);
    dist::DistributedDataParallel ddp_ref(*ref, o), ddp(*model, o);
    auto opt_ref = make(ref->parameters());
    dist::ZeroRedundancyOptimizer zero(ddp, make);
    if (p > 1) CHECK(some_parameter_split(zero, *model));
    // No sync yet: nothing to clip.
    CHECK(zero.clip_grad_norm(max_norm, norm_type) == 0.0);
    const double tol = d == f32 ? 1e-5 : 1e-12;
    int clipped = 0;
    for (int step = 0; step < 6; ++step) {
      opt_ref->zero_grad();
      ddp_backward(*ref, ddp_ref, step, 0, d);
      const double want = clip_grad_norm(ref->parameters(), max_norm, norm_type);
      opt_ref->step();
      zero.zero_grad();
      ddp_backward(*model, ddp, step, 0, d);
      const double got = zero.clip_grad_norm(max_norm, norm_type);
      zero.step();
      INFO("step " << step << ": total norm " << got << ", DDP's " << want);
      CHECK(std::abs(got - want) <= tol * std::abs(want));
      CHECK(same_on_every_rank(got));
      clipped += want > max_norm;
    }
    CHECK(clipped >= 3);
    const double diff = max_relative_difference(*model, *ref);
    INFO("largest relative difference from DDP with the whole optimizer: " << diff);
    CHECK(diff <= tol);
    CHECK(same_on_every_rank(*model));

    // A NaN gradient (one target NaN on the last rank: its output's row of the last layer
    // and every earlier layer): the total is NaN on every rank, as torch's, and scales every
    // gradient to NaN; with error_if_nonfinite it throws on every rank and nothing changes.
    auto nan_backward = [&](Sequential& m) {
      const int64_t local = 12 / p, me = dist::get_rank();
      Tensor y = batch({12, 3}, 107, f64);
      y.data<double>()[11 * 3 + 1] = std::nan("");  // the last row: the last rank's
      Var x = constant(batch({12, 6}, 7, d)), ys = constant(y.to(d));
      mse_loss(m(narrow(x, 0, me * local, local)), narrow(ys, 0, me * local, local)).backward();
    };
    for (bool strict : {true, false}) {
      INFO((strict ? "error_if_nonfinite" : "NaN total"));
      opt_ref->zero_grad();
      nan_backward(*ref);
      zero.zero_grad();
      nan_backward(*model);
      if (strict) {
        CHECK_THROWS_AS(clip_grad_norm(ref->parameters(), max_norm, norm_type, true), Error);
        CHECK_THROWS_WITH(zero.clip_grad_norm(max_norm, norm_type, true),
                          Catch::StartsWith("ZeroRedundancyOptimizer::clip_grad_norm: ") &&
                              Catch::Contains("nan"));
      } else {
        CHECK(std::isnan(clip_grad_norm(ref->parameters(), max_norm, norm_type)));
        const double got = zero.clip_grad_norm(max_norm, norm_type);
        CHECK(std::isnan(got));
        CHECK(same_on_every_rank(got));
      }
      opt_ref->step();
      zero.step();
      // Unclipped: NaN where the NaN reached, the same finite values elsewhere; clipped by
      // NaN: every parameter NaN.
      CHECK(max_relative_difference(*model, *ref) <= tol);
      int64_t nans = 0, total = 0;
      for (const Var& q : model->parameters())
        for (double v : values(q.value())) nans += std::isnan(v), ++total;
      CHECK((strict ? (nans > 0 && nans < total) : nans == total));
    }
  }
}

TEST_CASE("ZeroRedundancyOptimizer: errors", "[dist][zero]") {
  auto model = make_mlp(3, f64);
  dist::DistributedDataParallel ddp(*model);
  dist::ZeroRedundancyOptimizer zero(ddp, dist::optimizer_class<Adam>(AdamOptions{}));
  // One per wrapper.
  CHECK_THROWS_WITH(dist::ZeroRedundancyOptimizer(ddp, dist::optimizer_class<Adam>(AdamOptions{})),
                    Catch::Contains("already sharded"));
  // A step with no gradient changes nothing.
  auto before = values(model->parameters()[0].value());
  zero.step();
  CHECK(values(model->parameters()[0].value()) == before);
  // A state_dict of another model.
  NpzArchive a;
  Adam other(make_mlp(3, f64, 4)->parameters());
  other.state_dict(a);
  a.put_i64("param_steps", {1, 2});
  CHECK_THROWS_AS(zero.load_state_dict(a), IoError);
  // clip_grad_norm refuses the norm types clip_grad_norm refuses, before any collective.
  CHECK_THROWS_WITH(zero.clip_grad_norm(1.0, 0.0),
                    Catch::StartsWith("ZeroRedundancyOptimizer::clip_grad_norm: norm_type 0"));
  CHECK_THROWS_AS(zero.clip_grad_norm(1.0, std::nan("")), Error);
}
