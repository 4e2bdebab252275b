#pragma once

// The progress display `train` and `charlm` share: a redrawn bar on a terminal, a few plain
// lines otherwise.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace tg::app {

using Clock = std::chrono::steady_clock;

inline std::string fmt_seconds(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  }
  return buf;
}

// Progress within an epoch: a redrawn bar on a terminal, a few plain lines otherwise.
class Progress {
 public:
  Progress(bool enabled, int64_t epoch, int64_t epochs, int64_t batches)
      : tty_(enabled && isatty(fileno(stdout))),
        plain_(enabled && !tty_),
        epoch_(epoch),
        epochs_(epochs),
        batches_(batches) {}

  void update(int64_t batch, double loss, int64_t examples) {
    const double el = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = el > 0 ? static_cast<double>(examples) / el : 0.0;
    const double eta =
        batch > 0 ? el * static_cast<double>(batches_ - batch) / static_cast<double>(batch) : 0;
    if (tty_) {
      if (batch != batches_ && std::chrono::duration<double>(Clock::now() - last_).count() < 0.1)
        return;
      last_ = Clock::now();
      const int width = 24;
      const int filled = static_cast<int>(width * batch / std::max<int64_t>(batches_, 1));
      std::printf("\repoch %lld/%lld [%s%s] %lld/%lld  loss %.4f  %.0f ex/s  ETA %s   ",
                  static_cast<long long>(epoch_), static_cast<long long>(epochs_),
                  std::string(static_cast<size_t>(filled), '#').c_str(),
                  std::string(static_cast<size_t>(width - filled), '.').c_str(),
                  static_cast<long long>(batch), static_cast<long long>(batches_), loss, rate,
                  fmt_seconds(eta).c_str());
      std::fflush(stdout);
    } else if (plain_ && batch < batches_ && batch * 4 / batches_ != (batch - 1) * 4 / batches_) {
      std::printf("  epoch %lld/%lld batch %lld/%lld  loss %.4f  %.0f ex/s  ETA %s\n",
                  static_cast<long long>(epoch_), static_cast<long long>(epochs_),
                  static_cast<long long>(batch), static_cast<long long>(batches_), loss, rate,
                  fmt_seconds(eta).c_str());
      std::fflush(stdout);
    }
  }
  void finish() {
    if (tty_) std::printf("\r%*s\r", 110, "");
  }

 private:
  bool tty_, plain_;
  int64_t epoch_, epochs_, batches_;
  Clock::time_point start_ = Clock::now(), last_ = Clock::now();
};

}  // namespace tg::app
