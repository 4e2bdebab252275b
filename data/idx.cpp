// IDX files (the MNIST format): big-endian header [0, 0, type, rank], rank extents as
// big-endian uint32, then the elements, big-endian. Read through zlib, which takes both
// gzip-compressed and plain files.

#include <sys/mman.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>

#include "data/dataset.hpp"

namespace tg::data {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError(path + ": " + what);
}

// Reads exactly n bytes or throws naming the file.
void read_exact(gzFile f, const std::string& path, void* dst, size_t n, const char* what) {
  auto* p = static_cast<unsigned char*>(dst);
  while (n > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, 1u << 30));
    const int got = gzread(f, p, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      fail(path, std::string("corrupt data while reading the ") + what + " (" + msg + ")");
    }
    if (got == 0) fail(path, std::string("truncated: the file ends inside the ") + what);
    p += got;
    n -= static_cast<size_t>(got);
  }
}

uint32_t be32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

template <class Raw>
Raw load_be(const unsigned char* p) {
  unsigned char tmp[sizeof(Raw)];
  for (size_t i = 0; i < sizeof(Raw); ++i) tmp[i] = p[sizeof(Raw) - 1 - i];
  Raw v;
  std::memcpy(&v, tmp, sizeof(Raw));
  return v;
}

// Asks the kernel to back the 2 MiB-aligned interior of a large tensor with huge pages,
// before anything touches it: Linux's transparent huge pages in their default `madvise`
// mode only take regions so marked (marked later, pages are merged only by khugepaged,
// minutes on). A DataLoader gathers rows from anywhere in the training set, so on 4 KiB
// pages nearly every row costs a TLB miss and a page walk (figures: bench/README.md, the
// MPI section). Elsewhere, or when the kernel declines, nothing changes.
void prefer_huge_pages(Tensor& t) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (t.nbytes() < 2 * kHuge) return;
  const auto begin = reinterpret_cast<uintptr_t>(t.raw_data());
  const uintptr_t lo = (begin + kHuge - 1) / kHuge * kHuge;
  const uintptr_t hi = (begin + t.nbytes()) / kHuge * kHuge;
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // a hint
#else
  (void)t;
#endif
}

}  // namespace

Tensor read_idx(const std::string& path, Dtype dtype) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail(path, "no such file");
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) fail(path, "cannot open for reading");
  unsigned char head[4];
  read_exact(f.get(), path, head, 4, "header");
  if (head[0] != 0 || head[1] != 0)
    fail(path, "not an IDX file (the magic number must start with two zero bytes)");
  const int type = head[2], rank = head[3];
  size_t esz = 0;
  switch (type) {
    case 0x08:
    case 0x09:
      esz = 1;
      break;
    case 0x0B:
      esz = 2;
      break;
    case 0x0C:
    case 0x0D:
      esz = 4;
      break;
    case 0x0E:
      esz = 8;
      break;
    default:
      fail(path, "unknown IDX element type 0x" + std::to_string(type));
  }
  if (rank < 1 || rank > Shape::kMaxRank)
    fail(path,
         "IDX rank " + std::to_string(rank) + " is outside 1.." + std::to_string(Shape::kMaxRank));
  Shape shape;
  // The product of the non-zero extents is bounded too, checked before each multiplication:
  // with a zero extent among them [2^16, 2^18, 2^31, 0] is 0 elements, but the product
  // wrapped (and Shape::numel overflowed) on the way there (found by tests/fuzz/fuzz_idx).
  constexpr uint64_t kMaxCount = uint64_t{1} << 34;
  uint64_t count = 1, nonzero = 1;
  for (int d = 0; d < rank; ++d) {
    unsigned char b[4];
    read_exact(f.get(), path, b, 4, "header");
    const uint32_t n = be32(b);
    if (n != 0 && nonzero > kMaxCount / n)
      fail(path,
           "IDX extents " + shape.str() + " then " + std::to_string(n) + " are implausibly large");
    shape.push_back(n);
    if (n != 0) nonzero *= n;
    count *= n;
  }
  // A header can claim far more elements than the file holds: check the claim against the
  // file's size before allocating (a 12-byte file can claim 2 GB).
  // A plain file must hold every byte; a gzip stream cannot expand more than deflate's
  // maximum ratio of 1032:1.
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (!ec) {
    const uint64_t header = 4 + 4 * static_cast<uint64_t>(rank);
    const uint64_t need = count * esz;
    if (gzdirect(f.get())) {
      const uint64_t have = file_size > header ? file_size - header : 0;
      if (need > have)
        fail(path, "truncated: extents " + shape.str() + " need " + std::to_string(need) +
                       " bytes of data but the file has " + std::to_string(have));
    } else if (need > file_size * 1032 + 1024) {
      fail(path, "truncated: extents " + shape.str() + " need " + std::to_string(need) +
                     " bytes of data, more than " + std::to_string(file_size) +
                     " compressed bytes can hold");
    }
  }
  // Read and convert in chunks: the raw bytes never exist in full beside the tensor.
  Tensor t = Tensor::empty(shape, dtype);
  prefer_huge_pages(t);
  dispatch(dtype, [&]<class T>() {
    T* o = t.data<T>();
    std::vector<unsigned char> chunk(std::min<uint64_t>(count, 1 << 20) * esz);
    for (uint64_t done = 0; done < count;) {
      const uint64_t m = std::min<uint64_t>(count - done, chunk.size() / esz);
      read_exact(f.get(), path, chunk.data(), m * esz, "data");
      const unsigned char* p = chunk.data();
      for (uint64_t i = 0; i < m; ++i, p += esz) {
        switch (type) {
          case 0x08:
            o[done + i] = static_cast<T>(p[0]);
            break;
          case 0x09:
            o[done + i] = static_cast<T>(static_cast<signed char>(p[0]));
            break;
          case 0x0B:
            o[done + i] = static_cast<T>(load_be<int16_t>(p));
            break;
          case 0x0C:
            o[done + i] = static_cast<T>(load_be<int32_t>(p));
            break;
          case 0x0D:
            o[done + i] = static_cast<T>(load_be<float>(p));
            break;
          default:
            o[done + i] = static_cast<T>(load_be<double>(p));
            break;
        }
      }
      done += m;
    }
  });
  unsigned char extra;
  const int more = gzread(f.get(), &extra, 1);
  // A gzip stream cut inside its end (the last deflate block or the length and CRC
  // trailer) gives every element and then an error, not the end of the file.
  int err = Z_OK;
  const char* msg = gzerror(f.get(), &err);
  if (more < 0 || err != Z_OK)
    fail(path, std::string("truncated or corrupt gzip stream after the data (") + msg + ")");
  if (more != 0)
    fail(path, "has bytes after the " + std::to_string(count) + " elements of shape " +
                   shape.str() + " (extents do not match the data)");
  return t;
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};
  return names;
}

Dataset load_mnist_like(const std::string& dir, bool train, int64_t limit) {
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& stem) {
    for (const std::string& name : {stem + ".gz", stem}) {
      const std::string p = (std::filesystem::path(dir) / name).string();
      if (std::filesystem::exists(p)) return p;
    }
    throw DataError((std::filesystem::path(dir) / (stem + ".gz")).string() +
                    ": no such file (expected the " + (train ? "training" : "test") +
                    " set of an MNIST-style dataset in " + dir + ")");
  };
  const std::string img_path = find(prefix + "-images-idx3-ubyte");
  const std::string lbl_path = find(prefix + "-labels-idx1-ubyte");
  Tensor images = read_idx(img_path, f32);
  Tensor labels = read_idx(lbl_path, f64);
  if (images.dim() != 3)
    fail(img_path, "expected [N, rows, cols] images, got " + images.shape().str());
  if (labels.dim() != 1) fail(lbl_path, "expected [N] labels, got " + labels.shape().str());
  if (labels.shape()[0] != images.shape()[0])
    fail(lbl_path, std::to_string(labels.shape()[0]) + " labels for " +
                       std::to_string(images.shape()[0]) + " images in " + img_path);
  Dataset d;
  const int64_t n = images.shape()[0], dim = images.shape()[1] * images.shape()[2];
  const int64_t keep = limit < 0 ? n : std::min(limit, n);
  // Scaled in place and viewed as [N, 784]: no second copy of the images.
  float* px = images.data<float>();
  for (int64_t i = 0; i < n * dim; ++i) px[i] /= 255.0f;
  d.features = images.reshape({n, dim});
  const double* lab = labels.data<double>();
  d.num_classes = 10;
  for (int64_t i = 0; i < keep; ++i) {
    const double v = lab[i];
    if (v < 0 || v >= 10 || v != static_cast<double>(static_cast<int64_t>(v)))
      fail(lbl_path, "label " + std::to_string(v) + " at index " + std::to_string(i) +
                         " is not a class in 0..9");
    d.labels.push_back(static_cast<int64_t>(v));
  }
  d.class_names = fashion_mnist_classes();
  return keep < n ? d.head(keep) : d;
}

}  // namespace tg::data
