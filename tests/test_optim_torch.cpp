// tapegrad's optimizers, schedulers and clipping against torch.optim (where
// /usr/bin/python3 can import torch): the same 20 steps from the same initial values.

#include <catch2/catch.hpp>

#include <functional>

#include "models/npz.hpp"
#include "models_test_util.hpp"
#include "ops/activation.hpp"
#include "ops/loss.hpp"
#include "ops/matmul.hpp"
#include "optim/optim.hpp"

namespace {
using OptPtr = std::unique_ptr<tg::Optimizer>;
using MakeOpt = std::function<OptPtr(std::vector<tg::Var>)>;
}  // namespace

namespace {

// One optimizer configuration run in both tapegrad and PyTorch.
struct OracleConfig {
  std::string name;
  MakeOpt make;
  std::function<std::unique_ptr<tg::LrScheduler>(tg::Optimizer&)> schedule;
  double clip_norm = 0.0;
  double clip_value = 0.0;
  std::string torch;  // Python: (optimizer, scheduler or None) from params `ps`
};

std::vector<OracleConfig> oracle_configs() {
  using S = std::unique_ptr<tg::LrScheduler>;
  return {
      {"sgd", [](auto p) { return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.1}); },
       nullptr, 0, 0, "torch.optim.SGD(ps, lr=0.1), None"},
      {"sgd_momentum",
       [](auto p) {
         return std::make_unique<tg::SGD>(
             p, tg::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
       },
       nullptr, 0, 0,
       "torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01), None"},
      {"sgd_nesterov",
       [](auto p) {
         return std::make_unique<tg::SGD>(
             p, tg::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
       },
       nullptr, 0, 0,
       "torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True), None"},
      {"adam", [](auto p) { return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.01}); },
       nullptr, 0, 0, "torch.optim.Adam(ps, lr=0.01), None"},
      {"adam_amsgrad_wd",
       [](auto p) {
         return std::make_unique<tg::Adam>(
             p,
             tg::AdamOptions{
                 .lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.01, .amsgrad = true});
       },
       nullptr, 0, 0,
       "torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True), None"},
      {"adamw",
       [](auto p) {
         return std::make_unique<tg::AdamW>(p, tg::AdamWOptions{.lr = 0.01, .weight_decay = 0.1});
       },
       nullptr, 0, 0, "torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1), None"},
      {"adamw_amsgrad",
       [](auto p) {
         return std::make_unique<tg::AdamW>(p, tg::AdamWOptions{.lr = 0.01, .amsgrad = true});
       },
       nullptr, 0, 0, "torch.optim.AdamW(ps, lr=0.01, amsgrad=True), None"},
      {"rmsprop",
       [](auto p) { return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01}); },
       nullptr, 0, 0, "torch.optim.RMSprop(ps, lr=0.01), None"},
      {"rmsprop_centered",
       [](auto p) {
         return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01,
                                                                    .alpha = 0.9,
                                                                    .weight_decay = 0.01,
                                                                    .momentum = 0.5,
                                                                    .centered = true});
       },
       nullptr, 0, 0,
       "torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, weight_decay=0.01, momentum=0.5, "
       "centered=True), None"},
      {"adagrad",
       [](auto p) {
         return std::make_unique<tg::Adagrad>(p,
                                              tg::AdagradOptions{.lr = 0.1,
                                                                 .lr_decay = 0.01,
                                                                 .weight_decay = 0.01,
                                                                 .initial_accumulator_value = 0.1});
       },
       nullptr, 0, 0,
       "torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.01, "
       "initial_accumulator_value=0.1), None"},
      {"sgd_steplr",
       [](auto p) {
         return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.1, .momentum = 0.9});
       },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::StepLR>(o, 5, 0.5); }, 0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.StepLR(o, 5, 0.5)))("
       "torch.optim.SGD(ps, lr=0.1, momentum=0.9))"},
      {"adam_cosine",
       [](auto p) { return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.02}); },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::CosineAnnealingLR>(o, 15, 0.001); },
       0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.CosineAnnealingLR(o, 15, 0.001)))("
       "torch.optim.Adam(ps, lr=0.02))"},
      {"sgd_exp_clipnorm",
       [](auto p) { return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.2}); },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::ExponentialLR>(o, 0.9); }, 0.5, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.ExponentialLR(o, 0.9)))("
       "torch.optim.SGD(ps, lr=0.2))"},
      {"adam_warmup_cosine",
       [](auto p) { return std::make_unique<tg::Adam>(p, tg::AdamOptions{.lr = 0.02}); },
       [](tg::Optimizer& o) -> S {
         return std::make_unique<tg::LinearWarmup>(o, 5, 0.1,
                                                   std::make_unique<tg::CosineAnnealingLR>(o, 10));
       },
       0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.SequentialLR(o, ["
       "torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 5), "
       "torch.optim.lr_scheduler.CosineAnnealingLR(o, 10)], [5])))(torch.optim.Adam(ps, lr=0.02))"},
      {"rmsprop_clipvalue",
       [](auto p) { return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01}); },
       nullptr, 0, 0.05, "torch.optim.RMSprop(ps, lr=0.01), None"},
  };
}

}  // namespace

TEST_CASE("20 steps match PyTorch (torch.optim) to 1e-5 in f32 for every optimizer") {
  if (!tgtest::python_has("torch")) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch; the PyTorch oracle did not run");
    return;
  }
  const auto dir = tgtest::temp_dir("torch_oracle");
  // A 3-4-2 tanh network on fixed data; initial values shared through init.npz.
  tg::Rng rng(31337);
  const std::vector<std::string> names = {"W1", "b1", "W2", "b2"};
  tg::NpzArchive init;
  init.put("W1", tg::randn({4, 3}, rng));
  init.put("b1", tg::randn({4}, rng));
  init.put("W2", tg::randn({2, 4}, rng));
  init.put("b2", tg::randn({2}, rng));
  init.put("X", tg::randn({5, 3}, rng));
  init.put("Y", tg::randn({5, 2}, rng));
  init.save((dir / "init.npz").string());

  const auto configs = oracle_configs();
  std::string script = R"PY(
import os, numpy as np, torch
import torch.nn.functional as F
torch.set_num_threads(1)
d = os.path.dirname(os.path.abspath(__file__))
z = np.load(os.path.join(d, "init.npz"))
X, Y = torch.tensor(z["X"]), torch.tensor(z["Y"])
configs = {
)PY";
  for (const auto& c : configs)
    script += "  '" + c.name + "': (lambda ps: (" + c.torch + "), " + std::to_string(c.clip_norm) +
              ", " + std::to_string(c.clip_value) + "),\n";
  script += R"PY(}
for name, (make, clip_norm, clip_value) in configs.items():
    ps = [torch.tensor(z[k], requires_grad=True) for k in ("W1", "b1", "W2", "b2")]
    opt, sched = make(ps)
    for step in range(20):
        opt.zero_grad()
        loss = F.mse_loss(F.linear(torch.tanh(F.linear(X, ps[0], ps[1])), ps[2], ps[3]), Y)
        loss.backward()
        if clip_norm > 0: torch.nn.utils.clip_grad_norm_(ps, clip_norm)
        if clip_value > 0: torch.nn.utils.clip_grad_value_(ps, clip_value)
        opt.step()
        if sched is not None: sched.step()
    np.savez(os.path.join(d, "torch_" + name + ".npz"),
             **{k: p.detach().numpy() for k, p in zip(("W1", "b1", "W2", "b2"), ps)})
print("ok")
)PY";
  const int rc = tgtest::run_python(dir, "oracle.py", script);
  INFO(tgtest::slurp(dir / "oracle.py.log"));
  REQUIRE(rc == 0);

  for (const auto& c : configs) {
    INFO(c.name);
    std::vector<tg::Var> ps;
    for (const auto& n : names) ps.push_back(tg::param(init.tensor(n)));
    const tg::Var x = tg::constant(init.tensor("X")), y = tg::constant(init.tensor("Y"));
    auto opt = c.make(ps);
    auto sched = c.schedule ? c.schedule(*opt) : nullptr;
    for (int step = 0; step < 20; ++step) {
      opt->zero_grad();
      tg::mse_loss(tg::linear(tg::tanh(tg::linear(x, ps[0], ps[1])), ps[2], ps[3]), y).backward();
      if (c.clip_norm > 0) tg::clip_grad_norm(ps, c.clip_norm);
      if (c.clip_value > 0) tg::clip_grad_value(ps, c.clip_value);
      opt->step();
      if (sched) sched->step();
    }
    const auto torch_result = tg::NpzArchive::load((dir / ("torch_" + c.name + ".npz")).string());
    for (size_t i = 0; i < names.size(); ++i) {
      const tg::Tensor want = torch_result.tensor(names[i]);
      REQUIRE(want.dtype() == tg::f32);
      const double diff = tg::max_abs_diff(ps[i].value(), want);
      INFO(names[i] << ": max |tapegrad - torch| = " << diff);
      CHECK(diff <= 1e-5);
      // The run moved the parameters (the comparison is not trivially of initial values).
      CHECK(tg::max_abs_diff(want, init.tensor(names[i])) > 1e-3);
    }
  }
}
