#include <zlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <type_traits>

#include "data/dataset.hpp"
#include "data/sampler.hpp"
#include "data/words.hpp"
#include "torch_oracle.hpp"

namespace fs = std::filesystem;
using tg::data::DataError;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("tapegrad_data_" + std::to_string(::getpid()) + "_" +
                                               std::to_string(reinterpret_cast<uintptr_t>(this)));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<unsigned char>& data,
                      unsigned char type = 0x08) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>((d >> (8 * k)) & 0xff));
  s.append(data.begin(), data.end());
  return s;
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

}  // namespace

TEST_CASE("IDX files read plain and gzip-compressed", "[data]") {
  TempDir dir;
  const auto bytes = idx_bytes({2, 3}, {0, 1, 2, 253, 254, 255});
  write_plain(dir.file("a.idx"), bytes);
  write_gz(dir.file("a.idx.gz"), bytes);
  for (const auto& name : {"a.idx", "a.idx.gz"}) {
    const tg::Tensor t = tg::data::read_idx(dir.file(name));
    CHECK(t.shape() == tg::Shape{2, 3});
    CHECK(t.to_vector() == std::vector<double>{0, 1, 2, 253, 254, 255});
  }
  // big-endian int32 elements
  write_plain(dir.file("i.idx"), idx_bytes({2}, {0, 0, 1, 0, 0xff, 0xff, 0xff, 0xfe}, 0x0C));
  CHECK(tg::data::read_idx(dir.file("i.idx"), tg::f64).to_vector() == std::vector<double>{256, -2});
}

TEST_CASE("bad IDX files fail with the file name and the problem", "[data][errors]") {
  TempDir dir;
  const auto good = idx_bytes({2, 3}, {0, 1, 2, 3, 4, 5});
  auto expect = [&](const std::string& name, const std::string& bytes, const char* what, bool gz) {
    const std::string p = dir.file(name);
    gz ? write_gz(p, bytes) : write_plain(p, bytes);
    CHECK_THROWS_AS(tg::data::read_idx(p), DataError);
    CHECK_THROWS_WITH(tg::data::read_idx(p), Catch::Contains(p) && Catch::Contains(what));
  };
  expect("trunc.idx", good.substr(0, good.size() - 2), "truncated", false);
  expect("trunc_head.idx", good.substr(0, 6), "truncated", false);
  expect("trunc.idx.gz", good.substr(0, good.size() - 1), "truncated", true);
  expect("magic.idx", "\x01\x02" + good.substr(2), "magic", false);
  expect("type.idx", idx_bytes({2}, {1, 2}, 0x42), "element type", false);
  expect("extra.idx", good + "xyz", "after", false);
  expect("empty.idx", "", "truncated", false);
  // a gzip file cut in the middle of its compressed stream
  write_gz(dir.file("full.gz"), std::string(5000, 'a') + good);
  std::ifstream in(dir.file("full.gz"), std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), {});
  write_plain(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  CHECK_THROWS_AS(tg::data::read_idx(dir.file("cut.gz")), DataError);
  CHECK_THROWS_WITH(tg::data::read_idx(dir.file("missing.idx")), Catch::Contains("no such file"));
}

TEST_CASE("an IDX file cut at any byte throws DataError naming it", "[data][errors]") {
  TempDir dir;
  const auto good = idx_bytes({3, 5}, std::vector<unsigned char>(15, 7));
  const std::string gz_good = [&] {
    write_gz(dir.file("g.gz"), good);
    std::ifstream g(dir.file("g.gz"), std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(g)), {});
  }();
  for (const std::string* bytes : {&good, &gz_good}) {
    for (size_t cut = 0; cut < bytes->size(); ++cut) {
      const std::string p = dir.file("cut_" + std::to_string(cut));
      write_plain(p, bytes->substr(0, cut));
      INFO((bytes == &good ? "plain" : "gzip") << " file cut to " << cut << " bytes");
      CHECK_THROWS_AS(tg::data::read_idx(p), DataError);
      CHECK_THROWS_WITH(
          tg::data::read_idx(p),
          Catch::Contains(p) && (Catch::Contains("truncated") || Catch::Contains("corrupt")));
    }
  }
}

TEST_CASE("Fashion-MNIST from Debian's dataset-fashion-mnist", "[data]") {
  if (!fs::exists(tg::data::kFashionMnistDir)) {
    WARN("SKIPPED: " << tg::data::kFashionMnistDir << " is absent (package dataset-fashion-mnist)");
    return;
  }
  const auto test = tg::data::load_mnist_like(tg::data::kFashionMnistDir, false);
  CHECK(test.size() == 10000);
  CHECK(test.num_features() == 784);
  std::vector<int64_t> count(10, 0);
  for (int64_t l : test.labels) ++count[static_cast<size_t>(l)];
  for (int64_t c : count) CHECK(c == 1000);
  const auto v = test.features.to_vector();
  CHECK(*std::min_element(v.begin(), v.end()) == 0.0);
  CHECK(*std::max_element(v.begin(), v.end()) == 1.0);
  const auto small = tg::data::load_mnist_like(tg::data::kFashionMnistDir, true, 100);
  CHECK(small.size() == 100);
  CHECK(small.labels.size() == 100);
  CHECK_THROWS_WITH(tg::data::load_mnist_like("/nonexistent", true),
                    Catch::Contains("/nonexistent") && Catch::Contains("no such file"));
}

TEST_CASE("CSV files with a header", "[data]") {
  TempDir dir;
  write_plain(dir.file("ok.csv"), "x1, x2,label\n1,2,0\n\n3.5,-4e-1,2\n");
  const auto t = tg::data::read_csv(dir.file("ok.csv"));
  CHECK(t.header == std::vector<std::string>{"x1", "x2", "label"});
  REQUIRE(t.rows.size() == 2);
  CHECK(t.rows[1] == std::vector<double>{3.5, -0.4, 2});
  const auto d = tg::data::csv_classification(t, "label");
  CHECK(d.num_features() == 2);
  CHECK(d.labels == std::vector<int64_t>{0, 2});
  CHECK(d.num_classes == 3);
  const auto r = tg::data::csv_regression(t, {"x2"});
  CHECK(r.targets.to_vector() == std::vector<double>{2, -0.4f});
  CHECK(r.features.shape() == tg::Shape{2, 2});
  CHECK_THROWS_WITH(tg::data::csv_classification(t, "y"), Catch::Contains("no column 'y'"));
}

TEST_CASE("bad CSV files fail naming file, line and column", "[data][errors]") {
  TempDir dir;
  auto expect = [&](const std::string& name, const std::string& text, const char* what) {
    write_plain(dir.file(name), text);
    CHECK_THROWS_AS(tg::data::read_csv(dir.file(name)), DataError);
    CHECK_THROWS_WITH(tg::data::read_csv(dir.file(name)),
                      Catch::Contains(dir.file(name)) && Catch::Contains(what));
  };
  expect("fields.csv", "a,b\n1,2\n3\n", ":3: 1 fields");
  expect("nan.csv", "a,b\n1,abc\n", "column 'b' holds 'abc'");
  expect("inf.csv", "a,b\n1,inf\n", "not a finite number");
  expect("empty.csv", "", "empty file");
  expect("header_only.csv", "a,b\n", "no data rows");
  expect("partial.csv", "a,b\n1,2x\n", "'2x'");
  CHECK_THROWS_WITH(tg::data::read_csv(dir.file("none.csv")), Catch::Contains("cannot open"));
  expect("twice.csv", "a,b,a\n1,2,3\n", ":1: column name 'a' appears twice");
  // A finite double outside float32's range would become an infinity in the f32 dataset.
  write_plain(dir.file("big.csv"), "a,l\n1,0\n-1e300,1\n");
  const auto big = tg::data::read_csv(dir.file("big.csv"));
  CHECK_THROWS_AS(tg::data::csv_classification(big, "l"), DataError);
  CHECK_THROWS_WITH(tg::data::csv_classification(big, "l"),
                    Catch::Contains(dir.file("big.csv")) && Catch::Contains("row 2: column 'a'") &&
                        Catch::Contains("outside float32's range"));
  CHECK_THROWS_WITH(tg::data::csv_regression(big, {"a"}), Catch::Contains("row 2: column 'a'"));
  write_plain(dir.file("label.csv"), "a,l\n1,0.5\n");
  CHECK_THROWS_WITH(tg::data::csv_classification(tg::data::read_csv(dir.file("label.csv")), "l"),
                    Catch::Contains("not a class index"));
}

namespace {
// Features 0..9 (one column), labels i % 3.
tg::data::Dataset ten_rows() {
  tg::data::Dataset d;
  d.features = tg::arange(0.0, 10.0).reshape({10, 1});
  for (int64_t i = 0; i < 10; ++i) d.labels.push_back(i % 3);
  d.num_classes = 3;
  return d;
}
}  // namespace

TEST_CASE("DataLoader: batches, last partial batch, seeded shuffling", "[data]") {
  const tg::data::Dataset d = ten_rows();
  tg::data::DataLoader in_order(d, 4);
  CHECK(in_order.num_batches() == 3);
  tg::data::Batch b;
  std::vector<int64_t> sizes;
  while (in_order.next(b)) sizes.push_back(b.size());
  CHECK(sizes == std::vector<int64_t>{4, 4, 2});
  CHECK(b.features.to_vector() == std::vector<double>{8, 9});
  CHECK(b.labels == std::vector<int64_t>{2, 0});

  auto epoch = [&](tg::Rng& rng) {
    tg::data::DataLoader loader(d, 3, true, &rng);
    std::vector<double> seen;
    while (loader.next(b)) {
      const auto v = b.features.to_vector();
      for (size_t i = 0; i < v.size(); ++i) {
        CHECK(b.labels[i] == static_cast<int64_t>(v[i]) % 3);  // labels travel with rows
        seen.push_back(v[i]);
      }
    }
    return seen;
  };
  tg::Rng r1(5), r2(5), r3(6);
  const auto a = epoch(r1), a2 = epoch(r2), c = epoch(r3);
  CHECK(a == a2);
  CHECK(a != c);
  CHECK(std::set<double>(a.begin(), a.end()).size() == 10);
  // The loader refers to its dataset, so a temporary one does not compile.
  static_assert(!std::is_constructible_v<tg::data::DataLoader, tg::data::Dataset&&, int64_t>);
  static_assert(std::is_constructible_v<tg::data::DataLoader, tg::data::Dataset&, int64_t>);
  CHECK_THROWS(tg::data::DataLoader(d, 0));
  CHECK_THROWS(tg::data::DataLoader(d, 2, true, nullptr));
}

TEST_CASE("DataLoader::set_order: a caller's sampler for one epoch", "[data]") {
  const tg::data::Dataset d = ten_rows();
  tg::data::DataLoader loader(d, 4);
  tg::data::Batch b;
  REQUIRE(loader.next(b));            // mid-epoch: set_order starts a new one
  loader.set_order({9, 9, 0, 5, 2});  // repeats and a subset are allowed
  CHECK(loader.num_batches() == 2);
  std::vector<double> seen;
  std::vector<int64_t> labels;
  while (loader.next(b)) {
    for (double v : b.features.to_vector()) seen.push_back(v);
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
  }
  CHECK(seen == std::vector<double>{9, 9, 0, 5, 2});
  CHECK(labels == std::vector<int64_t>{0, 0, 0, 2, 2});
  loader.reset();  // back to the loader's own order
  CHECK(loader.num_batches() == 3);
  REQUIRE(loader.next(b));
  CHECK(b.features.to_vector() == std::vector<double>{0, 1, 2, 3});
  loader.set_order({});
  CHECK_FALSE(loader.next(b));
  CHECK_THROWS_WITH(loader.set_order({1, 10}),
                    "DataLoader::set_order: index 10 at position 1 is outside the dataset's 10 "
                    "examples");
  CHECK_THROWS_WITH(loader.set_order({-1}), Catch::Contains("index -1 at position 0"));
}

TEST_CASE("word lists: the charlm protocol (trim, lowercase, no apostrophes, unique, sorted)",
          "[data][words]") {
  TempDir dir;
  const std::string path = dir.file("words.txt");
  std::ofstream(path)
      << "Apple\napple\nit's\n  Zo\xc3\xab \n\n\xc3\x85ngstr\xc3\xb6m\nl\xe2\x80\x99oeil\nbe\n";
  const auto words = tg::data::read_words(path);
  REQUIRE(words.size() == 4);
  CHECK(tg::data::to_utf8(words[0]) == "apple");
  CHECK(tg::data::to_utf8(words[1]) == "be");
  CHECK(tg::data::to_utf8(words[2]) == "zo\xc3\xab");
  CHECK(tg::data::to_utf8(words[3]) == "\xc3\xa5ngstr\xc3\xb6m");  // U+00C5 lowered to U+00E5
  const tg::data::CharVocab vocab(words);
  // boundary + a b e g l m n o p r s t z ë å ö
  CHECK(vocab.size() == 17);
  CHECK(vocab.id(U'a') == 1);
  CHECK(vocab.decode({vocab.id(U'b'), vocab.id(U'e'), 0}) == "be");
  CHECK_THROWS_AS(vocab.id(U'q'), tg::IndexError);

  // inputs: boundary then the word; targets: the word then the boundary; padding ignored.
  const auto b = tg::data::make_word_batch({&words[1], &words[0]}, vocab);
  CHECK(b.inputs.shape() == tg::Shape{2, 6});
  CHECK(b.predictions == 3 + 6);
  const auto in = b.inputs.to_vector(), tg_ = b.targets.to_vector();
  CHECK(in[0] == 0);
  CHECK(in[1] == vocab.id(U'b'));
  CHECK(tg_[0] == vocab.id(U'b'));
  CHECK(tg_[2] == 0);
  CHECK(tg_[3] == -100);
  CHECK(in[3] == 0);
  CHECK(tg_[6 + 5] == 0);
}

TEST_CASE("word lists: bad files name the file and the problem", "[data][words][errors]") {
  TempDir dir;
  CHECK_THROWS_WITH(tg::data::read_words(dir.file("missing.txt")),
                    Catch::Contains("missing.txt") && Catch::Contains("cannot open"));
  std::ofstream(dir.file("empty.txt")) << "\n  \nit's\n";
  CHECK_THROWS_AS(tg::data::read_words(dir.file("empty.txt")), DataError);
  CHECK_THROWS_WITH(tg::data::read_words(dir.file("empty.txt")), Catch::Contains("no words"));
  std::ofstream(dir.file("latin1.txt")) << "ok\ncaf\xe9\n";
  CHECK_THROWS_WITH(tg::data::read_words(dir.file("latin1.txt")),
                    Catch::Contains("latin1.txt:2") && Catch::Contains("not UTF-8"));
  std::ofstream(dir.file("cut.txt")) << "ok\nab\xc3";
  CHECK_THROWS_AS(tg::data::read_words(dir.file("cut.txt")), DataError);
}

TEST_CASE("word lists: a UTF-8 byte order mark at the start is dropped as by utf-8-sig",
          "[data][words]") {
  TempDir dir;
  std::ofstream(dir.file("bom.txt")) << "\xef\xbb\xbfzebra\nApple\n";
  const auto words = tg::data::read_words(dir.file("bom.txt"));
  REQUIRE(words.size() == 2);
  CHECK(tg::data::to_utf8(words[0]) == "apple");
  CHECK(tg::data::to_utf8(words[1]) == "zebra");
  CHECK(tg::data::CharVocab(words).size() == 1 + 7);  // a b e l p r z: no U+FEFF
  // A mark alone on the first line leaves an empty line (skipped); one elsewhere is text.
  std::ofstream(dir.file("bom_line.txt")) << "\xef\xbb\xbf\nab\xef\xbb\xbf\n";
  const auto kept = tg::data::read_words(dir.file("bom_line.txt"));
  REQUIRE(kept.size() == 1);
  CHECK(kept[0] == tg::data::Word{U'a', U'b', 0xFEFF});
}

TEST_CASE("word lists: the seeded 80/10/10 split", "[data][words]") {
  std::vector<tg::data::Word> words;
  for (char32_t a = U'a'; a <= U'z'; ++a)
    for (char32_t b = U'a'; b <= U'z'; ++b) words.push_back({a, b});
  const auto s = tg::data::split_words(words, 7);
  CHECK(s.train.size() == 540);
  CHECK(s.dev.size() == 67);
  CHECK(s.test.size() == 69);
  std::set<tg::data::Word> all(s.train.begin(), s.train.end());
  all.insert(s.dev.begin(), s.dev.end());
  all.insert(s.test.begin(), s.test.end());
  CHECK(all.size() == words.size());
  CHECK(tg::data::split_words(words, 7).test == s.test);
  CHECK(tg::data::split_words(words, 8).test != s.test);
}

TEST_CASE("wamerican by the protocol: 73,604 words over 41 symbols", "[data][words]") {
  if (!fs::exists(tg::data::kAmericanEnglish)) {
    WARN("SKIPPED: " << tg::data::kAmericanEnglish << " is not installed (package wamerican)");
    return;
  }
  const auto words = tg::data::read_words(tg::data::kAmericanEnglish);
  CHECK(words.size() == 73604);
  CHECK(tg::data::CharVocab(words).size() == 42);
  const auto s = tg::data::split_words(words, 0);
  CHECK(s.train.size() == 58883);
  CHECK(s.dev.size() == 7360);
  CHECK(s.test.size() == 7361);
}

TEST_CASE("DistributedSampler: disjoint equal shares that cover the dataset, per epoch",
          "[data][sampler]") {
  using tg::data::DistributedSampler;
  for (int64_t n : {0, 1, 5, 10, 11, 12}) {
    for (int64_t replicas : {1, 2, 3, 4}) {
      for (bool drop_last : {false, true}) {
        INFO("n " << n << " replicas " << replicas << " drop_last " << drop_last);
        std::vector<int64_t> seen(static_cast<size_t>(n), 0);
        int64_t total = 0;
        for (int64_t r = 0; r < replicas; ++r) {
          DistributedSampler s(n, replicas, r, true, 7, drop_last);
          s.set_epoch(3);
          const auto idx = s.indices();
          CHECK(static_cast<int64_t>(idx.size()) == s.size());  // same steps on every rank
          CHECK(s.size() == (drop_last ? n / replicas : (n + replicas - 1) / replicas));
          for (int64_t i : idx) {
            REQUIRE(i >= 0);
            REQUIRE(i < n);
            ++seen[static_cast<size_t>(i)];
          }
          total += static_cast<int64_t>(idx.size());
        }
        // Without drop_last every index appears, and only the padding repeats one; with it,
        // no index appears twice.
        for (int64_t c : seen) CHECK((drop_last ? c <= 1 : c >= 1));
        if (!drop_last) CHECK(total - n < replicas);  // the padding is less than one round
        CHECK(total == (drop_last ? n / replicas : (n + replicas - 1) / replicas) * replicas);
      }
    }
  }
  // The epoch reseeds the shuffle; the same epoch gives the same order on every call.
  DistributedSampler a(100, 2, 0, true, 1);
  const auto e0 = a.indices();
  CHECK(a.indices() == e0);
  a.set_epoch(1);
  CHECK(a.indices() != e0);
  CHECK(DistributedSampler(100, 2, 0, false).indices()[1] == 2);

  CHECK_THROWS_AS(DistributedSampler(10, 2, 2), tg::IndexError);
  CHECK_THROWS_WITH(DistributedSampler(10, 2, -1), Catch::Contains("invalid rank -1"));
  CHECK_THROWS_AS(DistributedSampler(10, 0, 0), tg::Error);
  CHECK_THROWS_AS(DistributedSampler(-1, 1, 0), tg::Error);
}

TEST_CASE("DistributedSampler without shuffling gives PyTorch's shares", "[data][sampler]") {
  if (!tgtest::torch_available()) {
    WARN("SKIPPED: PyTorch is not available");
    return;
  }
  using tg::data::DistributedSampler;
  std::string script = tgtest::kPythonPrelude;
  script += "from torch.utils.data.distributed import DistributedSampler\n";
  struct Case {
    int64_t n, replicas, rank;
    bool drop_last;
  };
  std::vector<Case> cases;
  for (int64_t n : {0, 1, 2, 7, 10})
    for (int64_t replicas : {1, 3, 4})
      for (bool drop : {false, true})
        for (int64_t r = 0; r < replicas; ++r) cases.push_back({n, replicas, r, drop});
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    script += "emit('c" + std::to_string(k) + "', torch.tensor(list(DistributedSampler(range(" +
              std::to_string(c.n) + "), num_replicas=" + std::to_string(c.replicas) +
              ", rank=" + std::to_string(c.rank) +
              ", shuffle=False, drop_last=" + (c.drop_last ? "True" : "False") +
              ")), dtype=torch.float64))\n";
  }
  const auto torch = tgtest::run_python(script);
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    INFO("n " << c.n << " replicas " << c.replicas << " rank " << c.rank << " drop_last "
              << c.drop_last);
    const auto idx = DistributedSampler(c.n, c.replicas, c.rank, false, 0, c.drop_last).indices();
    std::vector<double> got(idx.begin(), idx.end());
    CHECK(got == torch.at("c" + std::to_string(k)));
  }
}
