#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstring>

#include "models/checkpoint.hpp"
#include "models/sequential.hpp"
#include "models_test_util.hpp"

namespace fs = std::filesystem;

namespace {

std::unique_ptr<tg::MLP> make_mlp(uint64_t seed, tg::Dtype d = tg::f32) {
  tg::Rng rng(seed);
  return std::make_unique<tg::MLP>(std::vector<int64_t>{3, 4, 2}, tg::Activation::tanh,
                                   tg::Activation::sigmoid, rng, true, d);
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// Expects `load` to throw IoError whose message contains `what`, with `m` unchanged.
void expect_load_fails(tg::Module& m, const fs::path& p, const std::string& what) {
  const auto before = tgtest::snapshot(m);
  try {
    tg::load(m, p.string());
    FAIL("load of " << p << " did not throw");
  } catch (const tg::IoError& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(what) != std::string::npos);
  }
  CHECK(tgtest::same_values(m, before));
}

}  // namespace

TEST_CASE("npy encoding round-trips and matches numpy's header layout") {
  tg::Rng rng(1);
  const tg::Tensor t = tg::randn({3, 2}, rng);
  const std::string bytes = tg::npy_encode(tg::NpyArray::from_tensor(t));
  CHECK(bytes.compare(0, 6, "\x93NUMPY") == 0);
  CHECK(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }") == 10);
  CHECK((bytes.size() - 3 * 2 * 4) % 64 == 0);
  const auto back =
      tg::npy_decode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "t");
  CHECK(tg::equal(back.to_tensor(), t));
  // Rank 1 and rank 0 shapes.
  const std::string v = tg::npy_encode(tg::NpyArray::from_tensor(tg::ones({5}, tg::f64)));
  CHECK(v.find("'shape': (5,)") != std::string::npos);
  const std::string s = tg::npy_encode(tg::NpyArray::from_tensor(tg::scalar_tensor(2.5, tg::f64)));
  CHECK(s.find("'shape': ()") != std::string::npos);
}

TEST_CASE("an empty .npy array too large for a tensor shape throws IoError, not ShapeError") {
  // Found by tests/fuzz/fuzz_npz (corpus seed regress_empty_huge.npy): the zero extent makes
  // the array empty, so it decodes, but 4311 * 193201 * 6666666666666 overflows int64.
  tg::NpyArray a;
  a.type = tg::NpyType::f32;
  a.shape = {0, 4311, 193201, 6666666666666, 3};
  const std::string bytes = tg::npy_encode(a);
  const auto back =
      tg::npy_decode(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "e");
  CHECK(back.shape == a.shape);
  CHECK_THROWS_WITH(back.to_tensor(),
                    Catch::Contains("npz: an array of shape [0, 4311, 193201, 6666666666666, 3] "
                                    "cannot become a tensor") &&
                        Catch::Contains("more elements than int64"));
  CHECK_THROWS_AS(back.to_tensor(), tg::IoError);
}

TEST_CASE("NpzArchive holds tensors, scalars and integers and writes deterministic files") {
  const auto dir = tgtest::temp_dir("npz_archive");
  tg::Rng rng(2);
  tg::NpzArchive a;
  a.put("w", tg::randn({2, 3}, rng, tg::f64));
  a.put_scalar("lr", 0.125);
  a.put_int("epoch", 17);
  a.put_u64("rng.state", {1, 2, 0xFFFFFFFFFFFFFFFFull, 4});
  a.put_i64("steps", {3, -4});
  a.save((dir / "a.npz").string());
  const auto b = tg::NpzArchive::load((dir / "a.npz").string());
  CHECK((b.names() == std::vector<std::string>{"epoch", "lr", "rng.state", "steps", "w"}));
  CHECK(tg::equal(b.tensor("w"), a.tensor("w")));
  CHECK(b.scalar("lr") == 0.125);
  CHECK(b.integer("epoch") == 17);
  CHECK((b.u64s("rng.state") == std::vector<uint64_t>{1, 2, 0xFFFFFFFFFFFFFFFFull, 4}));
  CHECK((b.i64s("steps") == std::vector<int64_t>{3, -4}));
  CHECK_THROWS_AS(b.tensor("missing"), tg::IoError);
  CHECK(b.tensor("epoch").dtype() == tg::i64);  // int64 arrays are i64 tensors
  CHECK(b.tensor("epoch").item() == 17);
  CHECK_THROWS_AS(b.tensor("rng.state"), tg::IoError);  // uint64 is no tensor dtype
  CHECK(a.encode() == b.encode());                      // same contents, same bytes
}

TEST_CASE("int64 and bool tensors round-trip through .npz and numpy (<i8, |b1)") {
  const auto dir = tgtest::temp_dir("npz_int_bool");
  tg::NpzArchive a;
  a.put("ids", tg::Tensor(std::vector<int64_t>{7, -1, 9007199254740993, 0}, {2, 2}));
  a.put("mask", tg::tensor({1, 0, 0, 1, 1}, {5}, tg::boolean));
  a.save((dir / "ours.npz").string());
  const auto b = tg::NpzArchive::load((dir / "ours.npz").string());
  CHECK(tg::equal(b.tensor("ids"), a.tensor("ids")));
  CHECK(tg::equal(b.tensor("mask"), a.tensor("mask")));
  // A bool byte other than 0 or 1 is refused, not read into a bool.
  tg::NpyArray bad = tg::NpyArray::from_tensor(a.tensor("mask"));
  bad.bytes[3] = 2;
  CHECK_THROWS_WITH(bad.to_tensor(), Catch::Contains("byte 2 at element 3"));
  if (!tgtest::python_has("numpy")) {
    WARN("SKIPPED: /usr/bin/python3 with numpy is not available");
    return;
  }
  const std::string script = R"PY(
import numpy as np, os
d = os.path.dirname(os.path.abspath(__file__))
z = np.load(os.path.join(d, "ours.npz"))
assert z["ids"].dtype == np.int64 and z["ids"].shape == (2, 2), z["ids"]
assert z["ids"].tolist() == [[7, -1], [9007199254740993, 0]], z["ids"]
assert z["mask"].dtype == np.bool_ and z["mask"].tolist() == [True, False, False, True, True]
np.savez(os.path.join(d, "theirs.npz"), ids=np.array([[3, -4, 5]], dtype=np.int64),
         mask=np.array([[False], [True]]), be=np.array([1, 2], dtype=">i8"))
print("ok")
)PY";
  const int rc = tgtest::run_python(dir, "int_bool.py", script);
  INFO(tgtest::slurp(dir / "int_bool.py.log"));
  REQUIRE(rc == 0);
  const auto c = tg::NpzArchive::load((dir / "theirs.npz").string());
  CHECK(c.tensor("ids").dtype() == tg::i64);
  CHECK(c.tensor("ids").shape() == tg::Shape{1, 3});
  CHECK(c.tensor("ids").to_vector() == std::vector<double>{3, -4, 5});
  CHECK(c.tensor("mask").dtype() == tg::boolean);
  CHECK(c.tensor("mask").to_vector() == std::vector<double>{0, 1});
  CHECK(c.tensor("be").to_vector() == std::vector<double>{1, 2});
}

TEST_CASE("NpzArchive holds text as a uint8 array") {
  const auto dir = tgtest::temp_dir("npz_text");
  tg::NpzArchive a;
  a.put_string("name", "tanh");
  a.put_string("empty", "");
  a.put_int("code", 2);
  const auto& arr = a.array("name");
  CHECK(arr.type == tg::NpyType::u8);
  CHECK((arr.shape == std::vector<int64_t>{4}));
  CHECK(tg::npy_encode(arr).find("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }") ==
        10);
  a.save((dir / "t.npz").string());
  const auto b = tg::NpzArchive::load((dir / "t.npz").string());
  CHECK(b.string("name") == "tanh");
  CHECK(b.string("empty").empty());
  CHECK(a.encode() == b.encode());
  CHECK_THROWS_AS(b.string("code"), tg::IoError);  // an integer is not text
  CHECK_THROWS_WITH(b.string("code"), Catch::Contains("'code' is not text"));
  CHECK_THROWS_AS(b.string("missing"), tg::IoError);
  CHECK_THROWS_AS(b.tensor("name"), tg::IoError);  // text is not a tensor
}

TEST_CASE("save/load round trip is exact - f32 files load into f64 models") {
  const auto dir = tgtest::temp_dir("ckpt_roundtrip");
  auto a = make_mlp(1), b = make_mlp(2);
  const auto path = (dir / "model.npz").string();
  tg::save(*a, path);
  CHECK_FALSE(tgtest::same_values(*b, tgtest::snapshot(*a)));
  tg::load(*b, path);
  CHECK(tgtest::same_values(*b, tgtest::snapshot(*a)));
  // No temporary files are left behind.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);

  auto c = make_mlp(3, tg::f64);
  c->load(path);  // the member form
  const auto pa = a->parameters(), pc = c->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CHECK(pc[i].dtype() == tg::f64);
    CHECK(tg::equal(pc[i].value(), pa[i].value().to(tg::f64)));
  }
}

TEST_CASE("every bad checkpoint throws a clear IoError and leaves the model unchanged") {
  const auto dir = tgtest::temp_dir("ckpt_bad");
  auto model = make_mlp(1);
  auto other = make_mlp(9);
  const auto good = dir / "good.npz";
  tg::save(*other, good.string());
  const std::string bytes = tg::read_file(good.string());

  SECTION("missing file") { expect_load_fails(*model, dir / "nope.npz", "cannot open"); }
  SECTION("missing parameter") {
    auto arch = tg::NpzArchive::load(good.string());
    arch.erase("layers.2.bias");
    arch.save((dir / "missing.npz").string());
    expect_load_fails(*model, dir / "missing.npz", "'layers.2.bias' is missing");
  }
  SECTION("wrong shape") {
    auto arch = tg::NpzArchive::load(good.string());
    arch.put("layers.0.weight", tg::zeros({3, 4}));
    arch.save((dir / "shape.npz").string());
    expect_load_fails(*model, dir / "shape.npz", "has shape [3, 4] in the file but [4, 3]");
  }
  SECTION("wrong dtype: f64 into an f32 model") {
    auto arch = tg::NpzArchive::load(good.string());
    arch.put("layers.0.bias", arch.tensor("layers.0.bias").to(tg::f64));
    arch.save((dir / "dtype.npz").string());
    expect_load_fails(*model, dir / "dtype.npz", "'layers.0.bias' is float64 in the file");
  }
  SECTION("unexpected entry") {
    auto arch = tg::NpzArchive::load(good.string());
    arch.put("layers.5.weight", tg::zeros({1}));
    arch.save((dir / "extra.npz").string());
    expect_load_fails(*model, dir / "extra.npz", "'layers.5.weight' names no parameter");
  }
  SECTION("truncated at every length") {
    for (size_t n = 0; n < bytes.size(); n += (n < 200 ? 1 : 37)) {
      write_bytes(dir / "cut.npz", bytes.substr(0, n));
      const auto before = tgtest::snapshot(*model);
      CHECK_THROWS_AS(tg::load(*model, (dir / "cut.npz").string()), tg::IoError);
      CHECK(tgtest::same_values(*model, before));
    }
    write_bytes(dir / "cut.npz", bytes.substr(0, bytes.size() / 2));
    expect_load_fails(*model, dir / "cut.npz", "truncated");
  }
  SECTION("corrupt data byte") {
    std::string bad = bytes;
    // A byte inside the second entry (its .npy header), covered by the entry's CRC.
    bad[300] = static_cast<char>(bad[300] ^ 0x5A);
    write_bytes(dir / "corrupt.npz", bad);
    expect_load_fails(*model, dir / "corrupt.npz", "CRC mismatch");
  }
  SECTION("not a zip at all") {
    write_bytes(dir / "text.npz", std::string(1000, 'x'));
    expect_load_fails(*model, dir / "text.npz", "not an .npz file");
  }
}

TEST_CASE("a failed save leaves the previous checkpoint intact") {
  const auto dir = tgtest::temp_dir("ckpt_unwritable");
  auto a = make_mlp(1);
  tg::Rng rng(3);
  tg::MLP big({64, 64, 64}, tg::Activation::relu, tg::Activation::identity, rng);
  CHECK_THROWS_AS(tg::save(*a, (dir / "no_such_dir" / "m.npz").string()), tg::IoError);

  const auto path = dir / "m.npz";
  tg::save(*a, path.string());
  const std::string before = tg::read_file(path.string());
  // Simulate a full disk mid-write: a file size limit makes write() fail with EFBIG (this
  // works for root too, unlike a read-only directory).
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  bool threw = false;
  std::string message;
  try {
    tg::save(big, path.string());
  } catch (const tg::IoError& e) {
    threw = true;
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  INFO(message);
  CHECK(message.find("previous file") != std::string::npos);
  CHECK(tg::read_file(path.string()) == before);
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  auto b = make_mlp(5);
  tg::load(*b, path.string());
  CHECK(tgtest::same_values(*b, tgtest::snapshot(*a)));
}

TEST_CASE("Rng state round-trips through an archive") {
  tg::Rng rng(123);
  rng.normal();  // leaves a spare normal cached
  tg::NpzArchive a;
  tg::write_rng(rng, a);
  std::vector<double> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(rng.normal());
  tg::Rng other(1);
  tg::read_rng(other, tg::NpzArchive::decode(a.encode()));
  for (double e : expected) CHECK(other.normal() == e);
}

TEST_CASE("numpy reads our checkpoints - we read numpy.savez and savez_compressed files") {
  if (!tgtest::python_has("numpy")) {
    WARN("SKIPPED: /usr/bin/python3 with numpy is not available");
    return;
  }
  const auto dir = tgtest::temp_dir("ckpt_numpy");
  auto a = make_mlp(1);
  tg::save(*a, (dir / "ours.npz").string());
  const std::string script = R"PY(
import numpy as np, sys, os
d = os.path.dirname(os.path.abspath(__file__))
z = np.load(os.path.join(d, "ours.npz"))
names = sorted(z.files)
assert names == ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"], names
assert z["layers.0.weight"].shape == (4, 3) and z["layers.0.weight"].dtype == np.float32
assert z["layers.2.bias"].shape == (2,)
doubled = {k: z[k] * np.float32(2) for k in names}
np.savez(os.path.join(d, "savez.npz"), **doubled)
np.savez_compressed(os.path.join(d, "compressed.npz"), **doubled)
np.savez(os.path.join(d, "f64.npz"), **{k: v.astype(np.float64) for k, v in doubled.items()})
np.savez(os.path.join(d, "fortran_be.npz"),
         **{k: (np.asfortranarray(v).astype(">f4") if v.ndim == 2 else v) for k, v in doubled.items()})
print("ok")
)PY";
  const int rc = tgtest::run_python(dir, "interop.py", script);
  INFO(tgtest::slurp(dir / "interop.py.log"));
  REQUIRE(rc == 0);

  const auto pa = a->parameters();
  auto check_doubled = [&](const tg::Module& m) {
    const auto pm = m.parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      const auto x = pa[i].value().to_vector(), y = pm[i].value().to_vector();
      for (size_t k = 0; k < x.size(); ++k) CHECK(y[k] == 2 * x[k]);
    }
  };
  for (const char* file : {"savez.npz", "compressed.npz", "fortran_be.npz"}) {
    INFO(file);
    auto b = make_mlp(2);
    tg::load(*b, (dir / file).string());
    check_doubled(*b);
  }
  // A damaged compressed entry is caught (zlib error or CRC mismatch).
  std::string zipped = tg::read_file((dir / "compressed.npz").string());
  zipped[zipped.size() / 3] = static_cast<char>(zipped[zipped.size() / 3] ^ 0x21);
  write_bytes(dir / "compressed_bad.npz", zipped);
  auto c = make_mlp(2);
  expect_load_fails(*c, dir / "compressed_bad.npz", "corrupt");

  // numpy's default float64 arrays: an error for an f32 model, exact for an f64 one.
  auto f32_model = make_mlp(2);
  expect_load_fails(*f32_model, dir / "f64.npz", "float64 in the file but float32");
  auto f64_model = make_mlp(2, tg::f64);
  tg::load(*f64_model, (dir / "f64.npz").string());
  check_doubled(*f64_model);
}
