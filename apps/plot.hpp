#pragma once

// A small SVG writer for the pictures of the `tapegrad` CLI: line charts (loss and accuracy
// curves, weights over training) and heatmaps (confusion matrices). Standard library only.

#include <string>
#include <vector>

namespace tg::plot {

/// One line of a LineChart. Points are (x[i], y[i]) for i < min(x.size(), y.size()); a
/// NaN/Inf point (or, on a log axis, y <= 0) is skipped and breaks the line there.
struct Series {
  std::string name;
  std::vector<double> x, y;
  std::string color = "";  // "" = automatic palette
  bool dashed = false;
};

/// Lines over shared axes, with a title, axis labels, nice ticks, gridlines and a legend.
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;
};

/// A grid of colored cells (e.g. a confusion matrix: rows = true class, columns =
/// predicted), with row/column labels and a color-scale bar as its legend. Ragged rows and
/// NaN/Inf values are drawn as gray, unannotated cells.
struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> row_labels, col_labels;
  std::vector<std::vector<double>> values;  // values[row][col]
  bool annotate = true;                     // print each cell's value
  std::string value_format = "%.0f";        // one printf conversion of a double (f, e, g, a)
};

/// The chart as a standalone SVG document (well-formed XML, every text escaped).
std::string render_svg(const LineChart& chart, int width = 800, int height = 500);
/// The heatmap as a standalone SVG document (well-formed XML, every text escaped).
std::string render_svg(const Heatmap& map, int width = 720, int height = 640);

/// Writes atomically (temporary file + rename); throws tg::IoError (graph/error.hpp) naming the
/// path.
void write_svg(const std::string& path, const std::string& svg);

}  // namespace tg::plot
