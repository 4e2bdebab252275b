#include "models/npz.hpp"
#include "models/npy_detail.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace tg {

using namespace npy_detail;

namespace {

// ---- zip ----

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1;  // 1980-01-01, fixed for reproducibility

struct Reader {
  const std::string& buf;
  const std::string& source;
  void need(uint64_t off, uint64_t n, const char* what) const {
    if (off > buf.size() || n > buf.size() - off)
      throw IoError(source + ": truncated or corrupt .npz (" + what + " past the end of the file)");
  }
  template <class T>
  T get(uint64_t off) const {
    need(off, sizeof(T), "field");
    return load_le<T>(reinterpret_cast<const unsigned char*>(buf.data()) + off);
  }
};

std::string inflate_raw(const unsigned char* src, size_t n, uint64_t out_size,
                        const std::string& what) {
  std::string out(static_cast<size_t>(out_size), '\0');
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw IoError(what + ": zlib init failed");
  zs.next_in = const_cast<Bytef*>(src);
  zs.avail_in = static_cast<uInt>(n);
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const uint64_t produced = zs.total_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || produced != out_size)
    throw IoError(what + ": corrupt compressed data (zlib: " +
                  (rc == Z_STREAM_END ? std::string("wrong size") : std::to_string(rc)) + ")");
  return out;
}

}  // namespace

// ---- NpzArchive ----

void NpzArchive::put(const std::string& name, NpyArray array) {
  if (name.empty()) throw IoError("npz: empty entry name");
  if (static_cast<uint64_t>(array.numel()) * type_size(array.type) != array.bytes.size())
    throw IoError("npz: entry '" + name + "' has the wrong number of bytes for its shape");
  entries_[name] = std::move(array);
}

void NpzArchive::put(const std::string& name, const Tensor& t) {
  if (!t.defined()) throw IoError("npz: entry '" + name + "' is an undefined tensor");
  put(name, NpyArray::from_tensor(t));
}

void NpzArchive::put_scalar(const std::string& name, double value) {
  NpyArray a;
  a.type = NpyType::f64;
  a.bytes.resize(8);
  std::memcpy(a.bytes.data(), &value, 8);
  put(name, std::move(a));
}

void NpzArchive::put_int(const std::string& name, int64_t value) {
  NpyArray a;
  a.type = NpyType::i64;
  a.bytes.resize(8);
  std::memcpy(a.bytes.data(), &value, 8);
  put(name, std::move(a));
}

void NpzArchive::put_i64(const std::string& name, const std::vector<int64_t>& values) {
  NpyArray a;
  a.type = NpyType::i64;
  a.shape = {static_cast<int64_t>(values.size())};
  a.bytes.resize(values.size() * 8);
  if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  put(name, std::move(a));
}

void NpzArchive::put_u64(const std::string& name, const std::vector<uint64_t>& values) {
  NpyArray a;
  a.type = NpyType::u64;
  a.shape = {static_cast<int64_t>(values.size())};
  a.bytes.resize(values.size() * 8);
  if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  put(name, std::move(a));
}

void NpzArchive::put_string(const std::string& name, const std::string& value) {
  NpyArray a;
  a.type = NpyType::u8;
  a.shape = {static_cast<int64_t>(value.size())};
  a.bytes.assign(value.begin(), value.end());
  put(name, std::move(a));
}

const NpyArray& NpzArchive::array(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    throw IoError((source_.empty() ? std::string("npz") : source_) + ": no entry '" + name + "'");
  return it->second;
}

double NpzArchive::scalar(const std::string& name) const {
  const NpyArray& a = array(name);
  if (a.numel() != 1)
    throw IoError("npz: entry '" + name + "' has shape " + shape_str(a.shape) +
                  ", expected one value");
  return element_as_double(a, 0);
}

int64_t NpzArchive::integer(const std::string& name) const {
  const NpyArray& a = array(name);
  if (a.numel() != 1)
    throw IoError("npz: entry '" + name + "' has shape " + shape_str(a.shape) +
                  ", expected one value");
  if (a.type == NpyType::i64) return load_le<int64_t>(a.bytes.data());
  if (a.type == NpyType::i32) return load_le<int32_t>(a.bytes.data());
  if (a.type == NpyType::u64) {
    const uint64_t v = load_le<uint64_t>(a.bytes.data());
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw IoError("npz: entry '" + name + "' does not fit int64");
    return static_cast<int64_t>(v);
  }
  const double d = element_as_double(a, 0);
  if (d != std::floor(d) || std::abs(d) > 9007199254740992.0)
    throw IoError("npz: entry '" + name + "' is not an integer");
  return static_cast<int64_t>(d);
}

std::vector<int64_t> NpzArchive::i64s(const std::string& name) const {
  const NpyArray& a = array(name);
  if (a.type != NpyType::i64 && a.type != NpyType::i32)
    throw IoError("npz: entry '" + name + "' is not a signed integer array");
  std::vector<int64_t> out(static_cast<size_t>(a.numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = a.type == NpyType::i64 ? load_le<int64_t>(a.bytes.data() + 8 * i)
                                    : load_le<int32_t>(a.bytes.data() + 4 * i);
  return out;
}

std::vector<uint64_t> NpzArchive::u64s(const std::string& name) const {
  const NpyArray& a = array(name);
  if (a.type != NpyType::u64) throw IoError("npz: entry '" + name + "' is not a uint64 array");
  std::vector<uint64_t> out(static_cast<size_t>(a.numel()));
  if (!out.empty()) std::memcpy(out.data(), a.bytes.data(), a.bytes.size());
  return out;
}

std::string NpzArchive::string(const std::string& name) const {
  const NpyArray& a = array(name);
  if (a.type != NpyType::u8 || a.shape.size() != 1)
    throw IoError((source_.empty() ? std::string("npz") : source_) + ": entry '" + name +
                  "' is not text (a rank-1 uint8 array)");
  return std::string(a.bytes.begin(), a.bytes.end());
}

std::vector<std::string> NpzArchive::names() const {
  std::vector<std::string> out;
  for (const auto& [n, a] : entries_) out.push_back(n);
  return out;
}

std::string NpzArchive::encode() const {
  std::string out, central;
  uint16_t count = 0;
  for (const auto& [name, arr] : entries_) {
    if (count == 0xFFFF) throw IoError("npz: too many entries (zip64 is not written)");
    const std::string file = name + ".npy";
    const std::string data = npy_encode(arr);
    if (data.size() >= 0xFFFFFFFFull || out.size() >= 0xFFFFFFFFull || file.size() > 0xFFFF)
      throw IoError("npz: entry '" + name + "' too large (zip64 is not written)");
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    const uint32_t offset = static_cast<uint32_t>(out.size());
    const uint32_t sz = static_cast<uint32_t>(data.size());
    // Local file header.
    store_le<uint32_t>(out, kLocalSig);
    store_le<uint16_t>(out, 20);  // version needed
    store_le<uint16_t>(out, 0);   // flags
    store_le<uint16_t>(out, 0);   // method: stored
    store_le<uint16_t>(out, 0);   // time
    store_le<uint16_t>(out, kDosDate1980);
    store_le<uint32_t>(out, crc);
    store_le<uint32_t>(out, sz);
    store_le<uint32_t>(out, sz);
    store_le<uint16_t>(out, static_cast<uint16_t>(file.size()));
    store_le<uint16_t>(out, 0);
    out += file;
    out += data;
    // Central directory record.
    store_le<uint32_t>(central, kCentralSig);
    store_le<uint16_t>(central, 20);  // made by
    store_le<uint16_t>(central, 20);  // needed
    store_le<uint16_t>(central, 0);
    store_le<uint16_t>(central, 0);
    store_le<uint16_t>(central, 0);
    store_le<uint16_t>(central, kDosDate1980);
    store_le<uint32_t>(central, crc);
    store_le<uint32_t>(central, sz);
    store_le<uint32_t>(central, sz);
    store_le<uint16_t>(central, static_cast<uint16_t>(file.size()));
    store_le<uint16_t>(central, 0);  // extra
    store_le<uint16_t>(central, 0);  // comment
    store_le<uint16_t>(central, 0);  // disk
    store_le<uint16_t>(central, 0);  // internal attributes
    store_le<uint32_t>(central, 0);  // external attributes
    store_le<uint32_t>(central, offset);
    central += file;
    ++count;
  }
  if (out.size() + central.size() >= 0xFFFFFFFFull)
    throw IoError("npz: archive too large (zip64 is not written)");
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  store_le<uint32_t>(out, kEndSig);
  store_le<uint16_t>(out, 0);
  store_le<uint16_t>(out, 0);
  store_le<uint16_t>(out, count);
  store_le<uint16_t>(out, count);
  store_le<uint32_t>(out, static_cast<uint32_t>(central.size()));
  store_le<uint32_t>(out, cd_offset);
  store_le<uint16_t>(out, 0);
  return out;
}

NpzArchive NpzArchive::decode(const std::string& buf, const std::string& source) {
  Reader r{buf, source};
  // The end-of-central-directory record: 22 bytes plus a comment of up to 65535.
  if (buf.size() < 22)
    throw IoError(source + ": not an .npz file or truncated (" + std::to_string(buf.size()) +
                  " bytes)");
  size_t eocd = std::string::npos;
  const size_t lowest = buf.size() > 22 + 65535 ? buf.size() - 22 - 65535 : 0;
  for (size_t i = buf.size() - 22 + 1; i-- > lowest;)
    if (r.get<uint32_t>(i) == kEndSig && i + 22 + r.get<uint16_t>(i + 20) == buf.size()) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos)
    throw IoError(source +
                  ": not an .npz file, or truncated (no zip end-of-central-directory record)");
  uint64_t entries = r.get<uint16_t>(eocd + 10);
  uint64_t cd_size = r.get<uint32_t>(eocd + 12);
  uint64_t cd_offset = r.get<uint32_t>(eocd + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || r.get<uint32_t>(eocd - 20) != kEnd64LocatorSig)
      throw IoError(source + ": corrupt .npz (zip64 locator missing)");
    const uint64_t e64 = r.get<uint64_t>(eocd - 20 + 8);
    if (r.get<uint32_t>(e64) != kEnd64Sig) throw IoError(source + ": corrupt .npz (zip64 end)");
    entries = r.get<uint64_t>(e64 + 32);
    cd_size = r.get<uint64_t>(e64 + 40);
    cd_offset = r.get<uint64_t>(e64 + 48);
  }
  r.need(cd_offset, cd_size, "central directory");

  NpzArchive archive;
  archive.source_ = source;
  uint64_t pos = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    if (r.get<uint32_t>(pos) != kCentralSig)
      throw IoError(source + ": corrupt .npz (bad central directory record " + std::to_string(e) +
                    ")");
    const uint16_t flags = r.get<uint16_t>(pos + 8);
    const uint16_t method = r.get<uint16_t>(pos + 10);
    const uint32_t crc = r.get<uint32_t>(pos + 16);
    uint64_t csize = r.get<uint32_t>(pos + 20);
    uint64_t usize = r.get<uint32_t>(pos + 24);
    const uint16_t name_len = r.get<uint16_t>(pos + 28);
    const uint16_t extra_len = r.get<uint16_t>(pos + 30);
    const uint16_t comment_len = r.get<uint16_t>(pos + 32);
    uint64_t local = r.get<uint32_t>(pos + 42);
    r.need(pos + 46, name_len + extra_len, "entry name");
    const std::string file = buf.substr(pos + 46, name_len);
    // Zip64 extra field: the 0xFFFFFFFF fields, in the order usize, csize, offset.
    for (uint64_t x = pos + 46 + name_len; x + 4 <= pos + 46 + name_len + extra_len;) {
      const uint16_t id = r.get<uint16_t>(x), len = r.get<uint16_t>(x + 2);
      if (id == 0x0001) {
        uint64_t f = x + 4;
        if (usize == 0xFFFFFFFF) usize = r.get<uint64_t>(f), f += 8;
        if (csize == 0xFFFFFFFF) csize = r.get<uint64_t>(f), f += 8;
        if (local == 0xFFFFFFFF) local = r.get<uint64_t>(f), f += 8;
      }
      x += 4 + len;
    }
    pos += 46 + name_len + extra_len + comment_len;

    const std::string what = source + ": entry '" + file + "'";
    if (flags & 1) throw IoError(what + " is encrypted");
    if (r.get<uint32_t>(local) != kLocalSig)
      throw IoError(what + ": corrupt .npz (bad local header)");
    const uint64_t data_start =
        local + 30 + r.get<uint16_t>(local + 26) + r.get<uint16_t>(local + 28);
    r.need(data_start, csize, "entry data");
    const auto* src = reinterpret_cast<const unsigned char*>(buf.data()) + data_start;
    std::string raw;
    if (method == 0) {
      if (csize != usize) throw IoError(what + ": corrupt .npz (stored sizes differ)");
      raw.assign(reinterpret_cast<const char*>(src), static_cast<size_t>(csize));
    } else if (method == 8) {
      // NOTE: deflate expands at most ~1032:1; a larger claimed size is a corrupt header,
      // refused before allocating it.
      if (usize > 1032 * csize + 64)
        throw IoError(what + ": corrupt .npz (implausible uncompressed size)");
      raw = inflate_raw(src, static_cast<size_t>(csize), usize, what);
    } else {
      throw IoError(what + ": unsupported zip compression method " + std::to_string(method));
    }
    const uint32_t actual = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uInt>(raw.size())));
    if (actual != crc) throw IoError(what + ": corrupt .npz (CRC mismatch)");
    std::string name = file;
    if (name.size() >= 4 && name.compare(name.size() - 4, 4, ".npy") == 0)
      name.resize(name.size() - 4);
    archive.entries_[name] =
        npy_decode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), what);
  }
  return archive;
}

void NpzArchive::save(const std::string& path) const { write_file_atomic(path, encode()); }

NpzArchive NpzArchive::load(const std::string& path) { return decode(read_file(path), path); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("error reading '" + path + "'");
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.filename().empty()) throw IoError("cannot write '" + path + "': not a file name");
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string name(".");  // hidden temporary beside the target: rename stays on one disk
  name += target.filename().string();
  name += ".tmp.XXXXXX";
  std::string tmp = (dir / name).string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw IoError("cannot write '" + path + "': " + std::strerror(errno));
  auto fail = [&](const char* step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError("cannot write '" + path + "' (" + step + "): " + std::strerror(err) +
                  "; the previous file, if any, is unchanged");
  };
  ::fchmod(fd, 0644);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      fail("write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IoError("cannot write '" + path + "' (close): " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IoError("cannot write '" + path + "' (rename): " + std::strerror(err) +
                  "; the previous file, if any, is unchanged");
  }
  // Make the rename itself durable.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace tg
