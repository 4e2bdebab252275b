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
#include "torch_oracle.hpp"

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
      // maximize: every optimizer steps with -grad, before weight decay.
      {"sgd_nesterov_maximize",
       [](auto p) {
         return std::make_unique<tg::SGD>(p, tg::SGDOptions{.lr = 0.01,
                                                            .momentum = 0.5,
                                                            .weight_decay = 0.01,
                                                            .nesterov = true,
                                                            .maximize = true});
       },
       nullptr, 0, 0,
       "torch.optim.SGD(ps, lr=0.01, momentum=0.5, weight_decay=0.01, nesterov=True, "
       "maximize=True), None"},
      {"adam_amsgrad_maximize",
       [](auto p) {
         return std::make_unique<tg::Adam>(
             p,
             tg::AdamOptions{.lr = 0.01, .weight_decay = 0.01, .amsgrad = true, .maximize = true});
       },
       nullptr, 0, 0,
       "torch.optim.Adam(ps, lr=0.01, weight_decay=0.01, amsgrad=True, maximize=True), None"},
      {"adamw_maximize",
       [](auto p) {
         return std::make_unique<tg::AdamW>(
             p, tg::AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .maximize = true});
       },
       nullptr, 0, 0, "torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, maximize=True), None"},
      {"rmsprop_centered_maximize",
       [](auto p) {
         return std::make_unique<tg::RMSprop>(p, tg::RMSpropOptions{.lr = 0.01,
                                                                    .weight_decay = 0.01,
                                                                    .momentum = 0.5,
                                                                    .centered = true,
                                                                    .maximize = true});
       },
       nullptr, 0, 0,
       "torch.optim.RMSprop(ps, lr=0.01, weight_decay=0.01, momentum=0.5, centered=True, "
       "maximize=True), None"},
      {"adagrad_maximize",
       [](auto p) {
         return std::make_unique<tg::Adagrad>(
             p, tg::AdagradOptions{.lr = 0.05, .weight_decay = 0.01, .maximize = true});
       },
       nullptr, 0, 0, "torch.optim.Adagrad(ps, lr=0.05, weight_decay=0.01, maximize=True), None"},
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
      // Parameter groups: weights (W1, W2) and biases (b1, b2) with their own options, and
      // schedulers that scale each group from its own rate.
      {"sgd_groups_steplr",
       [](auto p) {
         return std::make_unique<tg::SGD>(
             std::vector<tg::ParamGroup>{
                 {{p[0], p[2]}, {}},
                 {{p[1], p[3]}, {{"lr", 0.05}, {"weight_decay", 0.0}, {"momentum", 0.5}}}},
             tg::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
       },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::StepLR>(o, 5, 0.5); }, 0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.StepLR(o, 5, 0.5)))(torch.optim.SGD(["
       "{'params': [ps[0], ps[2]]}, {'params': [ps[1], ps[3]], 'lr': 0.05, 'weight_decay': 0.0, "
       "'momentum': 0.5}], lr=0.1, momentum=0.9, weight_decay=0.01))"},
      {"adam_groups_cosine",
       [](auto p) {
         return std::make_unique<tg::Adam>(
             std::vector<tg::ParamGroup>{
                 {{p[0], p[2]}, {{"beta1", 0.8}}},
                 {{p[1], p[3]}, {{"lr", 0.005}, {"weight_decay", 0.0}, {"beta2", 0.99}}}},
             tg::AdamOptions{.lr = 0.01, .weight_decay = 0.01});
       },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::CosineAnnealingLR>(o, 15, 0.001); },
       0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.CosineAnnealingLR(o, 15, 0.001)))("
       "torch.optim.Adam([{'params': [ps[0], ps[2]], 'betas': (0.8, 0.999)}, "
       "{'params': [ps[1], ps[3]], 'lr': 0.005, 'weight_decay': 0.0, 'betas': (0.9, 0.99)}], "
       "lr=0.01, weight_decay=0.01))"},
      {"adamw_groups_onecycle",
       [](auto p) {
         return std::make_unique<tg::AdamW>(
             std::vector<tg::ParamGroup>{{{p[0], p[2]}, {}},
                                         {{p[1], p[3]}, {{"weight_decay", 0.0}}}},
             tg::AdamWOptions{.lr = 0.01, .weight_decay = 0.1});
       },
       [](tg::Optimizer& o) -> S {
         return std::make_unique<tg::OneCycleLR>(o, std::vector<double>{0.05, 0.02}, 20,
                                                 tg::OneCycleOptions{.pct_start = 0.25});
       },
       0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.OneCycleLR(o, [0.05, 0.02], total_steps=20, "
       "pct_start=0.25, cycle_momentum=False)))(torch.optim.AdamW([{'params': [ps[0], ps[2]]}, "
       "{'params': [ps[1], ps[3]], 'weight_decay': 0.0}], lr=0.01, weight_decay=0.1))"},
      {"rmsprop_groups_warmup",
       [](auto p) {
         return std::make_unique<tg::RMSprop>(
             std::vector<tg::ParamGroup>{
                 {{p[0], p[2]}, {}},
                 {{p[1], p[3]}, {{"alpha", 0.9}, {"momentum", 0.5}, {"eps", 1e-6}}}},
             tg::RMSpropOptions{.lr = 0.01});
       },
       [](tg::Optimizer& o) -> S { return std::make_unique<tg::LinearWarmup>(o, 5, 0.1); }, 0, 0,
       "(lambda o: (o, torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 5)))("
       "torch.optim.RMSprop([{'params': [ps[0], ps[2]]}, {'params': [ps[1], ps[3]], "
       "'alpha': 0.9, 'momentum': 0.5, 'eps': 1e-6}], lr=0.01))"},
      {"adagrad_groups",
       [](auto p) {
         return std::make_unique<tg::Adagrad>(
             std::vector<tg::ParamGroup>{{{p[0], p[2]}, {{"lr_decay", 0.01}}},
                                         {{p[1], p[3]}, {{"lr", 0.05}, {"eps", 1e-6}}}},
             tg::AdagradOptions{.lr = 0.1, .weight_decay = 0.01, .initial_accumulator_value = 0.5});
       },
       nullptr, 0, 0,
       "torch.optim.Adagrad([{'params': [ps[0], ps[2]], 'lr_decay': 0.01}, "
       "{'params': [ps[1], ps[3]], 'lr': 0.05, 'eps': 1e-6}], lr=0.1, "
       "weight_decay=0.01, initial_accumulator_value=0.5), None"},
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

namespace {
// Every group's rate after construction and after each step, as "lr <g0> <g1> ..." rows.
std::vector<double> lr_rows(tg::Optimizer& opt, int steps, const std::function<void(int)>& step) {
  std::vector<double> out;
  for (int k = 0; k <= steps; ++k) {
    if (k > 0) step(k - 1);
    for (size_t g = 0; g < opt.num_groups(); ++g) out.push_back(opt.lr(g));
  }
  return out;
}

const char* kLrRows = R"PY(
import torch
from torch.optim import lr_scheduler as L
def groups():
    return torch.optim.SGD([{'params': [torch.zeros(1, requires_grad=True)]},
                            {'params': [torch.zeros(1, requires_grad=True)], 'lr': 0.02}], lr=0.1)
def rows(name, opt, steps, step):
    out = []
    for k in range(steps + 1):
        if k > 0:
            opt.step()
            step(k - 1)
        out += [g['lr'] for g in opt.param_groups]
    print(name, " ".join(repr(float(v)) for v in out))
)PY";
}  // namespace

TEST_CASE("ReduceLROnPlateau and OneCycleLR follow torch.optim.lr_scheduler, per group") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not installed");
    return;
  }
  const std::vector<double> metric = {1.0, 0.9, 0.95, 0.95, 0.96, 0.9,  0.89999, 0.97,
                                      0.5, 0.5, 0.5,  0.5,  0.5,  0.49, 0.6,     0.6,
                                      0.6, 0.6, 0.6,  0.6,  0.7,  0.8,  0.9,     0.95};
  std::string py = std::string(kLrRows) + "metric = [";
  for (double m : metric) py += std::to_string(m) + ", ";
  py += "]\n";
  struct Case {
    std::string name;
    tg::ReduceLROnPlateauOptions options;
    std::string torch;
  };
  const std::vector<Case> plateau = {
      {"plateau_default", {.patience = 2}, "patience=2"},
      {"plateau_max_abs",
       {.mode = "max",
        .factor = 0.5,
        .patience = 1,
        .threshold = 0.01,
        .threshold_mode = "abs",
        .cooldown = 2},
       "mode='max', factor=0.5, patience=1, threshold=0.01, threshold_mode='abs', cooldown=2"},
      {"plateau_min_lrs",
       {.factor = 0.3, .patience = 0, .threshold = 0.05, .min_lrs = {0.005, 0.001}},
       "factor=0.3, patience=0, threshold=0.05, min_lr=[0.005, 0.001]"},
      {"plateau_min_lr_eps",
       {.factor = 0.5, .patience = 0, .min_lr = 0.01, .eps = 0.004},
       "factor=0.5, patience=0, min_lr=0.01, eps=0.004"},
  };
  for (const auto& c : plateau)
    py += "o = groups(); s = L.ReduceLROnPlateau(o, " + c.torch + ")\nrows('" + c.name +
          "', o, len(metric), lambda k: s.step(metric[k]))\n";
  struct Cycle {
    std::string name;
    int64_t total;
    std::vector<double> max_lrs;
    tg::OneCycleOptions options;
    std::string torch;
  };
  const std::vector<Cycle> cycles = {
      {"onecycle_cos", 20, {1.0, 0.3}, {}, "[1.0, 0.3], total_steps=20"},
      {"onecycle_linear",
       17,
       {0.5, 0.5},
       {.pct_start = 0.4,
        .anneal_strategy = tg::Anneal::linear,
        .div_factor = 10.0,
        .final_div_factor = 100.0},
       "0.5, total_steps=17, pct_start=0.4, anneal_strategy='linear', div_factor=10.0, "
       "final_div_factor=100.0"},
      {"onecycle_three_phase",
       30,
       {0.2, 0.8},
       {.pct_start = 0.25, .three_phase = true},
       "[0.2, 0.8], total_steps=30, pct_start=0.25, three_phase=True"},
  };
  for (const auto& c : cycles)
    py += "o = groups(); s = L.OneCycleLR(o, " + c.torch + ", cycle_momentum=False)\nrows('" +
          c.name + "', o, " + std::to_string(c.total) + ", lambda k: s.step())\n";
  const auto want = tgtest::run_python(py);

  auto make_opt = [](std::vector<tg::Var>& ps) {
    ps = {tg::param(tg::zeros({1})), tg::param(tg::zeros({1}))};
    return tg::SGD(std::vector<tg::ParamGroup>{{{ps[0]}, {}}, {{ps[1]}, {{"lr", 0.02}}}},
                   tg::SGDOptions{.lr = 0.1});
  };
  for (const auto& c : plateau) {
    INFO(c.name);
    std::vector<tg::Var> ps;
    tg::SGD opt = make_opt(ps);
    tg::ReduceLROnPlateau sched(opt, c.options);
    const auto got = lr_rows(opt, static_cast<int>(metric.size()),
                             [&](int k) { sched.step(metric[static_cast<size_t>(k)]); });
    tgtest::check_close(got, want.at(c.name), 1e-15);
  }
  for (const auto& c : cycles) {
    INFO(c.name);
    std::vector<tg::Var> ps;
    tg::SGD opt = make_opt(ps);
    tg::OneCycleLR sched(opt, c.max_lrs, c.total, c.options);
    const auto got = lr_rows(opt, static_cast<int>(c.total), [&](int) { sched.step(); });
    auto expected = want.at(c.name);
    // Step total_steps extrapolates past the cycle; a negative rate (linear) is clamped to 0.
    for (double& v : expected) v = std::max(v, 0.0);
    tgtest::check_close(got, expected, 1e-14);
    CHECK_THROWS_AS(sched.step(), tg::Error);  // past total_steps, as PyTorch
  }
}
