// Fuzzes the CSV reader and the dataset builders on top of it: a result or
// tg::data::DataError, nothing else; a parsed table is rectangular.

#include <cstdint>

#include "data/dataset.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tgfuzz::MemFile file(data, size);
  tg::data::CsvTable table;
  try {
    table = tg::data::read_csv(file.path());
  } catch (const tg::data::DataError&) {
    return 0;
  }
  for (const auto& row : table.rows)
    if (row.size() != table.header.size()) tgfuzz::fail("ragged table accepted");
  if (table.header.empty()) return 0;
  try {
    const auto ds = tg::data::csv_classification(table, table.header.front());
    if (ds.size() != static_cast<int64_t>(table.rows.size())) tgfuzz::fail("rows lost");
    for (int64_t label : ds.labels)
      if (label < 0 || label >= ds.num_classes) tgfuzz::fail("label out of range");
  } catch (const tg::data::DataError&) {
  }
  try {
    const auto ds = tg::data::csv_regression(table, {table.header.back()});
    if (ds.size() != static_cast<int64_t>(table.rows.size())) tgfuzz::fail("rows lost");
  } catch (const tg::data::DataError&) {
  }
  return 0;
}
