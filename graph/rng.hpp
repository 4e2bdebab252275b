#pragma once

#include <array>
#include <cstdint>

namespace tg {

/// A seeded random generator (xoshiro256**, seeded through splitmix64). All randomness in
/// tapegrad comes from an explicit `Rng`: the same seed gives the same numbers on every
/// platform, and the state can be saved and restored (`state()`, `set_state()`).
class Rng {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Rng(uint64_t seed = 0) { seed_with(seed); }

  void seed_with(uint64_t seed);
  uint64_t next_u64();
  /// Uniform in [0, 1) with 53 random bits.
  double uniform();
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal (Box-Muller; the spare value is cached and part of the state).
  double normal();
  /// Uniform integer in [0, n).
  uint64_t below(uint64_t n);

  State state() const { return s_; }
  void set_state(const State& s);
  /// The cached second normal value (part of the full state, see `Rng::normal`).
  bool has_spare() const { return has_spare_; }
  double spare() const { return spare_; }
  void set_spare(bool has, double value) {
    has_spare_ = has;
    spare_ = value;
  }

 private:
  State s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace tg
