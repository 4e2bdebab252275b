#pragma once

// Word lists for character-level language models: reading a list with a fixed protocol,
// the character vocabulary, a seeded train / dev / test split and padded batches of words.

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.hpp"

namespace tg::data {

/// The word list of Debian's wamerican package.
inline constexpr const char* kAmericanEnglish = "/usr/share/dict/american-english";

/// A word as Unicode code points.
using Word = std::u32string;

/// The words of a UTF-8 list, one per line, by the fixed protocol of `tapegrad charlm`:
/// surrounding white space trimmed, empty lines skipped, lowercased (ASCII and the Latin-1
/// capitals U+00C0..U+00DE), words with an apostrophe (' or U+2019) dropped, duplicates
/// removed; sorted by code point, so the result does not depend on the file's order.
/// On wamerican 2020.12.07: 104,334 lines -> 73,604 words over 41 symbols. Throws DataError
/// naming the file: missing, unreadable, not UTF-8 (with the line number), or no word left.
std::vector<Word> read_words(const std::string& path);

/// The symbols of a word list and the token ids of a character-level model: id 0 is the
/// boundary token (start of a word as input, end of a word as target), ids 1..n the symbols
/// in code-point order.
class CharVocab {
 public:
  CharVocab() = default;
  explicit CharVocab(const std::vector<Word>& words);
  /// From a stored symbol list (code points in id order, without the boundary).
  static CharVocab from_symbols(std::vector<char32_t> symbols);

  int64_t size() const { return static_cast<int64_t>(symbols_.size()) + 1; }
  const std::vector<char32_t>& symbols() const { return symbols_; }
  /// Token id of a symbol; throws IndexError for a symbol outside the vocabulary.
  int64_t id(char32_t c) const;
  /// The symbols of ids 1..n as UTF-8 (0 and ids out of range are skipped).
  std::string decode(const std::vector<int64_t>& ids) const;

 private:
  std::vector<char32_t> symbols_;
};

/// UTF-8 of a code-point string.
std::string to_utf8(const Word& w);

/// Train / dev / test words: the list shuffled with `seed` (Fisher-Yates on tg::Rng), then
/// the first 80% (rounded down) for training, the next 10% (rounded down) for development,
/// the rest for testing.
struct WordSplit {
  std::vector<Word> train, dev, test;
};
WordSplit split_words(std::vector<Word> words, uint64_t seed);

/// A batch of words as next-token prediction: inputs [B, T] are the boundary token followed
/// by each word's ids, targets [B, T] each word's ids followed by the boundary token, so a
/// word of n symbols makes n + 1 predictions; T is the longest word's n + 1 and shorter words
/// are padded with 0 in the inputs and `ignore` in the targets. Both i64.
struct WordBatch {
  Tensor inputs, targets;
  int64_t predictions = 0;  // targets that are not `ignore`
};
WordBatch make_word_batch(const std::vector<const Word*>& words, const CharVocab& vocab,
                          int64_t ignore = -100);

}  // namespace tg::data
