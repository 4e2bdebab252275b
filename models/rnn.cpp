#include "models/rnn.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include "models/init.hpp"
#include "models/warning.hpp"
#include "ops/activation.hpp"
#include "ops/arith.hpp"
#include "ops/dropout.hpp"
#include "ops/matmul.hpp"
#include "ops/shape_ops.hpp"

namespace tg {

namespace {

int64_t gate_count(RnnMode mode) {
  switch (mode) {
    case RnnMode::lstm:
      return 4;
    case RnnMode::gru:
      return 3;
    default:
      return 1;
  }
}

const char* bool_str(bool b) { return b ? "true" : "false"; }

RnnMode rnn_mode(const std::string& nonlinearity, const char* name) {
  if (nonlinearity == "tanh") return RnnMode::rnn_tanh;
  if (nonlinearity == "relu") return RnnMode::rnn_relu;
  throw Error(std::string(name) + ": nonlinearity must be 'tanh' or 'relu', got '" + nonlinearity +
              "'");
}

void check_sizes(int64_t input_size, int64_t hidden_size, const char* name) {
  if (input_size <= 0 || hidden_size <= 0)
    throw ShapeError(std::string(name) + ": input_size and hidden_size must be positive, got " +
                     std::to_string(input_size) + " and " + std::to_string(hidden_size));
}

void check_dtype(const Var& v, Dtype want, const std::string& name, const char* what) {
  if (v.dtype() != want)
    throw DtypeError(name + ": " + what + " has dtype " + std::string(dtype_name(v.dtype())) +
                     ", the parameters " + std::string(dtype_name(want)));
}

// Every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden)) in registration order, as PyTorch's
// RNNBase and RNNCellBase reset_parameters.
void reset_uniform(const Module& m, int64_t hidden_size, Rng& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  for (const auto& [name, p] : m.own_parameters()) init::uniform(p, rng, -bound, bound);
}

// One step of the recurrence, from the input projection xw = x W_ih^T + b_ih ([B, G * H])
// and the states h, c ([B, H]; undefined: zeros, which skips the product h W_hh^T). Returns
// (h', c'), c' only for LSTM. Made of differentiable ops only.
std::pair<Var, Var> step(RnnMode mode, const Var& xw, const Var& h, const Var& c, const Var& w_hh,
                         const Var& b_hh) {
  // hw = h W_hh^T + b_hh; for a zero h just b_hh (or nothing).
  const Var hw = h.defined() ? linear(h, w_hh, b_hh) : b_hh;
  switch (mode) {
    case RnnMode::rnn_tanh:
      return {tanh(hw.defined() ? xw + hw : xw), {}};
    case RnnMode::rnn_relu:
      return {relu(hw.defined() ? xw + hw : xw), {}};
    case RnnMode::lstm: {
      const auto g = chunk(hw.defined() ? xw + hw : xw, 4, -1);  // i, f, g, o
      const Var i = sigmoid(g[0]);
      const Var cell = tanh(g[2]);
      const Var c2 = c.defined() ? sigmoid(g[1]) * c + i * cell : i * cell;
      return {sigmoid(g[3]) * tanh(c2), c2};
    }
    case RnnMode::gru: {
      // r and z from the sum of the first two chunks; n = tanh(x_n + r * (h W_hn^T + b_hn)).
      const auto xs = chunk(xw, 3, -1);
      Var r = xs[0], z = xs[1], n = xs[2];
      if (hw.defined()) {
        const auto hs = chunk(hw, 3, -1);
        r = r + hs[0];
        z = z + hs[1];
        n = n + sigmoid(r) * hs[2];
      }
      n = tanh(n);
      z = sigmoid(z);
      // h' = (1 - z) n + z h = n + z (h - n)
      return {h.defined() ? n + z * (h - n) : n - z * n, {}};
    }
  }
  return {};
}

// The rows of step t of a [T * B, G] projection, taken in two levels: blocks of about sqrt(T)
// steps, then a step of its block. NOTE: a narrow's gradient is its input's size (zeros
// around the piece) whenever the engine cannot let it add into the input's gradient summed
// so far (BackwardCtx::accumulating_grad: the first piece to arrive, and every piece under
// create_graph or anomaly mode), so T narrows straight from the projection could cost T
// full-size gradients in backward (15% of an LSTM step at T = 35); two levels cost about
// 2 sqrt(T) at worst.
class StepRows {
 public:
  StepRows(const Var& xw, int64_t steps, int64_t batch)
      : xw_(xw),
        steps_(steps),
        batch_(batch),
        block_(std::max<int64_t>(1, static_cast<int64_t>(std::lround(std::sqrt(double(steps)))))),
        blocks_(static_cast<size_t>((steps + block_ - 1) / block_)) {}
  Var step(int64_t t) {
    if (block_ == 1 || steps_ <= 2) return narrow(xw_, 0, t * batch_, batch_);
    const int64_t k = t / block_, first = k * block_;
    Var& b = blocks_[static_cast<size_t>(k)];
    if (!b.defined()) b = narrow(xw_, 0, first * batch_, std::min(block_, steps_ - first) * batch_);
    return b.shape()[0] == batch_ ? b : narrow(b, 0, (t - first) * batch_, batch_);
  }

 private:
  Var xw_;
  int64_t steps_, batch_, block_;
  std::vector<Var> blocks_;
};

}  // namespace

// ---- cells ----

RNNCellBase::RNNCellBase(RnnMode mode, const char* name, int64_t input_size, int64_t hidden_size,
                         Rng& rng, bool bias, Dtype dtype)
    : mode_(mode), input_size_(input_size), hidden_size_(hidden_size) {
  check_sizes(input_size, hidden_size, name);
  const int64_t g = gate_count(mode) * hidden_size;
  weight_ih = register_parameter("weight_ih", Tensor::empty({g, input_size}, dtype));
  weight_hh = register_parameter("weight_hh", Tensor::empty({g, hidden_size}, dtype));
  if (bias) {
    bias_ih = register_parameter("bias_ih", Tensor::empty({g}, dtype));
    bias_hh = register_parameter("bias_hh", Tensor::empty({g}, dtype));
  }
  reset_parameters(rng);
}

void RNNCellBase::reset_parameters(Rng& rng) { reset_uniform(*this, hidden_size_, rng); }

std::string RNNCellBase::extra_repr() const {
  std::ostringstream os;
  os << input_size_ << ", " << hidden_size_;
  if (!has_bias()) os << ", bias=false";
  if (mode_ == RnnMode::rnn_relu) os << ", nonlinearity=relu";
  return os.str();
}

RNNCellBase::Prepared RNNCellBase::prepare(const Var& input, const Var& h, const Var& c) const {
  const std::string n = type_name();
  if (input.dim() != 1 && input.dim() != 2)
    throw ShapeError(n + ": input must be 1-D (unbatched) or 2-D [batch, input_size], got shape " +
                     input.shape().str());
  if (input.shape().back() != input_size_)
    throw ShapeError(n + ": input.size(-1) must be " + std::to_string(input_size_) +
                     " (input_size), got " + std::to_string(input.shape().back()));
  check_dtype(input, weight_ih.dtype(), n, "input");
  const bool unbatched = input.dim() == 1;
  const int64_t batch = unbatched ? 1 : input.shape()[0];
  const Shape want = unbatched ? Shape{hidden_size_} : Shape{batch, hidden_size_};
  auto state = [&](const Var& s, const char* what) -> Var {
    if (!s.defined()) return {};
    if (s.shape() != want)
      throw ShapeError(n + ": " + what + " must have shape " + want.str() + " for input of shape " +
                       input.shape().str() + ", got " + s.shape().str());
    check_dtype(s, weight_ih.dtype(), n, what);
    return unbatched ? unsqueeze(s, 0) : s;
  };
  // NOTE: a missing hx is zeros, as PyTorch's, so weight_hh gets a (zero) gradient; a missing
  // cx stays undefined (c' = i g), which changes no gradient.
  Var h0 = state(h, "hx");
  if (!h0.defined()) h0 = constant(zeros(Shape{batch, hidden_size_}, weight_ih.dtype()));
  return {unbatched ? unsqueeze(input, 0) : input, h0, state(c, "cx"), unbatched};
}

RNNCell::RNNCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias,
                 const std::string& nonlinearity, Dtype dtype)
    : RNNCellBase(rnn_mode(nonlinearity, "RNNCell"), "RNNCell", input_size, hidden_size, rng, bias,
                  dtype) {}

Var RNNCellBase::forward_h(const Var& input, const Var& hx) {
  const Prepared p = prepare(input, hx, {});
  const Var h = step(mode_, linear(p.x, weight_ih, bias_ih), p.h, {}, weight_hh, bias_hh).first;
  return p.unbatched ? squeeze(h, 0) : h;
}

Var RNNCell::forward(const Var& input, const Var& hx) { return forward_h(input, hx); }

LSTMCell::LSTMCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias, Dtype dtype)
    : RNNCellBase(RnnMode::lstm, "LSTMCell", input_size, hidden_size, rng, bias, dtype) {}

std::tuple<Var, Var> LSTMCell::forward(const Var& input, std::optional<std::tuple<Var, Var>> hx) {
  const Prepared p =
      hx ? prepare(input, std::get<0>(*hx), std::get<1>(*hx)) : prepare(input, {}, {});
  auto [h, c] = step(mode_, linear(p.x, weight_ih, bias_ih), p.h, p.c, weight_hh, bias_hh);
  if (p.unbatched) return {squeeze(h, 0), squeeze(c, 0)};
  return {h, c};
}

GRUCell::GRUCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias, Dtype dtype)
    : RNNCellBase(RnnMode::gru, "GRUCell", input_size, hidden_size, rng, bias, dtype) {}

Var GRUCell::forward(const Var& input, const Var& hx) { return forward_h(input, hx); }

// ---- layers ----

RNNBase::RNNBase(RnnMode mode, const char* name, int64_t input_size, int64_t hidden_size, Rng& rng,
                 const RecurrentOptions& options, Dtype dtype)
    : mode_(mode), name_(name), input_size_(input_size), hidden_size_(hidden_size), opt_(options) {
  const std::string n = name;
  check_sizes(input_size, hidden_size, name);
  if (opt_.num_layers <= 0)
    throw Error(n + ": num_layers must be positive, got " + std::to_string(opt_.num_layers));
  if (!(opt_.dropout >= 0.0 && opt_.dropout <= 1.0))
    throw Error(n + ": dropout must be in [0, 1], got " + std::to_string(opt_.dropout));
  if (opt_.proj_size != 0 && mode != RnnMode::lstm)
    throw Error(n + ": proj_size is only supported for LSTM, not RNN or GRU");
  if (opt_.proj_size < 0)
    throw Error(n + ": proj_size must be zero (no projection) or positive, got " +
                std::to_string(opt_.proj_size));
  if (opt_.proj_size >= hidden_size)
    throw Error(n + ": proj_size must be smaller than hidden_size, got " +
                std::to_string(opt_.proj_size) + " and " + std::to_string(hidden_size));
  if (opt_.dropout > 0.0 && opt_.num_layers == 1) {
    std::ostringstream os;
    os << n << ": dropout adds dropout after all but the last recurrent layer, so dropout="
       << opt_.dropout << " with num_layers=1 has no effect";
    warn(os.str());
  }
  const int64_t g = gate_count(mode) * hidden_size;
  const int64_t dirs = opt_.bidirectional ? 2 : 1;
  const int64_t h_out = opt_.proj_size > 0 ? opt_.proj_size : hidden_size;
  for (int64_t k = 0; k < opt_.num_layers; ++k) {
    const int64_t in = k == 0 ? input_size : dirs * h_out;
    for (int64_t d = 0; d < dirs; ++d) {
      const std::string sfx = "_l" + std::to_string(k) + (d ? "_reverse" : "");
      Weights w;
      w.w_ih = register_parameter("weight_ih" + sfx, Tensor::empty({g, in}, dtype));
      w.w_hh = register_parameter("weight_hh" + sfx, Tensor::empty({g, h_out}, dtype));
      if (opt_.bias) {
        w.b_ih = register_parameter("bias_ih" + sfx, Tensor::empty({g}, dtype));
        w.b_hh = register_parameter("bias_hh" + sfx, Tensor::empty({g}, dtype));
      }
      if (opt_.proj_size > 0)
        w.w_hr = register_parameter("weight_hr" + sfx,
                                    Tensor::empty({opt_.proj_size, hidden_size}, dtype));
      weights_.push_back(w);
    }
  }
  reset_parameters(rng);
  // Only a model with dropout draws from `rng` past its parameters.
  if (opt_.dropout > 0.0) dropout_rng_.seed_with(rng.next_u64());
}

void RNNBase::reset_parameters(Rng& rng) { reset_uniform(*this, hidden_size_, rng); }

std::string RNNBase::extra_repr() const {
  std::ostringstream os;
  os << input_size_ << ", " << hidden_size_;
  if (opt_.proj_size != 0) os << ", proj_size=" << opt_.proj_size;
  if (mode_ == RnnMode::rnn_relu) os << ", nonlinearity=relu";
  if (opt_.num_layers != 1) os << ", num_layers=" << opt_.num_layers;
  if (!opt_.bias) os << ", bias=false";
  if (opt_.batch_first) os << ", batch_first=" << bool_str(true);
  if (opt_.dropout != 0.0) os << ", dropout=" << opt_.dropout;
  if (opt_.bidirectional) os << ", bidirectional=" << bool_str(true);
  return os.str();
}

void RNNBase::check_state(const Var& s, const char* what, int64_t batch, bool unbatched,
                          int64_t features) const {
  if (!s.defined()) return;
  const int64_t layers = opt_.num_layers * (opt_.bidirectional ? 2 : 1);
  const Shape want = unbatched ? Shape{layers, features} : Shape{layers, batch, features};
  const char* f = features == hidden_size_ ? "hidden_size" : "proj_size";
  if (s.shape() != want)
    throw ShapeError(
        std::string(name_) + ": " + what + " must have shape " + want.str() +
        (unbatched ? " (num_layers * num_directions, " + std::string(f) + ") for unbatched input"
                   : " (num_layers * num_directions, batch, " + std::string(f) + ")") +
        ", got " + s.shape().str());
  check_dtype(s, weights_[0].w_ih.dtype(), name_, what);
}

std::tuple<Var, Var, Var> RNNBase::forward_with(const std::vector<Var>& weights, const Var& input,
                                                const Var& h0, const Var& c0) {
  const auto& own = own_parameters();
  if (weights.size() != own.size())
    throw ShapeError(std::string(name_) + ": forward_with takes " + std::to_string(own.size()) +
                     " weights, got " + std::to_string(weights.size()));
  for (size_t i = 0; i < own.size(); ++i) {
    if (weights[i].shape() != own[i].second.shape())
      throw ShapeError(std::string(name_) + ": forward_with: " + own[i].first +
                       " must have shape " + own[i].second.shape().str() + ", got " +
                       weights[i].shape().str());
    check_dtype(weights[i], own[i].second.dtype(), name_, own[i].first.c_str());
  }
  std::vector<Weights> ws;
  const bool proj = opt_.proj_size > 0;
  const size_t per = (opt_.bias ? 4 : 2) + (proj ? 1 : 0);
  for (size_t i = 0; i < weights.size(); i += per)
    ws.push_back({weights[i], weights[i + 1], opt_.bias ? weights[i + 2] : Var{},
                  opt_.bias ? weights[i + 3] : Var{}, proj ? weights[i + per - 1] : Var{}});
  return run(ws, input, h0, c0);
}

std::tuple<Var, Var, Var> RNNBase::run(const std::vector<Weights>& weights, const Var& input,
                                       const Var& h0, const Var& c0) {
  const std::string n = name_;
  if (input.dim() != 2 && input.dim() != 3)
    throw ShapeError(n + ": input must be 3-D (batched) or 2-D (unbatched [T, input_size]), got " +
                     "shape " + input.shape().str());
  if (input.shape().back() != input_size_)
    throw ShapeError(n + ": input.size(-1) must be " + std::to_string(input_size_) +
                     " (input_size), got " + std::to_string(input.shape().back()));
  const Dtype dtype = weights_[0].w_ih.dtype();
  check_dtype(input, dtype, n, "input");
  const bool unbatched = input.dim() == 2;
  // x: [T, B, features] throughout.
  Var x = unbatched ? unsqueeze(input, 1) : opt_.batch_first ? transpose(input, 0, 1) : input;
  const int64_t steps = x.shape()[0], batch = x.shape()[1], hidden = hidden_size_;
  const int64_t h_out = opt_.proj_size > 0 ? opt_.proj_size : hidden;
  if (steps == 0)
    throw ShapeError(n + ": the sequence length must be positive, got input of shape " +
                     input.shape().str());
  check_state(h0, "h_0", batch, unbatched, h_out);
  if (c0.defined() && mode_ != RnnMode::lstm)
    throw Error(n + ": c_0 is given, but only an LSTM has a cell state");
  check_state(c0, "c_0", batch, unbatched, hidden);
  const Var h0b = h0.defined() && unbatched ? unsqueeze(h0, 1) : h0;
  const Var c0b = c0.defined() && unbatched ? unsqueeze(c0, 1) : c0;
  const int64_t dirs = opt_.bidirectional ? 2 : 1;
  const bool lstm = mode_ == RnnMode::lstm;
  // NOTE: a missing initial state stays undefined (zeros), which skips the first step's
  // h W_hh^T; with a single step h_0 is made zeros instead, so weight_hh still gets its (zero)
  // gradient, as in PyTorch.
  auto initial = [&](const Var& s, int64_t index, int64_t features) -> Var {
    if (s.defined()) return reshape(narrow(s, 0, index, 1), {batch, features});
    return steps == 1 ? constant(zeros(Shape{batch, features}, dtype)) : Var{};
  };
  std::vector<Var> h_n, c_n;
  for (int64_t k = 0; k < opt_.num_layers; ++k) {
    const int64_t features = x.shape()[2];
    std::vector<Var> outs;
    for (int64_t d = 0; d < dirs; ++d) {
      const Weights& w = weights[static_cast<size_t>(k * dirs + d)];
      // The input projection of every step at once: one gemm, [T * B, G * H].
      const Var xw = linear(reshape(x, {steps * batch, features}), w.w_ih, w.b_ih);
      Var h = initial(h0b, k * dirs + d, h_out);
      Var c = lstm ? initial(c0b, k * dirs + d, hidden) : Var{};
      StepRows rows(xw, steps, batch);
      std::vector<Var> ys(static_cast<size_t>(steps));
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t t = d ? steps - 1 - s : s;
        std::tie(h, c) = step(mode_, rows.step(t), h, c, w.w_hh, w.b_hh);
        if (w.w_hr.defined()) h = linear(h, w.w_hr);  // the projection h W_hr^T
        ys[static_cast<size_t>(t)] = h;
      }
      outs.push_back(stack(ys, 0));
      h_n.push_back(h);
      if (lstm) c_n.push_back(c);
    }
    x = dirs == 2 ? concat(outs, 2) : outs[0];
    if (k + 1 < opt_.num_layers && opt_.dropout > 0.0 && is_training())
      x = tg::dropout(x, opt_.dropout, true, dropout_rng_);
  }
  auto finish = [&](const std::vector<Var>& states) -> Var {
    if (states.empty()) return {};
    const Var s = stack(states, 0);  // [layers * dirs, B, H]
    return unbatched ? squeeze(s, 1) : s;
  };
  const Var out = unbatched ? squeeze(x, 1) : opt_.batch_first ? transpose(x, 0, 1) : x;
  return {out, finish(h_n), finish(c_n)};
}

namespace {

RecurrentOptions common_options(const RNNOptions& o) {
  return {.num_layers = o.num_layers,
          .bias = o.bias,
          .batch_first = o.batch_first,
          .dropout = o.dropout,
          .bidirectional = o.bidirectional};
}

}  // namespace

RNN::RNN(int64_t input_size, int64_t hidden_size, Rng& rng, const RNNOptions& options, Dtype dtype)
    : HiddenStateRNN(rnn_mode(options.nonlinearity, "RNN"), "RNN", input_size, hidden_size, rng,
                     common_options(options), dtype) {}

LSTM::LSTM(int64_t input_size, int64_t hidden_size, Rng& rng, const LSTMOptions& options,
           Dtype dtype)
    : RNNBase(RnnMode::lstm, "LSTM", input_size, hidden_size, rng, options, dtype) {}

std::tuple<Var, std::tuple<Var, Var>> LSTM::forward(const Var& input,
                                                    std::optional<std::tuple<Var, Var>> hx) {
  auto [out, h, c] = hx ? run(input, std::get<0>(*hx), std::get<1>(*hx)) : run(input, {}, {});
  return {out, {h, c}};
}

GRU::GRU(int64_t input_size, int64_t hidden_size, Rng& rng, const GRUOptions& options, Dtype dtype)
    : HiddenStateRNN(RnnMode::gru, "GRU", input_size, hidden_size, rng, options, dtype) {}

std::tuple<Var, Var> HiddenStateRNN::forward(const Var& input, const Var& hx) {
  auto [out, h, c] = run(input, hx, {});
  return {out, h};
}

}  // namespace tg
