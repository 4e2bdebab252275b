// Fashion-MNIST for the LibTorch benchmarks (fashion.cpp, cnn.cpp): the gzip IDX files
// read with zlib into [N, 784] f32 in [0, 1] and [N] int64 labels, as tapegrad's
// load_mnist_like, and the test accuracy of a Sequential classifier.
#pragma once

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const std::string kDir = "/usr/share/datasets/fashion-mnist/";

/// The bytes of a gzip-compressed IDX file after its header, and its extents.
inline std::vector<uint8_t> read_idx_gz(const std::string& path, std::vector<int64_t>& dims) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  gzclose(f);
  if (bytes.size() < 4 || bytes[2] != 0x08) throw std::runtime_error(path + ": not ubyte IDX");
  const int rank = bytes[3];
  dims.clear();
  size_t pos = 4;
  for (int d = 0; d < rank; ++d, pos += 4)
    dims.push_back((int64_t{bytes[pos]} << 24) | (bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) |
                   bytes[pos + 3]);
  return {bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.end()};
}

struct Data {
  torch::Tensor x, y;  // [N, 784] f32 in [0, 1]; [N] int64
};

inline Data load(bool train) {
  const std::string prefix = kDir + (train ? "train" : "t10k");
  std::vector<int64_t> di, dl;
  std::vector<uint8_t> images = read_idx_gz(prefix + "-images-idx3-ubyte.gz", di);
  std::vector<uint8_t> labels = read_idx_gz(prefix + "-labels-idx1-ubyte.gz", dl);
  const int64_t n = di[0];
  Data d;
  d.x = torch::from_blob(images.data(), {n, di[1] * di[2]}, torch::kUInt8)
            .to(torch::kFloat32)
            .div_(255.0);
  d.y = torch::from_blob(labels.data(), {n}, torch::kUInt8).to(torch::kLong);
  return d;
}

inline double accuracy(torch::nn::Sequential& net, const Data& test) {
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  const int64_t n = test.x.size(0);
  for (int64_t s = 0; s < n; s += 1000) {
    const int64_t e = std::min(n, s + 1000);
    torch::Tensor pred = net->forward(test.x.slice(0, s, e)).argmax(1);
    correct += pred.eq(test.y.slice(0, s, e)).sum().item<int64_t>();
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace
