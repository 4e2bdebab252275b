#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "graph/tensor.hpp"

namespace tg {

/// Element types an .npy array may hold here.
enum class NpyType { f32, f64, i32, i64, u64, u8, b1 };

/// One NumPy array: element type, shape and the raw elements (C order, little-endian).
struct NpyArray {
  NpyType type = NpyType::f64;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const;
  /// The array as a tensor: float32, float64, int64 and bool arrays (`<f4`, `<f8`, `<i8`,
  /// `|b1`); IoError for the other element types and for a bool byte other than 0 or 1.
  Tensor to_tensor() const;
  static NpyArray from_tensor(const Tensor& t);
};

/// numpy's name of the element type ("<f4", "<i8", "|b1", ...).
const char* npy_descr(NpyType t);

/// The .npy format (version 1.0 written; 1.0, 2.0, 3.0 read; any byte order and
/// fortran_order read). `what` names the array in error messages; errors are IoError.
std::string npy_encode(const NpyArray& a);
NpyArray npy_decode(const unsigned char* data, size_t size, const std::string& what);

/// A set of named arrays stored as NumPy's .npz (a zip of .npy files, "name.npy"). Written
/// like numpy.savez (stored entries, fixed timestamps, so the same contents give the same
/// bytes); reads numpy.savez and numpy.savez_compressed files. Model checkpoints, optimizer
/// state and training checkpoints (model + optimizer + epoch + RNG) are all archives.
class NpzArchive {
 public:
  /// Adds or replaces an entry.
  void put(const std::string& name, NpyArray array);
  void put(const std::string& name, const Tensor& t);
  /// A rank-0 float64 entry.
  void put_scalar(const std::string& name, double value);
  /// A rank-0 int64 entry.
  void put_int(const std::string& name, int64_t value);
  /// Rank-1 integer entries.
  void put_i64(const std::string& name, const std::vector<int64_t>& values);
  void put_u64(const std::string& name, const std::vector<uint64_t>& values);
  /// Text as a rank-1 uint8 array of its bytes (numpy: `bytes(archive[name]).decode()`).
  void put_string(const std::string& name, const std::string& value);

  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  /// Throws IoError naming the entry (and the file it came from) when absent.
  const NpyArray& array(const std::string& name) const;
  Tensor tensor(const std::string& name) const { return array(name).to_tensor(); }
  /// A one-element entry of any numeric type, as double / int64 (int64 requires an exact
  /// integer value).
  double scalar(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  std::vector<int64_t> i64s(const std::string& name) const;
  std::vector<uint64_t> u64s(const std::string& name) const;
  /// An entry written by `put_string` (a rank-1 uint8 array); throws IoError otherwise.
  std::string string(const std::string& name) const;

  void erase(const std::string& name) { entries_.erase(name); }
  /// Names in sorted order.
  std::vector<std::string> names() const;
  size_t size() const { return entries_.size(); }
  const std::map<std::string, NpyArray>& entries() const { return entries_; }

  /// The .npz file's bytes.
  std::string encode() const;
  /// Parses .npz bytes; `source` names the file in error messages.
  static NpzArchive decode(const std::string& bytes, const std::string& source = "<memory>");

  /// Writes atomically: a temporary file in the same directory, flushed and fsync'ed, then
  /// renamed over `path`; on any error the previous file is untouched. Throws IoError.
  void save(const std::string& path) const;
  /// Reads and checks the whole file (CRC of every entry). Throws IoError.
  static NpzArchive load(const std::string& path);

  /// The file this archive was loaded from (for messages), or "".
  const std::string& source() const { return source_; }

 private:
  std::map<std::string, NpyArray> entries_;
  std::string source_;
};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename). Throws IoError.
void write_file_atomic(const std::string& path, const std::string& bytes);
/// The whole file. Throws IoError.
std::string read_file(const std::string& path);

}  // namespace tg
