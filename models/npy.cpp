#include <algorithm>
#include <cstring>
#include <limits>

#include "models/npy_detail.hpp"
#include "models/npz.hpp"

namespace tg {

using namespace npy_detail;

namespace {

// ---- .npy header: a Python dict literal ----

struct HeaderParser {
  const std::string& s;
  const std::string& what;
  size_t pos = 0;

  [[noreturn]] void fail(const std::string& msg) const {
    throw IoError(what + ": bad .npy header (" + msg + "): " + s);
  }
  void skip_ws() {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n')) ++pos;
  }
  bool eat(char c) {
    skip_ws();
    if (pos < s.size() && s[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  std::string string_lit() {
    skip_ws();
    if (pos >= s.size() || (s[pos] != '\'' && s[pos] != '"')) fail("expected a string");
    const char q = s[pos++];
    const size_t end = s.find(q, pos);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s.substr(pos, end - pos);
    pos = end + 1;
    return out;
  }
  bool bool_lit() {
    skip_ws();
    if (s.compare(pos, 4, "True") == 0) {
      pos += 4;
      return true;
    }
    if (s.compare(pos, 5, "False") == 0) {
      pos += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> shape_lit() {
    expect('(');
    std::vector<int64_t> out;
    while (!eat(')')) {
      skip_ws();
      size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(s.substr(pos, 24), &used);
      } catch (const std::exception&) {
        fail("bad shape");
      }
      if (v < 0) fail("negative extent");
      pos += used;
      skip_ws();
      if (s.compare(pos, 1, "L") == 0) ++pos;  // Python 2 longs
      out.push_back(v);
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return out;
  }
};

NpyType parse_descr(const std::string& d, bool& swap, const std::string& what) {
  if (d.size() < 3) throw IoError(what + ": unsupported dtype '" + d + "'");
  const char order = d[0];
  const std::string kind = d.substr(1);
  if (order == '>')
    swap = true;
  else if (order == '<' || order == '|' || order == '=')
    swap = false;
  else
    throw IoError(what + ": unsupported dtype '" + d + "'");
  if (kind == "f4") return NpyType::f32;
  if (kind == "f8") return NpyType::f64;
  if (kind == "i4") return NpyType::i32;
  if (kind == "i8") return NpyType::i64;
  if (kind == "u8") return NpyType::u64;
  if (kind == "u1") return NpyType::u8;
  if (kind == "b1") return NpyType::b1;
  throw IoError(what + ": unsupported dtype '" + d +
                "' (float32, float64, int32, int64, uint64, uint8 and bool are supported)");
}

}  // namespace

const char* npy_descr(NpyType t) { return type_descr(t); }

// ---- NpyArray ----

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Tensor NpyArray::to_tensor() const {
  Dtype dtype;
  switch (type) {
    case NpyType::f32:
      dtype = f32;
      break;
    case NpyType::f64:
      dtype = f64;
      break;
    case NpyType::i64:
      dtype = i64;
      break;
    case NpyType::b1:
      dtype = boolean;
      break;
    default:
      throw IoError(std::string("npz: an array of ") + type_descr(type) +
                    " cannot become a tensor (float32, float64, int64 or bool expected)");
  }
  // A bool byte other than 0 or 1 is not a value C++ can hold in a bool.
  if (type == NpyType::b1)
    for (size_t i = 0; i < bytes.size(); ++i)
      if (bytes[i] > 1)
        throw IoError("npz: a bool array holds the byte " + std::to_string(bytes[i]) +
                      " at element " + std::to_string(i) + " (0 or 1 expected)");
  if (shape.size() > static_cast<size_t>(Shape::kMaxRank))  // found by tests/fuzz/fuzz_npz
    throw IoError("npz: an array of rank " + std::to_string(shape.size()) +
                  " cannot become a tensor (rank at most " + std::to_string(Shape::kMaxRank) + ")");
  // An empty array can have extents whose other (non-zero) extents multiply past int64,
  // which numpy stores but a Shape refuses (found by tests/fuzz/fuzz_npz).
  Shape s;
  try {
    s = Shape(shape);
  } catch (const ShapeError& e) {
    throw IoError("npz: an array of shape " + shape_str(shape) + " cannot become a tensor (" +
                  e.what() + ")");
  }
  Tensor t = Tensor::empty(s, dtype);
  if (!bytes.empty()) std::memcpy(t.raw_data(), bytes.data(), bytes.size());
  return t;
}

NpyArray NpyArray::from_tensor(const Tensor& t) {
  NpyArray a;
  switch (t.dtype()) {
    case f32:
      a.type = NpyType::f32;
      break;
    case f64:
      a.type = NpyType::f64;
      break;
    case i64:
      a.type = NpyType::i64;
      break;
    case boolean:
      a.type = NpyType::b1;
      break;
  }
  a.shape = t.shape().to_vector();
  a.bytes.resize(t.nbytes());
  if (!a.bytes.empty()) std::memcpy(a.bytes.data(), t.raw_data(), t.nbytes());
  return a;
}

std::string npy_encode(const NpyArray& a) {
  std::string header = "{'descr': '";
  header += type_descr(a.type);
  header += "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < a.shape.size(); ++i) {
    header += std::to_string(a.shape[i]);
    if (a.shape.size() == 1 || i + 1 < a.shape.size()) header += a.shape.size() == 1 ? "," : ", ";
  }
  header += "), }";
  // NOTE: as numpy does, pad with spaces so the data starts at a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw IoError("npy: header too long");
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  store_le<uint16_t>(out, static_cast<uint16_t>(header.size()));
  out += header;
  out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
  return out;
}

NpyArray npy_decode(const unsigned char* data, size_t size, const std::string& what) {
  if (size < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0)
    throw IoError(what + ": not an .npy array (bad magic)");
  const int major = data[6];
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = load_le<uint16_t>(data + 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw IoError(what + ": truncated .npy header");
    header_len = load_le<uint32_t>(data + 8);
    offset = 12;
  } else {
    throw IoError(what + ": unsupported .npy version " + std::to_string(major));
  }
  if (header_len > size - offset) throw IoError(what + ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(data + offset), header_len);
  offset += header_len;

  HeaderParser p{header, what};
  std::string descr;
  bool fortran = false, have_descr = false, have_order = false, have_shape = false;
  std::vector<int64_t> shape;
  p.expect('{');
  while (!p.eat('}')) {
    const std::string key = p.string_lit();
    p.expect(':');
    if (key == "descr") {
      descr = p.string_lit();
      have_descr = true;
    } else if (key == "fortran_order") {
      fortran = p.bool_lit();
      have_order = true;
    } else if (key == "shape") {
      shape = p.shape_lit();
      have_shape = true;
    } else {
      p.fail("unknown key '" + key + "'");
    }
    if (!p.eat(',')) {
      p.expect('}');
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape) p.fail("missing descr, fortran_order or shape");

  NpyArray a;
  bool swap = false;
  a.type = parse_descr(descr, swap, what);
  a.shape = shape;
  const size_t isz = type_size(a.type);
  int64_t n = 1;
  for (auto d : shape) {
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d / 8)
      throw IoError(what + ": shape too large");
    n *= d;
  }
  const uint64_t nbytes = static_cast<uint64_t>(n) * isz;
  if (nbytes > size - offset)
    throw IoError(what + ": truncated data (" + std::to_string(size - offset) + " of " +
                  std::to_string(nbytes) + " bytes for shape " + shape_str(shape) + ")");
  if (nbytes < size - offset)
    throw IoError(what + ": " + std::to_string(size - offset - nbytes) +
                  " unexpected bytes after the data");
  a.bytes.assign(data + offset, data + offset + nbytes);
  if (swap)
    for (size_t i = 0; i < a.bytes.size(); i += isz)
      std::reverse(a.bytes.begin() + static_cast<std::ptrdiff_t>(i),
                   a.bytes.begin() + static_cast<std::ptrdiff_t>(i + isz));
  if (fortran && shape.size() >= 2 && n > 0) {
    // Column-major to row-major: element with index (i0..ik) sits at sum(i_j * fstride_j).
    std::vector<unsigned char> c(a.bytes.size());
    const size_t r = shape.size();
    std::vector<int64_t> idx(r, 0), fstride(r, 1);
    for (size_t j = 1; j < r; ++j) fstride[j] = fstride[j - 1] * shape[j - 1];
    for (int64_t flat = 0; flat < n; ++flat) {
      int64_t src = 0;
      for (size_t j = 0; j < r; ++j) src += idx[j] * fstride[j];
      std::memcpy(c.data() + static_cast<size_t>(flat) * isz,
                  a.bytes.data() + static_cast<size_t>(src) * isz, isz);
      for (size_t j = r; j-- > 0;) {
        if (++idx[j] < shape[j]) break;
        idx[j] = 0;
      }
    }
    a.bytes = std::move(c);
  }
  return a;
}

}  // namespace tg
