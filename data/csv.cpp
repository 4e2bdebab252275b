#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "data/dataset.hpp"

namespace tg::data {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, ',')) out.push_back(trim(cell));
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

}  // namespace

size_t CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  std::string cols;
  for (const auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
  throw DataError(path + ": no column '" + name + "' (columns: " + cols + ")");
}

CsvTable read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open for reading (no such file?)");
  CsvTable t;
  t.path = path;
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    if (line.find('\0') != std::string::npos)
      throw DataError(path + ":" + std::to_string(lineno) + ": binary data in a CSV file");
    auto cells = split(line);
    if (t.header.empty()) {
      for (size_t c = 0; c < cells.size(); ++c) {
        if (cells[c].empty()) throw DataError(path + ":1: empty column name in the header");
        // column() finds a name's first column: a second one could never be chosen.
        if (std::find(cells.begin(), cells.begin() + static_cast<std::ptrdiff_t>(c), cells[c]) !=
            cells.begin() + static_cast<std::ptrdiff_t>(c))
          throw DataError(path + ":1: column name '" + cells[c] + "' appears twice in the header");
      }
      t.header = std::move(cells);
      continue;
    }
    if (cells.size() != t.header.size())
      throw DataError(path + ":" + std::to_string(lineno) + ": " + std::to_string(cells.size()) +
                      " fields, but the header has " + std::to_string(t.header.size()));
    std::vector<double> row;
    for (size_t c = 0; c < cells.size(); ++c) {
      const std::string& s = cells[c];
      size_t used = 0;
      double v = 0;
      try {
        v = std::stod(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (s.empty() || used != s.size() || !std::isfinite(v))
        throw DataError(path + ":" + std::to_string(lineno) + ": column '" + t.header[c] +
                        "' holds '" + s + "', not a finite number");
      row.push_back(v);
    }
    t.rows.push_back(std::move(row));
  }
  if (t.header.empty()) throw DataError(path + ": empty file (a header line is required)");
  if (t.rows.empty()) throw DataError(path + ": a header but no data rows");
  return t;
}

namespace {
// Row i's value in column c as the dataset's f32; one outside f32's range (it would become
// an infinity) throws DataError naming the file, row and column.
float as_f32(const CsvTable& t, size_t i, size_t c) {
  const double v = t.rows[i][c];
  if (std::abs(v) > static_cast<double>(std::numeric_limits<float>::max()))
    throw DataError(t.path + ": row " + std::to_string(i + 1) + ": column '" + t.header[c] +
                    "' holds " + std::to_string(v) + ", outside float32's range");
  return static_cast<float>(v);
}

Dataset split_columns(const CsvTable& t, const std::vector<size_t>& target_cols) {
  std::vector<size_t> feat;
  for (size_t c = 0; c < t.header.size(); ++c)
    if (std::find(target_cols.begin(), target_cols.end(), c) == target_cols.end())
      feat.push_back(c);
  if (feat.empty()) throw DataError(t.path + ": no feature columns left besides the targets");
  Dataset d;
  const auto n = static_cast<int64_t>(t.rows.size());
  d.features = Tensor::empty({n, static_cast<int64_t>(feat.size())}, f32);
  float* x = d.features.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (size_t j = 0; j < feat.size(); ++j) *x++ = as_f32(t, static_cast<size_t>(i), feat[j]);
  return d;
}
}  // namespace

Dataset csv_classification(const CsvTable& t, const std::string& label_column) {
  const size_t lc = t.column(label_column);
  Dataset d = split_columns(t, {lc});
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const double v = t.rows[i][lc];
    if (v < 0 || v != std::floor(v) || v > 1e6)
      throw DataError(t.path + ": row " + std::to_string(i + 1) + ": label '" + label_column +
                      "' = " + std::to_string(v) + " is not a class index 0, 1, 2, ...");
    d.labels.push_back(static_cast<int64_t>(v));
    d.num_classes = std::max<int64_t>(d.num_classes, static_cast<int64_t>(v) + 1);
  }
  return d;
}

Dataset csv_regression(const CsvTable& t, const std::vector<std::string>& target_columns) {
  std::vector<size_t> tc;
  for (const auto& name : target_columns) tc.push_back(t.column(name));
  Dataset d = split_columns(t, tc);
  const auto n = static_cast<int64_t>(t.rows.size());
  d.targets = Tensor::empty({n, static_cast<int64_t>(tc.size())}, f32);
  float* y = d.targets.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (size_t c : tc) *y++ = as_f32(t, static_cast<size_t>(i), c);
  return d;
}

}  // namespace tg::data
