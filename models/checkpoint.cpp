#include "models/checkpoint.hpp"

#include <cstring>

namespace tg {

namespace {
std::string where(const NpzArchive& a) {
  return a.source().empty() ? std::string("checkpoint") : "checkpoint '" + a.source() + "'";
}
}  // namespace

void write_parameters(const Module& module, NpzArchive& archive, const std::string& prefix) {
  for (const auto& [name, p] : module.named_parameters()) archive.put(prefix + name, p.value());
  for (const auto& b : named_buffer_slots(const_cast<Module&>(module)))
    if (b.persistent) archive.put(prefix + b.name, *b.slot);
}

void read_parameters(Module& module, const NpzArchive& archive, const std::string& prefix,
                     bool strict) {
  const auto params = module.named_parameters();
  // Stage: every value converted to the parameter's dtype, before anything is touched.
  std::vector<Tensor> staged;
  staged.reserve(params.size());
  for (const auto& [name, p] : params) {
    const std::string key = prefix + name;
    if (!archive.contains(key))
      throw IoError(where(archive) + ": parameter '" + name + "' is missing (no entry '" + key +
                    ".npy')");
    const NpyArray& a = archive.array(key);
    if (a.type != NpyType::f32 && a.type != NpyType::f64)
      throw IoError(where(archive) + ": parameter '" + name + "' is stored as an array of " +
                    npy_descr(a.type) + "; float32 or float64 expected");
    if (Shape(a.shape) != p.shape())
      throw IoError(where(archive) + ": parameter '" + name + "' has shape " +
                    Shape(a.shape).str() + " in the file but " + p.shape().str() + " in the model");
    Tensor t = a.to_tensor();
    if (t.dtype() != p.dtype()) {
      if (t.dtype() == f64 && p.dtype() == f32)
        throw IoError(where(archive) + ": parameter '" + name +
                      "' is float64 in the file but float32 in the model (a lossy conversion; "
                      "convert the model with to(tg::f64) or save the array as float32)");
      t = t.to(p.dtype());
    }
    staged.push_back(std::move(t));
  }
  // Persistent buffers, staged the same way: floating ones as parameters, integer and bool
  // ones only from an entry of their own dtype.
  std::vector<NamedBufferSlot> buffers;
  for (auto& b : named_buffer_slots(module))
    if (b.persistent) buffers.push_back(b);
  std::vector<Tensor> staged_buffers;
  for (const auto& b : buffers) {
    const std::string key = prefix + b.name;
    const Tensor& dst = *b.slot;
    if (!archive.contains(key))
      throw IoError(where(archive) + ": buffer '" + b.name + "' is missing (no entry '" + key +
                    ".npy')");
    const NpyArray& a = archive.array(key);
    const bool floating_entry = a.type == NpyType::f32 || a.type == NpyType::f64;
    const bool ok_type = is_floating(dst.dtype()) ? floating_entry
                                                  : (dst.dtype() == i64 ? a.type == NpyType::i64
                                                                        : a.type == NpyType::b1);
    if (!ok_type)
      throw IoError(where(archive) + ": buffer '" + b.name + "' is stored as an array of " +
                    npy_descr(a.type) + "; the model's buffer is " +
                    std::string(dtype_name(dst.dtype())));
    if (Shape(a.shape) != dst.shape())
      throw IoError(where(archive) + ": buffer '" + b.name + "' has shape " + Shape(a.shape).str() +
                    " in the file but " + dst.shape().str() + " in the model");
    Tensor t = a.to_tensor();
    if (t.dtype() != dst.dtype()) {
      if (t.dtype() == f64 && dst.dtype() == f32)
        throw IoError(where(archive) + ": buffer '" + b.name +
                      "' is float64 in the file but float32 in the model (a lossy conversion; "
                      "convert the model with to(tg::f64) or save the array as float32)");
      t = t.to(dst.dtype());
    }
    staged_buffers.push_back(std::move(t));
  }
  if (strict) {
    for (const auto& key : archive.names()) {
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      bool known = false;
      for (const auto& [name, p] : params) known = known || prefix + name == key;
      for (const auto& b : buffers) known = known || prefix + b.name == key;
      if (!known)
        throw IoError(where(archive) + ": entry '" + key +
                      "' names no parameter or persistent buffer of the model");
    }
  }
  // Commit: same shapes and dtypes now, so nothing below can fail.
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor dst = params[i].second.value();
    if (dst.nbytes() != 0) std::memcpy(dst.raw_data(), staged[i].raw_data(), dst.nbytes());
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    // The buffer's own storage, written in place (a handle taken before sees the new values).
    Tensor& dst = *buffers[i].slot;
    if (dst.nbytes() != 0) std::memcpy(dst.raw_data(), staged_buffers[i].raw_data(), dst.nbytes());
    dst.bump_version();
  }
}

void save(const Module& module, const std::string& path) {
  NpzArchive archive;
  write_parameters(module, archive);
  archive.save(path);
}

void load(Module& module, const std::string& path) {
  read_parameters(module, NpzArchive::load(path));
}

void Module::save(const std::string& path) const { tg::save(*this, path); }
void Module::load(const std::string& path) { tg::load(*this, path); }

void write_rng(const Rng& rng, NpzArchive& archive, const std::string& prefix) {
  const auto s = rng.state();
  archive.put_u64(prefix + "state", {s.begin(), s.end()});
  archive.put(prefix + "spare", tensor({rng.has_spare() ? 1.0 : 0.0, rng.spare()}, Shape{2}, f64));
}

void read_rng(Rng& rng, const NpzArchive& archive, const std::string& prefix) {
  const auto s = archive.u64s(prefix + "state");
  if (s.size() != 4) throw IoError(where(archive) + ": '" + prefix + "state' must hold 4 values");
  const Tensor spare = archive.tensor(prefix + "spare").to(f64);
  if (spare.numel() != 2) throw IoError(where(archive) + ": '" + prefix + "spare' must hold 2");
  Rng::State st{s[0], s[1], s[2], s[3]};
  Rng next = rng;
  next.set_state(st);
  next.set_spare(spare.data<double>()[0] != 0.0, spare.data<double>()[1]);
  rng = next;
}

}  // namespace tg
