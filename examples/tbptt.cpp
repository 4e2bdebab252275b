// Truncated backpropagation through time: an LSTM reads one long stream in chunks of 20 steps,
// carries its state (h, c) from chunk to chunk, and cuts the graph there with detach(), so each
// backward covers one chunk while the state still remembers what came before. Gradients are
// clipped with clip_grad_norm. The task is a delayed copy: output at step t the input of step
// t - 3, which needs memory, also across the cut at each chunk boundary.
#include <tapegrad/tapegrad.hpp>

#include <cstdio>
#include <tuple>

struct Copier : tg::Module {  // LSTM -> Linear at every step
  tg::LSTM lstm;
  tg::Linear head;
  Copier(int64_t hidden, tg::Rng& rng) : lstm(1, hidden, rng), head(hidden, 1, rng) {
    register_module("lstm", lstm);
    register_module("head", head);
  }
  // x [T, B, 1] -> (predictions [T, B, 1], final state).
  std::tuple<tg::Var, std::tuple<tg::Var, tg::Var>> forward(
      const tg::Var& x, std::optional<std::tuple<tg::Var, tg::Var>> state) {
    auto [out, next] = lstm(x, state);
    const auto& s = out.shape();
    tg::Var y = tg::reshape(head(tg::reshape(out, {s[0] * s[1], s[2]})), {s[0], s[1], 1});
    return {y, next};
  }
};

int main() {
  const int64_t delay = 3, chunk = 20, batch = 16, chunks = 400;
  tg::Rng rng(7);
  Copier net(24, rng);
  tg::Adam opt(net.parameters(), {.lr = 1e-2});

  // One long stream per batch column: x uniform in [-1, 1], target x delayed by `delay`.
  const int64_t length = chunk * chunks;
  tg::Tensor stream = tg::rand({length, batch, 1}, rng, -1.0, 1.0);
  tg::Tensor target = tg::zeros({length, batch, 1});
  {
    const float* x = stream.data<float>();
    float* y = target.data<float>();
    for (int64_t i = delay * batch; i < length * batch; ++i) y[i] = x[i - delay * batch];
  }

  std::optional<std::tuple<tg::Var, tg::Var>> state;  // none: zeros at the start
  double first = 0, last = 0;
  const int64_t window = 20;  // chunks averaged for the reported losses
  for (int64_t k = 0; k < chunks; ++k) {
    const tg::Var x = tg::narrow(tg::constant(stream), 0, k * chunk, chunk);
    const tg::Var y = tg::narrow(tg::constant(target), 0, k * chunk, chunk);
    opt.zero_grad();
    auto [pred, next] = net.forward(x, state);
    tg::Var loss = tg::mse_loss(pred, y);
    loss.backward();                            // through this chunk only
    tg::clip_grad_norm(net.parameters(), 1.0);  // rescale when the norm exceeds 1
    opt.step();
    // Carry the state, cut from the graph: the next backward stops here.
    state = std::tuple{std::get<0>(next).detach(), std::get<1>(next).detach()};
    if (k < window) first += loss.item() / window;
    if (k >= chunks - window) last += loss.item() / window;
  }
  std::printf("delayed copy (delay %lld, chunks of %lld steps): mse %.4f -> %.4f\n",
              static_cast<long long>(delay), static_cast<long long>(chunk), first, last);
  // The target's variance is 1/3: a model without memory stays near it.
  return last < 0.1 * first ? 0 : 1;
}
