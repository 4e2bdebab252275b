#include "graph/rng.hpp"

#include <cmath>
#include <numbers>

#include "graph/error.hpp"

namespace tg {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Rng::seed_with(uint64_t seed) {
  for (auto& w : s_) w = splitmix64(seed);
  has_spare_ = false;
  spare_ = 0.0;
}

void Rng::set_state(const State& s) {
  if (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0)
    throw Error("Rng::set_state: the all-zero state is invalid for xoshiro256**");
  s_ = s;
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // NOTE: Box-Muller on (0, 1]; 1 - uniform() never reaches 0, so log is finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * std::numbers::pi * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw Error("Rng::below: n must be positive");
  // Lemire's rejection keeps the result unbiased.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t x = next_u64();
    const __uint128_t m = static_cast<__uint128_t>(x) * n;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

}  // namespace tg
