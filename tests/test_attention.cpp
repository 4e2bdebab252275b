// Attention and Transformers (ops/attention.hpp, models/attention.hpp): gradcheck and
// gradgradcheck of scaled_dot_product_attention and of small MultiheadAttention and
// TransformerEncoderLayer modules w.r.t. inputs and parameters; torch.nn's modules with the
// same weights (loaded by state-dict name) as an oracle for outputs and every gradient;
// parameter names, initialization, str(); bad input; the decoder-only language model of
// docs/sequence.md.

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>

#include "graph/gradcheck.hpp"
#include "models/attention.hpp"
#include "models/init.hpp"
#include "models_test_util.hpp"
#include "torch_oracle.hpp"

namespace {

using tg::Shape;
using tg::Tensor;
using tg::Var;

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Var>>& v) {
  std::vector<std::string> out;
  for (const auto& [n, p] : v) out.push_back(n);
  return out;
}

Var bool_mask(const std::vector<int>& bits, const Shape& s) {
  std::vector<double> v(bits.begin(), bits.end());
  return tg::constant(tg::tensor(v, s, tg::f64).to(tg::boolean));
}

void check_report(const tg::GradcheckReport& r, const std::string& what) {
  INFO(what << ": " << r.message);
  CHECK(r.passed);
}

// gradcheck and gradgradcheck of fn over the inputs.
void check_grads(const std::string& what, const tg::GradcheckFn& fn,
                 const std::vector<Tensor>& inputs) {
  check_report(tg::gradcheck(fn, inputs), what + " (gradcheck)");
  check_report(tg::gradgradcheck(fn, inputs), what + " (gradgradcheck)");
}

// The parameter slots of a module: the public Var members its forward reads, in
// named_parameters() order, so a gradcheck can put its own leaves there.
std::vector<Var*> mha_slots(tg::MultiheadAttention& m) {
  return {&m.in_proj_weight, &m.in_proj_bias, &m.out_proj.weight, &m.out_proj.bias};
}

std::vector<Var*> layer_slots(tg::TransformerEncoderLayer& l) {
  std::vector<Var*> s = mha_slots(l.self_attn);
  for (Var* p : {&l.linear1.weight, &l.linear1.bias, &l.linear2.weight, &l.linear2.bias,
                 &l.norm1.weight, &l.norm1.bias, &l.norm2.weight, &l.norm2.bias})
    s.push_back(p);
  return s;
}

// gradcheck + gradgradcheck of `f(x)` w.r.t. the input x and every parameter slot: the
// checker's leaves are put in the slots for each call, and the parameters put back after.
void check_module_grads(const std::string& what, std::vector<Var*> slots, const Tensor& x,
                        const std::function<Var(const Var&)>& f) {
  std::vector<Var> saved;
  std::vector<Tensor> inputs{x};
  for (Var* s : slots) {
    saved.push_back(*s);
    inputs.push_back(s->value());
  }
  check_grads(
      what,
      [&](const std::vector<Var>& v) {
        for (size_t i = 0; i < slots.size(); ++i) *slots[i] = v[i + 1];
        return f(v[0]);
      },
      inputs);
  for (size_t i = 0; i < slots.size(); ++i) *slots[i] = saved[i];
}

}  // namespace

TEST_CASE("scaled_dot_product_attention: gradcheck and gradgradcheck", "[attention]") {
  tg::Rng rng(3);
  const Tensor q = tg::randn({2, 3, 4}, rng, tg::f64), k = tg::randn({2, 5, 4}, rng, tg::f64),
               v = tg::randn({2, 5, 3}, rng, tg::f64);
  check_grads(
      "sdpa",
      [](const std::vector<Var>& x) { return tg::scaled_dot_product_attention(x[0], x[1], x[2]); },
      {q, k, v});
  // A bool mask [3, 5] (true takes part) whose middle row masks everything: that row's
  // output is 0 and carries no gradient.
  const Var bm = bool_mask({1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1}, {3, 5});
  check_grads("sdpa bool mask",
              [&](const std::vector<Var>& x) {
                return tg::scaled_dot_product_attention(x[0], x[1], x[2], bm);
              },
              {q, k, v});
  // A float mask [2, 1, 5] broadcast over L, itself differentiated; and a custom scale.
  const Tensor fm = tg::randn({2, 1, 5}, rng, tg::f64);
  check_grads("sdpa float mask",
              [](const std::vector<Var>& x) {
                return tg::scaled_dot_product_attention(x[0], x[1], x[2], x[3], 0.0, false, 0.7);
              },
              {q, k, v, fm});
  // Causal, with batch dims that broadcast ([2, 1] against [3]).
  const Tensor qc = tg::randn({2, 1, 4, 3}, rng, tg::f64), kc = tg::randn({3, 4, 3}, rng, tg::f64),
               vc = tg::randn({3, 4, 2}, rng, tg::f64);
  check_grads("sdpa causal",
              [](const std::vector<Var>& x) {
                return tg::scaled_dot_product_attention(x[0], x[1], x[2], {}, 0.0, true);
              },
              {qc, kc, vc});
}

TEST_CASE(
    "MultiheadAttention and TransformerEncoderLayer: gradcheck w.r.t. inputs and "
    "parameters",
    "[attention]") {
  tg::Rng rng(5);
  tg::MultiheadAttention mha(4, 2, rng, 0.0, true, false, false, {}, {}, true, tg::f64);
  for (auto* p : {&mha.in_proj_bias, &mha.out_proj.bias}) tg::init::uniform(*p, rng, -0.5, 0.5);
  const Tensor x = tg::randn({2, 3, 4}, rng, tg::f64);
  const Var kpm = bool_mask({0, 0, 1, 0, 0, 0}, {2, 3});
  check_module_grads("MultiheadAttention", mha_slots(mha), x, [&](const Var& in) {
    auto [y, w] = mha.forward(in, in, in, kpm, true, tg::causal_mask(3, tg::f64), true, true);
    return tg::matmul(w, y);  // both outputs reach the result
  });
  for (const bool norm_first : {false, true}) {
    tg::TransformerEncoderLayer layer(4, 2, rng, 6, 0.0, "gelu", 1e-5, false, norm_first, true,
                                      tg::f64);
    for (Var* p : layer_slots(layer)) tg::init::uniform(*p, rng, -0.8, 0.8);
    const Tensor src = tg::randn({3, 2, 4}, rng, tg::f64);
    check_module_grads(norm_first ? "TransformerEncoderLayer pre-LN" : "TransformerEncoderLayer",
                       layer_slots(layer), src, [&](const Var& in) {
                         return layer.forward(in, tg::causal_mask(3, tg::f64), kpm, true);
                       });
  }
}

namespace {

// Python for the oracle cases: sdpa_ref is PyTorch 2.x's documented math for
// F.scaled_dot_product_attention with _safe_softmax (fully masked rows give 0) written with
// torch ops (the installed torch may predate F.scaled_dot_product_attention); run_module(tag,
// m, fn, xs) saves m's state dict as <dir>/<tag>.npz, then in f64 and f32 emits fn's outputs
// (tag_y0, ...), the gradients of sum_i sum(y_i * pattern(9 + i)) w.r.t. every parameter
// (tag_<name>) and every input (tag_x0, ...), with the suffix "_f32" in f32.
const char* kPythonAttention = R"PY(
import copy
import numpy as np
import torch.nn as nn
F = torch.nn.functional
torch.manual_seed(0)
def safe_softmax(x):
    dead = torch.isneginf(x).all(-1, keepdim=True)
    return torch.where(dead, torch.zeros_like(x), torch.softmax(torch.where(dead, torch.zeros_like(x), x), -1))
def sdpa_ref(q, k, v, attn_mask=None, is_causal=False, scale=None):
    L, S = q.size(-2), k.size(-2)
    sc = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S, dtype=q.dtype)
    if is_causal:
        bias = bias.masked_fill(torch.ones(L, S, dtype=torch.bool).tril().logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = bias.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            bias = attn_mask + bias
    return safe_softmax(q @ k.transpose(-2, -1) * sc + bias) @ v
def outputs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]
def run_module(tag, m, fn, xs):
    if m is not None:
        np.savez(DIR + "/" + tag + ".npz", **{k: v.detach().numpy() for k, v in m.state_dict().items()})
    for D, suf in ((torch.float64, ""), (torch.float32, "_f32")):
        mm = copy.deepcopy(m).to(D) if m is not None else None
        if mm is not None:
            mm.train()
        ins = [x.detach().to(D).requires_grad_() if x.is_floating_point() else x for x in xs]
        ys = [y for y in outputs(fn(mm, D, *ins)) if y is not None]
        loss = sum((y * pattern(tuple(y.shape), 9.0 + i, 1.0, D)).sum() for i, y in enumerate(ys))
        params = list(mm.named_parameters()) if mm is not None else []
        wrt = [p for _, p in params] + [x for x in ins if x.requires_grad]
        gs = torch.autograd.grad(loss, wrt, allow_unused=True)
        for i, y in enumerate(ys):
            emit(tag + suf + "_y%d" % i, y)
        for (name, p), g in zip(params, gs):
            emit(tag + suf + "_" + name, torch.zeros_like(p) if g is None else g)
        for i, g in enumerate(gs[len(params):]):
            emit(tag + suf + "_x%d" % i, g)
def fmask(t, D):  # a float mask in the run's dtype (bool masks pass through)
    return t.to(D) if t.is_floating_point() else t
)PY";

using Outputs = std::vector<Var>;
using CaseFn = std::function<Outputs(tg::Dtype, const std::vector<Var>&)>;

// The C++ half of run_module: `m` (or null) loaded from <dir>/<tag>.npz (state-dict names),
// then in f64 (tol 1e-10) and f32 (tol 1e-5) the outputs of fn and the gradients of the same
// loss w.r.t. every named parameter and every input against torch's.
void check_case(const std::map<std::string, std::vector<double>>& torch,
                const std::filesystem::path& dir, const std::string& tag, tg::Module* m,
                const std::vector<Tensor>& inputs, const CaseFn& fn) {
  INFO("case " << tag);
  if (m) {
    m->to(tg::f64);
    m->load((dir / (tag + ".npz")).string());
  }
  for (const bool single : {false, true}) {
    const tg::Dtype dt = single ? tg::f32 : tg::f64;
    const double tol = single ? 1e-5 : 1e-10;
    const std::string pre = tag + (single ? "_f32" : "");
    INFO(tg::dtype_name(dt));
    if (m) m->to(dt);
    std::vector<Var> xs;
    for (const Tensor& t : inputs) xs.push_back(tg::param(t.to(dt)));
    Outputs ys;
    for (const Var& y : fn(dt, xs))
      if (y.defined()) ys.push_back(y);
    Var loss;
    for (size_t i = 0; i < ys.size(); ++i) {
      const Var l = tg::sum(ys[i] * tg::constant(tgtest::pattern(ys[i].shape(), 9.0 + i).to(dt)));
      loss = loss.defined() ? loss + l : l;
    }
    const auto params = m ? m->named_parameters() : std::vector<std::pair<std::string, Var>>{};
    std::vector<Var> wrt;
    for (const auto& [name, p] : params) wrt.push_back(p);
    for (const Var& x : xs) wrt.push_back(x);
    const auto gs = tg::grad({loss}, wrt, {}, {.allow_unused = true});
    auto cmp = [&](const std::string& key, const Var& got, const Shape& shape) {
      INFO(key);
      REQUIRE(torch.count(key) == 1);
      const Tensor g = got.defined() ? got.value().to(tg::f64) : tg::zeros(shape, tg::f64);
      tgtest::check_close(g.to_vector(), torch.at(key), tol);
    };
    for (size_t i = 0; i < ys.size(); ++i)
      cmp(pre + "_y" + std::to_string(i), ys[i], ys[i].shape());
    for (size_t i = 0; i < params.size(); ++i)
      cmp(pre + "_" + params[i].first, gs[i], params[i].second.shape());
    for (size_t i = 0; i < xs.size(); ++i)
      cmp(pre + "_x" + std::to_string(i), gs[params.size() + i], xs[i].shape());
  }
}

// A float mask of the run's dtype from f64 values.
Var fmask(const Tensor& t, tg::Dtype dt) { return tg::constant(t.to(dt)); }

}  // namespace

TEST_CASE(
    "scaled_dot_product_attention, MultiheadAttention, TransformerEncoderLayer and "
    "TransformerEncoder match PyTorch with the same weights",
    "[attention][oracle]") {
  TGTEST_REQUIRE_TORCH();
  const auto dir = tgtest::temp_dir("attention_torch");
  // Masks shared by both sides (bool as 0/1 patterns; float ones as values).
  const std::string script = std::string(tgtest::kPythonPrelude) + "DIR = '" + dir.string() +
                             "'\n" + kPythonAttention + R"PY(
B = lambda bits, shape: torch.tensor(bits, dtype=torch.bool).reshape(shape)
inf = float("inf")
# sdpa: no mask; bool mask with a fully masked row; float mask broadcast; causal with
# broadcast batch dims; size-1 and size-0 dims.
q, k, v = pattern((2, 3, 4), 0.1), pattern((2, 5, 4), 0.2), pattern((2, 5, 3), 0.3)
run_module("sdpa", None, lambda m, D, q, k, v: sdpa_ref(q, k, v), [q, k, v])
bm = B([1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1], (3, 5))
run_module("sdpa_bool", None, lambda m, D, q, k, v: sdpa_ref(q, k, v, bm), [q, k, v])
fm = pattern((2, 1, 5), 0.4)
run_module("sdpa_float", None, lambda m, D, q, k, v: sdpa_ref(q, k, v, fmask(fm, D), scale=0.7), [q, k, v])
qc, kc, vc = pattern((2, 1, 4, 3), 0.5), pattern((3, 4, 3), 0.6), pattern((3, 4, 2), 0.7)
run_module("sdpa_causal", None, lambda m, D, q, k, v: sdpa_ref(q, k, v, is_causal=True), [qc, kc, vc])
q1, k1, v1 = pattern((1, 1, 4), 0.8), pattern((1, 1, 4), 0.9), pattern((1, 1, 2), 1.0)
run_module("sdpa_one", None, lambda m, D, q, k, v: sdpa_ref(q, k, v), [q1, k1, v1])
q0, k0, v0 = pattern((2, 0, 4), 0.8), pattern((2, 3, 4), 0.9), pattern((2, 3, 2), 1.0)
run_module("sdpa_empty", None, lambda m, D, q, k, v: sdpa_ref(q, k, v), [q0, k0, v0])

# MultiheadAttention: E 8, 2 heads, N 2, L 3, S 4.
E, H = 8, 2
x = pattern((3, 2, E), 1.1)
mha = nn.MultiheadAttention(E, H)
run_module("mha_self", mha, lambda m, D, x: m(x, x, x), [x])
mha_avg = nn.MultiheadAttention(E, H, batch_first=True)
xq, xk, xv = pattern((2, 3, E), 1.2), pattern((2, 4, E), 1.3), pattern((2, 4, E), 1.4)
kpm = B([0, 0, 1, 0, 1, 0, 0, 0], (2, 4))
am = B([0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1], (3, 4))
run_module("mha_cross_bool", mha_avg, lambda m, D, q, k, v: m(q, k, v, key_padding_mask=kpm, attn_mask=am, average_attn_weights=False), [xq, xk, xv])
am3 = pattern((2 * H, 3, 4), 1.5)
kpmf = pattern((2, 4), 1.6, 0.5)
mha_f = nn.MultiheadAttention(E, H, batch_first=True)
# torch 1.13 takes no float key_padding_mask: PyTorch 2.x adds it to the attention mask, as here.
run_module("mha_float", mha_f, lambda m, D, q, k, v: m(q, k, v, attn_mask=fmask(am3, D) + fmask(kpmf, D).repeat_interleave(H, 0).unsqueeze(1), need_weights=False), [xq, xk, xv])
causal = torch.triu(torch.full((3, 3), -inf, dtype=torch.float64), 1)
mha_c = nn.MultiheadAttention(E, H, batch_first=False, bias=False)
run_module("mha_causal", mha_c, lambda m, D, x: m(x, x, x, attn_mask=fmask(causal, D), key_padding_mask=B([0, 0, 1, 0, 0, 0], (2, 3))), [x])
xu = pattern((3, E), 1.7)
run_module("mha_unbatched", mha, lambda m, D, x: m(x, x, x, attn_mask=B([0, 0, 1, 1, 0, 0, 0, 1, 0], (3, 3))), [xu])

# TransformerEncoderLayer: post-LN ReLU seq-first, pre-LN GELU batch-first, with masks.
src = pattern((3, 2, E), 1.8)
tel = nn.TransformerEncoderLayer(E, H, dim_feedforward=6, dropout=0.0)
run_module("tel_post_relu", tel, lambda m, D, s: m(s), [src])
tel2 = nn.TransformerEncoderLayer(E, H, dim_feedforward=6, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
srcb = pattern((2, 3, E), 1.9)
run_module("tel_pre_gelu", tel2, lambda m, D, s: m(s, src_mask=fmask(causal, D), src_key_padding_mask=B([0, 0, 1, 0, 0, 0], (2, 3))), [srcb])
tel3 = nn.TransformerEncoderLayer(E, H, dim_feedforward=6, dropout=0.0, activation="gelu", layer_norm_eps=1e-3)
run_module("tel_post_gelu_bool", tel3, lambda m, D, s: m(s, src_mask=am[:, :3], src_key_padding_mask=B([0, 1, 0, 0, 0, 1], (2, 3))), [src])

# TransformerEncoder: 2 pre-LN GELU layers and a final norm, causal + key padding.
enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, dim_feedforward=6, dropout=0.0, activation="gelu", batch_first=True, norm_first=True), 2, norm=nn.LayerNorm(E))
for p in enc.parameters():  # distinct layers (torch's deep copies start equal)
    p.data += 0.1 * torch.randn_like(p)
run_module("enc", enc, lambda m, D, s: m(s, mask=fmask(causal, D), src_key_padding_mask=B([0, 0, 1, 0, 0, 0], (2, 3))), [srcb])
)PY";
  const auto torch = tgtest::run_python(script);
  using tgtest::pattern;
  auto sdpa = [](const Var& mask, bool causal = false, std::optional<double> scale = {}) {
    return [=](tg::Dtype dt, const std::vector<Var>& x) -> Outputs {
      const Var m = mask.defined() && mask.dtype() != tg::boolean ? fmask(mask.value(), dt) : mask;
      return {tg::scaled_dot_product_attention(x[0], x[1], x[2], m, 0.0, causal, scale)};
    };
  };
  const Tensor q = pattern({2, 3, 4}, 0.1), k = pattern({2, 5, 4}, 0.2),
               v = pattern({2, 5, 3}, 0.3);
  check_case(torch, dir, "sdpa", nullptr, {q, k, v}, sdpa({}));
  const Var bm = bool_mask({1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1}, {3, 5});
  check_case(torch, dir, "sdpa_bool", nullptr, {q, k, v}, sdpa(bm));
  check_case(torch, dir, "sdpa_float", nullptr, {q, k, v},
             sdpa(tg::constant(pattern({2, 1, 5}, 0.4)), false, 0.7));
  check_case(torch, dir, "sdpa_causal", nullptr,
             {pattern({2, 1, 4, 3}, 0.5), pattern({3, 4, 3}, 0.6), pattern({3, 4, 2}, 0.7)},
             sdpa({}, true));
  check_case(torch, dir, "sdpa_one", nullptr,
             {pattern({1, 1, 4}, 0.8), pattern({1, 1, 4}, 0.9), pattern({1, 1, 2}, 1.0)}, sdpa({}));
  check_case(torch, dir, "sdpa_empty", nullptr,
             {pattern({2, 0, 4}, 0.8), pattern({2, 3, 4}, 0.9), pattern({2, 3, 2}, 1.0)}, sdpa({}));

  const int64_t E = 8, H = 2;
  tg::Rng rng(11);
  const Tensor x = pattern({3, 2, E}, 1.1);
  tg::MultiheadAttention mha(E, H, rng);
  check_case(torch, dir, "mha_self", &mha, {x}, [&](tg::Dtype, const std::vector<Var>& in) {
    auto [y, w] = mha.forward(in[0], in[0], in[0]);
    return Outputs{y, w};
  });
  tg::MultiheadAttention mha_avg(E, H, rng, 0.0, true, false, false, {}, {}, true);
  const Tensor xq = pattern({2, 3, E}, 1.2), xk = pattern({2, 4, E}, 1.3),
               xv = pattern({2, 4, E}, 1.4);
  const Var kpm = bool_mask({0, 0, 1, 0, 1, 0, 0, 0}, {2, 4});
  const Var am = bool_mask({0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, {3, 4});
  check_case(torch, dir, "mha_cross_bool", &mha_avg, {xq, xk, xv},
             [&](tg::Dtype, const std::vector<Var>& in) {
               auto [y, w] = mha_avg.forward(in[0], in[1], in[2], kpm, true, am, false);
               CHECK(w.shape() == Shape{2, H, 3, 4});
               return Outputs{y, w};
             });
  tg::MultiheadAttention mha_f(E, H, rng, 0.0, true, false, false, {}, {}, true);
  check_case(
      torch, dir, "mha_float", &mha_f, {xq, xk, xv}, [&](tg::Dtype dt, const std::vector<Var>& in) {
        auto [y, w] = mha_f.forward(in[0], in[1], in[2], fmask(pattern({2, 4}, 1.6, 0.5), dt),
                                    false, fmask(pattern({2 * H, 3, 4}, 1.5), dt));
        CHECK_FALSE(w.defined());
        return Outputs{y};
      });
  tg::MultiheadAttention mha_c(E, H, rng, 0.0, false);
  const Var kpm3 = bool_mask({0, 0, 1, 0, 0, 0}, {2, 3});
  check_case(torch, dir, "mha_causal", &mha_c, {x}, [&](tg::Dtype dt, const std::vector<Var>& in) {
    auto [y, w] =
        mha_c.forward(in[0], in[0], in[0], kpm3, true, tg::causal_mask(3, dt), true, true);
    return Outputs{y, w};
  });
  check_case(torch, dir, "mha_unbatched", &mha, {pattern({3, E}, 1.7)},
             [&](tg::Dtype, const std::vector<Var>& in) {
               auto [y, w] = mha.forward(in[0], in[0], in[0], {}, true,
                                         bool_mask({0, 0, 1, 1, 0, 0, 0, 1, 0}, {3, 3}));
               CHECK(w.shape() == Shape{3, 3});
               return Outputs{y, w};
             });

  const Tensor src = pattern({3, 2, E}, 1.8), srcb = pattern({2, 3, E}, 1.9);
  tg::TransformerEncoderLayer tel(E, H, rng, 6, 0.0);
  check_case(torch, dir, "tel_post_relu", &tel, {src},
             [&](tg::Dtype, const std::vector<Var>& in) { return Outputs{tel.forward(in[0])}; });
  tg::TransformerEncoderLayer tel2(E, H, rng, 6, 0.0, "gelu", 1e-5, true, true);
  check_case(torch, dir, "tel_pre_gelu", &tel2, {srcb},
             [&](tg::Dtype dt, const std::vector<Var>& in) {
               return Outputs{tel2.forward(in[0], tg::causal_mask(3, dt), kpm3, true)};
             });
  tg::TransformerEncoderLayer tel3(E, H, rng, 6, 0.0, "gelu", 1e-3);
  check_case(torch, dir, "tel_post_gelu_bool", &tel3, {src},
             [&](tg::Dtype, const std::vector<Var>& in) {
               return Outputs{tel3.forward(in[0], bool_mask({0, 1, 0, 0, 0, 1, 0, 0, 0}, {3, 3}),
                                           bool_mask({0, 1, 0, 0, 0, 1}, {2, 3}))};
             });
  tg::TransformerEncoder enc(
      [&] {
        return std::make_unique<tg::TransformerEncoderLayer>(E, H, rng, 6, 0.0, "gelu", 1e-5, true,
                                                             true);
      },
      2, std::make_unique<tg::LayerNorm>(std::vector<int64_t>{E}));
  check_case(torch, dir, "enc", &enc, {srcb}, [&](tg::Dtype dt, const std::vector<Var>& in) {
    return Outputs{enc.forward(in[0], tg::causal_mask(3, dt), kpm3, true)};
  });
}

TEST_CASE("MultiheadAttention, TransformerEncoderLayer, TransformerEncoder: names, init, str()",
          "[attention]") {
  tg::Rng rng(1);
  tg::MultiheadAttention mha(8, 2, rng);
  CHECK(names_of(mha.named_parameters()) ==
        std::vector<std::string>{"in_proj_weight", "in_proj_bias", "out_proj.weight",
                                 "out_proj.bias"});
  CHECK(mha.in_proj_weight.shape() == Shape{24, 8});
  CHECK(mha.head_dim() == 4);
  // xavier_uniform on [3E, E]: bound sqrt(6 / (E + 3E)); out_proj's weight 1/sqrt(E); biases 0.
  const double xb = std::sqrt(6.0 / 32.0), lb = 1.0 / std::sqrt(8.0);
  double wmax = 0, omax = 0;
  for (double w : mha.in_proj_weight.value().to_vector()) wmax = std::max(wmax, std::abs(w));
  for (double w : mha.out_proj.weight.value().to_vector()) omax = std::max(omax, std::abs(w));
  CHECK(wmax <= xb);
  CHECK(wmax > 0.8 * xb);
  CHECK(omax <= lb);
  CHECK(omax > 0.8 * lb);
  for (const Var& b : {mha.in_proj_bias, mha.out_proj.bias})
    for (double v : b.value().to_vector()) CHECK(v == 0.0);
  CHECK(tg::MultiheadAttention(8, 2, rng, 0.0, false).named_parameters().size() == 2);

  tg::TransformerEncoderLayer layer(8, 2, rng, 16, 0.0, "gelu");
  CHECK(names_of(layer.named_parameters()) ==
        std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                 "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                 "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                                 "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"});
  CHECK(tg::TransformerEncoderLayer(8, 2, rng, 16, 0.0, "relu", 1e-5, false, false, false)
            .named_parameters()
            .size() == 6);  // bias = false: the weights of attention, linears and norms
  const std::string s = layer.str();
  CHECK(s.find("(self_attn): MultiheadAttention(") != std::string::npos);
  CHECK(s.find("(out_proj): NonDynamicallyQuantizableLinear(in_features=8, out_features=8") !=
        std::string::npos);
  CHECK(s.find("(dropout2): Dropout(") != std::string::npos);

  tg::TransformerEncoder enc(
      [&] { return std::make_unique<tg::TransformerEncoderLayer>(8, 2, rng, 16, 0.0); }, 2,
      std::make_unique<tg::LayerNorm>(std::vector<int64_t>{8}));
  const auto names = names_of(enc.named_parameters());
  CHECK(names.size() == 26);
  CHECK(names.front() == "layers.0.self_attn.in_proj_weight");
  CHECK(names[12] == "layers.1.self_attn.in_proj_weight");
  CHECK(names.back() == "norm.bias");
  // The factory is called once per layer: the layers start different.
  CHECK(enc.layer(0).linear1.weight.value().to_vector() !=
        enc.layer(1).linear1.weight.value().to_vector());
}

TEST_CASE("attention: bad input throws typed errors naming the op or module and the shapes",
          "[attention]") {
  tg::Rng rng(2);
  auto throws_with = [](auto&& f, auto tag, std::vector<std::string> parts) {
    using E = std::decay_t<decltype(tag)>;
    try {
      f();
      FAIL("no exception");
    } catch (const E& e) {
      const std::string m = e.what();
      INFO(m);
      for (const auto& p : parts) CHECK(m.find(p) != std::string::npos);
    }
  };
  const Var q = tg::constant(tg::randn({2, 3, 4}, rng)),
            k = tg::constant(tg::randn({2, 5, 4}, rng));
  const Var v = tg::constant(tg::randn({2, 5, 3}, rng));
  throws_with(
      [&] {
        tg::scaled_dot_product_attention(q, tg::constant(tg::randn({2, 5, 3}, rng)), v);
      },
      tg::ShapeError(""), {"scaled_dot_product_attention", "[2, 3, 4]", "[2, 5, 3]"});
  throws_with(
      [&] {
        tg::scaled_dot_product_attention(q, k, tg::constant(tg::randn({2, 4, 3}, rng)));
      },
      tg::ShapeError(""), {"scaled_dot_product_attention", "[2, 4, 3]"});
  throws_with(
      [&] {
        tg::scaled_dot_product_attention(q, k, v, bool_mask({1, 0}, {2}), 0.0);
      },
      tg::ShapeError(""), {"scaled_dot_product_attention", "[2]", "[2, 3, 5]"});
  throws_with(
      [&] {
        tg::scaled_dot_product_attention(q, k, v, bool_mask({1, 1, 1, 1, 1}, {5}), 0.0, true);
      },
      tg::Error(""), {"scaled_dot_product_attention", "is_causal"});
  throws_with(
      [&] { tg::scaled_dot_product_attention(q, k, v, tg::constant(tg::zeros({5}, tg::i64))); },
      tg::DtypeError(""), {"scaled_dot_product_attention: ", "attn_mask", "i64"});
  throws_with(
      [&] { tg::scaled_dot_product_attention(q, k, v, tg::constant(tg::zeros({5}, tg::f64))); },
      tg::DtypeError(""), {"scaled_dot_product_attention: ", "f64", "f32"});
  throws_with([&] { tg::scaled_dot_product_attention(tg::constant(q.value().to(tg::i64)), k, v); },
              tg::DtypeError(""), {"scaled_dot_product_attention: ", "i64"});
  throws_with([&] { tg::scaled_dot_product_attention(q, k, v, {}, 0.5); }, tg::Error(""),
              {"scaled_dot_product_attention", "rng"});

  throws_with([&] { tg::MultiheadAttention(10, 3, rng); }, tg::Error(""),
              {"MultiheadAttention", "divisible", "10", "3"});
  throws_with([&] { tg::MultiheadAttention(8, 2, rng, 0.0, true, true); }, tg::Error(""),
              {"MultiheadAttention", "add_bias_kv"});
  throws_with([&] { tg::MultiheadAttention(8, 2, rng, 0.0, true, false, false, 5); }, tg::Error(""),
              {"MultiheadAttention", "kdim"});
  throws_with([&] { tg::TransformerEncoderLayer(8, 2, rng, 16, 0.1, "tanh"); }, tg::Error(""),
              {"TransformerEncoderLayer", "tanh"});
  tg::MultiheadAttention mha(8, 2, rng);
  const Var x = tg::constant(tg::randn({3, 2, 8}, rng));  // [L, N, E]
  throws_with(
      [&] {
        mha.forward(x, x, tg::constant(tg::randn({3, 2, 6}, rng)));
      },
      tg::ShapeError(""), {"MultiheadAttention", "[3, 2, 6]"});
  throws_with(
      [&] {
        mha.forward(x, x, x, {}, true, bool_mask({0, 0, 0, 0}, {2, 2}));
      },
      tg::ShapeError(""), {"MultiheadAttention", "attn_mask", "[3, 3]", "[2, 2]"});
  throws_with(
      [&] {
        mha.forward(x, x, x, {}, true, tg::constant(tg::zeros({2, 3, 3})));
      },
      tg::ShapeError(""), {"MultiheadAttention", "attn_mask", "[4, 3, 3]", "[2, 3, 3]"});
  throws_with(
      [&] {
        mha.forward(x, x, x, bool_mask({0, 0, 0}, {1, 3}));
      },
      tg::ShapeError(""), {"MultiheadAttention", "key_padding_mask", "[2, 3]", "[1, 3]"});
  throws_with(
      [&] {
        mha.forward(x, x, x, tg::constant(tg::zeros({2, 3}, tg::i64)));
      },
      tg::DtypeError(""), {"MultiheadAttention", "key_padding_mask", "i64"});
  throws_with([&] { mha.forward(x, x, x, {}, true, {}, true, true); }, tg::Error(""),
              {"MultiheadAttention", "is_causal", "attn_mask"});
  throws_with(
      [&] {
        mha.forward(tg::constant(tg::randn({3, 2, 8}, rng, tg::f64)), x, x);
      },
      tg::DtypeError(""), {"MultiheadAttention"});
}

TEST_CASE("attention: NaN in gives NaN out, a NaN gradient reaches every input, dropout",
          "[attention]") {
  tg::Rng rng(4);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Var q = tg::param(tg::full({1, 2, 3}, nan, tg::f64)),
            k = tg::param(tg::randn({1, 4, 3}, rng, tg::f64)),
            v = tg::param(tg::randn({1, 4, 2}, rng, tg::f64));
  const Var y = tg::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  for (double e : y.value().to_vector()) CHECK(std::isnan(e));
  const Var k2 = tg::param(tg::randn({1, 4, 3}, rng, tg::f64)),
            q2 = tg::param(tg::randn({1, 2, 3}, rng, tg::f64));
  const Var y2 = tg::scaled_dot_product_attention(q2, k2, v);
  const auto gs = tg::grad({y2}, {q2, k2, v}, {tg::constant(tg::full(y2.shape(), nan, tg::f64))});
  for (const Var& g : gs)
    for (double e : g.value().to_vector()) CHECK(std::isnan(e));

  // Dropout on the weights: p = 1 zeroes the output; MHA drops only in training mode, and
  // the same seed gives the same result.
  CHECK(tg::sum(tg::abs(tg::scaled_dot_product_attention(q2, k2, v, {}, 1.0, false, {}, &rng)))
            .item() == 0.0);
  tg::Rng drop(9);
  tg::MultiheadAttention mha(4, 2, drop, 0.5, true, false, false, {}, {}, true, tg::f64);
  const Var x = tg::constant(tg::randn({2, 3, 4}, rng, tg::f64));
  drop.seed_with(9);
  const auto a = std::get<0>(mha.forward(x, x, x)).value().to_vector();
  drop.seed_with(9);
  const auto b = std::get<0>(mha.forward(x, x, x)).value().to_vector();
  CHECK(a == b);
  mha.eval();
  const auto c = std::get<0>(mha.forward(x, x, x)).value().to_vector();
  CHECK(c != a);
  CHECK(std::get<0>(mha.forward(x, x, x)).value().to_vector() == c);
}

TEST_CASE(
    "a decoder-only language model composes and learns: token + position Embedding, 2 "
    "pre-LN GELU layers, causal and key padding masks, LayerNorm, Linear head",
    "[attention]") {
  // The lead's model at its size (d 128, 4 heads), on a tiny batch: the loss must fall.
  const int64_t vocab = 12, d = 128, len = 8, batch = 4;
  tg::Rng rng(7);
  tg::Embedding tok(vocab, d, rng), pos(len, d, rng);
  tg::TransformerEncoder blocks(
      [&] {
        return std::make_unique<tg::TransformerEncoderLayer>(d, 4, rng, 4 * d, 0.0, "gelu", 1e-5,
                                                             true, true);
      },
      2);
  tg::LayerNorm ln_f({d});
  tg::Linear head(d, vocab, rng);
  std::vector<tg::Var> params;
  for (tg::Module* m : std::initializer_list<tg::Module*>{&tok, &pos, &blocks, &ln_f, &head})
    for (const Var& p : m->parameters()) params.push_back(p);
  tg::AdamW opt(params, {.lr = 3e-3});
  // Sequences i, i+1, ... (mod vocab), the last one padded after 5 tokens.
  std::vector<double> ids, next;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      ids.push_back(static_cast<double>((b + t) % vocab));
      next.push_back(b == batch - 1 && t >= 5 ? -100.0 : static_cast<double>((b + t + 1) % vocab));
    }
  const Var x = tg::constant(tg::tensor(ids, {batch, len}, tg::i64));
  const Var target = tg::constant(tg::tensor(next, {batch * len}, tg::i64));
  std::vector<int> padded(batch * len, 0);
  for (int64_t t = 5; t < len; ++t) padded[(batch - 1) * len + t] = 1;
  const Var kpm = bool_mask(padded, {batch, len});
  const Var positions = tg::constant(tg::arange(len, tg::i64));
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const Var h = tok(x) + pos(positions);  // [B, T, d]
    const Var logits = head(ln_f(blocks.forward(h, tg::causal_mask(len), kpm, true)));
    const Var loss = tg::cross_entropy(tg::reshape(logits, {batch * len, vocab}), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  INFO(first << " -> " << last);
  CHECK(first > 2.0);
  CHECK(last < 0.5);
}
