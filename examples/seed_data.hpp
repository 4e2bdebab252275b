// The seed data (data/seed_regression.csv, docs/seed.md) as the examples use it: x scaled
// by its overall maximum (one number for both columns), y by its own maximum.
#pragma once

#include <tapegrad/tapegrad.hpp>

#include <algorithm>
#include <string>
#include <vector>

struct SeedData {
  tg::Var X;  // [7, 2]
  tg::Var Y;  // [7, 1]
};

inline SeedData read_seed(const std::string& path, tg::Dtype dtype = tg::f32) {
  const auto table = tg::data::read_csv(path);
  std::vector<double> xs, ys;
  double x_max = 0, y_max = 0;
  for (const auto& r : table.rows)
    x_max = std::max({x_max, r[0], r[1]}), y_max = std::max(y_max, r[2]);
  for (const auto& r : table.rows)
    xs.insert(xs.end(), {r[0] / x_max, r[1] / x_max}), ys.push_back(r[2] / y_max);
  const auto n = static_cast<int64_t>(ys.size());
  return {tg::constant(tg::tensor(xs, {n, 2}, dtype)), tg::constant(tg::tensor(ys, {n, 1}, dtype))};
}
