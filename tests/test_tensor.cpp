#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <latch>
#include <sstream>
#include <thread>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "graph/xtensor_interop.hpp"

using tg::Shape;
using tg::Tensor;

TEST_CASE("tensor factories and element access", "[tensor]") {
  const Tensor z = tg::zeros({2, 3});
  CHECK(z.dtype() == tg::f32);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.at({1, 2}) == 0.0);
  const Tensor o = tg::ones({4}, tg::f64);
  CHECK(o.dtype() == tg::f64);
  CHECK(o.to_vector() == std::vector<double>{1, 1, 1, 1});
  CHECK(tg::full({2}, 2.5).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(tg::arange(4).to_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(tg::arange(1.0, 2.0, 0.25, tg::f64).to_vector() ==
        std::vector<double>{1.0, 1.25, 1.5, 1.75});
  const Tensor t = tg::tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.at({0, 1}) == 2.0);
  CHECK(t.at({-1, -1}) == 6.0);
  CHECK_THROWS_AS(t.at({2, 0}), tg::IndexError);
  CHECK_THROWS_AS(t.at({0}), tg::IndexError);
  CHECK(tg::scalar_tensor(3.0).item() == 3.0);
  CHECK_THROWS_AS(t.item(), tg::ShapeError);
  CHECK_THROWS_AS(tg::tensor({1, 2, 3}, {2, 2}), tg::ShapeError);
  const Tensor v(std::vector<double>{1.5, 2.5}, Shape{2});
  CHECK(v.dtype() == tg::f64);
  CHECK_THROWS_AS(v.data<float>(), tg::DtypeError);
}

TEST_CASE("tensor dtype conversion, clone and sharing", "[tensor]") {
  const Tensor t = tg::tensor({1.5, -2.25}, {2});
  const Tensor d = t.to(tg::f64);
  CHECK(d.dtype() == tg::f64);
  CHECK(d.to_vector() == t.to_vector());
  CHECK(t.to(tg::f32).shares_storage_with(t));
  Tensor alias = t;
  Tensor copy = t.clone();
  alias.fill_(7.0);
  CHECK(t.at({0}) == 7.0);
  CHECK(copy.at({0}) == 1.5);
  const Tensor r = t.reshape({1, -1});
  CHECK(r.shape() == Shape{1, 2});
  CHECK(r.shares_storage_with(t));
  CHECK_THROWS_WITH(t.reshape({3}), Catch::Contains("[2]") && Catch::Contains("[3]"));
  CHECK_THROWS_AS(t.reshape({-1, -1}), tg::ShapeError);
}

TEST_CASE("tensor printing looks like NumPy", "[tensor]") {
  std::ostringstream os;
  os << tg::tensor({1, 2, 3, 4}, {2, 2});
  CHECK(os.str() == "[[1, 2],\n [3, 4]] (f32 [2, 2])");
  CHECK(tg::scalar_tensor(0.5, tg::f64).str() == "0.5 (f64 [])");
  CHECK(tg::zeros({0}).str() == "[] (f32 [0])");
}

TEST_CASE("random tensors come from an explicit seeded generator", "[tensor]") {
  tg::Rng a(42), b(42), c(43);
  const Tensor x = tg::randn({1000}, a, tg::f64);
  const Tensor y = tg::randn({1000}, b, tg::f64);
  const Tensor z = tg::randn({1000}, c, tg::f64);
  CHECK(tg::equal(x, y));
  CHECK_FALSE(tg::equal(x, z));
  const auto v = x.to_vector();
  double mean = 0, var = 0;
  for (double e : v) mean += e / 1000;
  for (double e : v) var += (e - mean) * (e - mean) / 1000;
  CHECK(std::abs(mean) < 0.1);
  CHECK(std::abs(var - 1.0) < 0.1);
  const Tensor u = tg::rand({1000}, a, -2.0, 3.0);
  for (double e : u.to_vector()) {
    CHECK(e >= -2.0);
    CHECK(e < 3.0);
  }
  // state save/restore reproduces the stream
  tg::Rng r(7);
  r.normal();
  const auto st = r.state();
  const bool has = r.has_spare();
  const double sp = r.spare();
  const double n1 = r.normal(), n2 = r.normal();
  r.set_state(st);
  r.set_spare(has, sp);
  CHECK(r.normal() == n1);
  CHECK(r.normal() == n2);
}

TEST_CASE("broadcast_shapes follows NumPy rules", "[tensor]") {
  CHECK(tg::broadcast_shapes({3, 1}, {4}, "op") == Shape{3, 4});
  CHECK(tg::broadcast_shapes({}, {2, 2}, "op") == Shape{2, 2});
  CHECK(tg::broadcast_shapes({2, 1, 3}, {4, 1}, "op") == Shape{2, 4, 3});
  CHECK_THROWS_WITH(tg::broadcast_shapes({3, 2}, {4}, "myop"),
                    Catch::Contains("myop") && Catch::Contains("[3, 2]") && Catch::Contains("[4]"));
}

TEST_CASE("xtensor interop round trip", "[tensor]") {
  xt::xarray<double> a = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
  const Tensor t = tg::from_xarray(a);
  CHECK(t.dtype() == tg::f64);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.at({1, 0}) == 4.0);
  const xt::xarray<float> back = tg::to_xarray<float>(t);
  CHECK(back.shape()[1] == 3);
  CHECK(back(1, 2) == 6.0f);
}

TEST_CASE("live tensor bytes return to baseline", "[tensor]") {
  const int64_t before = tg::debug::live_tensor_bytes();
  {
    const Tensor big = tg::zeros({1000}, tg::f64);
    CHECK(tg::debug::live_tensor_bytes() - before >= 8000);
  }
  CHECK(tg::debug::live_tensor_bytes() == before);
}

TEST_CASE("shapes whose element count overflows int64 are rejected", "[tensor]") {
  CHECK_THROWS_AS((tg::Shape{int64_t{1} << 40, int64_t{1} << 30}), tg::ShapeError);
  CHECK((tg::Shape{int64_t{1} << 40, 0, int64_t{1} << 20}).numel() == 0);
  CHECK((tg::Shape{int64_t{1} << 31, int64_t{1} << 31}).numel() == int64_t{1} << 62);
}

TEST_CASE("tensor data starts on a 64-byte boundary", "[tensor][memory]") {
  for (int64_t n : {1, 3, 16, 1000, 4097, 70000}) {
    for (tg::Dtype dt : {tg::f32, tg::f64}) {
      const Tensor t = tg::zeros({n}, dt);
      INFO(n << " " << tg::dtype_name(dt));
      CHECK(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
      CHECK(t.nbytes() == static_cast<size_t>(n) * tg::itemsize(dt));
    }
  }
}

TEST_CASE("tensor handles count the users of their buffer", "[tensor][memory]") {
  const int64_t before = tg::debug::live_tensor_bytes();
  {
    Tensor a = tg::full({3, 5}, 2.0);
    CHECK(a.storage_use_count() == 1);
    Tensor b = a;  // copy: shares
    CHECK(a.storage_use_count() == 2);
    CHECK(b.shares_storage_with(a));
    Tensor c = std::move(b);  // move: hands over, no new user
    CHECK(a.storage_use_count() == 2);
    CHECK_FALSE(b.defined());
    CHECK(b.storage_use_count() == 0);
    c = c;  // self-assignment keeps the buffer
    CHECK(c.defined());
    CHECK(a.storage_use_count() == 2);
    c = std::move(c);
    CHECK(c.defined());
    CHECK(c.at({2, 4}) == 2.0);
    c = tg::zeros({2});  // reassignment lets the old buffer go
    CHECK(a.storage_use_count() == 1);
    b = a.reshape({15});  // a view shares too
    CHECK(a.storage_use_count() == 2);
    CHECK(b.at({14}) == 2.0);
    Tensor d;
    CHECK(d.storage_use_count() == 0);
    d = a;
    CHECK(a.storage_use_count() == 3);
    Tensor only = tg::full({4}, 7.0);  // the sole owner assigned to itself keeps its buffer
    only = only;
    CHECK(only.storage_use_count() == 1);
    CHECK(only.at({3}) == 7.0);
    only = std::move(only);
    CHECK(only.storage_use_count() == 1);
    CHECK(only.at({0}) == 7.0);
    Tensor from = tg::full({2, 2}, 1.0);
    Tensor to = std::move(from);  // a moved-from tensor is a default one
    CHECK_FALSE(from.defined());
    CHECK(from.dim() == 0);
    CHECK(from.numel() == 0);
    CHECK(from.nbytes() == 0);
    CHECK_THROWS_WITH(from.item(), "item: the tensor is undefined");
    CHECK_THROWS_WITH(from.at({}), "at: the tensor is undefined");
    CHECK_FALSE(from.clone().defined());
    CHECK_FALSE(from.to(tg::f64).defined());
  }
  CHECK(tg::debug::live_tensor_bytes() == before);  // every buffer freed exactly once
}

TEST_CASE("a buffer shared across threads is freed once, by its last user",
          "[tensor][memory][threads]") {
  // 4 threads copy and drop handles to one buffer at the same moment (released together
  // by a latch), 200 times: the count must end at exactly one free per buffer.
  const int64_t before = tg::debug::live_tensor_bytes();
  for (int round = 0; round < 200; ++round) {
    Tensor shared = tg::full({1024}, 3.0);
    std::latch go(5);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&go, h = shared]() mutable {
        go.arrive_and_wait();
        for (int i = 0; i < 50; ++i) {
          Tensor copy = h;
          Tensor moved = std::move(copy);
          if (moved.at({i}) != 3.0) std::abort();
        }
        h = Tensor();
      });
    shared = Tensor();  // the last user may be any thread
    go.arrive_and_wait();
    for (auto& th : threads) th.join();
  }
  CHECK(tg::debug::live_tensor_bytes() == before);
}

TEST_CASE("shapes check every extent however they are built", "[tensor]") {
  CHECK((Shape{2, 0, 3}).numel() == 0);
  CHECK((Shape{2, 0, 3}).str() == "[2, 0, 3]");
  CHECK(Shape(std::vector<int64_t>{4, 5}).numel() == 20);
  CHECK(Shape{}.numel() == 1);
  CHECK_THROWS_WITH((Shape{2, -1}), Catch::Contains("negative extent -1"));
  CHECK_THROWS_WITH(Shape(std::vector<int64_t>{0, -3}), Catch::Contains("negative extent -3"));
  CHECK_THROWS_WITH((Shape{1, 1, 1, 1, 1, 1, 1, 1, 1}), Catch::Contains("maximum of 8"));
  CHECK_THROWS_WITH((Shape{0, int64_t{1} << 40, int64_t{1} << 30}),
                    Catch::Contains("more elements than int64"));
  CHECK_THROWS_WITH((Shape{int64_t{1} << 40, int64_t{1} << 30}),
                    Catch::Contains("more elements than int64"));
  CHECK_THROWS_WITH(Shape(std::vector<int64_t>{int64_t{1} << 40, int64_t{1} << 30}),
                    Catch::Contains("more elements than int64"));
  CHECK_THROWS_AS(tg::zeros({int64_t{1} << 62}), std::bad_alloc);  // 2^64 bytes
}

TEST_CASE("int64 and bool tensors: factories, element access, printing", "[tensor][dtype]") {
  const Tensor z = tg::zeros({2, 3}, tg::i64);
  CHECK(z.dtype() == tg::i64);
  CHECK(z.nbytes() == 48);
  CHECK(tg::ones({4}, tg::boolean).nbytes() == 4);
  const Tensor a = tg::arange(5, tg::i64);
  CHECK(a.data<int64_t>()[4] == 4);
  CHECK_THROWS_AS(a.data<float>(), tg::DtypeError);
  CHECK(tg::arange(-3.0, 3.0, 2.0, tg::i64).to_vector() == std::vector<double>{-3, -1, 1});
  CHECK_THROWS_AS(tg::arange(3, tg::boolean), tg::DtypeError);
  const Tensor f = tg::full({2, 2}, 7, tg::i64);
  CHECK(f.at({1, 1}) == 7);
  CHECK(tg::full_like(f, 2).data<int64_t>()[3] == 2);
  CHECK(tg::zeros_like(f).dtype() == tg::i64);
  CHECK(tg::ones_like(tg::zeros({3}, tg::boolean)).data<bool>()[2]);
  CHECK(tg::empty_like(f).shape() == Shape{2, 2});
  const Tensor ids(std::vector<int64_t>{1, -2, 9007199254740993}, Shape{3});
  CHECK(ids.data<int64_t>()[2] == 9007199254740993);  // past 2^53: exact, not via double
  CHECK(ids.str() == "[1, -2, 9007199254740993] (i64 [3])");
  const Tensor mask = tg::tensor({1, 0, 2}, {3}, tg::boolean);
  CHECK(mask.data<bool>()[2]);
  CHECK(mask.str() == "[True, False, True] (bool [3])");
  CHECK(tg::scalar_tensor(3, tg::i64).str() == "3 (i64 [])");
  CHECK_THROWS_AS(mask.item(), tg::ShapeError);
  CHECK(tg::equal(mask, tg::tensor({1, 0, 1}, {3}, tg::boolean)));
  CHECK_FALSE(tg::has_nonfinite(ids));
}

TEST_CASE("to(dtype) converts with PyTorch's rules", "[tensor][dtype]") {
  const double nan = std::nan(""), inf = INFINITY;
  const Tensor x = tg::tensor({2.7, -2.7, 0.0, -0.5, nan, inf, 1e19}, {7}, tg::f64);
  const Tensor i = x.to(tg::i64);
  const int64_t* pi = i.data<int64_t>();
  CHECK(pi[0] == 2);  // truncation toward zero
  CHECK(pi[1] == -2);
  CHECK(pi[2] == 0);
  CHECK(pi[3] == 0);
  CHECK(pi[4] == INT64_MIN);  // NaN, inf and out of range: what x86 gives PyTorch
  CHECK(pi[5] == INT64_MIN);
  CHECK(pi[6] == INT64_MIN);
  const Tensor b = x.to(tg::boolean);
  const bool* pb = b.data<bool>();
  CHECK((pb[0] && pb[1] && !pb[2] && pb[3] && pb[4] && pb[5]));  // NaN is non-zero: true
  CHECK(tg::tensor({-3, 0, 5}, {3}, tg::i64).to(tg::boolean).to_vector() ==
        std::vector<double>{1, 0, 1});
  CHECK(b.to(tg::f32).to_vector() == std::vector<double>{1, 1, 0, 1, 1, 1, 1});
  CHECK(i.to(tg::f64).data<double>()[1] == -2.0);
  Tensor dst = tg::zeros({2}, tg::i64);
  dst.copy_(tg::tensor({3.9, -3.9}, {2}));
  CHECK(dst.to_vector() == std::vector<double>{3, -3});
  dst.fill_(-1.5);
  CHECK(dst.to_vector() == std::vector<double>{-1, -1});
}

TEST_CASE("int64 and bool values never carry gradients", "[tensor][dtype]") {
  const Tensor ids = tg::arange(4, tg::i64);
  CHECK_THROWS_AS(tg::param(ids), tg::DtypeError);
  CHECK_THROWS_WITH(tg::param(ids), Catch::Contains("only floating") && Catch::Contains("i64"));
  tg::Var v = tg::constant(tg::zeros({2}, tg::boolean));
  CHECK_THROWS_WITH(v.requires_grad_(),
                    Catch::Contains("requires_grad_") && Catch::Contains("bool"));
  CHECK_FALSE(v.requires_grad());
  // Data movement takes every dtype and records nothing; arithmetic names itself.
  const tg::Var r = tg::reshape(tg::constant(ids), {2, 2});
  CHECK(r.dtype() == tg::i64);
  CHECK(tg::transpose(r).value().to_vector() == std::vector<double>{0, 2, 1, 3});
  CHECK_THROWS_WITH(tg::exp(r),
                    Catch::Contains("exp: expected a floating tensor") && Catch::Contains("i64"));
  const tg::Var w = tg::param(tg::ones({4}));
  CHECK_THROWS_WITH(w * tg::constant(ids), Catch::Contains("mul") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(tg::cross_entropy(tg::constant(tg::zeros({2, 3}, tg::i64)), {0, 1}),
                    Catch::Contains("cross_entropy") && Catch::Contains("i64"));
}

TEST_CASE("in-place ops between views of one buffer: disjoint copy, overlap refused",
          "[tensor][inplace]") {
  // As PyTorch: copy_ between disjoint slices of one buffer copies, the same slice is a
  // no-op, and a partial overlap (a read of an element already written) is refused.
  Tensor t = tg::arange(6, tg::f64);
  t.view_range(0, Shape{3}).copy_(t.view_range(3, Shape{3}));
  CHECK(t.to_vector() == std::vector<double>{3, 4, 5, 3, 4, 5});
  t = tg::arange(6, tg::f64);
  const uint32_t v0 = t.version();
  t.view_range(1, Shape{2}).copy_(t.view_range(1, Shape{2}));
  CHECK(t.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(t.version() == v0);  // nothing written
  CHECK_THROWS_AS(t.view_range(0, Shape{4}).copy_(t.view_range(2, Shape{4})), tg::Error);
  CHECK_THROWS_WITH(t.view_range(2, Shape{4}).add_(t.view_range(0, Shape{4})),
                    Catch::Contains("add_") && Catch::Contains("overlap"));
  CHECK_THROWS_WITH(t.view_range(0, Shape{2, 2}).mul_(t.view_range(0, Shape{2})),
                    Catch::Contains("mul_") && Catch::Contains("overlap"));
  CHECK(t.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});  // refused before writing
  t.view_range(0, Shape{2}).add_(t.view_range(2, Shape{2}));      // disjoint: fine
  t.add_(t);                                                      // the same elements: fine
  CHECK(t.to_vector() == std::vector<double>{4, 8, 4, 6, 8, 10});
}

TEST_CASE("in-place i64 arithmetic wraps on overflow, as PyTorch", "[tensor][dtype]") {
  Tensor t(std::vector<int64_t>{INT64_MAX, INT64_MIN, 3}, Shape{3});
  t.add_(Tensor(std::vector<int64_t>{1, -1, 4}, Shape{3}));
  CHECK(t.data<int64_t>()[0] == INT64_MIN);
  CHECK(t.data<int64_t>()[1] == INT64_MAX);
  CHECK(t.data<int64_t>()[2] == 7);
  Tensor m(std::vector<int64_t>{int64_t{1} << 62, -3}, Shape{2});
  m.mul_(4.0);
  CHECK(m.data<int64_t>()[0] == 0);  // 2^64 wraps to 0
  CHECK(m.data<int64_t>()[1] == -12);
  m.add_(Tensor(std::vector<int64_t>{INT64_MAX, 1}, Shape{2}), 2.0);
  CHECK(m.data<int64_t>()[0] == -2);  // 2 * (2^63 - 1) wraps to -2
}

TEST_CASE("an i64 arange truncates its bounds and step first, as PyTorch", "[tensor][dtype]") {
  CHECK(tg::arange(-3.5, 2, 1, tg::i64).to_vector() == std::vector<double>{-3, -2, -1, 0, 1});
  CHECK(tg::arange(5, -5, -3, tg::i64).to_vector() == std::vector<double>{5, 2, -1, -4});
  CHECK(tg::arange(0.5, 4.9, 1.9, tg::i64).to_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(tg::arange(3, tg::i64).to_vector() == std::vector<double>{0, 1, 2});
  CHECK(tg::arange(2, 2, 1, tg::i64).numel() == 0);
  CHECK_THROWS_WITH(tg::arange(0, 3, 0.7, tg::i64), Catch::Contains("arange: an i64 range"));
}

TEST_CASE("copy_ broadcasts its source to the tensor's shape, as PyTorch", "[tensor][inplace]") {
  Tensor t = tg::zeros({2, 3}, tg::f64);
  t.copy_(tg::tensor({1, 2, 3}, {3}, tg::i64));  // broadcast and converted
  CHECK(t.to_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
  t.copy_(tg::tensor({7, 8}, {2, 1}, tg::f32));
  CHECK(t.to_vector() == std::vector<double>{7, 7, 7, 8, 8, 8});
  CHECK_THROWS_WITH(tg::zeros({2}).copy_(tg::zeros({2, 2})),
                    Catch::Contains("copy_") && Catch::Contains("[2, 2]"));
  CHECK_THROWS_AS(tg::zeros({2}).copy_(tg::zeros({3})), tg::ShapeError);
}
