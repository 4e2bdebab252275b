#pragma once

// What `train`, `eval` and `inspect` share: the run configuration, the model it describes,
// training checkpoints, data sources and evaluation.

#include <array>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "data/dataset.hpp"
#include "models/npz.hpp"
#include "models/sequential.hpp"
#include "optim/optimizer.hpp"

namespace tg::app {

/// Everything that defines a training run (stored in its checkpoints).
struct RunConfig {
  /// The architecture: "mlp" (hidden / activation / dropout below) or "cnn" (the fixed
  /// default CNN of build_model for 28x28 grey images; hidden, activation and dropout unused).
  std::string model = "mlp";
  std::vector<int64_t> hidden{256, 128};
  std::string activation = "relu";
  double dropout = 0.0;
  std::string optimizer = "adam";
  double lr = 1e-3;
  double momentum = 0.0;
  double weight_decay = -1.0;  // < 0: the optimizer's own default
  bool nesterov = false;
  std::string schedule = "none";  // none, step, exponential, cosine
  int64_t step_size = 1;
  double gamma = 0.5;
  int64_t warmup = 0;
  int64_t epochs = 5;
  int64_t batch = 128;
  uint64_t seed = 0;
  // data (not stored: a resumed run names its data again)
  int64_t inputs = 0;
  int64_t classes = 0;
};

/// The classifier a config describes, all generic nodes in one Sequential. "mlp": Linear /
/// activation [/ Dropout] blocks and a final Linear producing logits. "cnn" (784 features
/// only, each example a 1x28x28 image): Unflatten(1, [1, 28, 28]) -> Conv2d(1, 32, 3,
/// padding=1) -> BatchNorm2d(32) -> ReLU -> MaxPool2d(2) -> Conv2d(32, 64, 3, padding=1) ->
/// BatchNorm2d(64) -> ReLU -> MaxPool2d(2) -> Flatten -> Linear(3136, 128) -> ReLU ->
/// Linear(128, classes), initialized as torch.nn's modules from `init_rng`.
struct Model {
  Sequential net;
  Rng dropout_rng{0};
};
std::unique_ptr<Model> build_model(const RunConfig& config, Rng& init_rng);
/// The architectures build_model knows: mlp, cnn.
const std::vector<std::string>& model_names();

/// A new optimizer over `params` as the config says; throws Error for an unknown name.
std::unique_ptr<Optimizer> make_optimizer(const RunConfig& config, const std::vector<Var>& params);

/// Per-epoch history kept in checkpoints.
struct History {
  std::vector<double> train_loss, train_accuracy, test_accuracy, seconds, lr;
};

/// A training checkpoint: model + optimizer + epoch + generators + config + history.
/// The optimizer's entries are written by `optimizer_state(archive, "optim.")`: its
/// state_dict (a sharded optimizer's consolidated one, the same entries).
void save_checkpoint(const std::string& path, const RunConfig& config, Model& model,
                     const std::function<void(NpzArchive&, const std::string&)>& optimizer_state,
                     int64_t epoch, const Rng& shuffle_rng, const History& history);
/// Reads the config of a checkpoint (or of a plain model .npz written by `train`).
RunConfig read_config(const NpzArchive& archive);
/// The checkpoint's history: one value per epoch done in each series (IoError otherwise).
History read_history(const NpzArchive& archive);
/// The epochs a checkpoint has done (its "epoch"): an IoError naming the file when negative.
int64_t read_epoch(const NpzArchive& archive);
/// A checkpoint's per-epoch series `name`: an IoError naming the file and the key unless it
/// holds exactly `epochs` values (a corrupt or edited file loads nothing).
std::vector<double> read_epoch_series(const NpzArchive& archive, const std::string& name,
                                      int64_t epochs);

/// The long names ("--lr") of the options given on the command line of `cmd`.
std::set<std::string> given_options(const CLI::App& cmd);
/// `x` as text that reads back as the same double (the shortest of %.15g, %.16g, %.17g).
std::string exact_number(double x);
/// With --resume, a run continues with the checkpoint's configuration (bit for bit): throws
/// Error naming the checkpoint and the option when an option in `given` names another value
/// than the checkpoint's. Each entry of `values` is {option, its value as given, the
/// checkpoint's value}, as text.
void check_resume_options(const std::string& checkpoint, const std::set<std::string>& given,
                          const std::vector<std::array<std::string, 3>>& values);

/// Runs `build`, which checks a configuration or makes the model it describes. With a
/// checkpoint's configuration (`checkpoint` not empty) a failure is the file's: an Error or a
/// model larger than memory (a corrupt size) becomes an IoError naming the file, never an
/// internal error.
void from_checkpoint(const std::string& checkpoint, const std::function<void()>& build);

/// Where examples come from: an MNIST-style folder or a CSV with a label column.
struct DataSource {
  std::string dir = data::kFashionMnistDir;
  std::string csv;       // training CSV (classification)
  std::string test_csv;  // test CSV (default: the training CSV)
  std::string label = "label";
  int64_t limit = -1;       // training examples kept
  int64_t test_limit = -1;  // test examples kept
  data::Dataset train() const;
  data::Dataset test() const;
};

/// Accuracy and confusion matrix (rows: true class, columns: predicted) of `model` on
/// `data`, in eval mode without recording.
struct Evaluation {
  double accuracy = 0;
  std::vector<std::vector<int64_t>> confusion;
  std::vector<double> per_class_accuracy() const;
};
Evaluation evaluate(Model& model, const data::Dataset& data, int64_t batch = 1000);

/// Every parameter and buffer of `m` with shape, dtype, L2 norm, mean and std, as a table.
void print_parameter_table(const Module& m);

/// The confusion matrix and per-class accuracy as text.
std::string confusion_text(const Evaluation& e, const std::vector<std::string>& class_names);
/// Names of `n` classes: the dataset's own or "0", "1", ...
std::vector<std::string> class_names(const data::Dataset& d, int64_t n);

}  // namespace tg::app
