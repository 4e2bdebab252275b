#include "data/words.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace tg::data {

namespace {

// Decodes one line of UTF-8; returns false on a malformed sequence.
bool decode_utf8(const std::string& s, Word& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int n = 0;
    char32_t c = 0;
    if (b < 0x80) {
      c = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 1, c = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2, c = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3, c = b & 0x07;
    } else {
      return false;
    }
    if (n > 0 && i + static_cast<size_t>(n) >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      const auto cb = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cb & 0xC0) != 0x80) return false;
      c = (c << 6) | (cb & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr char32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (c < kMin[n] || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) return false;
    out.push_back(c);
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

char32_t lower(char32_t c) {
  if (c >= U'A' && c <= U'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  return c;
}

bool is_space(char32_t c) { return c == U' ' || c == U'\t' || c == U'\r' || c == U'\n'; }

}  // namespace

std::string to_utf8(const Word& w) {
  std::string s;
  for (char32_t c : w) {
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return s;
}

std::vector<Word> read_words(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open the word list");
  std::vector<Word> words;
  std::string line;
  Word w;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    // A byte order mark opening the file is not text (Python's utf-8-sig drops it too).
    if (lineno == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
    if (!decode_utf8(line, w))
      throw DataError(path + ":" + std::to_string(lineno) + ": not UTF-8 text");
    auto b = std::find_if_not(w.begin(), w.end(), is_space);
    auto e = std::find_if_not(w.rbegin(), w.rend(), is_space).base();
    if (b >= e) continue;
    Word t(b, e);
    if (t.find(U'\'') != Word::npos || t.find(U'\u2019') != Word::npos) continue;
    std::transform(t.begin(), t.end(), t.begin(), lower);
    words.push_back(std::move(t));
  }
  if (f.bad()) throw DataError(path + ": read error");
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  if (words.empty())
    throw DataError(path + ": no words (" + std::to_string(lineno) +
                    " lines; empty lines and words with an apostrophe are skipped)");
  return words;
}

CharVocab::CharVocab(const std::vector<Word>& words) {
  for (const Word& w : words) symbols_.insert(symbols_.end(), w.begin(), w.end());
  std::sort(symbols_.begin(), symbols_.end());
  symbols_.erase(std::unique(symbols_.begin(), symbols_.end()), symbols_.end());
}

CharVocab CharVocab::from_symbols(std::vector<char32_t> symbols) {
  CharVocab v;
  if (!std::is_sorted(symbols.begin(), symbols.end()) ||
      std::adjacent_find(symbols.begin(), symbols.end()) != symbols.end())
    throw Error("CharVocab: the stored symbols are not sorted and distinct");
  v.symbols_ = std::move(symbols);
  return v;
}

int64_t CharVocab::id(char32_t c) const {
  auto it = std::lower_bound(symbols_.begin(), symbols_.end(), c);
  if (it == symbols_.end() || *it != c)
    throw IndexError("CharVocab: the symbol U+" +
                     [&] {
                       std::ostringstream s;
                       s << std::hex << std::uppercase << static_cast<uint32_t>(c);
                       return s.str();
                     }() +
                     " is not in the vocabulary of " + std::to_string(size()) + " tokens");
  return (it - symbols_.begin()) + 1;
}

std::string CharVocab::decode(const std::vector<int64_t>& ids) const {
  Word w;
  for (int64_t i : ids)
    if (i >= 1 && i <= static_cast<int64_t>(symbols_.size()))
      w.push_back(symbols_[static_cast<size_t>(i - 1)]);
  return to_utf8(w);
}

WordSplit split_words(std::vector<Word> words, uint64_t seed) {
  Rng rng(seed);
  for (size_t i = words.size(); i > 1; --i) std::swap(words[i - 1], words[rng.below(i)]);
  const size_t n = words.size(), n_train = n * 8 / 10, n_dev = n / 10;
  WordSplit s;
  s.train.assign(std::make_move_iterator(words.begin()),
                 std::make_move_iterator(words.begin() + static_cast<std::ptrdiff_t>(n_train)));
  s.dev.assign(
      std::make_move_iterator(words.begin() + static_cast<std::ptrdiff_t>(n_train)),
      std::make_move_iterator(words.begin() + static_cast<std::ptrdiff_t>(n_train + n_dev)));
  s.test.assign(
      std::make_move_iterator(words.begin() + static_cast<std::ptrdiff_t>(n_train + n_dev)),
      std::make_move_iterator(words.end()));
  return s;
}

WordBatch make_word_batch(const std::vector<const Word*>& words, const CharVocab& vocab,
                          int64_t ignore) {
  size_t longest = 0;
  for (const Word* w : words) longest = std::max(longest, w->size());
  const auto b = static_cast<int64_t>(words.size()), t = static_cast<int64_t>(longest) + 1;
  WordBatch out;
  out.inputs = zeros({b, t}, i64);
  out.targets = full({b, t}, static_cast<double>(ignore), i64);
  auto* in = out.inputs.data<int64_t>();
  auto* tg = out.targets.data<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    const Word& w = *words[static_cast<size_t>(r)];
    for (size_t k = 0; k < w.size(); ++k) {
      const int64_t id = vocab.id(w[k]);
      in[r * t + static_cast<int64_t>(k) + 1] = id;
      tg[r * t + static_cast<int64_t>(k)] = id;
    }
    tg[r * t + static_cast<int64_t>(w.size())] = 0;
    out.predictions += static_cast<int64_t>(w.size()) + 1;
  }
  return out;
}

}  // namespace tg::data
