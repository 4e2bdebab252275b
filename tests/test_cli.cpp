// The `tapegrad` program end to end: JSON outputs of the seed experiment, a short training
// run with checkpoints that eval and --resume accept, and every bad input exiting 2.

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>

#include "data/dataset.hpp"
#include "graph/tensor.hpp"
#include "models/activations.hpp"
#include "models/npz.hpp"

namespace fs = std::filesystem;

namespace {

struct Result {
  int status;
  std::string out;  // stdout and stderr together
};

Result run(const std::string& args) {
  const std::string cmd = std::string(TAPEGRAD_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("tapegrad_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// The number after "key": inside the object that follows "section": (first match).
double json_number(const std::string& json, const std::string& section, const std::string& key) {
  const auto s = json.find("\"" + section + "\"");
  REQUIRE(s != std::string::npos);
  std::smatch m;
  const std::string rest = json.substr(s);
  REQUIRE(std::regex_search(rest, m, std::regex("\"" + key + "\": ([-0-9.eE+]+)")));
  return std::stod(m[1]);
}

bool have_fashion_mnist() { return fs::exists(tg::data::kFashionMnistDir); }

// tests/data: a checkpoint written by main 5623eec, when config.activation was an index into
// "relu, sigmoid, tanh" (2: tanh), and the CSV it was trained on (see tests/data/README.md).
const std::string kLegacyCsv = TAPEGRAD_SOURCE_DIR "/tests/data/legacy_tanh.csv";
const std::string kLegacyCheckpoint = TAPEGRAD_SOURCE_DIR "/tests/data/legacy_tanh_checkpoint.npz";

double last_test_accuracy(const tg::NpzArchive& a) {
  const auto h = a.tensor("history.test_accuracy").to_vector();
  REQUIRE(!h.empty());
  return h.back();
}

}  // namespace

TEST_CASE("tapegrad --help explains every subcommand", "[cli]") {
  const auto r = run("--help");
  CHECK(r.status == 0);
  for (const char* s : {"symmetry", "train", "eval", "inspect", "charlm"})
    CHECK_THAT(r.out, Catch::Contains(s));
  const auto t = run("train --help");
  CHECK(t.status == 0);
  for (const char* s : {"--hidden", "--optimizer", "--lr", "--epochs", "--batch", "--seed",
                        "--threads", "--resume", "--metrics", "--dropout", "--schedule", "--model"})
    CHECK_THAT(t.out, Catch::Contains(s));
  // --activation lists the registry's names.
  std::string names;
  for (const auto& n : tg::activation_names()) names += (names.empty() ? "" : ", ") + n;
  CHECK_THAT(t.out, Catch::Contains("hidden activation: " + names));
}

TEST_CASE("symmetry: identical units stay identical, random ones differ, backprop beats search",
          "[cli]") {
  TempDir dir;
  const auto r = run("symmetry --json " + (dir / "s.json") + " --out " + (dir / "pics"));
  INFO(r.out);
  REQUIRE(r.status == 0);
  const std::string j = slurp(dir / "s.json");
  CHECK(json_number(j, "constant_init", "max_hidden_unit_difference") == 0.0);
  CHECK(json_number(j, "random_init", "max_hidden_unit_difference") > 0.01);
  const double c_loss = json_number(j, "constant_init", "final_loss");
  const double r_loss = json_number(j, "random_init", "final_loss");
  CHECK(r_loss < c_loss);
  CHECK(json_number(j, "random_search", "draws") == 100000);
  CHECK(json_number(j, "backprop", "final_mse") < json_number(j, "random_search", "final_mse"));
  CHECK(json_number(j, "backprop", "seconds") < json_number(j, "random_search", "seconds"));
  CHECK_THAT(j, Catch::Contains("\"predictions\": [{\"x1\": 8, \"x2\": 4"));
  for (const char* f : {"loss_curves.svg", "hidden_units_constant.svg", "hidden_units_random.svg"})
    CHECK(fs::file_size(dir / ("pics/" + std::string(f))) > 1000);
  CHECK_THAT(r.out,
             Catch::Contains("(8, 4)") && Catch::Contains("(7, 1)") && Catch::Contains("(3, 3)"));
}

TEST_CASE("train one epoch on a slice, then eval, inspect and resume", "[cli][train]") {
  if (!have_fashion_mnist()) {
    WARN("SKIPPED: Fashion-MNIST is not installed (package dataset-fashion-mnist)");
    return;
  }
  TempDir dir;
  const std::string common =
      " --limit 1500 --test-limit 500 --batch 100 --hidden 32 --no-progress --seed 3";
  const auto a =
      run("train --epochs 1 --out " + (dir / "a") + " --metrics " + (dir / "m.jsonl") + common);
  INFO(a.out);
  REQUIRE(a.status == 0);
  const std::string metrics = slurp(dir / "m.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 1);
  for (const char* k :
       {"\"epoch\": 1", "\"train_loss\"", "\"train_accuracy\"", "\"test_accuracy\"", "\"seconds\""})
    CHECK_THAT(metrics, Catch::Contains(k));
  CHECK(json_number(metrics, "epoch", "test_accuracy") > 0.5);
  const std::string ckpt = dir / "a/checkpoint.npz";
  REQUIRE(fs::exists(ckpt));
  for (const char* f : {"loss.svg", "accuracy.svg", "confusion_matrix.svg", "metrics.jsonl"})
    CHECK(fs::exists(dir / ("a/" + std::string(f))));

  const auto e = run("eval " + ckpt + " --limit 500 --json " + (dir / "e.json"));
  INFO(e.out);
  CHECK(e.status == 0);
  CHECK_THAT(e.out, Catch::Contains("accuracy") && Catch::Contains("Ankle boot"));
  CHECK(json_number(slurp(dir / "e.json"), "examples", "accuracy") ==
        Approx(json_number(metrics, "epoch", "test_accuracy")));

  const auto i = run("inspect " + ckpt + " --batch 200");
  INFO(i.out);
  CHECK(i.status == 0);
  CHECK_THAT(i.out, Catch::Contains("0.weight") && Catch::Contains("[32, 784]"));

  // 1 epoch + resume 1 epoch == 2 epochs straight, bit for bit
  const auto r = run("train --epochs 2 --resume " + ckpt + " --out " + (dir / "r") + common);
  INFO(r.out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming"));
  const auto s = run("train --epochs 2 --out " + (dir / "s") + common);
  REQUIRE(s.status == 0);
  const auto resumed = tg::NpzArchive::load(dir / "r/checkpoint.npz");
  const auto straight = tg::NpzArchive::load(dir / "s/checkpoint.npz");
  CHECK(resumed.integer("epoch") == 2);
  int compared = 0;
  for (const auto& name : straight.names()) {
    if (name.rfind("model.", 0) != 0 && name.rfind("optim.", 0) != 0) continue;
    INFO(name);
    CHECK(resumed.array(name).bytes == straight.array(name).bytes);
    ++compared;
  }
  CHECK(compared >= 4);
  const std::string hist = slurp(dir / "r/metrics.jsonl");
  CHECK_THAT(hist, Catch::Contains("\"epoch\": 2"));
}

TEST_CASE("train --model cnn on a slice, then eval, inspect and resume", "[cli][train][cnn]") {
  if (!have_fashion_mnist()) {
    WARN("SKIPPED: Fashion-MNIST is not installed (package dataset-fashion-mnist)");
    return;
  }
  TempDir dir;
  const std::string common =
      " --model cnn --limit 600 --test-limit 300 --batch 50 --no-progress --seed 5";
  const auto a =
      run("train --epochs 1 --out " + (dir / "a") + " --metrics " + (dir / "m.jsonl") + common);
  INFO(a.out);
  REQUIRE(a.status == 0);
  CHECK_THAT(a.out, Catch::Contains("Conv2d(1, 32, kernel_size=(3, 3)") &&
                        Catch::Contains("BatchNorm2d(64") &&
                        Catch::Contains("Linear(in_features=3136, out_features=128"));
  const std::string metrics = slurp(dir / "m.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 1);
  CHECK(json_number(metrics, "epoch", "test_accuracy") > 0.4);
  const std::string ckpt = dir / "a/checkpoint.npz";
  REQUIRE(fs::exists(ckpt));
  {
    const auto archive = tg::NpzArchive::load(ckpt);
    CHECK(archive.string("config.model") == "cnn");
    CHECK(archive.contains("model.2.running_mean"));
    CHECK(archive.contains("model.6.num_batches_tracked"));
  }

  // eval (BatchNorm in eval mode) gives the accuracy train reported
  const auto e = run("eval " + ckpt + " --limit 300 --json " + (dir / "e.json"));
  INFO(e.out);
  CHECK(e.status == 0);
  CHECK(json_number(slurp(dir / "e.json"), "examples", "accuracy") ==
        Approx(json_number(metrics, "epoch", "test_accuracy")));

  const auto i = run("inspect " + ckpt + " --batch 100");
  INFO(i.out);
  CHECK(i.status == 0);
  CHECK_THAT(i.out, Catch::Contains("model cnn") && Catch::Contains("1.weight") &&
                        Catch::Contains("[32, 1, 3, 3]") && Catch::Contains("2.running_var") &&
                        Catch::Contains("diagnostics are for MLPs"));

  // 1 epoch + resume 1 epoch == 2 epochs straight, bit for bit (buffers included)
  const auto r = run("train --epochs 2 --resume " + ckpt + " --out " + (dir / "r") + common);
  INFO(r.out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming"));
  const auto s = run("train --epochs 2 --out " + (dir / "s") + common);
  REQUIRE(s.status == 0);
  const auto resumed = tg::NpzArchive::load(dir / "r/checkpoint.npz");
  const auto straight = tg::NpzArchive::load(dir / "s/checkpoint.npz");
  CHECK(resumed.integer("epoch") == 2);
  CHECK(resumed.string("config.model") == "cnn");
  int compared = 0;
  for (const auto& name : straight.names()) {
    if (name.rfind("model.", 0) != 0 && name.rfind("optim.", 0) != 0) continue;
    INFO(name);
    CHECK(resumed.array(name).bytes == straight.array(name).bytes);
    ++compared;
  }
  CHECK(compared >= 20);
  // the same seed twice: the same first epoch
  CHECK(json_number(slurp(dir / "s/metrics.jsonl"), "epoch", "test_accuracy") ==
        json_number(metrics, "epoch", "test_accuracy"));
  CHECK(json_number(slurp(dir / "s/metrics.jsonl"), "epoch", "train_loss") ==
        json_number(metrics, "epoch", "train_loss"));
}

TEST_CASE("train --model cnn needs 784 features", "[cli][errors][cnn]") {
  TempDir dir;
  std::ofstream(dir / "small.csv") << "x1,x2,y\n1,2,0\n3,4,1\n5,6,0\n";
  const auto r = run("train --model cnn --csv " + (dir / "small.csv") + " --label y --out " +
                     (dir / "o") + " --no-progress");
  INFO(r.out);
  CHECK(r.status == 2);
  CHECK_THAT(r.out, Catch::Contains("tapegrad: error: --model cnn takes 28x28 grey images (784 "
                                    "features), the data has 2 features"));
  const auto u = run("train --model resnet --limit 10");
  INFO(u.out);
  CHECK(u.status == 2);
  CHECK_THAT(u.out, Catch::Contains("resnet"));
}

TEST_CASE("bad input exits 2 with a message naming the problem", "[cli][errors]") {
  TempDir dir;
  std::ofstream(dir / "bad.csv") << "x1,x2,y\n1,2,abc\n";
  std::ofstream(dir / "corrupt.npz") << "PK\x03\x04 this is not a zip archive";
  std::ofstream(dir / "train-images-idx3-ubyte") << std::string("\0\0\x08\x03", 4) << "xx";
  std::ofstream(dir / "train-labels-idx1-ubyte") << std::string("\0\0\x08\x01", 4);
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases{
      {"--no-such-option", "no-such-option"},
      {"frobnicate", "frobnicate"},
      {"train --epochs many", "many"},
      {"train --data " + (dir / "missing"), "no such file"},
      {"train --data " + dir.path.string(), "truncated"},
      {"train --csv " + (dir / "bad.csv") + " --label y", "'abc'"},
      {"train --csv " + (dir / "nope.csv"), "nope.csv"},
      {"train --optimizer adamax --limit 10", "adamax"},
      {"train --activation swish --limit 10", "unknown activation 'swish' (known: relu,"},
      {"train --lr -1 --limit 10 --test-limit 10", "--lr"},
      {"symmetry --data " + (dir / "bad.csv"), "'abc'"},
      {"symmetry --steps 0", "--steps"},
      {"eval " + (dir / "missing.npz"), "missing.npz"},
      {"eval " + (dir / "corrupt.npz"), "corrupt.npz"},
      {"inspect " + (dir / "corrupt.npz"), "corrupt.npz"},
      {"train --resume " + (dir / "corrupt.npz"), "corrupt.npz"},
      {"eval", "checkpoint"},
  };
  for (const auto& c : cases) {
    const auto r = run(c.args);
    INFO("tapegrad " << c.args << "\n" << r.out);
    CHECK(r.status == 2);
    CHECK_THAT(r.out, Catch::Contains(c.message));
    CHECK_THAT(r.out, !Catch::Contains("internal error"));
  }
}

TEST_CASE("options out of range exit 2 before any work, naming the option", "[cli][errors]") {
  // Each was accepted before: --gamma -1 (the step schedule then trains at a negative rate),
  // --gamma / --dropout NaN, --lr inf, --warmup -1, --threads / --limit below 0 (ignored),
  // an empty test set (test accuracy 0 of 0 examples). Options that need no data are checked
  // before the data is read (the missing CSV is never named).
  TempDir dir;
  const std::string nope = " --csv " + (dir / "nope.csv") + " --no-progress --out " + (dir / "o");
  const std::string csv = " --csv " + kLegacyCsv + " --no-progress --out " + (dir / "o");
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases{
      {"train --schedule step --gamma -1" + nope, "--gamma must be positive, got -1"},
      {"train --schedule exponential --gamma nan" + nope, "--gamma must be positive, got nan"},
      {"train --dropout nan" + nope, "--dropout must be in [0, 1), got nan"},
      {"train --lr inf" + nope, "--lr must be positive, got inf"},
      {"train --warmup -1" + nope, "--warmup must be at least 0, got -1"},
      {"train --schedule step --step-size 0" + nope, "--step-size must be at least 1, got 0"},
      {"train --threads -3" + nope, "--threads"},
      {"train --limit -7" + nope, "--limit"},
      {"train --test-limit 0 --epochs 1" + csv, "train: no test examples"},
      {"eval " + kLegacyCheckpoint + " --csv " + kLegacyCsv + " --limit 0",
       "eval: no test examples"},
      {"inspect " + kLegacyCheckpoint + " --batch 0", "--batch"},
      {"charlm --threads -2 --words " + (dir / "nope.txt"), "--threads"},
  };
  for (const auto& c : cases) {
    const auto r = run(c.args);
    INFO("tapegrad " << c.args << "\n" << r.out);
    CHECK(r.status == 2);
    CHECK_THAT(r.out, Catch::Contains(c.message));
    CHECK_THAT(r.out, !Catch::Contains("nope.") && !Catch::Contains("internal error"));
    CHECK(!fs::exists(dir / "o/checkpoint.npz"));
  }
}

TEST_CASE("output paths: missing folders are made, unwritable ones fail before any work",
          "[cli][errors]") {
  TempDir dir;
  // Missing parents are created, like mkdir -p.
  const auto r = run("symmetry --steps 10 --draws 10 --log-every 5 --json " + (dir / "a/b/s.json") +
                     " --out " + (dir / "c/d"));
  INFO(r.out);
  CHECK(r.status == 0);
  CHECK(fs::is_regular_file(dir / "a/b/s.json"));
  CHECK(fs::is_regular_file(dir / "c/d/loss_curves.svg"));
  if (have_fashion_mnist()) {
    const auto t =
        run("train --epochs 1 --limit 200 --test-limit 100 --hidden 8 --no-progress"
            " --out " +
            (dir / "t/run") + " --metrics " + (dir / "m/n/metrics.jsonl"));
    INFO(t.out);
    CHECK(t.status == 0);
    CHECK(fs::is_regular_file(dir / "m/n/metrics.jsonl"));
    CHECK(fs::is_regular_file(dir / "t/run/checkpoint.npz"));
  }

  // Unwritable paths fail at start: each case also names input that does not exist, and the
  // error must be about the output path (so nothing was loaded or trained first).
  std::ofstream(dir / "file") << "x";
  std::ofstream(dir / "bad.csv") << "x1,x2,y\n1,2,abc\n";
  fs::create_directories(dir / "folder");
  const std::string missing = dir / "no-such-data";
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases{
      {"symmetry --data " + (dir / "bad.csv") + " --json " + (dir / "file/s.json"),
       "'" + (dir / "file") + "' is a file, not a folder"},
      {"symmetry --data " + (dir / "bad.csv") + " --out " + (dir / "file/x/y"),
       "is a file, not a folder"},
      {"symmetry --data " + (dir / "bad.csv") + " --json " + (dir / "folder"), "is a folder"},
      {"symmetry --json /proc/tapegrad-test/s.json",
       "cannot create the folder '/proc/tapegrad-test'"},
      {"train --data " + missing + " --out " + (dir / "file/run"), "is a file, not a folder"},
      {"train --data " + missing + " --metrics " + (dir / "file/m.jsonl"),
       "is a file, not a folder"},
      {"train --data " + missing + " --metrics " + (dir / "folder"), "is a folder"},
      {"eval " + missing + ".npz --json " + (dir / "file/e.json"), "is a file, not a folder"},
      {"eval " + missing + ".npz --out " + (dir / "file/pics"), "is a file, not a folder"},
  };
  for (const auto& c : cases) {
    const auto e = run(c.args);
    INFO("tapegrad " << c.args << "\n" << e.out);
    CHECK(e.status == 2);
    CHECK_THAT(e.out,
               Catch::StartsWith("tapegrad: error: cannot write") && Catch::Contains(c.message));
    CHECK(std::count(e.out.begin(), e.out.end(), '\n') == 1);
  }
  if (::geteuid() != 0) {  // root writes anywhere; a user meets the folder's permissions
    fs::create_directories(dir / "locked");
    fs::permissions(dir / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    const auto e =
        run("symmetry --data " + (dir / "bad.csv") + " --json " + (dir / "locked/s.json"));
    INFO(e.out);
    CHECK(e.status == 2);
    CHECK_THAT(e.out, Catch::Contains("cannot create files in '" + (dir / "locked") + "'"));
    fs::permissions(dir / "locked", fs::perms::owner_all);
  }
  CHECK(fs::is_empty(dir / "folder"));  // the write check leaves nothing behind
}

TEST_CASE("train with the defaults reaches 0.87 test accuracy in 5 epochs", "[cli][train]") {
  if (!have_fashion_mnist()) {
    WARN("SKIPPED: Fashion-MNIST is not installed (package dataset-fashion-mnist)");
    return;
  }
  TempDir dir;
  const auto r =
      run("train --no-progress --out " + (dir / "d") + " --metrics " + (dir / "m.jsonl"));
  INFO(r.out);
  REQUIRE(r.status == 0);
  const std::string metrics = slurp(dir / "m.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 5);
  const auto last = metrics.substr(metrics.rfind("{\"epoch\": 5"));
  CHECK(json_number(last, "epoch", "test_accuracy") >= 0.87);
}

TEST_CASE("a checkpoint written when activations were list indices loads with the same meaning",
          "[cli][checkpoint]") {
  TempDir dir;
  const auto legacy = tg::NpzArchive::load(kLegacyCheckpoint);
  REQUIRE(legacy.integer("config.activation") == 2);  // the old code of tanh
  REQUIRE_FALSE(legacy.contains("config.activation_name"));
  const double recorded = last_test_accuracy(legacy);
  CHECK(recorded == Approx(0.825));

  const auto i = run("inspect " + kLegacyCheckpoint + " --csv " + kLegacyCsv);
  INFO(i.out);
  CHECK(i.status == 0);
  CHECK_THAT(i.out, Catch::Contains("activation tanh,") && Catch::Contains("(1): Tanh()"));

  // Its weights with any other activation give another accuracy (0.775, 0.675, 0.775 for
  // relu, sigmoid, identity): the same accuracy means it was read as tanh.
  const auto e =
      run("eval " + kLegacyCheckpoint + " --csv " + kLegacyCsv + " --json " + (dir / "e.json"));
  INFO(e.out);
  CHECK(e.status == 0);
  CHECK(json_number(slurp(dir / "e.json"), "examples", "accuracy") == Approx(recorded));

  // Resumed, it goes on as tanh and is saved by name.
  const auto r = run("train --resume " + kLegacyCheckpoint + " --csv " + kLegacyCsv +
                     " --epochs 3 --no-progress --out " + (dir / "r"));
  INFO(r.out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming") && Catch::Contains("(1): Tanh()"));
  const auto resumed = tg::NpzArchive::load(dir / "r/checkpoint.npz");
  CHECK(resumed.integer("epoch") == 3);
  CHECK(resumed.string("config.activation_name") == "tanh");
  CHECK(resumed.integer("config.activation") == 2);  // the frozen code too, for 0.2 programs
  // The optimizer and schedule by name too (the old file had their indices only).
  CHECK(resumed.string("config.optimizer_name") == "adam");
  CHECK(resumed.integer("config.optimizer") == 1);
  CHECK(resumed.string("config.schedule_name") == "none");
  {  // the name wins over the index
    auto a = tg::NpzArchive::load(dir / "r/checkpoint.npz");
    a.put_int("config.optimizer", 0);  // sgd by index, adam by name
    a.save(dir / "named.npz");
    const auto i = run("inspect " + (dir / "named.npz"));
    INFO(i.out);
    CHECK(i.status == 0);
    CHECK_THAT(i.out, Catch::Contains("optimizer adam"));
  }
  const auto h = resumed.tensor("history.test_accuracy").to_vector();
  REQUIRE(h.size() == 3);
  CHECK(h[1] == recorded);

  // The other old codes keep their old meaning; the name wins when both are present.
  struct Case {
    int64_t code;
    std::string name;  // config.activation_name, "" for none
    std::string layer;
  };
  for (const Case& c : std::vector<Case>{{0, "", "ReLU()"},
                                         {1, "", "Sigmoid()"},
                                         {2, "", "Tanh()"},
                                         {2, "sigmoid", "Sigmoid()"}}) {
    auto a = legacy;
    a.put_int("config.activation", c.code);
    if (!c.name.empty()) a.put_string("config.activation_name", c.name);
    const std::string path = dir / ("code" + std::to_string(c.code) + c.name + ".npz");
    a.save(path);
    const auto out = run("inspect " + path);
    INFO(path << "\n" << out.out);
    CHECK(out.status == 0);
    CHECK_THAT(out.out, Catch::Contains("(1): " + c.layer));
  }
}

TEST_CASE("new checkpoints store the activation by name and read back the same model",
          "[cli][checkpoint]") {
  TempDir dir;
  struct Case {
    std::string given, stored, layer;
    int64_t legacy_code;  // -1: a name the frozen table does not have
  };
  for (const Case& c :
       std::vector<Case>{{"sigmoid", "sigmoid", "Sigmoid()", 1},
                         {"leaky_relu", "leaky_relu", "LeakyReLU(negative_slope=0.01)", -1},
                         {"none", "identity", "Identity()", -1}}) {
    INFO(c.given);
    const std::string out = dir / c.given;
    const auto t = run("train --csv " + kLegacyCsv + " --activation " + c.given +
                       " --hidden 4 --epochs 1 --batch 8 --lr 0.03 --no-progress --out " + out);
    INFO(t.out);
    REQUIRE(t.status == 0);
    const std::string ckpt = out + "/checkpoint.npz";
    const auto a = tg::NpzArchive::load(ckpt);
    CHECK(a.string("config.activation_name") == c.stored);
    // The frozen list index only for the names it has (for 0.2 programs).
    CHECK(a.contains("config.activation") == (c.legacy_code >= 0));
    if (c.legacy_code >= 0) CHECK(a.integer("config.activation") == c.legacy_code);
    const auto i = run("inspect " + ckpt);
    INFO(i.out);
    CHECK(i.status == 0);
    CHECK_THAT(i.out, Catch::Contains("activation " + c.stored + ",") &&
                          Catch::Contains("(1): " + c.layer));
    const auto e = run("eval " + ckpt + " --csv " + kLegacyCsv + " --json " + out + "/e.json");
    INFO(e.out);
    CHECK(e.status == 0);
    CHECK(json_number(slurp(out + "/e.json"), "examples", "accuracy") ==
          Approx(last_test_accuracy(a)));
    const auto r = run("train --resume " + ckpt + " --csv " + kLegacyCsv +
                       " --epochs 2 --no-progress --out " + out + "/r");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(tg::NpzArchive::load(out + "/r/checkpoint.npz").string("config.activation_name") ==
          c.stored);
  }
}

TEST_CASE("a checkpoint naming an unknown activation or optimizer exits 2 naming it",
          "[cli][checkpoint][errors]") {
  TempDir dir;
  const auto legacy = tg::NpzArchive::load(kLegacyCheckpoint);
  struct Case {
    std::string file;
    std::function<void(tg::NpzArchive&)> edit;
    std::string message;
  };
  const std::vector<Case> cases{
      {"swish.npz",
       [](tg::NpzArchive& a) {
         a.erase("config.activation");
         a.put_string("config.activation_name", "swish");
       },
       "config.activation_name: unknown activation 'swish' (known: relu,"},
      {"code7.npz", [](tg::NpzArchive& a) { a.put_int("config.activation", 7); },
       "config.activation = 7 is not valid"},
      {"none.npz", [](tg::NpzArchive& a) { a.erase("config.activation"); },
       "no activation (neither config.activation_name nor config.activation)"},
      {"number.npz", [](tg::NpzArchive& a) { a.put_int("config.activation_name", 2); },
       "'config.activation_name' is not text"},
      {"lamb.npz", [](tg::NpzArchive& a) { a.put_string("config.optimizer_name", "lamb"); },
       "config.optimizer_name: unknown optimizer 'lamb'"},
      {"opt9.npz", [](tg::NpzArchive& a) { a.put_int("config.optimizer", 9); },
       "config.optimizer = 9 is not valid"},
      {"onecycle.npz", [](tg::NpzArchive& a) { a.put_string("config.schedule_name", "onecycle"); },
       "config.schedule_name: unknown schedule 'onecycle'"},
  };
  for (const auto& c : cases) {
    auto a = legacy;
    c.edit(a);
    const std::string path = dir / c.file;
    a.save(path);
    for (const std::string& args :
         {"eval " + path + " --csv " + kLegacyCsv, "inspect " + path,
          "train --resume " + path + " --csv " + kLegacyCsv + " --epochs 3 --out " + (dir / "r")}) {
      const auto r = run(args);
      INFO("tapegrad " << args << "\n" << r.out);
      CHECK(r.status == 2);
      CHECK_THAT(r.out,
                 Catch::StartsWith("tapegrad: error: " + path) && Catch::Contains(c.message));
      CHECK_THAT(r.out, !Catch::Contains("internal error"));
    }
  }
}

namespace {

// A small word list (syllable combinations, with one capital and one apostrophe word the
// protocol folds or drops), so charlm runs take a second.
std::string write_word_list(const TempDir& dir) {
  const char* syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "po", "qu", "an"};
  std::ostringstream s;
  s << "Kalo\nit's\n";
  for (const char* a : syl)
    for (const char* b : syl)
      for (const char* c : {"", "n", "s", "ra"}) s << a << b << c << '\n';
  const std::string path = dir / "words.txt";
  std::ofstream(path) << s.str();
  return path;
}

}  // namespace

TEST_CASE("charlm trains, samples, writes its JSON, and resumes bit for bit", "[cli][charlm]") {
  TempDir dir;
  const std::string words = write_word_list(dir);
  const std::string common = " --model mlp --words " + words +
                             " --embed 8 --hidden 32 --batch 32 --samples 5 --no-progress --seed 4";
  const auto a = run("charlm --epochs 2 --out " + (dir / "a") + " --json " + (dir / "a.json") +
                     " --metrics " + (dir / "m.jsonl") + common);
  INFO(a.out);
  REQUIRE(a.status == 0);
  CHECK_THAT(a.out, Catch::Contains("576 words (460 train / 57 dev / 59 test)") &&
                        Catch::Contains("MlpLM(") && Catch::Contains("samples:"));
  const std::string j = slurp(dir / "a.json");
  for (const char* k : {"\"model\": \"mlp\"", "\"train_loss\"", "\"dev_loss\"", "\"test_loss\"",
                        "\"bigram_test_loss\"", "\"seconds\"", "\"samples\": [\""})
    CHECK_THAT(j, Catch::Contains(k));
  std::smatch m;
  REQUIRE(std::regex_search(j, m, std::regex("\"test_loss\": ([-0-9.eE+]+)")));
  const double test_loss = std::stod(m[1]);
  // Random guessing over 16 tokens costs log 16 = 2.77 nats; two epochs must beat it.
  CHECK(test_loss < 2.6);
  CHECK(test_loss > 0.1);
  const std::string metrics = slurp(dir / "m.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 2);
  CHECK_THAT(metrics, Catch::Contains("\"dev_loss\"") && Catch::Contains("\"epoch\": 2"));

  // The same seed gives the same run; one epoch resumed to two gives the same run.
  const auto b =
      run("charlm --epochs 2 --out " + (dir / "b") + " --json " + (dir / "b.json") + common);
  REQUIRE(b.status == 0);
  const auto c = run("charlm --epochs 1 --out " + (dir / "c") + common);
  REQUIRE(c.status == 0);
  const auto r = run("charlm --epochs 2 --resume " + (dir / "c/checkpoint.npz") + " --out " +
                     (dir / "c") + " --json " + (dir / "r.json") + common);
  INFO(r.out);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming"));
  const auto straight = tg::NpzArchive::load(dir / "a/checkpoint.npz");
  int compared = 0;
  for (const char* other : {"b/checkpoint.npz", "c/checkpoint.npz"}) {
    const auto o = tg::NpzArchive::load(dir / other);
    CHECK(o.integer("epoch") == 2);
    for (const auto& name : straight.names()) {
      if (name.rfind("model.", 0) != 0 && name.rfind("optim.", 0) != 0) continue;
      INFO(other << " " << name);
      CHECK(o.array(name).bytes == straight.array(name).bytes);
      ++compared;
    }
  }
  CHECK(compared >= 10);
  auto samples = [&](const std::string& f) {
    const std::string s = slurp(dir / f);
    return s.substr(s.find("\"samples\""));
  };
  CHECK(samples("b.json") == samples("a.json"));
  CHECK(samples("r.json") == samples("a.json"));

  const auto i = run("inspect " + (dir / "a/checkpoint.npz"));
  INFO(i.out);
  CHECK(i.status == 0);
  CHECK_THAT(i.out, Catch::Contains("charlm model mlp trained 2 of 2 epochs") &&
                        Catch::Contains("fc1.weight") && Catch::Contains("[32, 32]"));
  const auto e = run("eval " + (dir / "a/checkpoint.npz"));
  CHECK(e.status == 2);
  CHECK_THAT(e.out, Catch::Contains("tapegrad: error:") && Catch::Contains("charlm"));
}

TEST_CASE("charlm: every model trains, a recurrent model with dropout resumes bit for bit",
          "[cli][charlm]") {
  TempDir dir;
  const std::string words = write_word_list(dir);
  const std::string tiny =
      " --words " + words + " --embed 8 --hidden 12 --heads 2 --batch 64 --samples 3 --no-progress";
  for (const char* model : {"bigram", "mlp", "lstm", "gru", "transformer"}) {
    const auto r = run(std::string("charlm --epochs 3 --model ") + model + " --out " +
                       (dir / model) + " --json " + (dir / (std::string(model) + ".json")) +
                       (std::string(model) == "bigram" ? "" : " --lr 0.01") + tiny);
    INFO(model << "\n" << r.out);
    REQUIRE(r.status == 0);
    const std::string j = slurp(dir / (std::string(model) + ".json"));
    CHECK_THAT(j, Catch::Contains(std::string("\"model\": \"") + model + "\""));
    std::smatch m;
    REQUIRE(std::regex_search(j, m, std::regex("\"test_loss\": ([-0-9.eE+]+)")));
    // Three epochs on 460 words: below uniform guessing over 16 tokens (2.77 nats).
    CHECK(std::stod(m[1]) < 2.77);
    const auto i = run("inspect " + (dir / (std::string(model) + "/checkpoint.npz")));
    CHECK(i.status == 0);
  }
  // Two LSTM layers with dropout between them: the layer's own generator is in the checkpoint.
  const std::string lstm = " --model lstm --layers 2 --dropout 0.3 --seed 9" + tiny;
  REQUIRE(run("charlm --epochs 2 --out " + (dir / "s") + lstm).status == 0);
  REQUIRE(run("charlm --epochs 1 --out " + (dir / "h") + lstm).status == 0);
  const auto r = run("charlm --epochs 2 --resume " + (dir / "h/checkpoint.npz") + " --out " +
                     (dir / "h") + lstm);
  INFO(r.out);
  REQUIRE(r.status == 0);
  const auto straight = tg::NpzArchive::load(dir / "s/checkpoint.npz");
  const auto resumed = tg::NpzArchive::load(dir / "h/checkpoint.npz");
  CHECK(straight.contains("model_rng.state"));
  for (const auto& name : straight.names()) {
    if (name.rfind("model.", 0) != 0) continue;
    INFO(name);
    CHECK(resumed.array(name).bytes == straight.array(name).bytes);
  }
  const auto bad = run("charlm --model transformer --embed 10 --heads 4 --epochs 1 --words " +
                       words + " --out " + (dir / "t"));
  CHECK(bad.status == 2);
  CHECK_THAT(bad.out,
             Catch::Contains(
                 "tapegrad: error: MultiheadAttention: embed_dim must be divisible by num_heads"));
}

TEST_CASE("charlm: a missing or empty word list, bad options, a foreign checkpoint exit 2",
          "[cli][charlm][errors]") {
  TempDir dir;
  const auto missing = run("charlm --words " + (dir / "nope.txt") + " --out " + (dir / "o"));
  CHECK(missing.status == 2);
  CHECK_THAT(missing.out, Catch::Contains("tapegrad: error:") && Catch::Contains("nope.txt"));
  CHECK(!fs::exists(dir / "o/checkpoint.npz"));
  std::ofstream(dir / "empty.txt") << "\n";
  const auto empty = run("charlm --words " + (dir / "empty.txt") + " --out " + (dir / "o"));
  CHECK(empty.status == 2);
  CHECK_THAT(empty.out, Catch::Contains("tapegrad: error:") && Catch::Contains("no words"));
  std::ofstream(dir / "few.txt") << "ab\ncd\n";
  const auto few = run("charlm --words " + (dir / "few.txt") + " --out " + (dir / "o"));
  CHECK(few.status == 2);
  CHECK_THAT(few.out, Catch::Contains("too few"));
  const std::string words = write_word_list(dir);
  for (const char* bad : {"--model rnn", "--epochs 0", "--lr -1", "--lr 0", "--embed 0",
                          "--dropout 1", "--samples -1", "--batch 0", "--clip-grad-norm -1",
                          "--clip-grad-norm nan", "--clip-grad-norm inf"}) {
    const auto r = run("charlm --words " + words + " --out " + (dir / "o") + " " + bad);
    INFO(bad << "\n" << r.out);
    CHECK(r.status == 2);
  }
  // A classifier's checkpoint is not a language model's.
  tg::NpzArchive foreign;
  foreign.put_int("epoch", 1);
  foreign.save(dir / "foreign.npz");
  const auto f = run("charlm --words " + words + " --resume " + (dir / "foreign.npz") + " --out " +
                     (dir / "o"));
  CHECK(f.status == 2);
  CHECK_THAT(f.out, Catch::Contains("not a checkpoint of `tapegrad charlm`"));
}

TEST_CASE("train and charlm: --resume refuses an option naming another value than the checkpoint's",
          "[cli][checkpoint][errors]") {
  // A resumed run is the checkpoint's run: its options were ignored without a word (a
  // "--resume ck --lr 0.01" went on at the stored rate). The same value is accepted (the
  // other tests resume with their full command lines); --epochs may change.
  TempDir dir;
  const std::string words = write_word_list(dir);
  const std::string lm = " --words " + words + " --samples 0 --no-progress";
  REQUIRE(run("charlm --epochs 1 --model bigram --batch 64 --out " + (dir / "lm") + lm).status ==
          0);
  const std::string ck = dir / "lm/checkpoint.npz";
  for (const auto& [option, message] : std::vector<std::pair<std::string, std::string>>{
           {"--lr 0.5", "--lr 0.5 differs from the checkpoint's 0.05"},
           {"--model lstm", "--model lstm differs from the checkpoint's bigram"},
           {"--batch 32", "--batch 32 differs from the checkpoint's 64"},
           {"--seed 4", "--seed 4 differs from the checkpoint's 0"},
           {"--clip-grad-norm 0.5", "--clip-grad-norm 0.5 differs from the checkpoint's 0"}}) {
    const auto r =
        run("charlm --epochs 2 --resume " + ck + " --out " + (dir / "r") + lm + " " + option);
    INFO(option << "\n" << r.out);
    CHECK(r.status == 2);
    CHECK_THAT(r.out, Catch::Contains("tapegrad: error: " + ck + ": " + message));
    CHECK(!fs::exists(dir / "r/checkpoint.npz"));
  }
  const auto same = run("charlm --epochs 2 --resume " + ck + " --out " + (dir / "r") + lm +
                        " --model bigram --lr 0.05");
  INFO(same.out);
  CHECK(same.status == 0);
  // A checkpoint from before --clip-grad-norm: no clipping.
  auto old = tg::NpzArchive::load(ck);
  REQUIRE(old.scalar("charlm.clip_grad_norm") == 0.0);
  old.erase("charlm.clip_grad_norm");
  old.save(dir / "old.npz");
  const auto from_old = run("charlm --epochs 2 --resume " + (dir / "old.npz") + " --out " +
                            (dir / "o") + lm + " --clip-grad-norm 0");
  INFO(from_old.out);
  CHECK(from_old.status == 0);
  const std::string train =
      "train --resume " + kLegacyCheckpoint + " --csv " + kLegacyCsv + " --no-progress --out ";
  for (const auto& [option, message] : std::vector<std::pair<std::string, std::string>>{
           {"--lr 0.5", "--lr 0.5 differs from the checkpoint's"},
           {"--activation relu", "--activation relu differs from the checkpoint's tanh"},
           {"--hidden 7", "--hidden 7 differs from the checkpoint's"},
           {"--optimizer sgd", "--optimizer sgd differs from the checkpoint's"}}) {
    const auto r = run(train + (dir / "t") + " --epochs 3 " + option);
    INFO(option << "\n" << r.out);
    CHECK(r.status == 2);
    CHECK_THAT(r.out, Catch::Contains("tapegrad: error: " + kLegacyCheckpoint + ": " + message));
    CHECK(!fs::exists(dir / "t/checkpoint.npz"));
  }
  const auto more = run(train + (dir / "t") + " --epochs 3 --activation tanh");
  INFO(more.out);
  CHECK(more.status == 0);
}

TEST_CASE("a checkpoint whose epoch or history is corrupt loads nothing: inspect and resume exit 2",
          "[cli][checkpoint][errors]") {
  // Each history series holds one value per epoch done; a file that disagrees (a missing or
  // short series, a negative epoch) is refused by name. inspect crashed on a charlm
  // checkpoint without history.train_loss (back() of an empty vector), and --resume trained
  // on from epoch -3.
  TempDir dir;
  const std::string words = write_word_list(dir);
  const std::string lm =
      " --words " + words + " --model bigram --batch 64 --samples 0 --no-progress";
  REQUIRE(run("charlm --epochs 1 --out " + (dir / "lm") + lm).status == 0);
  const auto charlm = tg::NpzArchive::load(dir / "lm/checkpoint.npz");
  const auto legacy = tg::NpzArchive::load(kLegacyCheckpoint);
  struct Case {
    std::string file;
    bool is_charlm;
    std::function<void(tg::NpzArchive&)> edit;
    std::string message;
  };
  const std::vector<Case> cases {
    {"lm_no_train_loss.npz", true, [](tg::NpzArchive& a) { a.erase("history.train_loss"); },
     "history.train_loss"},
        {"lm_short_dev.npz", true,
         [](tg::NpzArchive& a) { a.put("history.dev_loss", tg::zeros({0}, tg::f64)); },
         "history.dev_loss has 0 values, but the checkpoint has done 1 epochs"},
        {"lm_negative.npz", true, [](tg::NpzArchive& a) { a.put_int("epoch", -3); },
         "epoch = -3 is not valid"},
        {"clf_no_train_loss.npz", false, [](tg::NpzArchive& a) { a.erase("history.train_loss"); },
         "history.train_loss"},
        {"clf_long_accuracy.npz", false,
         [](tg::NpzArchive& a) { a.put("history.test_accuracy", tg::zeros({5}, tg::f64)); },
         "history.test_accuracy has 5 values, but the checkpoint has done 2 epochs"},
        {"clf_negative.npz", false, [](tg::NpzArchive& a) { a.put_int("epoch", -1); },
         "epoch = -1 is not valid"},
        {"clf_negative_hidden.npz", false,
         [](tg::NpzArchive& a) { a.put_i64("config.hidden", {-4}); },
         "its configuration: hidden layer sizes must be positive, got -4"},
#if !defined(__SANITIZE_ADDRESS__)  // ASan's allocator aborts on a size it cannot serve
        // A size no memory holds: std::bad_alloc, an internal error (exit 1) before.
        {"clf_huge_hidden.npz", false,
         [](tg::NpzArchive& a) { a.put_i64("config.hidden", {int64_t{1} << 50}); },
         "the model its configuration describes does not fit in memory"},
#endif
  };
  for (const auto& c : cases) {
    auto a = c.is_charlm ? charlm : legacy;
    c.edit(a);
    const std::string path = dir / c.file;
    a.save(path);
    const std::string resume =
        c.is_charlm ? "charlm --resume " + path + " --epochs 2 --out " + (dir / "r") + lm
                    : "train --resume " + path + " --csv " + kLegacyCsv + " --epochs 3 --out " +
                          (dir / "r") + " --no-progress";
    for (const std::string& args : {"inspect " + path, resume}) {
      const auto r = run(args);
      INFO("tapegrad " << args << "\n" << r.out);
      CHECK(r.status == 2);
      CHECK_THAT(r.out, Catch::Contains("tapegrad: error: " + path) && Catch::Contains(c.message));
      CHECK(!fs::exists(dir / "r/checkpoint.npz"));
    }
  }
  // A charlm checkpoint's sizes out of range (the bigram uses none, so inspect shows it).
  auto a = charlm;
  a.put_i64("charlm.sizes", {8, -3, 1, 0, 1, 20});
  const std::string path = dir / "lm_negative_sizes.npz";
  a.save(path);
  const auto r = run("charlm --resume " + path + " --epochs 2 --out " + (dir / "r") + lm);
  INFO(r.out);
  CHECK(r.status == 2);
  CHECK_THAT(r.out, Catch::Contains("tapegrad: error: " + path +
                                    ": its configuration: charlm: sizes must be positive"));
}
