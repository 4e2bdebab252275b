#pragma once

// Recurrent cells and layers as torch.nn's: RNNCell, LSTMCell, GRUCell (one step) and RNN,
// LSTM, GRU (multi-layer, batch_first, bidirectional, dropout between layers, initial
// states). Names, constructor arguments and defaults, parameter names and shapes, gate order
// (LSTM i, f, g, o; GRU r, z, n with n = tanh(W_in x + b_in + r * (W_hn h + b_hn))) and the
// default initialization (every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden)), drawn from
// the Rng in registration order) are PyTorch's, so a state dict exported from torch loads by
// name and gives the same outputs. Every step is made of the framework's differentiable ops
// (linear, sigmoid, tanh, mul, add): double backward works, and a custom cell is written
// the same way (docs/sequence.md). str() as PyTorch's repr, with C++'s true/false as the
// other modules print.
//
// Differences from PyTorch: no packed sequences; RNN's str() shows
// nonlinearity=relu when it is not tanh (torch's repr of nn.RNN omits it); dropout between
// layers draws from a generator the module owns (seeded from the constructor's Rng, see
// `dropout_rng()`), not from a global one.

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "graph/rng.hpp"
#include "models/module.hpp"

namespace tg {

/// The recurrence of a cell or layer: tanh or relu RNN, LSTM (4 gates), GRU (3 gates).
enum class RnnMode { rnn_tanh, rnn_relu, lstm, gru };

/// What the three cells share (PyTorch's RNNCellBase): parameters `weight_ih` [G * hidden,
/// input], `weight_hh` [G * hidden, hidden], `bias_ih` and `bias_hh` [G * hidden] (undefined
/// without bias), G = 1 (RNN), 4 (LSTM) or 3 (GRU).
class RNNCellBase : public Module {
 public:
  /// Draws fresh values: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden)) in
  /// registration order (PyTorch's reset_parameters).
  void reset_parameters(Rng& rng);
  std::string extra_repr() const override;

  int64_t input_size() const { return input_size_; }
  int64_t hidden_size() const { return hidden_size_; }
  bool has_bias() const { return bias_ih.defined(); }
  RnnMode mode() const { return mode_; }

  Var weight_ih;
  Var weight_hh;
  Var bias_ih;  // undefined without bias
  Var bias_hh;

 protected:
  RNNCellBase(RnnMode mode, const char* name, int64_t input_size, int64_t hidden_size, Rng& rng,
              bool bias, Dtype dtype);
  /// input [B, input_size] or unbatched [input_size]; a state [B, hidden] or [hidden]
  /// (undefined: zeros). Returns the input as [B, I], the states as [B, H], and whether the
  /// input was unbatched. ShapeError / DtypeError naming the cell otherwise.
  struct Prepared {
    Var x, h, c;
    bool unbatched;
  };
  Prepared prepare(const Var& input, const Var& h, const Var& c) const;
  /// One step of RNNCell / GRUCell: h'.
  Var forward_h(const Var& input, const Var& hx);

  RnnMode mode_;
  int64_t input_size_;
  int64_t hidden_size_;
};

/// torch.nn.RNNCell: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu).
class RNNCell : public RNNCellBase {
 public:
  /// `nonlinearity` "tanh" or "relu" (an Error otherwise).
  RNNCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias = true,
          const std::string& nonlinearity = "tanh", Dtype dtype = f32);
  /// input [B, input_size] or [input_size], hx [B, hidden] or [hidden] (zeros when
  /// undefined); returns h'.
  Var forward(const Var& input, const Var& hx = {});
  Var operator()(const Var& input, const Var& hx = {}) { return forward(input, hx); }
  std::string type_name() const override { return "RNNCell"; }
  std::string nonlinearity() const { return mode_ == RnnMode::rnn_relu ? "relu" : "tanh"; }
};

/// torch.nn.LSTMCell: gates i, f, g, o = chunks of x W_ih^T + b_ih + h W_hh^T + b_hh;
/// c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c').
class LSTMCell : public RNNCellBase {
 public:
  LSTMCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias = true, Dtype dtype = f32);
  /// input [B, input_size] or [input_size], hx = (h, c) each [B, hidden] or [hidden] (zeros
  /// when not given); returns (h', c') as LibTorch's LSTMCell.
  std::tuple<Var, Var> forward(const Var& input, std::optional<std::tuple<Var, Var>> hx = {});
  std::tuple<Var, Var> operator()(const Var& input, std::optional<std::tuple<Var, Var>> hx = {}) {
    return forward(input, std::move(hx));
  }
  std::string type_name() const override { return "LSTMCell"; }
};

/// torch.nn.GRUCell: r, z = sigmoid of the first two chunks of x W_ih^T + b_ih +
/// h W_hh^T + b_hh; n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) n + z h.
class GRUCell : public RNNCellBase {
 public:
  GRUCell(int64_t input_size, int64_t hidden_size, Rng& rng, bool bias = true, Dtype dtype = f32);
  /// As RNNCell::forward.
  Var forward(const Var& input, const Var& hx = {});
  Var operator()(const Var& input, const Var& hx = {}) { return forward(input, hx); }
  std::string type_name() const override { return "GRUCell"; }
};

/// The arguments of torch.nn.LSTM / GRU after input_size and hidden_size, with PyTorch's
/// defaults (as LibTorch's LSTMOptions): `LSTMOptions{.num_layers = 2, .batch_first = true}`.
struct RecurrentOptions {
  int64_t num_layers = 1;
  bool bias = true;
  /// Input and output as [B, T, features] (h_n and c_n stay [layers * directions, B, H]).
  bool batch_first = false;
  /// Dropout on the outputs of every layer but the last, while training.
  double dropout = 0.0;
  bool bidirectional = false;
  /// LSTM only (an Error for a GRU, as PyTorch): when positive (below hidden_size), every
  /// h_t is projected to proj_size features by `weight_hr_l{k}` [proj_size, hidden], so the
  /// output, h_0 / h_n and weight_hh's columns have proj_size features; c stays hidden.
  int64_t proj_size = 0;
};
using LSTMOptions = RecurrentOptions;
using GRUOptions = RecurrentOptions;

/// torch.nn.RNN's arguments: RecurrentOptions' and `nonlinearity` ("tanh" or "relu").
struct RNNOptions {
  int64_t num_layers = 1;
  std::string nonlinearity = "tanh";
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;
  bool bidirectional = false;
};

/// What RNN, LSTM and GRU share (PyTorch's RNNBase). For layer k and direction d,
/// parameters `weight_ih_l{k}` [G * hidden, k == 0 ? input : directions * hidden],
/// `weight_hh_l{k}` [G * hidden, hidden], `bias_ih_l{k}`, `bias_hh_l{k}` [G * hidden], with
/// the suffix `_reverse` for the backward direction, registered in PyTorch's order (layer,
/// direction, then ih / hh weights, ih / hh biases, then an LSTM's `weight_hr_l{k}` with
/// proj_size). Input [T, B, input] ([B, T, input] with batch_first) or unbatched
/// [T, input]; output [T, B, directions * H_out] (same layout as the input); final states
/// [layers * directions, B, H_out] (unbatched: without B), c_n with hidden; H_out is
/// proj_size when positive, else hidden (and it replaces hidden in weight_hh and in the
/// input of layers past the first).
class RNNBase : public Module {
 public:
  /// Draws fresh values: every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden)) in
  /// registration order.
  void reset_parameters(Rng& rng);
  std::string extra_repr() const override;

  int64_t input_size() const { return input_size_; }
  int64_t hidden_size() const { return hidden_size_; }
  int64_t num_layers() const { return opt_.num_layers; }
  bool has_bias() const { return opt_.bias; }
  bool batch_first() const { return opt_.batch_first; }
  double dropout() const { return opt_.dropout; }
  bool bidirectional() const { return opt_.bidirectional; }
  int64_t proj_size() const { return opt_.proj_size; }
  RnnMode mode() const { return mode_; }
  /// The generator of the dropout between layers (seeded from the constructor's Rng when
  /// dropout > 0): save and restore its state to resume a run bit for bit.
  Rng& dropout_rng() { return dropout_rng_; }

  /// The recurrence with `weights` in place of the module's parameters (same order and
  /// shapes as `parameters()`), as torch.func.functional_call: for gradchecks with respect to
  /// the weights, weight sharing or a reparametrization. Returns (output, h_n, c_n), c_n only
  /// for LSTM; h0 / c0 undefined: zeros. ShapeError for a wrong count or shape; Error for a
  /// c0 given to an RNN or GRU (no cell state).
  std::tuple<Var, Var, Var> forward_with(const std::vector<Var>& weights, const Var& input,
                                         const Var& h0 = {}, const Var& c0 = {});

 protected:
  RNNBase(RnnMode mode, const char* name, int64_t input_size, int64_t hidden_size, Rng& rng,
          const RecurrentOptions& options, Dtype dtype);
  /// The whole recurrence: (output, h_n, c_n); c0 and c_n only for LSTM (h0 / c0 undefined:
  /// zeros).
  std::tuple<Var, Var, Var> run(const Var& input, const Var& h0, const Var& c0) {
    return run(weights_, input, h0, c0);
  }

 private:
  struct Weights {
    Var w_ih, w_hh, b_ih, b_hh, w_hr;  // w_hr: with proj_size only
  };
  std::tuple<Var, Var, Var> run(const std::vector<Weights>& weights, const Var& input,
                                const Var& h0, const Var& c0);
  void check_state(const Var& s, const char* what, int64_t batch, bool unbatched,
                   int64_t features) const;

  RnnMode mode_;
  const char* name_;
  int64_t input_size_;
  int64_t hidden_size_;
  RecurrentOptions opt_;
  std::vector<Weights> weights_;  // layer-major, then direction
  Rng dropout_rng_;
};

/// RNN and GRU: one state, forward(input, hx) -> (output, h_n).
class HiddenStateRNN : public RNNBase {
 public:
  /// (output, h_n); hx is h_0 [layers * directions, B, hidden] (zeros when undefined).
  std::tuple<Var, Var> forward(const Var& input, const Var& hx = {});
  std::tuple<Var, Var> operator()(const Var& input, const Var& hx = {}) {
    return forward(input, hx);
  }

 protected:
  using RNNBase::RNNBase;
};

/// torch.nn.RNN: a stack of tanh (or relu) RNN layers.
class RNN : public HiddenStateRNN {
 public:
  RNN(int64_t input_size, int64_t hidden_size, Rng& rng, const RNNOptions& options = {},
      Dtype dtype = f32);
  std::string type_name() const override { return "RNN"; }
};

/// torch.nn.LSTM.
class LSTM : public RNNBase {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, Rng& rng, const LSTMOptions& options = {},
       Dtype dtype = f32);
  /// (output, (h_n, c_n)); hx = (h_0, c_0), each [layers * directions, B, hidden] (zeros when
  /// not given).
  std::tuple<Var, std::tuple<Var, Var>> forward(const Var& input,
                                                std::optional<std::tuple<Var, Var>> hx = {});
  std::tuple<Var, std::tuple<Var, Var>> operator()(const Var& input,
                                                   std::optional<std::tuple<Var, Var>> hx = {}) {
    return forward(input, std::move(hx));
  }
  std::string type_name() const override { return "LSTM"; }
};

/// torch.nn.GRU.
class GRU : public HiddenStateRNN {
 public:
  GRU(int64_t input_size, int64_t hidden_size, Rng& rng, const GRUOptions& options = {},
      Dtype dtype = f32);
  std::string type_name() const override { return "GRU"; }
};

}  // namespace tg
