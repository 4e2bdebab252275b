// White-box tests of where memory comes from: the tensor block cache (graph/block_cache.cpp)
// and the node pool's recycling (graph/node_pool.cpp). They look at addresses and counts
// that the library's behaviour does not promise, so they live apart from the behaviour tests.

#include <catch2/catch.hpp>
#include <initializer_list>
#include <utility>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "graph/asan.hpp"

using tg::Tensor;
using tg::Var;

TEST_CASE("a recycled node is a fresh leaf again: every field is reset", "[allocators]") {
  // A field added to Node must be reset in Node::reset_for_reuse() and set below; the size
  // check fails when Node changes, as a reminder.
#if defined(__x86_64__) && defined(__GLIBCXX__)  // the size on the platform CI builds
  static_assert(sizeof(tg::Node) == 320,
                "Node changed: reset a new field in Node::reset_for_reuse() and set it here");
#endif
#ifdef TG_UNDER_ASAN
  SUCCEED("no recycling under AddressSanitizer");
  return;
#endif
  tg::NoGradGuard no_grad;
  const tg::Node fresh;
  const tg::Node* reused = nullptr;
  {
    Var v = tg::constant(tg::zeros({4}));
    tg::Node& n = *v.node();
    // Every field a node may carry when it dies without grad, inputs, hooks or pending.
    n.name = "poked";
    n.seq = 41;
    n.requires_grad = true;
    n.has_fn = true;
    n.retains_grad = true;
    n.released = true;
    n.pending_owned = true;
    n.saved_versions.push_back(3);
    n.mark.store(7);
    // (a tangent itself is dropped before the reset, Note [Tangent storage]; with no level
    // open the slot is not read)
    n.tangent_slot = reinterpret_cast<tg::detail::TangentSlot*>(uintptr_t{64});
    reused = v.node();
  }
  Var w = tg::constant(tg::ones({2}));
  REQUIRE(w.node() == reused);  // the same node came back
  const tg::Node& n = *w.node();
  CHECK(std::string(n.name) == fresh.name);
  CHECK(n.seq == fresh.seq);
  CHECK(n.requires_grad == fresh.requires_grad);
  CHECK(n.has_fn == fresh.has_fn);
  CHECK(n.retains_grad == fresh.retains_grad);
  CHECK(n.released == fresh.released);
  CHECK(n.pending_owned == fresh.pending_owned);
  CHECK(n.saved_versions.size() == fresh.saved_versions.size());
  CHECK(n.mark.load() == fresh.mark.load());
  CHECK(n.tangent_slot == fresh.tangent_slot);
  CHECK_FALSE(n.tangent.defined());
  CHECK_FALSE(n.grad.defined());
  CHECK(n.inputs.empty());
  CHECK(n.hooks.empty());
  CHECK_FALSE(n.pending.defined());
  CHECK(tg::equal(n.value, tg::ones({2})));
}

TEST_CASE("an unrecorded result reuses a dropped node and block, never one still held",
          "[engine][memory]") {
  // Note [Node recycling]: a dropped plain node is kept, still constructed, with its value's
  // block when nothing else holds that block; the next no-grad product of that byte size
  // takes both. Kept nodes and blocks do not count as live.
  tg::Rng rng(5);
  const Var a = tg::constant(tg::randn({32, 32}, rng));
  const Var b = tg::constant(tg::randn({32, 32}, rng));
  const Tensor ab = tg::matmul(a, b).value().clone();
  const Tensor ba = tg::matmul(b, a).value().clone();
  // For the dtype section, made before c's node is kept (making a Var takes a kept node).
  const Var a64 = tg::constant(a.value().to(tg::f64).reshape({16, 64}));
  const Var b64 = tg::constant(tg::randn({64, 32}, rng, tg::f64));
  const Tensor ab64 = tg::matmul(a64, b64).value().clone();
  tg::NoGradGuard no_grad;
  const int64_t nodes = tg::debug::live_nodes();
  const int64_t bytes = tg::debug::live_tensor_bytes();
  int kept = 0, kept_buffers = 0;  // what this thread keeps while c lives
  const tg::Node* node = nullptr;
  const void* data = nullptr;
  {
    Var c = tg::matmul(a, b);
    kept = tg::debug::recycled_nodes();
    kept_buffers = tg::debug::recycled_node_buffers();
    node = c.node();
    data = c.value().raw_data();
    CHECK(tg::debug::live_nodes() == nodes + 1);
    CHECK(tg::debug::live_tensor_bytes() > bytes);
  }
  CHECK(tg::debug::live_nodes() == nodes);
  CHECK(tg::debug::live_tensor_bytes() == bytes);
#ifdef TG_UNDER_ASAN
  CHECK(tg::debug::recycled_nodes() == 0);  // off under ASan: every node its own allocation
  return;
#endif
  CHECK(tg::debug::recycled_nodes() == kept + 1);
  CHECK(tg::debug::recycled_node_buffers() == kept_buffers + 1);

  SECTION("the next product of that size takes both, as a fresh leaf") {
    Var c = tg::matmul(b, a);
    CHECK(tg::debug::recycled_nodes() == kept);
    CHECK(c.node() == node);
    CHECK(c.value().raw_data() == data);
    CHECK(tg::equal(c.value(), ba));
    CHECK(c.shape() == tg::Shape{32, 32});
    CHECK(c.is_leaf());
    CHECK_FALSE(c.requires_grad());
    CHECK_FALSE(c.grad().defined());
  }
  SECTION("another dtype and shape of the same byte size") {
    Var c = tg::matmul(a64, b64);  // [16, 32] f64: the same 4096 bytes
    CHECK(c.node() == node);
    CHECK(c.value().raw_data() == data);
    CHECK(c.dtype() == tg::f64);
    CHECK(c.shape() == tg::Shape{16, 32});
    CHECK(c.numel() == 512);
    CHECK(tg::equal(c.value(), ab64));
  }
  SECTION("a block someone still holds stays theirs") {
    Tensor held;
    {
      Var c = tg::matmul(a, b);
      held = c.value();
    }
    CHECK(tg::debug::recycled_node_buffers() == kept_buffers);  // c's node, without the block
    Var d = tg::matmul(b, a);
    CHECK(d.value().raw_data() != held.raw_data());
    CHECK(tg::equal(held, ab));
    CHECK(tg::equal(d.value(), ba));
  }
  SECTION("a trainable leaf's node comes back wanting no gradient") {
    const tg::Node* leaf_node = nullptr;
    {
      Var p = tg::param(tg::randn({32, 32}, rng));
      p.retain_grad();
      leaf_node = p.node();
    }
    CHECK(tg::debug::recycled_node_buffers() == kept_buffers + 1);  // p's, and p's block
    Var c = tg::matmul(a, b);
    CHECK(c.node() == leaf_node);
    CHECK_FALSE(c.requires_grad());
    CHECK(tg::equal(c.value(), ab));
  }
  SECTION("a node with hooks or a gradient is freed, not kept") {
    {
      Var h = tg::param(tg::randn({32, 32}, rng));  // takes c's kept node
      h.register_hook([](const Var& g) { return g; });
      CHECK(tg::debug::recycled_nodes() == kept);
    }
    CHECK(tg::debug::recycled_nodes() == kept);
    {
      tg::GradModeGuard on(true);
      Var p = tg::param(tg::randn({32, 32}, rng));
      tg::sum(tg::matmul(p, a)).backward();
      REQUIRE(p.grad().defined());
      const tg::Node* p_node = p.node();
      p = Var();               // its gradient's node is kept, p's is not
      std::vector<Var> taken;  // every node this thread keeps, and no new one
      for (int i = tg::debug::recycled_nodes(); i > 0; --i) taken.push_back(tg::constant(ab));
      CHECK(tg::debug::recycled_nodes() == 0);
      for (const Var& t : taken) CHECK(t.node() != p_node);
    }
    CHECK(tg::debug::live_nodes() == nodes);
    CHECK(tg::debug::live_tensor_bytes() == bytes);
  }
  SECTION("a user's subclass of Node is never reused as a plain node") {
    struct Source : tg::Node {
      explicit Source(Tensor t) : Node(std::move(t)) {}
    };
    const int before = tg::debug::recycled_nodes();
    tg::NodePtr n = tg::NodePtr::make<Source>(tg::zeros({32, 32}));
    n = nullptr;
    CHECK(tg::debug::recycled_nodes() == before);
  }
  SECTION("a cache limit of 0 frees the kept blocks") {
    tg::debug::set_tensor_cache_limit(0);
    CHECK(tg::debug::recycled_node_buffers() == 0);
    CHECK(tg::debug::live_tensor_bytes() == bytes);
    {
      Var c = tg::matmul(a, b);  // dropped without its block: caching is off
      CHECK(tg::equal(c.value(), ab));
    }
    CHECK(tg::debug::live_tensor_bytes() == bytes);
    tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
  }
  CHECK(tg::debug::live_nodes() == nodes);
  CHECK(tg::debug::live_tensor_bytes() == bytes);
}

TEST_CASE("large freed buffers are reused, not returned to the kernel", "[tensor][memory]") {
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
  const int64_t live = tg::debug::live_tensor_bytes();
  const void* first = nullptr;
  {
    Tensor big = tg::zeros({1 << 20});  // 4 MB
    first = big.raw_data();
  }
  CHECK(tg::debug::live_tensor_bytes() == live);
  CHECK(tg::debug::cached_tensor_bytes() >= (4 << 20));
  {
    Tensor again = tg::ones({1 << 20});
    CHECK(again.raw_data() == first);  // the same block came back
    CHECK(again.at({123}) == 1.0);
  }
  tg::debug::set_tensor_cache_limit(0);
  CHECK(tg::debug::cached_tensor_bytes() == 0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
}

TEST_CASE("a size the cache lacks releases as many cached bytes: memory follows the work",
          "[tensor][memory]") {
  tg::debug::set_tensor_cache_limit(0);  // start empty
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
  constexpr int64_t kMiB = 1 << 20;
  { Tensor a = tg::zeros({1 << 20}), b = tg::zeros({1 << 19}); }  // 4 MB + 2 MB kept
  const int64_t old_shapes = tg::debug::cached_tensor_bytes();
  CHECK(old_shapes >= 6 * kMiB);
  CHECK(old_shapes < 6 * kMiB + 4096);  // a block is its data and a small header
  {
    // A new shape (3 MB): at least 3 MB of the old blocks go, so live + cached stays 6 MB.
    Tensor c = tg::zeros({3 << 18});
    CHECK(tg::debug::cached_tensor_bytes() <= old_shapes - 3 * kMiB);
  }
  // The new block is kept; the total never grew past what the first shapes took.
  const int64_t after = tg::debug::cached_tensor_bytes();
  CHECK(after <= old_shapes + 4096);
  CHECK(after >= 3 * kMiB);
  // A hit keeps everything else.
  { Tensor d = tg::zeros({3 << 18}); }
  CHECK(tg::debug::cached_tensor_bytes() == after);
  tg::debug::set_tensor_cache_limit(0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// (The sanitizers' allocators end the process on an impossible size instead of throwing.)
TEST_CASE("an allocation that fails releases the cached blocks and leaves the counts right",
          "[tensor][memory]") {
  tg::debug::set_tensor_cache_limit(0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
  { Tensor a = tg::zeros({1 << 20}); }  // 4 MB kept
  CHECK(tg::debug::cached_tensor_bytes() >= (4 << 20));
  const int64_t live = tg::debug::live_tensor_bytes();
  // 2^44 floats (64 TiB): no machine here has it, so operator new throws after the retry.
  CHECK_THROWS_AS(tg::zeros({int64_t{1} << 44}), std::bad_alloc);
  CHECK(tg::debug::cached_tensor_bytes() == 0);  // released before the retry
  CHECK(tg::debug::live_tensor_bytes() == live);
  { Tensor b = tg::ones({1 << 20}); }  // the cache still works afterwards
  CHECK(tg::debug::cached_tensor_bytes() >= (4 << 20));
  tg::debug::set_tensor_cache_limit(0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
}
#endif

namespace {
// An empty cache (the sizes in `seen` handed out before, none kept), then 8 MB in use and
// 2 MB cached: returns the held tensor and the cached bytes.
std::pair<Tensor, int64_t> hold_8_keep_2(std::initializer_list<int64_t> seen) {
  tg::debug::set_tensor_cache_limit(0);
  for (const int64_t n : seen) Tensor once = tg::zeros({n});  // not kept: limit 0
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
  Tensor held = tg::zeros({1 << 21});   // 8 MB in use
  { Tensor b = tg::zeros({1 << 19}); }  // 2 MB kept
  const int64_t kept = tg::debug::cached_tensor_bytes();
  CHECK(kept >= 2 << 20);
  return {std::move(held), kept};
}
}  // namespace

TEST_CASE("a miss while more bytes are in use than cached releases nothing", "[tensor][memory]") {
  // A training step's backward holds the forward's activations; a size it lacks there is a
  // new mix of the step's own sizes, and the cached blocks are wanted again next step.
  constexpr int64_t kMiB = 1 << 20;
  auto [held, kept] = hold_8_keep_2({3 << 18});
  {
    Tensor c = tg::zeros({3 << 18});  // 3 MB, a size the cache lacks
    CHECK(tg::debug::cached_tensor_bytes() == kept);
  }
  // Once little is in use, a miss releases stale blocks again (down to the bytes in use).
  held = Tensor();
  {
    Tensor d = tg::zeros({5 << 18});  // 5 MB: 5 MB of the 8 + 2 + 3 MB cached go
    CHECK(tg::debug::cached_tensor_bytes() <= kept + 11 * kMiB - 5 * kMiB + 8192);
  }
  tg::debug::set_tensor_cache_limit(0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
}

TEST_CASE("a size never handed out releases cached blocks even while more is in use",
          "[tensor][memory]") {
  // The evaluation after training: the training set stays in use, the steps' blocks are
  // cached, and the evaluation's larger sizes are new; they must not stack on the old ones.
  const auto [data, kept] = hold_8_keep_2({});
  {
    Tensor c = tg::zeros({(1 << 19) + 4096});  // a little over 2 MB, never seen before
    CHECK(tg::debug::cached_tensor_bytes() < kept);
    CHECK(tg::debug::cached_tensor_bytes() < 2 << 20);
  }
  tg::debug::set_tensor_cache_limit(0);
  tg::debug::set_tensor_cache_limit(int64_t{1} << 30);
}
