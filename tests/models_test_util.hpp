#pragma once

// Helpers shared by test_models, test_optim, test_checkpoint and test_seed.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "graph/rng.hpp"
#include "graph/var.hpp"
#include "models/module.hpp"

namespace tgtest {

/// A fresh empty directory under the build tree (removed and recreated).
inline std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(TAPEGRAD_BINARY_DIR) / "test_tmp" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// True when /usr/bin/python3 can import `module` (e.g. "numpy", "torch").
inline bool python_has(const std::string& module) {
  const std::string cmd = "/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

/// Writes `script` to dir/name and runs it with /usr/bin/python3; returns the exit code.
inline int run_python(const std::filesystem::path& dir, const std::string& name,
                      const std::string& script) {
  const auto path = dir / name;
  std::ofstream(path) << script;
  const std::string cmd =
      "/usr/bin/python3 '" + path.string() + "' > '" + (dir / (name + ".log")).string() + "' 2>&1";
  return std::system(cmd.c_str());
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Deep copies of every parameter value and buffer of a module (to check it was left
/// unchanged).
inline std::vector<tg::Tensor> snapshot(const tg::Module& m) {
  std::vector<tg::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.value().clone());
  for (const auto& b : m.buffers()) out.push_back(b.clone());
  return out;
}

inline bool same_values(const tg::Module& m, const std::vector<tg::Tensor>& snap) {
  std::vector<tg::Tensor> now;
  for (const auto& p : m.parameters()) now.push_back(p.value());
  for (const auto& b : m.buffers()) now.push_back(b);
  if (now.size() != snap.size()) return false;
  for (size_t i = 0; i < now.size(); ++i)
    if (now[i].dtype() != snap[i].dtype() || !tg::equal(now[i], snap[i])) return false;
  return true;
}

/// XOR inputs and targets.
inline tg::Var xor_inputs(tg::Dtype d = tg::f32) {
  return tg::constant(tg::tensor({0, 0, 0, 1, 1, 0, 1, 1}, {4, 2}, d));
}
inline tg::Var xor_targets(tg::Dtype d = tg::f32) {
  return tg::constant(tg::tensor({0, 1, 1, 0}, {4, 1}, d));
}

}  // namespace tgtest
