// Recurrent cells and layers (models/rnn.hpp): parameter names, shapes, initialization and
// str(); gradcheck and gradgradcheck of RNN, LSTM and GRU with respect to the input, the
// initial states and every weight; torch.nn's modules with the same weights (loaded from a
// state dict torch exported) give the same outputs, final states and gradients; dropout
// between layers; bad input.

#include <catch2/catch.hpp>
#include <functional>
#include <memory>

#include "graph/gradcheck.hpp"
#include "models/rnn.hpp"
#include "models/warning.hpp"
#include "models_test_util.hpp"
#include "torch_oracle.hpp"

namespace {

std::vector<std::string> names_of(const tg::Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, p] : m.named_parameters()) out.push_back(n);
  return out;
}

tg::Tensor pat(const std::vector<int64_t>& shape, double k, double scale, tg::Dtype dt) {
  return tgtest::pattern(tg::Shape(shape), k, scale).to(dt);
}

std::string py_shape(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

TEST_CASE("recurrent modules: PyTorch's parameter names, shapes, str() and init bounds", "[rnn]") {
  tg::Rng rng(1);
  tg::LSTM lstm(32, 128, rng, {.num_layers = 2, .batch_first = true});
  CHECK(lstm.str() == "LSTM(32, 128, num_layers=2, batch_first=true)");
  CHECK(names_of(lstm) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                   "bias_hh_l0", "weight_ih_l1", "weight_hh_l1",
                                                   "bias_ih_l1", "bias_hh_l1"});
  CHECK(lstm.parameter("weight_ih_l0").shape() == tg::Shape{512, 32});
  CHECK(lstm.parameter("weight_ih_l1").shape() == tg::Shape{512, 128});
  CHECK(lstm.parameter("weight_hh_l1").shape() == tg::Shape{512, 128});
  for (const auto& p : lstm.parameters())
    for (double v : p.value().to_vector()) REQUIRE(std::abs(v) <= 1.0 / std::sqrt(128.0));

  const auto previous = tg::set_warning_handler([](const std::string&) {});  // dropout=0.25
  tg::GRU gru(3, 5, rng, {.bias = false, .dropout = 0.25, .bidirectional = true}, tg::f64);
  tg::set_warning_handler(previous);
  CHECK(gru.str() == "GRU(3, 5, bias=false, dropout=0.25, bidirectional=true)");
  CHECK(names_of(gru) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0",
                                                  "weight_ih_l0_reverse", "weight_hh_l0_reverse"});
  CHECK(gru.parameter("weight_ih_l0").shape() == tg::Shape{15, 3});
  CHECK(gru.parameter("weight_ih_l0").dtype() == tg::f64);

  tg::RNN rnn(4, 6, rng, {.num_layers = 3, .nonlinearity = "relu", .bidirectional = true});
  CHECK(rnn.str() == "RNN(4, 6, nonlinearity=relu, num_layers=3, bidirectional=true)");
  CHECK(rnn.parameter("weight_ih_l1_reverse").shape() == tg::Shape{6, 12});
  CHECK(rnn.parameters().size() == 24);

  tg::LSTMCell lc(3, 4, rng);
  tg::GRUCell gc(3, 4, rng, false);
  tg::RNNCell rc(3, 4, rng, true, "relu");
  CHECK(lc.str() == "LSTMCell(3, 4)");
  CHECK(gc.str() == "GRUCell(3, 4, bias=false)");
  CHECK(rc.str() == "RNNCell(3, 4, nonlinearity=relu)");
  CHECK(names_of(lc) == std::vector<std::string>{"weight_ih", "weight_hh", "bias_ih", "bias_hh"});
  CHECK(lc.weight_ih.shape() == tg::Shape{16, 3});
  CHECK(gc.weight_hh.shape() == tg::Shape{12, 4});

  // proj_size (LSTM only): weight_hr after each layer and direction's biases, weight_hh and
  // the next layer's input with proj_size features, every parameter U(-1/sqrt(hidden), ..).
  tg::LSTM proj(3, 6, rng, {.num_layers = 2, .bidirectional = true, .proj_size = 2});
  CHECK(proj.str() == "LSTM(3, 6, proj_size=2, num_layers=2, bidirectional=true)");
  CHECK(proj.parameters().size() == 20);
  CHECK(names_of(proj)[4] == "weight_hr_l0");
  CHECK(names_of(proj)[9] == "weight_hr_l0_reverse");
  CHECK(proj.parameter("weight_hr_l1").shape() == tg::Shape{2, 6});
  CHECK(proj.parameter("weight_hh_l0").shape() == tg::Shape{24, 2});
  CHECK(proj.parameter("weight_ih_l1").shape() == tg::Shape{24, 4});
  for (const auto& p : proj.parameters())
    for (double v : p.value().to_vector()) REQUIRE(std::abs(v) <= 1.0 / std::sqrt(6.0));
  auto [py, phc] = proj(tg::constant(tg::zeros({5, 3, 3})));
  CHECK(py.shape() == tg::Shape{5, 3, 4});
  CHECK(std::get<0>(phc).shape() == tg::Shape{4, 3, 2});
  CHECK(std::get<1>(phc).shape() == tg::Shape{4, 3, 6});
  CHECK_THROWS_WITH(tg::GRU(3, 6, rng, {.proj_size = 2}),
                    "GRU: proj_size is only supported for LSTM, not RNN or GRU");
  CHECK_THROWS_WITH(tg::LSTM(3, 6, rng, {.proj_size = 6}),
                    "LSTM: proj_size must be smaller than hidden_size, got 6 and 6");
  CHECK_THROWS_AS(tg::LSTM(3, 6, rng, {.proj_size = -1}), tg::Error);
  CHECK_THROWS_WITH(
      proj(tg::constant(tg::zeros({5, 3, 3})),
           std::tuple{tg::constant(tg::zeros({4, 3, 6})), tg::constant(tg::zeros({4, 3, 6}))}),
      "LSTM: h_0 must have shape [4, 3, 2] (num_layers * num_directions, batch, "
      "proj_size), got [4, 3, 6]");

  // to(dtype) converts the parameters in place: the layer runs in the new dtype.
  tg::LSTM small(2, 3, rng, {.num_layers = 2});
  small.to(tg::f64);
  auto [y64, hc64] = small(tg::constant(tg::zeros({4, 1, 2}, tg::f64)));
  CHECK(y64.dtype() == tg::f64);
  CHECK(std::get<1>(hc64).shape() == tg::Shape{2, 1, 3});

  // Drawn in registration order, each U(-1/sqrt(hidden), 1/sqrt(hidden)), row-major.
  tg::Rng a(5), b(5);
  tg::GRUCell cell(2, 4, a);
  for (const auto& [name, p] : cell.named_parameters())
    for (double v : p.value().to_vector()) CHECK(v == static_cast<float>(b.uniform(-0.5, 0.5)));
}

// ---- gradcheck ----

namespace {

// gradcheck and gradgradcheck of a module's recurrence with respect to the input, the
// initial states and every weight (through forward_with), all outputs concatenated.
void check_module_gradients(tg::RNNBase& m, const std::vector<int64_t>& x_shape, bool lstm) {
  const int64_t layers = m.num_layers() * (m.bidirectional() ? 2 : 1);
  const int64_t batch = m.batch_first() ? x_shape[0] : x_shape[1];
  const int64_t h_out = m.proj_size() > 0 ? m.proj_size() : m.hidden_size();
  std::vector<tg::Tensor> inputs{pat(x_shape, 0.2, 1.0, tg::f64),
                                 pat({layers, batch, h_out}, 1.3, 0.5, tg::f64)};
  if (lstm) inputs.push_back(pat({layers, batch, m.hidden_size()}, 2.1, 0.5, tg::f64));
  const size_t first_weight = inputs.size();
  for (const auto& p : m.parameters()) inputs.push_back(p.value().clone());
  auto fn = [&](const std::vector<tg::Var>& v) {
    const std::vector<tg::Var> w(v.begin() + static_cast<long>(first_weight), v.end());
    auto [out, h, c] = m.forward_with(w, v[0], v[1], lstm ? v[2] : tg::Var{});
    std::vector<tg::Var> flat{tg::flatten(out, 0), tg::flatten(h, 0)};
    if (c.defined()) flat.push_back(tg::flatten(c, 0));
    return tg::concat(flat, 0);
  };
  const auto first = tg::gradcheck(fn, inputs);
  INFO(m.str() << " gradcheck: " << first.message);
  CHECK(first.passed);
  const auto second = tg::gradgradcheck(fn, inputs);
  INFO(m.str() << " gradgradcheck: " << second.message);
  CHECK(second.passed);
}

}  // namespace

TEST_CASE("gradcheck, gradgradcheck: 2-layer bidirectional LSTM, GRU, RNN with initial states",
          "[rnn][gradcheck]") {
  tg::Rng rng(11);
  SECTION("LSTM") {
    tg::LSTM m(2, 3, rng, {.num_layers = 2, .bidirectional = true}, tg::f64);
    check_module_gradients(m, {3, 2, 2}, true);
  }
  SECTION("LSTM with proj_size") {
    tg::LSTM m(2, 3, rng, {.num_layers = 2, .bidirectional = true, .proj_size = 2}, tg::f64);
    check_module_gradients(m, {3, 2, 2}, true);
  }
  SECTION("GRU, batch_first") {
    tg::GRU m(2, 3, rng, {.num_layers = 2, .batch_first = true, .bidirectional = true}, tg::f64);
    check_module_gradients(m, {2, 3, 2}, false);
  }
  SECTION("RNN tanh") {
    tg::RNN m(2, 3, rng, {.num_layers = 2, .bidirectional = true}, tg::f64);
    check_module_gradients(m, {3, 2, 2}, false);
  }
  SECTION("RNN relu without bias") {
    tg::RNN m(2, 3, rng, {.num_layers = 2, .nonlinearity = "relu", .bias = false}, tg::f64);
    check_module_gradients(m, {3, 2, 2}, false);
  }
}

// ---- PyTorch oracle ----

namespace {

// One module of the oracle test, built the same way on both sides.
struct OracleCase {
  std::string name;
  std::string torch;  // the Python constructor, e.g. "nn.LSTM(3, 4, num_layers=2)"
  std::function<std::unique_ptr<tg::Module>(tg::Rng&, tg::Dtype)> make;
  std::vector<int64_t> x_shape;
  std::vector<int64_t> h_shape;  // empty: no initial state; c's ends in hidden_size instead
  bool pair_state;               // LSTM / LSTMCell: (h, c)
  // Runs the module; returns its outputs flattened in PyTorch's order.
  std::function<std::vector<tg::Var>(tg::Module&, const tg::Var& x, const tg::Var& h,
                                     const tg::Var& c)>
      run;
};

template <class M>
std::function<std::vector<tg::Var>(tg::Module&, const tg::Var&, const tg::Var&, const tg::Var&)>
runner() {
  return [](tg::Module& base, const tg::Var& x, const tg::Var& h,
            const tg::Var& c) -> std::vector<tg::Var> {
    auto& m = dynamic_cast<M&>(base);
    if constexpr (std::is_same_v<M, tg::LSTM>) {
      auto [out, hc] = h.defined() ? m(x, std::tuple{h, c}) : m(x);
      return {out, std::get<0>(hc), std::get<1>(hc)};
    } else if constexpr (std::is_same_v<M, tg::LSTMCell>) {
      auto [h1, c1] = h.defined() ? m(x, std::tuple{h, c}) : m(x);
      return {h1, c1};
    } else if constexpr (std::is_same_v<M, tg::RNN> || std::is_same_v<M, tg::GRU>) {
      auto [out, hn] = m(x, h);
      return {out, hn};
    } else {
      return {m(x, h)};
    }
  };
}

std::vector<OracleCase> oracle_cases() {
  using Opt = tg::RecurrentOptions;
  auto lstm = [](int64_t i, int64_t h, Opt o) {
    return [=](tg::Rng& rng, tg::Dtype dt) -> std::unique_ptr<tg::Module> {
      return std::make_unique<tg::LSTM>(i, h, rng, o, dt);
    };
  };
  auto gru = [](int64_t i, int64_t h, Opt o) {
    return [=](tg::Rng& rng, tg::Dtype dt) -> std::unique_ptr<tg::Module> {
      return std::make_unique<tg::GRU>(i, h, rng, o, dt);
    };
  };
  auto rnn = [](int64_t i, int64_t h, tg::RNNOptions o) {
    return [=](tg::Rng& rng, tg::Dtype dt) -> std::unique_ptr<tg::Module> {
      return std::make_unique<tg::RNN>(i, h, rng, o, dt);
    };
  };
  auto cell = [](auto tag, int64_t i, int64_t h, bool bias) {
    using M = typename decltype(tag)::type;
    return [=](tg::Rng& rng, tg::Dtype dt) -> std::unique_ptr<tg::Module> {
      return std::make_unique<M>(i, h, rng, bias, dt);
    };
  };
  auto rnn_cell = [](int64_t i, int64_t h, bool bias, std::string nl) {
    return [=](tg::Rng& rng, tg::Dtype dt) -> std::unique_ptr<tg::Module> {
      return std::make_unique<tg::RNNCell>(i, h, rng, bias, nl, dt);
    };
  };
  return {
      {"lstm_l2_bi_h0",
       "nn.LSTM(3, 4, num_layers=2, bidirectional=True)",
       lstm(3, 4, {.num_layers = 2, .bidirectional = true}),
       {5, 2, 3},
       {4, 2, 4},
       true,
       runner<tg::LSTM>()},
      {"lstm_batch_first",
       "nn.LSTM(3, 4, batch_first=True)",
       lstm(3, 4, {.batch_first = true}),
       {2, 5, 3},
       {},
       true,
       runner<tg::LSTM>()},
      {"lstm_unbatched_h0",
       "nn.LSTM(3, 4, num_layers=2, batch_first=True)",
       lstm(3, 4, {.num_layers = 2, .batch_first = true}),
       {5, 3},
       {2, 4},
       true,
       runner<tg::LSTM>()},
      {"lstm_proj_l2_bi_h0",
       "nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)",
       lstm(3, 5, {.num_layers = 2, .bidirectional = true, .proj_size = 2}),
       {4, 2, 3},
       {4, 2, 2},
       true,
       runner<tg::LSTM>()},
      {"lstm_proj_unbatched_nobias",
       "nn.LSTM(3, 4, bias=False, batch_first=True, proj_size=3)",
       lstm(3, 4, {.bias = false, .batch_first = true, .proj_size = 3}),
       {5, 3},
       {},
       true,
       runner<tg::LSTM>()},
      {"lstm_proj_one_step",
       "nn.LSTM(3, 4, proj_size=1)",
       lstm(3, 4, {.proj_size = 1}),
       {1, 2, 3},
       {},
       true,
       runner<tg::LSTM>()},
      {"lstm_batch1_nobias",
       "nn.LSTM(3, 2, bias=False)",
       lstm(3, 2, {.bias = false}),
       {4, 1, 3},
       {1, 1, 2},
       true,
       runner<tg::LSTM>()},
      {"gru_l2_bi_bf_h0",
       "nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True)",
       gru(3, 4, {.num_layers = 2, .batch_first = true, .bidirectional = true}),
       {2, 5, 3},
       {4, 2, 4},
       false,
       runner<tg::GRU>()},
      {"gru_one_step", "nn.GRU(3, 4)", gru(3, 4, {}), {1, 2, 3}, {}, false, runner<tg::GRU>()},
      {"lstm_empty_batch",
       "nn.LSTM(3, 4, num_layers=2)",
       lstm(3, 4, {.num_layers = 2}),
       {5, 0, 3},
       {2, 0, 4},
       true,
       runner<tg::LSTM>()},
      {"gru_unbatched", "nn.GRU(3, 4)", gru(3, 4, {}), {5, 3}, {}, false, runner<tg::GRU>()},
      {"rnn_relu_l2_bi_h0",
       "nn.RNN(3, 4, num_layers=2, nonlinearity='relu', bidirectional=True)",
       rnn(3, 4, {.num_layers = 2, .nonlinearity = "relu", .bidirectional = true}),
       {5, 2, 3},
       {4, 2, 4},
       false,
       runner<tg::RNN>()},
      {"rnn_tanh_nobias",
       "nn.RNN(3, 4, bias=False)",
       rnn(3, 4, {.bias = false}),
       {5, 1, 3},
       {},
       false,
       runner<tg::RNN>()},
      {"lstmcell_h0",
       "nn.LSTMCell(3, 4)",
       cell(std::type_identity<tg::LSTMCell>{}, 3, 4, true),
       {2, 3},
       {2, 4},
       true,
       runner<tg::LSTMCell>()},
      {"lstmcell_unbatched",
       "nn.LSTMCell(3, 4)",
       cell(std::type_identity<tg::LSTMCell>{}, 3, 4, true),
       {3},
       {},
       true,
       runner<tg::LSTMCell>()},
      {"grucell_h0",
       "nn.GRUCell(3, 4)",
       cell(std::type_identity<tg::GRUCell>{}, 3, 4, true),
       {2, 3},
       {2, 4},
       false,
       runner<tg::GRUCell>()},
      {"grucell_unbatched_nobias",
       "nn.GRUCell(3, 4, bias=False)",
       cell(std::type_identity<tg::GRUCell>{}, 3, 4, false),
       {3},
       {4},
       false,
       runner<tg::GRUCell>()},
      {"rnncell_relu_h0",
       "nn.RNNCell(3, 4, nonlinearity='relu')",
       rnn_cell(3, 4, true, "relu"),
       {2, 3},
       {2, 4},
       false,
       runner<tg::RNNCell>()},
      {"rnncell_tanh",
       "nn.RNNCell(3, 4, bias=False)",
       rnn_cell(3, 4, false, "tanh"),
       {2, 3},
       {},
       false,
       runner<tg::RNNCell>()},
  };
}

// The Python half: each module built by torch with a seed, its state dict exported to
// dir/<name>_<dtype>.npz, then outputs and the gradients of sum_j sum(y_j * w_j) with respect
// to the input, the initial states and every parameter (by name) emitted.
std::string oracle_script(const std::vector<OracleCase>& cases, const std::string& dir) {
  std::string s = std::string(tgtest::kPythonPrelude) +
                  "import numpy as np\n"
                  "import torch.nn as nn\n"
                  "def flat(r):\n"
                  "    return [r] if isinstance(r, torch.Tensor) else [t for x in r for t in "
                  "flat(x)]\n"
                  "def case(name, ctor, xs, hs, pair):\n"
                  "    for D, dn in ((torch.float64, 'f64'), (torch.float32, 'f32')):\n"
                  "        torch.manual_seed(len(name))\n"
                  "        m = ctor().to(D)\n"
                  "        np.savez('" +
                  dir +
                  "/' + name + '_' + dn + '.npz', **{k: v.detach().numpy() for k, v in "
                  "m.state_dict().items()})\n"
                  "        key = name + '_' + dn\n"
                  "        x = pattern(xs, 0.3, 1.0, D).requires_grad_()\n"
                  "        leaves = [x]\n"
                  "        if hs:\n"
                  "            h = pattern(hs, 1.1, 0.5, D).requires_grad_()\n"
                  "            c = pattern(list(hs[:-1]) + [m.hidden_size], 2.3, 0.5, "
                  "D).requires_grad_()\n"
                  "            leaves += [h, c] if pair else [h]\n"
                  "            ys = flat(m(x, (h, c) if pair else h))\n"
                  "        else:\n"
                  "            ys = flat(m(x))\n"
                  "        loss = sum((y * pattern(list(y.shape), 9.0 - j, 1.0, D)).sum() for j, "
                  "y in enumerate(ys))\n"
                  "        loss.backward()\n"
                  "        for j, y in enumerate(ys):\n"
                  "            emit(key + '_y%d' % j, y)\n"
                  "        for j, l in enumerate(leaves):\n"
                  "            emit(key + '_gin%d' % j, l.grad)\n"
                  "        for n, p in m.named_parameters():\n"
                  "            emit(key + '_g_' + n, p.grad)\n";
  for (const auto& c : cases)
    s += "case('" + c.name + "', lambda: " + c.torch + ", " + py_shape(c.x_shape) + ", " +
         py_shape(c.h_shape) + ", " + (c.pair_state ? "True" : "False") + ")\n";
  return s;
}

}  // namespace

TEST_CASE("recurrent modules with torch's exported weights compute what torch.nn's do",
          "[rnn][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("rnn_oracle");
  const auto cases = oracle_cases();
  auto torch = tgtest::run_python(oracle_script(cases, dir.string()));
  for (const auto& c : cases) {
    for (tg::Dtype dt : {tg::f64, tg::f32}) {
      const std::string key = c.name + "_" + std::string(tg::dtype_name(dt));
      INFO(key);
      const double tol = dt == tg::f64 ? 1e-10 : 1e-5;
      tg::Rng rng(0);
      auto m = c.make(rng, dt);
      m->load((dir / (key + ".npz")).string());  // torch's state dict, by name
      const tg::Var x = tg::param(pat(c.x_shape, 0.3, 1.0, dt));
      // Built by push_back after a reserve: `leaves{x}` then push_back made g++ 12 warn
      // (-Warray-bounds) on the copy into the full one-element buffer, a path it cannot rule
      // out after inlining although push_back reallocates there.
      std::vector<tg::Var> leaves;
      leaves.reserve(3);
      leaves.push_back(x);
      tg::Var h, cs;
      if (!c.h_shape.empty()) {
        h = tg::param(pat(c.h_shape, 1.1, 0.5, dt));
        std::vector<int64_t> c_shape = c.h_shape;  // hidden_size features (not proj_size)
        if (const auto* r = dynamic_cast<const tg::RNNBase*>(m.get()))
          c_shape.back() = r->hidden_size();
        cs = tg::param(pat(c_shape, 2.3, 0.5, dt));
        leaves.push_back(h);
        if (c.pair_state) leaves.push_back(cs);
      }
      const auto ys = c.run(*m, x, h, cs);
      tg::Var loss;
      for (size_t j = 0; j < ys.size(); ++j) {
        const tg::Var w = tg::constant(tgtest::pattern(ys[j].shape(), 9.0 - double(j)).to(dt));
        const tg::Var term = tg::sum(ys[j] * w);
        loss = loss.defined() ? loss + term : term;
        tgtest::check_close(ys[j].value().to_vector(), torch.at(key + "_y" + std::to_string(j)),
                            tol);
      }
      loss.backward();
      for (size_t j = 0; j < leaves.size(); ++j) {
        INFO("input gradient " << j);
        tgtest::check_close(leaves[j].grad().value().to_vector(),
                            torch.at(key + "_gin" + std::to_string(j)), tol);
      }
      for (const auto& [name, p] : m->named_parameters()) {
        INFO("gradient of " << name);
        REQUIRE(torch.count(key + "_g_" + name) == 1);
        tgtest::check_close(p.grad().value().to_vector(), torch.at(key + "_g_" + name), tol);
      }
    }
  }
}

TEST_CASE("an LSTM saved by tapegrad loads into torch.nn.LSTM with the same outputs",
          "[rnn][oracle]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("rnn_to_torch");
  const auto path = (dir / "lstm.npz").string();
  tg::Rng rng(3);
  tg::LSTM lstm(4, 6, rng, {.num_layers = 2, .batch_first = true, .bidirectional = true});
  lstm.save(path);
  auto [out, hc] = lstm(tg::constant(pat({3, 7, 4}, 0.5, 1.0, tg::f32)));
  auto torch = tgtest::run_python(
      std::string(tgtest::kPythonPrelude) +
      "import numpy as np\n"
      "m = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=True)\n"
      "d = np.load('" +
      path +
      "')\n"
      "m.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
      "y, (h, c) = m(pattern([3, 7, 4], 0.5, 1.0, torch.float32))\n"
      "emit('y', y)\nemit('h', h)\nemit('c', c)\n");
  CHECK(out.shape() == tg::Shape{3, 7, 12});
  CHECK(std::get<0>(hc).shape() == tg::Shape{4, 3, 6});
  tgtest::check_close(out.value().to_vector(), torch["y"], 1e-5);
  tgtest::check_close(std::get<0>(hc).value().to_vector(), torch["h"], 1e-5);
  tgtest::check_close(std::get<1>(hc).value().to_vector(), torch["c"], 1e-5);
}

// ---- dropout between layers ----

TEST_CASE("dropout between layers: eval is deterministic and dropout-free, train is seeded",
          "[rnn]") {
  const tg::Var x = tg::constant(pat({6, 2, 3}, 0.4, 1.0, tg::f32));
  tg::Rng r1(8), r2(8), r0(8);
  tg::GRU a(3, 5, r1, {.num_layers = 3, .dropout = 0.5});
  tg::GRU b(3, 5, r2, {.num_layers = 3, .dropout = 0.5});
  tg::GRU plain(3, 5, r0, {.num_layers = 3});
  // Same parameters as without dropout: the dropout generator is seeded after them.
  for (size_t i = 0; i < a.parameters().size(); ++i)
    CHECK(tg::equal(a.parameters()[i].value(), plain.parameters()[i].value()));
  // Train: seeded, so two models from one seed agree, and it differs from eval.
  const auto ya = std::get<0>(a(x)).value().to_vector();
  const auto yb = std::get<0>(b(x)).value().to_vector();
  CHECK(ya == yb);
  CHECK(std::get<0>(a(x)).value().to_vector() != ya);  // the generator moved on
  a.eval();
  const auto e1 = std::get<0>(a(x)).value().to_vector();
  CHECK(e1 == std::get<0>(a(x)).value().to_vector());
  CHECK(e1 == std::get<0>(plain(x)).value().to_vector());  // eval: no dropout at all
  CHECK(e1 != ya);
  // Restoring the generator's state replays the same masks.
  b.dropout_rng().set_state(tg::Rng::State{1, 2, 3, 4});
  const auto s1 = std::get<0>(b(x)).value().to_vector();
  b.dropout_rng().set_state(tg::Rng::State{1, 2, 3, 4});
  CHECK(std::get<0>(b(x)).value().to_vector() == s1);

  std::vector<std::string> warnings;
  const auto previous =
      tg::set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  tg::Rng r3(1);
  tg::LSTM one(3, 5, r3, {.dropout = 0.2});
  tg::set_warning_handler(previous);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].rfind("LSTM: dropout", 0) == 0);
}

// ---- across time steps: masks, detach, clipping, NaN ----

TEST_CASE("recurrent layers across time: masked steps, detached state, clipping, NaN", "[rnn]") {
  tg::Rng rng(4);
  tg::LSTM lstm(3, 5, rng, {.num_layers = 2});
  // Two sequences padded to 6 steps, of lengths 6 and 3: a masked loss gives the padding no
  // gradient, exactly, and the real steps some.
  const tg::Var x = tg::param(pat({6, 2, 3}, 0.1, 1.0, tg::f32));
  std::vector<double> keep(12, 1.0);
  for (int t = 3; t < 6; ++t) keep[static_cast<size_t>(t * 2 + 1)] = 0.0;
  const tg::Var mask = tg::constant(tg::tensor(keep, {6, 2, 1}));
  auto [out, hc] = lstm(x);
  tg::sum(out * mask).backward();
  const tg::Tensor g = x.grad().value();
  for (int64_t t = 0; t < 6; ++t) {
    double pad = 0, real = 0;
    for (int64_t i = 0; i < 3; ++i) (t >= 3 ? pad : real) += std::abs(g.at({t, 1, i}));
    INFO("step " << t);
    if (t >= 3)
      CHECK(pad == 0.0);
    else
      CHECK(real > 0.0);
  }
  // The norm over every step's contribution, clipped to 0.5.
  const double before = tg::clip_grad_norm(lstm.parameters(), 0.5);
  CHECK(before > 0.5);
  double after = 0;
  for (const auto& p : lstm.parameters())
    for (double v : p.grad().value().to_vector()) after += v * v;
  CHECK(std::sqrt(after) == Approx(0.5).epsilon(1e-4));

  // A state carried with detach() cuts the graph: the next chunk's backward stops there.
  const tg::Var a = tg::param(pat({4, 2, 3}, 0.2, 1.0, tg::f32));
  const tg::Var b = tg::constant(pat({4, 2, 3}, 0.4, 1.0, tg::f32));
  auto [ya, sa] = lstm(a);
  auto [yb, sb] = lstm(b, std::tuple{std::get<0>(sa).detach(), std::get<1>(sa).detach()});
  tg::sum(yb).backward();
  CHECK_FALSE(a.grad().defined());
  auto [yc, sc] = lstm(b, sa);  // without detach the gradient reaches the first chunk
  tg::sum(yc).backward();
  REQUIRE(a.grad().defined());
  CHECK(std::abs(a.grad().value().to_vector()[0]) > 0.0);

  // NaN in the input gives NaN out.
  tg::GRU gru(2, 3, rng);
  const tg::Var nan = tg::constant(tg::full({2, 1, 2}, std::nan("")));
  for (double v : std::get<0>(gru(nan)).value().to_vector()) CHECK(std::isnan(v));
}

// ---- bad input ----

TEST_CASE("recurrent modules: bad input throws typed errors naming the module", "[rnn]") {
  tg::Rng rng(2);
  tg::LSTM lstm(32, 8, rng, {.num_layers = 2});
  tg::GRU gru(4, 3, rng, {.batch_first = true, .bidirectional = true});
  tg::LSTMCell cell(4, 3, rng);
  tg::GRUCell gcell(4, 3, rng);
  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const tg::ShapeError& e) {
      return std::string(e.what());
    }
    return std::string("no ShapeError");
  };
  const tg::Var x16 = tg::constant(tg::zeros({5, 2, 16}));
  CHECK(msg([&] { lstm(x16); }) == "LSTM: input.size(-1) must be 32 (input_size), got 16");
  CHECK(msg([&] {
          lstm(tg::constant(tg::zeros({1, 5, 2, 32})));
        }).rfind("LSTM: input must be 3-D (batched) or 2-D (unbatched", 0) == 0);
  CHECK(msg([&] {
          lstm(tg::constant(tg::zeros({0, 2, 32})));
        }).rfind("LSTM: the sequence length must be positive", 0) == 0);
  const tg::Var x = tg::constant(tg::zeros({5, 2, 32}));
  const tg::Var good = tg::constant(tg::zeros({2, 2, 8}));
  const tg::Var bad_batch = tg::constant(tg::zeros({2, 3, 8}));
  CHECK(msg([&] {
          lstm(x, std::tuple{bad_batch, good});
        }) ==
        "LSTM: h_0 must have shape [2, 2, 8] (num_layers * num_directions, batch, hidden_size), "
        "got [2, 3, 8]");
  CHECK(msg([&] {
          lstm(x, std::tuple{good, tg::constant(tg::zeros({1, 2, 8}))});
        }).rfind("LSTM: c_0 must have shape [2, 2, 8]", 0) == 0);
  // Unbatched input with a batched state.
  CHECK(msg([&] {
          lstm(tg::constant(tg::zeros({5, 32})), std::tuple{good, good});
        })
            .rfind("LSTM: h_0 must have shape [2, 8] (num_layers * num_directions, hidden_size) "
                   "for unbatched input",
                   0) == 0);
  CHECK(msg([&] {
          gru(tg::constant(tg::zeros({2, 5, 4})), tg::constant(tg::zeros({1, 2, 3})));
        }) ==
        "GRU: h_0 must have shape [2, 2, 3] (num_layers * num_directions, batch, hidden_size), "
        "got [1, 2, 3]");
  CHECK(msg([&] {
          cell(tg::constant(tg::zeros({2, 5})));
        }) == "LSTMCell: input.size(-1) must be 4 (input_size), got 5");
  CHECK(msg([&] {
          cell(tg::constant(tg::zeros({2, 2, 4})));
        }).rfind("LSTMCell: input must be 1-D (unbatched) or 2-D", 0) == 0);
  CHECK(msg([&] {
          cell(tg::constant(tg::zeros({2, 4})),
               std::tuple{tg::constant(tg::zeros({3, 3})), tg::constant(tg::zeros({2, 3}))});
        }) == "LSTMCell: hx must have shape [2, 3] for input of shape [2, 4], got [3, 3]");
  CHECK(msg([&] {
          gcell(tg::constant(tg::zeros({2, 4})), tg::constant(tg::zeros({2, 4})));
        }) == "GRUCell: hx must have shape [2, 3] for input of shape [2, 4], got [2, 4]");
  CHECK_THROWS_AS(lstm(tg::constant(tg::zeros({5, 2, 32}, tg::f64))), tg::DtypeError);
  CHECK_THROWS_WITH(lstm(tg::constant(tg::zeros({5, 2, 32}, tg::f64))),
                    Catch::StartsWith("LSTM: input has dtype f64"));
  CHECK_THROWS_AS(tg::RNN(3, 4, rng, {.nonlinearity = "sigmoid"}), tg::Error);
  CHECK_THROWS_AS(tg::LSTM(3, 4, rng, {.num_layers = 0}), tg::Error);
  CHECK_THROWS_AS(tg::LSTM(3, 4, rng, {.num_layers = 2, .dropout = 1.5}), tg::Error);
  CHECK_THROWS_AS(tg::GRUCell(0, 4, rng), tg::ShapeError);
  const std::vector<tg::Var> too_few(3);
  CHECK_THROWS_AS(lstm.forward_with(too_few, x), tg::ShapeError);
  // forward_with takes a c_0 for every mode: a GRU or RNN has no cell state, so one given is
  // refused (it was ignored without a word).
  tg::GRU one(4, 3, rng);
  const tg::Var gx = tg::constant(tg::zeros({5, 2, 4}));
  const tg::Var c0 = tg::constant(tg::zeros({1, 2, 3}));
  CHECK_THROWS_AS(one.forward_with(one.parameters(), gx, {}, c0), tg::Error);
  CHECK_THROWS_WITH(one.forward_with(one.parameters(), gx, {}, c0),
                    "GRU: c_0 is given, but only an LSTM has a cell state");
  CHECK_NOTHROW(one.forward_with(one.parameters(), gx));
}
