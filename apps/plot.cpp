// Line charts (render_svg(const LineChart&, ...)); the shared pieces are in apps/svg.hpp.
#include "apps/plot.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "apps/svg.hpp"
#include "models/npz.hpp"

namespace tg::plot {
using namespace detail;

namespace {

// ---------------------------------------------------------------------------------------------
// Series styles, and the geometry of lines (legend placement, decimation).

constexpr std::array<const char*, 10> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                  "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                                  "#bcbd22", "#17becf"};
// After each round of the palette the line style changes: solid, dashed, dotted, dash-dot.
constexpr std::array<const char*, 4> kDashes = {"", "7 4", "2 3", "9 3 2 3"};

struct Style {
  std::string color, dash;
};

Style series_style(const Series& s, size_t index) {
  Style st;
  st.color = s.color.empty() ? kPalette[index % kPalette.size()] : s.color;
  st.dash = kDashes[(index / kPalette.size()) % kDashes.size()];
  if (s.dashed && st.dash.empty()) st.dash = kDashes[1];
  return st;
}

struct Rect {
  double x0, y0, x1, y1;
  bool contains(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

// Does the segment a-b touch the rectangle? (Liang-Barsky clipping.)
bool segment_hits(const Rect& r, double ax, double ay, double bx, double by) {
  double t0 = 0, t1 = 1;
  const double dx = bx - ax, dy = by - ay;
  const double p[4] = {-dx, dx, -dy, dy};
  const double q[4] = {ax - r.x0, r.x1 - ax, ay - r.y0, r.y1 - ay};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0) {
      if (q[i] < 0) return false;
    } else {
      const double t = q[i] / p[i];
      if (p[i] < 0)
        t0 = std::max(t0, t);
      else
        t1 = std::min(t1, t);
      if (t0 > t1) return false;
    }
  }
  return true;
}

using Pixels = std::vector<std::pair<double, double>>;

// NOTE: a run with more points than pixel columns keeps, per column, its first, lowest,
// highest and last point, in their original order: the drawn line covers the same pixels,
// and 10,000 points shrink to at most four per column.
Pixels decimate(const Pixels& p) {
  Pixels out;
  size_t i = 0;
  while (i < p.size()) {
    const double col = std::floor(p[i].first);
    size_t j = i, lo = i, hi = i;
    for (; j < p.size() && std::floor(p[j].first) == col; ++j) {
      if (p[j].second < p[lo].second) lo = j;
      if (p[j].second > p[hi].second) hi = j;
    }
    std::array<size_t, 4> keep = {i, lo, hi, j - 1};
    std::sort(keep.begin(), keep.end());
    for (size_t k = 0; k < keep.size(); ++k)
      if (k == 0 || keep[k] != keep[k - 1]) out.push_back(p[keep[k]]);
    i = j;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Line chart.

std::string render_svg(const LineChart& chart, int width, int height) {
  clamp_canvas(width, height);
  const double W = width, H = height;
  constexpr double kTickFont = 11, kLabelFont = 13, kLegendFont = 12, kRow = 18;

  // Runs of drawable points (data coordinates), split at skipped points.
  using Run = std::vector<std::pair<double, double>>;
  std::vector<std::vector<Run>> runs(chart.series.size());
  std::vector<size_t> kept(chart.series.size(), 0);
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (size_t s = 0; s < chart.series.size(); ++s) {
    const Series& ser = chart.series[s];
    const size_t n = std::min(ser.x.size(), ser.y.size());
    Run cur;
    for (size_t i = 0; i < n; ++i) {
      const double x = ser.x[i], y = ser.y[i];
      if (std::isfinite(x) && std::isfinite(y) && (!chart.log_y || y > 0)) {
        cur.emplace_back(x, y);
        xlo = std::min(xlo, x), xhi = std::max(xhi, x);
        ylo = std::min(ylo, y), yhi = std::max(yhi, y);
        ++kept[s];
      } else if (!cur.empty()) {
        runs[s].push_back(std::move(cur));
        cur.clear();
      }
    }
    if (!cur.empty()) runs[s].push_back(std::move(cur));
  }
  const bool has_data = xlo <= xhi;
  if (!has_data) {
    xlo = 0, xhi = 1;
    ylo = chart.log_y ? 1 : 0, yhi = chart.log_y ? 10 : 1;
  }

  // Vertical layout is fixed; the y ticks decide the left margin.
  const double top = chart.title.empty() ? 24 : 50;
  const double bottom = H - (chart.x_label.empty() ? 34 : 54);
  const int y_target = std::clamp(static_cast<int>((bottom - top) / 40), 2, 10);
  const Axis ya = chart.log_y ? log_axis(ylo, yhi, y_target) : linear_axis(ylo, yhi, y_target);
  const double left = (chart.y_label.empty() ? 14 : 36) + max_label_width(ya, kTickFont) + 8;

  // As many x ticks as fit side by side with their labels.
  auto x_axis_for = [&](double plot_w) {
    Axis xa;
    for (int target = std::clamp(static_cast<int>(plot_w / 60), 2, 12); target >= 1; --target) {
      xa = linear_axis(xlo, xhi, target);
      const double spacing = plot_w / std::max<size_t>(1, xa.ticks.size() - 1);
      if (max_label_width(xa, kTickFont) + 12 <= spacing) break;
    }
    return xa;
  };

  // Legend entries (escaped, truncated) and box size.
  const size_t n_series = chart.series.size();
  const double max_rows = std::max(1.0, std::floor((bottom - top - 24) / kRow));
  const size_t shown = n_series <= max_rows ? n_series : static_cast<size_t>(max_rows) - 1;
  const double max_name_px = std::clamp(0.3 * (W - left), 60.0, 260.0);
  std::vector<std::string> names;
  double name_w = 0;
  for (size_t s = 0; s < shown; ++s) {
    const std::string& raw = chart.series[s].name;
    const std::string name = raw.empty() ? "series " + std::to_string(s + 1) : raw;
    names.push_back(fit_text(name, max_name_px, kLegendFont));
    name_w = std::max(name_w, std::min(max_name_px, text_width(name, kLegendFont)));
  }
  std::string more;
  if (shown < n_series) {
    more = "+" + std::to_string(n_series - shown) + " more";
    name_w = std::max(name_w, text_width(more, kLegendFont));
  }
  const size_t rows = shown + (more.empty() ? 0 : 1);
  const double box_w = 10 + 26 + 6 + name_w + 10;
  const double box_h = 6 + static_cast<double>(rows) * kRow + 4;

  // Pixel coordinates of every run, for a plot whose frame (or legend) ends at `edge`; the last
  // x tick label, centred on the frame's right side, must fit too.
  double right = W - 20;
  Axis xa;
  std::vector<std::vector<Pixels>> px(n_series);
  auto project = [&](double edge) {
    const double half_label = 0.5 * max_label_width(x_axis_for(edge - 20 - left), kTickFont);
    right = edge - std::max(20.0, half_label + 4);
    xa = x_axis_for(right - left);
    for (size_t s = 0; s < n_series; ++s) {
      px[s].clear();
      for (const Run& run : runs[s]) {
        Pixels p;
        p.reserve(run.size());
        for (const auto& [x, y] : run)
          p.emplace_back(left + xa.pos(x) * (right - left), bottom - ya.pos(y) * (bottom - top));
        px[s].push_back(p.size() > right - left ? decimate(p) : std::move(p));
      }
    }
  };
  project(W);

  // The legend goes in the first inner corner that no line or marker touches, else outside
  // on the right (the plot narrows to make room).
  double lx = 0, ly = 0;
  if (rows > 0) {
    const double inset = 10;
    const std::array<std::pair<double, double>, 4> corners = {{
        {right - inset - box_w, top + inset},
        {left + inset, top + inset},
        {right - inset - box_w, bottom - inset - box_h},
        {left + inset, bottom - inset - box_h},
    }};
    bool placed = false;
    for (const auto& [cx, cy] : corners) {
      if (cx < left || cy < top) continue;
      const Rect r{cx - 4, cy - 4, cx + box_w + 4, cy + box_h + 4};
      bool hit = false;
      for (size_t s = 0; s < n_series && !hit; ++s)
        for (const auto& p : px[s]) {
          for (size_t i = 0; i < p.size() && !hit; ++i)
            hit = r.contains(p[i].first, p[i].second) ||
                  (i > 0 &&
                   segment_hits(r, p[i - 1].first, p[i - 1].second, p[i].first, p[i].second));
          if (hit) break;
        }
      if (!hit) {
        lx = cx, ly = cy, placed = true;
        break;
      }
    }
    if (!placed) {
      project(W - 16 - box_w - 14);
      lx = W - 16 - box_w, ly = top;
    }
  }
  const double plot_w = right - left, plot_h = bottom - top;

  std::string out;
  out.reserve(4096);
  svg_open(out, width, height);
  title_text(out, chart.title, width);

  // Gridlines and ticks.
  out += "<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double t : xa.ticks) {
    const std::string x = num(left + xa.pos(t) * plot_w);
    out += "<line x1=\"" + x + "\" y1=\"" + num(top) + "\" x2=\"" + x + "\" y2=\"" + num(bottom) +
           "\"/>\n";
  }
  for (double t : ya.ticks) {
    const std::string y = num(bottom - ya.pos(t) * plot_h);
    out += "<line x1=\"" + num(left) + "\" y1=\"" + y + "\" x2=\"" + num(right) + "\" y2=\"" + y +
           "\"/>\n";
  }
  out += "</g>\n";
  out += "<rect class=\"frame\" x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" +
         num(plot_w) + "\" height=\"" + num(plot_h) +
         "\" fill=\"none\" stroke=\"#444444\" stroke-width=\"1\"/>\n";
  out += "<g stroke=\"#444444\" stroke-width=\"1\">\n";
  for (double t : xa.ticks) {
    const std::string x = num(left + xa.pos(t) * plot_w);
    out += "<line x1=\"" + x + "\" y1=\"" + num(bottom) + "\" x2=\"" + x + "\" y2=\"" +
           num(bottom + 5) + "\"/>\n";
  }
  for (double t : ya.ticks) {
    const std::string y = num(bottom - ya.pos(t) * plot_h);
    out += "<line x1=\"" + num(left - 5) + "\" y1=\"" + y + "\" x2=\"" + num(left) + "\" y2=\"" +
           y + "\"/>\n";
  }
  out += "</g>\n";
  for (size_t i = 0; i < xa.ticks.size(); ++i)
    text(out, left + xa.pos(xa.ticks[i]) * plot_w, bottom + 18, escape(xa.labels[i]), kTickFont,
         "middle", "xtick");
  for (size_t i = 0; i < ya.ticks.size(); ++i)
    text(out, left - 8, bottom - ya.pos(ya.ticks[i]) * plot_h + 4, escape(ya.labels[i]), kTickFont,
         "end", "ytick");

  // Axis labels.
  if (!chart.x_label.empty())
    text(out, left + plot_w / 2, H - 12, fit_text(chart.x_label, plot_w, kLabelFont), kLabelFont,
         "middle", "xlabel");
  if (!chart.y_label.empty()) {
    const double cy = top + plot_h / 2;
    text(out, 20, cy, fit_text(chart.y_label, plot_h, kLabelFont), kLabelFont, "middle", "ylabel",
         " transform=\"rotate(-90 20 " + num(cy) + ")\"");
  }

  // The series. NOTE: few points get markers so individual values (e.g. one per epoch) stay
  // visible; an isolated point (a run of one) always gets one, since a one-point polyline
  // draws nothing.
  for (size_t s = 0; s < n_series; ++s) {
    const Style st = series_style(chart.series[s], s);
    const std::string color = escape(st.color);
    out += "<g class=\"series\" stroke=\"" + color + "\" fill=\"none\" stroke-width=\"2\"" +
           " stroke-linejoin=\"round\" stroke-linecap=\"round\"" +
           (st.dash.empty() ? "" : " stroke-dasharray=\"" + st.dash + "\"") + ">\n";
    const bool markers = kept[s] <= 30;
    for (const auto& p : px[s]) {
      if (p.size() < 2) continue;
      out += "<polyline points=\"";
      std::string prev;
      for (const auto& [x, y] : p) {
        std::string pt = num(x) + "," + num(y);
        if (pt == prev) continue;  // same spot at 1/100 px: adds nothing
        if (!prev.empty()) out += ' ';
        out += pt;
        prev = std::move(pt);
      }
      out += "\"/>\n";
    }
    out += "</g>\n";
    std::string dots;
    for (const auto& p : px[s])
      if (markers || p.size() == 1)
        for (const auto& [x, y] : p)
          dots += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"3\"/>\n";
    if (!dots.empty()) out += "<g class=\"markers\" fill=\"" + color + "\">\n" + dots + "</g>\n";
  }
  if (!has_data) no_data(out, left + plot_w / 2, top + plot_h / 2);

  // Legend.
  if (rows > 0) {
    out += "<g class=\"legend\">\n";
    out += "<rect x=\"" + num(lx) + "\" y=\"" + num(ly) + "\" width=\"" + num(box_w) +
           "\" height=\"" + num(box_h) +
           "\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbbbbb\" stroke-width=\"1\"/>\n";
    for (size_t s = 0; s < shown; ++s) {
      const Style st = series_style(chart.series[s], s);
      const std::string color = escape(st.color);
      const double cy = ly + 6 + kRow * (static_cast<double>(s) + 0.5);
      out += "<line x1=\"" + num(lx + 10) + "\" y1=\"" + num(cy) + "\" x2=\"" + num(lx + 36) +
             "\" y2=\"" + num(cy) + "\" stroke=\"" + color + "\" stroke-width=\"2\"" +
             (st.dash.empty() ? "" : " stroke-dasharray=\"" + st.dash + "\"") + "/>\n";
      if (kept[s] <= 30 && kept[s] > 0)
        out += "<circle cx=\"" + num(lx + 23) + "\" cy=\"" + num(cy) + "\" r=\"3\" fill=\"" +
               color + "\"/>\n";
      text(out, lx + 42, cy + 4, names[s], kLegendFont, "start", "legend-entry");
    }
    if (!more.empty())
      text(out, lx + 42, ly + 6 + kRow * (static_cast<double>(shown) + 0.5) + 4, escape(more),
           kLegendFont, "start", "legend-more", " fill=\"#666666\"");
    out += "</g>\n";
  }
  out += "</svg>\n";
  return out;
}

void write_svg(const std::string& path, const std::string& svg) { write_file_atomic(path, svg); }

}  // namespace tg::plot
