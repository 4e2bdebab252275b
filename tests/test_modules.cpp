// Module buffers, ModuleList / ModuleDict, PyTorch state-dict names (both directions through
// .npz with PyTorch as the oracle).

#include <catch2/catch.hpp>

#include "models/checkpoint.hpp"
#include "models/sequential.hpp"
#include "models_test_util.hpp"
#include "torch_oracle.hpp"

namespace {

std::vector<double> values_of(const tg::Tensor& t) {
  const tg::Tensor d = t.to(tg::f64);
  return {d.data<double>(), d.data<double>() + d.numel()};
}

// A custom module with a registered float buffer, an int64 buffer and a non-persistent one.
struct Shift : tg::Module {
  Shift() {
    register_buffer("shift", tg::zeros(tg::Shape{2}));
    register_buffer("count", tg::tensor({0}, tg::Shape{}, tg::i64));
    register_buffer("scratch", tg::zeros(tg::Shape{3}), /*persistent=*/false);
  }
  tg::Var forward(const tg::Var& x) const { return x + tg::constant(buffer("shift")); }
  std::string type_name() const override { return "Shift"; }
};

// features = ModuleList[Linear(3, 4), Linear(4, 2)], shift = Shift; forward takes two inputs.
struct Net : tg::Module {
  explicit Net(tg::Rng& rng) {
    register_module("features", features);
    features.emplace_back<tg::Linear>(3, 4, rng);
    features.emplace_back<tg::Linear>(4, 2, rng);
    register_module("shift", shift);
  }
  tg::Var forward(const tg::Var& x, const tg::Var& z) {
    tg::Var h = tg::tanh(features.at<tg::Linear>(0)(x));
    return shift.forward(features.at<tg::Linear>(1)(h)) * z;
  }
  std::string type_name() const override { return "Net"; }

  tg::ModuleList features;
  Shift shift;
};

const char* kTorchNet = R"PY(
import numpy as np
import torch.nn as nn
class Shift(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.zeros(2))
        self.register_buffer("count", torch.tensor(0))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 2)])
        self.shift = Shift()
    def forward(self, x, z):
        h = torch.tanh(self.features[0](x))
        return (self.features[1](h) + self.shift.shift) * z
x = pattern([5, 3], 0.3, 1.5, torch.float32)
z = pattern([5, 1], 1.1, 1.0, torch.float32)
)PY";

}  // namespace

TEST_CASE("buffers: registered, named with dots, not parameters, converted by to(dtype)") {
  tg::Rng rng(3);
  Net net(rng);
  const auto named = net.named_buffers();
  REQUIRE(named.size() == 3);
  CHECK(named[0].first == "shift.shift");
  CHECK(named[1].first == "shift.count");
  CHECK(named[2].first == "shift.scratch");
  CHECK(net.buffers().size() == 3);
  CHECK(net.shift.is_persistent_buffer("shift"));
  CHECK_FALSE(net.shift.is_persistent_buffer("scratch"));
  const auto params = net.named_parameters();
  REQUIRE(params.size() == 4);
  CHECK(params[0].first == "features.0.weight");
  CHECK(params[3].first == "features.1.bias");
  CHECK(net.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2);

  // Names are shared with parameters and children; bad names throw.
  CHECK_THROWS_AS(net.shift.register_buffer("shift", tg::zeros(tg::Shape{1})), tg::Error);
  CHECK_THROWS_AS(net.register_buffer("features", tg::zeros(tg::Shape{1})), tg::Error);
  CHECK_THROWS_AS(net.register_buffer("a.b", tg::zeros(tg::Shape{1})), tg::Error);
  CHECK_THROWS_AS(net.shift.buffer("nope"), tg::Error);

  // An undefined buffer is a slot listed once it is set.
  tg::Tensor& late = net.register_buffer("late", tg::Tensor());
  CHECK(net.named_buffers().size() == 3);
  late = tg::full(tg::Shape{1}, 2.0);
  CHECK(net.named_buffers().size() == 4);
  CHECK(net.named_buffers()[0].first == "late");

  net.to(tg::f64);
  CHECK(net.shift.buffer("shift").dtype() == tg::f64);
  CHECK(net.shift.buffer("scratch").dtype() == tg::f64);
  CHECK(net.buffer("late").dtype() == tg::f64);
  CHECK(net.shift.buffer("count").dtype() == tg::i64);  // integer buffers keep their dtype
  for (const auto& p : net.parameters()) CHECK(p.dtype() == tg::f64);
}

TEST_CASE("train/eval propagate to every descendant, containers included") {
  tg::Rng rng(1);
  Net net(rng);
  net.eval();
  for (auto& [name, m] : net.named_modules()) CHECK_FALSE(m->is_training());
  net.train();
  for (auto& [name, m] : net.named_modules()) CHECK(m->is_training());
  CHECK(net.named_modules().size() == 5);  // "", features, features.0, features.1, shift
}

TEST_CASE("ModuleList: append, size, index, iteration, names 0, 1, ...") {
  tg::Rng rng(2);
  tg::ModuleList list(std::make_unique<tg::Linear>(2, 3, rng), std::make_unique<tg::Tanh>());
  list.emplace_back<tg::Linear>(3, 1, rng);
  CHECK(list.size() == 3);
  CHECK(list[0].type_name() == "Linear");
  CHECK(list[-1].type_name() == "Linear");
  CHECK(list[1].type_name() == "Tanh");
  CHECK_THROWS_AS(list[3], tg::IndexError);
  CHECK_THROWS_AS(list[-4], tg::IndexError);
  CHECK_THROWS_AS(list.at<tg::Linear>(1), tg::Error);
  CHECK_THROWS_AS(list.append(nullptr), tg::Error);
  std::vector<std::string> types;
  for (auto& m : list) types.push_back(m.type_name());
  CHECK(types == std::vector<std::string>{"Linear", "Tanh", "Linear"});
  std::vector<std::string> names;
  for (auto& [n, p] : list.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  // Layers in a list are called as the user likes.
  tg::Var x = tg::constant(tgtest::pattern(tg::Shape{4, 2}, 0.1).to(tg::f32));
  tg::Var y = x;
  for (auto& m : list) y = dynamic_cast<tg::Layer&>(m)(y);
  CHECK(y.shape() == tg::Shape{4, 1});
  CHECK(list.str().rfind("ModuleList(\n  (0): Linear(", 0) == 0);
}

TEST_CASE("ModuleDict: insert by name, lookup, insertion order") {
  tg::Rng rng(4);
  tg::ModuleDict dict;
  dict.emplace<tg::Linear>("proj", 2, 2, rng);
  dict.insert("act", std::make_unique<tg::ReLU>());
  dict.emplace<tg::Linear>("head", 2, 1, rng, false);
  CHECK(dict.size() == 3);
  CHECK(dict.keys() == std::vector<std::string>{"proj", "act", "head"});
  CHECK(dict.contains("act"));
  CHECK_FALSE(dict.contains("nope"));
  CHECK(dict["act"].type_name() == "ReLU");
  CHECK(dict.at<tg::Linear>("head").has_bias() == false);
  CHECK_THROWS_AS(dict["nope"], tg::IndexError);
  CHECK_THROWS_AS(dict.insert("act", std::make_unique<tg::ReLU>()), tg::Error);
  CHECK_THROWS_AS(dict.insert("a.b", std::make_unique<tg::ReLU>()), tg::Error);
  std::vector<std::string> order;
  for (const auto& [k, m] : dict) order.push_back(k + ":" + m->type_name());
  CHECK(order == std::vector<std::string>{"proj:Linear", "act:ReLU", "head:Linear"});
  std::vector<std::string> names;
  for (auto& [n, p] : dict.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"proj.weight", "proj.bias", "head.weight"});
}

TEST_CASE("persistent buffers are saved and loaded with the parameters, all or nothing") {
  const auto dir = tgtest::temp_dir("modules_buffers");
  const auto path = (dir / "net.npz").string();
  tg::Rng rng(5);
  Net a(rng);
  a.shift.buffer("shift") = tg::tensor({0.25, -0.5}, tg::Shape{2});
  a.shift.buffer("count") = tg::tensor({7}, tg::Shape{}, tg::i64);
  a.save(path);
  const auto archive = tg::NpzArchive::load(path);
  CHECK(archive.names() == std::vector<std::string>{"features.0.bias", "features.0.weight",
                                                    "features.1.bias", "features.1.weight",
                                                    "shift.count", "shift.shift"});

  tg::Rng rng2(6);
  Net b(rng2);
  const tg::Tensor shift_handle = b.shift.buffer("shift");  // a handle taken before loading
  b.load(path);
  CHECK(tg::equal(b.shift.buffer("shift"), a.shift.buffer("shift")));
  CHECK(tg::equal(shift_handle, a.shift.buffer("shift")));  // written in place
  CHECK(b.shift.buffer("count").dtype() == tg::i64);
  CHECK(values_of(b.shift.buffer("count")) == std::vector<double>{7});
  for (size_t i = 0; i < 4; ++i)
    CHECK(tg::equal(a.parameters()[i].value(), b.parameters()[i].value()));

  // f32 files load into an f64 model, buffers included; the int64 buffer stays int64.
  tg::Rng rng3(7);
  Net c(rng3);
  c.to(tg::f64);
  c.load(path);
  CHECK(c.shift.buffer("shift").dtype() == tg::f64);
  CHECK(values_of(c.shift.buffer("shift")) == std::vector<double>{0.25, -0.5});

  // Bad buffers: nothing changes, parameters nor buffers.
  auto expect_fails = [&](const tg::NpzArchive& bad, const std::string& what) {
    bad.save((dir / "bad.npz").string());
    tg::Rng r(8);
    Net m(r);
    m.shift.buffer("shift") = tg::tensor({3, 4}, tg::Shape{2});
    const auto before = tgtest::snapshot(m);
    try {
      m.load((dir / "bad.npz").string());
      FAIL("load did not throw");
    } catch (const tg::IoError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(what) != std::string::npos);
    }
    CHECK(tgtest::same_values(m, before));
    CHECK(values_of(m.shift.buffer("shift")) == std::vector<double>{3, 4});
  };
  auto missing = archive;
  missing.erase("shift.count");
  expect_fails(missing, "buffer 'shift.count' is missing");
  auto wrong_shape = archive;
  wrong_shape.put("shift.shift", tg::zeros(tg::Shape{3}));
  expect_fails(wrong_shape, "buffer 'shift.shift' has shape");
  auto wrong_type = archive;
  wrong_type.put("shift.count", tg::zeros(tg::Shape{}));
  expect_fails(wrong_type, "buffer 'shift.count' is stored as an array of <f4");
  auto lossy = archive;
  lossy.put("shift.shift", tg::zeros(tg::Shape{2}, tg::f64));
  expect_fails(lossy, "buffer 'shift.shift' is float64 in the file but float32");
  auto extra = archive;
  extra.put("shift.scratch", tg::zeros(tg::Shape{3}));  // not persistent: not in the state
  expect_fails(extra, "'shift.scratch' names no parameter or persistent buffer");
  // A bad parameter after good buffers changes no buffer either.
  auto bad_param = archive;
  bad_param.put("features.1.bias", tg::zeros(tg::Shape{5}));
  expect_fails(bad_param, "parameter 'features.1.bias' has shape");
}

TEST_CASE("state-dict names follow PyTorch: tapegrad <-> torch.nn through .npz") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not installed");
    return;
  }
  const auto dir = tgtest::temp_dir("modules_torch");
  const tg::Var x = tg::constant(tgtest::pattern(tg::Shape{5, 3}, 0.3, 1.5).to(tg::f32));
  const tg::Var z = tg::constant(tgtest::pattern(tg::Shape{5, 1}, 1.1).to(tg::f32));

  SECTION("tapegrad saves, torch loads") {
    tg::Rng rng(11);
    Net net(rng);
    net.shift.buffer("shift") = tg::tensor({0.125, -0.75}, tg::Shape{2});
    net.shift.buffer("count") = tg::tensor({42}, tg::Shape{}, tg::i64);
    const auto path = (dir / "from_tg.npz").string();
    net.save(path);
    const tg::Var y = net.forward(x, z);
    auto got =
        tgtest::run_python(std::string(tgtest::kPythonPrelude) + kTorchNet +
                           "net = Net()\n"
                           "d = np.load('" +
                           path +
                           "')\n"
                           "net.load_state_dict({k: torch.from_numpy(d[k]) for k in d.files})\n"
                           "emit('y', net(x, z))\n"
                           "emit('count', net.shift.count)\n"
                           "print('dtype', 1 if net.shift.count.dtype == torch.int64 else 0)\n");
    tgtest::check_close(values_of(y.value()), got["y"], 1e-5);
    CHECK(got["count"] == std::vector<double>{42});
    CHECK(got["dtype"] == std::vector<double>{1});
  }

  SECTION("torch saves its state_dict with numpy.savez, tapegrad loads") {
    const auto path = (dir / "from_torch.npz").string();
    auto got = tgtest::run_python(std::string(tgtest::kPythonPrelude) + kTorchNet +
                                  "torch.manual_seed(0)\n"
                                  "net = Net()\n"
                                  "net.shift.shift.copy_(torch.tensor([0.5, -0.25]))\n"
                                  "net.shift.count.fill_(9)\n"
                                  "np.savez('" +
                                  path +
                                  "', **{k: v.numpy() for k, v in net.state_dict().items()})\n"
                                  "emit('y', net(x, z))\n");
    tg::Rng rng(12);
    Net net(rng);
    net.load(path);
    CHECK(values_of(net.shift.buffer("count")) == std::vector<double>{9});
    tgtest::check_close(values_of(net.forward(x, z).value()), got["y"], 1e-5);
  }
}
