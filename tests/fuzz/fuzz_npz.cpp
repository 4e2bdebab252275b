// Fuzzes the checkpoint loader: NpzArchive::decode (zip directory, stored and deflated
// entries, CRCs, the .npy headers inside), npy_decode on its own, and reading a model's
// parameters from whatever archive decodes. Every failure must be tg::IoError, and a
// failed read_parameters must leave the model bit-for-bit unchanged.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "graph/error.hpp"
#include "graph/rng.hpp"
#include "models/checkpoint.hpp"
#include "models/npz.hpp"
#include "models/sequential.hpp"

namespace {

std::vector<unsigned char> bytes_of(const tg::Module& m) {
  std::vector<unsigned char> out;
  for (const auto& p : m.parameters()) {
    const auto* b = static_cast<const unsigned char*>(p.value().raw_data());
    out.insert(out.end(), b, b + p.value().nbytes());
  }
  return out;
}

void read_into(tg::Module& model, const tg::NpzArchive& archive, bool strict) {
  const auto before = bytes_of(model);
  try {
    tg::read_parameters(model, archive, "", strict);
  } catch (const tg::IoError&) {
    if (bytes_of(model) != before) tgfuzz::fail("read_parameters changed the model and threw");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The .npy parser alone.
  try {
    tg::NpyArray a = tg::npy_decode(data, size, "fuzz.npy");
    try {
      (void)a.to_tensor();
    } catch (const tg::IoError&) {
    }
  } catch (const tg::IoError&) {
  }

  // The archive, then a model read from it.
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  tg::NpzArchive archive;
  try {
    archive = tg::NpzArchive::decode(bytes, "fuzz.npz");
  } catch (const tg::IoError&) {
    return 0;
  }
  // What decoded re-encodes to an archive with the same entries.
  const tg::NpzArchive again = tg::NpzArchive::decode(archive.encode(), "re-encoded");
  if (again.names() != archive.names()) {
    std::string names;
    for (const auto& n : archive.names()) names += " '" + n + "'";
    names += " became";
    for (const auto& n : again.names()) names += " '" + n + "'";
    tgfuzz::fail("re-encoded archive has other names:" + names);
  }
  for (const auto& [name, arr] : archive.entries()) {
    const auto& b = again.array(name);
    if (b.bytes != arr.bytes || b.shape != arr.shape || b.type != arr.type)
      tgfuzz::fail("re-encoded entry differs: " + name);
  }
  static tg::Rng rng(1);
  static tg::MLP f32_model({3, 4, 2}, tg::Activation::tanh, tg::Activation::identity, rng);
  static tg::MLP f64_model({3, 4, 2}, tg::Activation::tanh, tg::Activation::identity, rng, true,
                           tg::f64);
  read_into(f32_model, archive, true);
  read_into(f64_model, archive, false);
  return 0;
}
