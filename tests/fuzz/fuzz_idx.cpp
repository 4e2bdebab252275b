// Fuzzes the IDX reader (plain and gzip) in both dtypes: a result or tg::data::DataError,
// nothing else; a result's shape must account for every element.

#include <cstdint>

#include "data/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tgfuzz::MemFile file(data, size);
  for (tg::Dtype dt : {tg::f32, tg::f64}) {
    try {
      const tg::Tensor t = tg::data::read_idx(file.path(), dt);
      if (t.dtype() != dt) tgfuzz::fail("read_idx returned the wrong dtype");
      if (t.numel() != t.shape().numel()) tgfuzz::fail("numel disagrees with shape");
      if (t.dim() < 1) tgfuzz::fail("read_idx returned a rank-0 tensor");
    } catch (const tg::data::DataError&) {
    }
  }
  return 0;
}
