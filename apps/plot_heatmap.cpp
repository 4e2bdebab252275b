// Heatmaps (render_svg(const Heatmap&, ...)); the shared pieces are in apps/svg.hpp.
#include "apps/plot.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "apps/svg.hpp"

namespace tg::plot {
using namespace detail;

// ---------------------------------------------------------------------------------------------
// Heatmap.

namespace {

// Viridis (perceptually uniform, readable in grayscale and by color-blind readers), sampled
// at nine points and interpolated linearly.
constexpr std::array<std::array<int, 3>, 9> kViridis = {{{68, 1, 84},
                                                         {71, 45, 123},
                                                         {59, 82, 139},
                                                         {44, 114, 142},
                                                         {33, 145, 140},
                                                         {40, 174, 128},
                                                         {94, 201, 98},
                                                         {173, 220, 48},
                                                         {253, 231, 37}}};

std::string viridis(double t) {
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * (kViridis.size() - 1);
  const size_t i = std::min(static_cast<size_t>(t), kViridis.size() - 2);
  const double f = t - static_cast<double>(i);
  char buf[8];
  int c[3];
  for (int k = 0; k < 3; ++k)
    c[k] = static_cast<int>(std::lround(kViridis[i][k] * (1 - f) + kViridis[i + 1][k] * f));
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c[0], c[1], c[2]);
  return buf;
}

}  // namespace

std::string render_svg(const Heatmap& map, int width, int height) {
  clamp_canvas(width, height);
  const double W = width, H = height;
  constexpr double kLabelFont = 13;

  const size_t rows = std::max(map.row_labels.size(), map.values.size());
  size_t cols = map.col_labels.size();
  for (const auto& r : map.values) cols = std::max(cols, r.size());
  auto value = [&](size_t r, size_t c) {
    if (r < map.values.size() && c < map.values[r].size()) return map.values[r][c];
    return std::numeric_limits<double>::quiet_NaN();
  };
  auto row_label = [&](size_t r) {
    return r < map.row_labels.size() ? map.row_labels[r] : std::to_string(r);
  };
  auto col_label = [&](size_t c) {
    return c < map.col_labels.size() ? map.col_labels[c] : std::to_string(c);
  };

  double vmin = std::numeric_limits<double>::infinity(), vmax = -vmin;
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      if (const double v = value(r, c); std::isfinite(v))
        vmin = std::min(vmin, v), vmax = std::max(vmax, v);
  const bool has_data = vmin <= vmax;

  std::string out;
  svg_open(out, width, height);
  title_text(out, map.title, width);
  const double top = map.title.empty() ? 24 : 50;

  if (rows == 0 || cols == 0) {
    if (!map.x_label.empty())
      text(out, W / 2, H - 14, fit_text(map.x_label, W - 40, kLabelFont), kLabelFont, "middle",
           "xlabel");
    if (!map.y_label.empty())
      text(out, 20, H / 2, fit_text(map.y_label, H - 80, kLabelFont), kLabelFont, "middle",
           "ylabel", " transform=\"rotate(-90 20 " + num(H / 2) + ")\"");
    no_data(out, W / 2, H / 2);
    out += "</svg>\n";
    return out;
  }

  // Color-bar labels (the legend), formatted like the cells when that tells min from max.
  std::string min_label = "-", max_label = "-";
  if (has_data) {
    min_label = format_value(map.value_format, vmin);
    max_label = format_value(map.value_format, vmax);
    if (min_label == max_label && vmin != vmax) {
      min_label = format_value("%.4g", vmin);
      max_label = format_value("%.4g", vmax);
    }
  }
  const double kBarFont = 11;
  const double bar_label_w =
      std::min(120.0, std::max(text_width(min_label, kBarFont), text_width(max_label, kBarFont)));
  const double bar_w = 16;
  const double right_margin = 18 + bar_w + 6 + bar_label_w + 16;

  // Row labels on the left, column labels below, both cut to a sensible share of the picture.
  double font = 12;
  const double max_row_px = 0.25 * W;
  double row_w = 0;
  for (size_t r = 0; r < rows; ++r)
    row_w = std::max(row_w, std::min(max_row_px, text_width(row_label(r), font)));
  const double left = (map.y_label.empty() ? 14 : 36) + row_w + 8;
  const double max_col_px = 0.22 * H;
  double col_w = 0;
  for (size_t c = 0; c < cols; ++c)
    col_w = std::max(col_w, std::min(max_col_px, text_width(col_label(c), font)));
  const double below_labels = map.x_label.empty() ? 10 : 34;

  // NOTE: cells fill the space, but are at most twice as wide as high or the other way round
  // (a 2x3 map should not be three long stripes); square maps get square cells.
  double cw = 1, ch = 1;
  auto size_cells = [&](double col_area_h) {
    cw = std::max(1.0, (W - left - right_margin) / static_cast<double>(cols));
    ch = std::max(1.0, (H - top - col_area_h - below_labels) / static_cast<double>(rows));
    cw = std::min(cw, 2 * ch);
    ch = std::min(ch, 2 * cw);
  };
  // NOTE: horizontal column labels when they fit their cells, else rotated by 45 degrees.
  double col_area = 22;
  size_cells(col_area);
  const bool rotated = col_w + 6 > cw;
  if (rotated) {
    col_area = 10 + col_w * std::sqrt(0.5) + font;
    size_cells(col_area);
  }
  const double cell = std::min(cw, ch);
  const double grid_w = cw * static_cast<double>(cols), grid_h = ch * static_cast<double>(rows);
  const double gx = left + std::max(0.0, (W - left - right_margin - grid_w) / 2);
  const double gy = top;

  // Cells, with a thin white separator when cells are big enough to show one.
  out += "<g class=\"cells\"" +
         std::string(cell >= 8 ? " stroke=\"white\" stroke-width=\"1\""
                               : " shape-rendering=\"crispEdges\"") +
         ">\n";
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) {
      const double v = value(r, c);
      const std::string fill = !std::isfinite(v) ? "#d9d9d9"
                               : vmax > vmin     ? viridis((v - vmin) / (vmax - vmin))
                                                 : viridis(0.5);
      out += "<rect x=\"" + num(gx + static_cast<double>(c) * cw) + "\" y=\"" +
             num(gy + static_cast<double>(r) * ch) + "\" width=\"" + num(cw) + "\" height=\"" +
             num(ch) + "\" fill=\"" + fill + "\"/>\n";
    }
  out += "</g>\n";
  out += "<rect class=\"frame\" x=\"" + num(gx) + "\" y=\"" + num(gy) + "\" width=\"" +
         num(grid_w) + "\" height=\"" + num(grid_h) +
         "\" fill=\"none\" stroke=\"#444444\" stroke-width=\"1\"/>\n";

  // Annotations, sized to the cells; left out when they would be unreadable.
  if (map.annotate && has_data) {
    size_t longest = 1;
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c)
        if (std::isfinite(value(r, c)))
          longest = std::max(longest, glyphs(format_value(map.value_format, value(r, c))).size());
    const double af = std::min({12.0, 0.4 * ch, 0.9 * cw / (kCharWidthEm * longest)});
    if (af >= 7) {
      out += "<g class=\"annotations\" font-size=\"" + num(af) + "\" text-anchor=\"middle\">\n";
      for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) {
          const double v = value(r, c);
          if (!std::isfinite(v)) continue;
          const double t = vmax > vmin ? (v - vmin) / (vmax - vmin) : 0.5;
          // NOTE: viridis gets lighter as t grows; dark text reads better from about t = 0.6.
          out += "<text x=\"" + num(gx + (static_cast<double>(c) + 0.5) * cw) + "\" y=\"" +
                 num(gy + (static_cast<double>(r) + 0.5) * ch + 0.35 * af) + "\" fill=\"" +
                 (t < 0.6 ? "white" : "#111111") + "\">" +
                 escape(format_value(map.value_format, v)) + "</text>\n";
        }
      out += "</g>\n";
    }
  }

  // Row and column labels; with more cells than room, every k-th label (k = 1, 2, 5, 10, ...).
  const double lf = std::min(font, std::max(8.0, cell * 0.8));
  auto stride = [&](double cell_px) {
    return static_cast<size_t>(std::max(1.0, std::round(nice_step(lf * 1.8 / cell_px))));
  };
  const size_t row_stride = stride(ch);
  for (size_t r = 0; r < rows; r += row_stride)
    text(out, gx - 6, gy + (static_cast<double>(r) + 0.5) * ch + 0.35 * lf,
         fit_text(row_label(r), max_row_px, lf), lf, "end", "rowlabel");
  const size_t col_stride = rotated ? stride(cw) : static_cast<size_t>(1);
  for (size_t c = 0; c < cols; c += col_stride) {
    const double x = gx + (static_cast<double>(c) + 0.5) * cw;
    const double y = gy + grid_h + (rotated ? 8 + 0.35 * lf : 16);
    if (rotated)
      text(out, x, y, fit_text(col_label(c), max_col_px, lf), lf, "end", "collabel",
           " transform=\"rotate(-45 " + num(x) + " " + num(y) + ")\"");
    else
      text(out, x, y, fit_text(col_label(c), cw - 4, lf), lf, "middle", "collabel");
  }

  // Axis labels.
  if (!map.x_label.empty())
    text(out, gx + grid_w / 2, gy + grid_h + col_area + 18,
         fit_text(map.x_label, std::max(grid_w, W / 2), kLabelFont), kLabelFont, "middle",
         "xlabel");
  if (!map.y_label.empty()) {
    const double cy = gy + grid_h / 2;
    text(out, 20, cy, fit_text(map.y_label, std::max(grid_h, H / 2), kLabelFont), kLabelFont,
         "middle", "ylabel", " transform=\"rotate(-90 20 " + num(cy) + ")\"");
  }

  // The color-scale bar: the legend of a heatmap.
  const double bx = gx + grid_w + 18;
  out += "<g class=\"colorbar\">\n";
  out += "<defs><linearGradient id=\"tg-colorbar\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (size_t i = 0; i < kViridis.size(); ++i) {
    const double t = static_cast<double>(i) / (kViridis.size() - 1);
    out += "<stop offset=\"" + num(t) + "\" stop-color=\"" + viridis(t) + "\"/>";
  }
  out += "</linearGradient></defs>\n";
  out += "<rect x=\"" + num(bx) + "\" y=\"" + num(gy) + "\" width=\"" + num(bar_w) +
         "\" height=\"" + num(grid_h) +
         "\" fill=\"url(#tg-colorbar)\" stroke=\"#444444\" stroke-width=\"1\"/>\n";
  text(out, bx + bar_w + 6, gy + 9, fit_text(max_label, 120, kBarFont), kBarFont, "start",
       "colorbar-max");
  text(out, bx + bar_w + 6, gy + grid_h, fit_text(min_label, 120, kBarFont), kBarFont, "start",
       "colorbar-min");
  out += "</g>\n";
  if (!has_data) no_data(out, gx + grid_w / 2, gy + grid_h / 2);
  out += "</svg>\n";
  return out;
}

}  // namespace tg::plot
