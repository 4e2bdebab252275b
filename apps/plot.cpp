#include "apps/plot.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string_view>
#include <utility>

#include "models/npz.hpp"

namespace tg::plot {
namespace {

// ---------------------------------------------------------------------------------------------
// Text: sanitising, escaping, width estimates, truncation.

// NOTE: there is no font engine here, so text widths are estimates: 0.6 em per character is a
// little wider than the average sans-serif glyph, so estimated boxes err on the roomy side.
constexpr double kCharWidthEm = 0.6;

// The text as a list of characters (each a valid UTF-8 sequence). Invalid bytes become U+FFFD
// and control characters (not allowed in XML 1.0, or line breaks an SVG <text> ignores) become
// spaces, so whatever a caller passes, the document stays well-formed.
std::vector<std::string> glyphs(const std::string& s) {
  std::vector<std::string> out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out.emplace_back(1, c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));
      ++i;
      continue;
    }
    const int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    unsigned cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (int k = 1; ok && k < len; ++k) {
      ok = (p[i + k] & 0xc0) == 0x80;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    // Reject overlong forms, surrogates, values past U+10FFFF and the XML-forbidden U+FFFE/F.
    if (ok) {
      const unsigned min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
      ok = cp >= min_cp && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) && cp != 0xfffe &&
           cp != 0xffff;
    }
    if (ok) {
      out.emplace_back(s, i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    } else {
      out.emplace_back("\xef\xbf\xbd");  // U+FFFD
      ++i;
    }
  }
  return out;
}

std::string escape_glyph(const std::string& g) {
  if (g == "&") return "&amp;";
  if (g == "<") return "&lt;";
  if (g == ">") return "&gt;";
  if (g == "\"") return "&quot;";
  if (g == "'") return "&apos;";
  return g;
}

// Sanitised and XML-escaped, for element content and attribute values alike.
std::string escape(const std::string& s) {
  std::string out;
  for (const std::string& g : glyphs(s)) out += escape_glyph(g);
  return out;
}

double text_width(size_t chars, double font_px) {
  return static_cast<double>(chars) * kCharWidthEm * font_px;
}
double text_width(const std::string& s, double font_px) {
  return text_width(glyphs(s).size(), font_px);
}

// The escaped text, cut to at most `max_px` (estimated) with a trailing ellipsis.
std::string fit_text(const std::string& s, double max_px, double font_px) {
  std::vector<std::string> g = glyphs(s);
  const auto max_chars = static_cast<size_t>(std::max(0.0, max_px / (kCharWidthEm * font_px)));
  if (g.size() > max_chars) {
    g.resize(max_chars > 0 ? max_chars - 1 : 0);
    while (!g.empty() && g.back() == " ") g.pop_back();
    g.emplace_back("\xe2\x80\xa6");  // U+2026 HORIZONTAL ELLIPSIS
  }
  std::string out;
  for (const std::string& c : g) out += escape_glyph(c);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Numbers.

// A coordinate with at most two decimals and no trailing zeros: "12.5", "300", "0.07".
// NOTE: 1/100 px is far below what any renderer shows, and it keeps a 10,000-point polyline
// around 130 kB. Non-finite values never reach here by construction; "0" is the safety net.
std::string num(double v) {
  if (!std::isfinite(v)) return "0";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s(buf);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// "1e+06" -> "1e6", "2.5e-05" -> "2.5e-5".
std::string tidy_exponent(std::string s) {
  const size_t e = s.find_first_of("eE");
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e);
  std::string exp = s.substr(e + 1);
  std::string sign;
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) {
    if (exp[0] == '-') sign = "-";
    exp.erase(0, 1);
  }
  while (exp.size() > 1 && exp[0] == '0') exp.erase(0, 1);
  return mant + "e" + sign + exp;
}

// Is `fmt` a printf format with exactly one conversion of a double (and any "%%")? Anything
// else would be undefined behaviour in snprintf, so callers' formats are checked first.
bool valid_double_format(const std::string& fmt) {
  int conversions = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') continue;
    if (++i < fmt.size() && fmt[i] == '%') continue;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) ++i;
    size_t digits = 0;
    while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) ++i, ++digits;
    if (digits > 2) return false;  // width at most 99
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      digits = 0;
      while (i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i]))) ++i, ++digits;
      if (digits > 2) return false;  // precision at most 99
    }
    if (i >= fmt.size() || std::string_view("fFeEgGaA").find(fmt[i]) == std::string_view::npos)
      return false;
    ++conversions;
  }
  return conversions == 1;
}

std::string format_value(const std::string& fmt, double v) {
  char buf[160];
  std::snprintf(buf, sizeof buf, valid_double_format(fmt) ? fmt.c_str() : "%.3g", v);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Axes: nice ranges and ticks.

struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // the drawn range, in axis space (log10 of the value when log)
  std::vector<double> ticks;
  std::vector<std::string> labels;
  double pos(double v) const { return ((log ? std::log10(v) : v) - lo) / (hi - lo); }
};

// The first of 1, 2, 5, 10 (times a power of ten) at least `raw`.
double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

std::vector<std::string> linear_labels(const std::vector<double>& ticks, double step) {
  double max_abs = 0;
  for (double t : ticks) max_abs = std::max(max_abs, std::fabs(t));
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  std::vector<std::string> out;
  char buf[64];
  for (double t : ticks) {
    // NOTE: plain decimals for everyday magnitudes (also "3.00000002" for a tiny spread around
    // 3), scientific for huge or tiny values, where decimals would be a row of zeros.
    if (max_abs < 1e6 && max_abs >= 1e-3 && step_exp >= -9) {
      std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -step_exp), t);
    } else {
      const int max_exp = max_abs > 0 ? static_cast<int>(std::floor(std::log10(max_abs))) : 0;
      const int digits = std::clamp(max_exp - step_exp, 0, 12);
      std::snprintf(buf, sizeof buf, "%.*e", digits, t);
    }
    std::string s = tidy_exponent(buf);
    if (s.find_first_not_of("-0.e") == std::string::npos && s[0] == '-') s.erase(0, 1);  // "-0"
    out.push_back(s);
  }
  return out;
}

// A linear axis covering [lo, hi] with at most `max_intervals` gaps between ticks, at multiples
// of the smallest 1-2-5 step that allows; the axis runs from the tick at or below lo to the
// tick at or above hi.
Axis linear_axis(double lo, double hi, int max_intervals) {
  // NOTE: clamp so that hi - lo and every multiple of the step stay finite.
  lo = std::clamp(lo, -1e300, 1e300);
  hi = std::clamp(hi, -1e300, 1e300);
  const double mag = std::max(std::fabs(lo), std::fabs(hi));
  if (hi - lo <= 1e-9 * mag || hi - lo < 1e-300) {
    // NOTE: all values (about) equal: pad by 10% of the value, or by 1 around zero, so a flat
    // line sits in the middle of a readable range instead of on a zero-height axis.
    const double pad = mag > 1e-300 ? 0.1 * mag : 1.0;
    lo -= pad;
    hi += pad;
  }
  max_intervals = std::max(1, max_intervals);
  double step = nice_step((hi - lo) / max_intervals);
  double k0 = std::floor(lo / step + 1e-9), k1 = std::ceil(hi / step - 1e-9);
  while (k1 - k0 > max_intervals) {  // rounding out to whole steps added one or two
    step = nice_step(step * 1.5);
    k0 = std::floor(lo / step + 1e-9);
    k1 = std::ceil(hi / step - 1e-9);
  }
  Axis a;
  for (double k = k0; k <= k1; ++k) a.ticks.push_back(k * step);
  a.lo = a.ticks.front();
  a.hi = a.ticks.back();
  a.labels = linear_labels(a.ticks, step);
  return a;
}

// A log10 axis over [lo, hi] (both > 0): ticks at 1-2-5 multiples within each decade when the
// range spans at most two decades, otherwise at every decade (or every k-th for wide ranges).
Axis log_axis(double lo, double hi, int target) {
  double elo = std::log10(std::max(lo, 1e-300));
  double ehi = std::log10(std::min(hi, 1e300));
  if (ehi - elo < 1e-9) {
    elo -= 0.5;  // NOTE: a single value: half a decade either side (about /3 and x3)
    ehi += 0.5;
  }
  Axis a;
  a.log = true;
  const double d0 = std::floor(elo + 1e-9);
  const double d1 = std::ceil(ehi - 1e-9);
  if (d1 - d0 <= 2) {
    std::vector<double> cand;
    for (double d = d0; d <= d1; ++d)
      for (double m : {1.0, 2.0, 5.0}) cand.push_back(m * std::pow(10.0, d));
    // The last candidate at or below lo, through the first at or above hi.
    size_t first = 0, last = cand.size() - 1;
    for (size_t i = 0; i < cand.size(); ++i)
      if (std::log10(cand[i]) <= elo + 1e-9) first = i;
    for (size_t i = cand.size(); i-- > 0;)
      if (std::log10(cand[i]) >= ehi - 1e-9) last = i;
    a.ticks.assign(cand.begin() + static_cast<long>(first),
                   cand.begin() + static_cast<long>(last) + 1);
  } else {
    const double stride = std::ceil((d1 - d0) / std::max(1, target));
    const double s0 = std::floor(d0 / stride) * stride;
    const double s1 = std::ceil(d1 / stride) * stride;
    for (double d = s0; d <= s1 + 1e-9; d += stride) a.ticks.push_back(std::pow(10.0, d));
  }
  a.lo = std::log10(a.ticks.front());
  a.hi = std::log10(a.ticks.back());
  for (double t : a.ticks) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", t);
    a.labels.push_back(tidy_exponent(buf));
  }
  return a;
}

double max_label_width(const Axis& a, double font_px) {
  double w = 0;
  for (const std::string& s : a.labels) w = std::max(w, text_width(s, font_px));
  return w;
}

// ---------------------------------------------------------------------------------------------
// Colors and SVG pieces.

constexpr std::array<const char*, 10> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                  "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                                  "#bcbd22", "#17becf"};
// After each round of the palette the line style changes: solid, dashed, dotted, dash-dot.
constexpr std::array<const char*, 4> kDashes = {"", "7 4", "2 3", "9 3 2 3"};

constexpr const char* kTextColor = "#222222";
constexpr const char* kFont = "DejaVu Sans, Helvetica, Arial, sans-serif";

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

// Appends <text>; `content` must already be escaped (fit_text or escape).
void text(std::string& out, double x, double y, const std::string& content, double size,
          const char* anchor, const std::string& cls, const std::string& extra = "") {
  out += "<text class=\"" + cls + "\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" +
         num(size) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" + content + "</text>\n";
}

void svg_open(std::string& out, int width, int height) {
  const std::string w = std::to_string(width), h = std::to_string(height);
  out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" + h +
         "\" viewBox=\"0 0 " + w + " " + h + "\" font-family=\"" + kFont + "\" fill=\"" +
         kTextColor + "\">\n";
  out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

void title_text(std::string& out, const std::string& title, int width) {
  if (title.empty()) return;
  text(out, width / 2.0, 30, fit_text(title, width - 40, 18), 18, "middle", "title",
       " font-weight=\"bold\"");
}

void no_data(std::string& out, double cx, double cy) {
  text(out, cx, cy, "no data", 14, "middle", "nodata", " fill=\"#888888\"");
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
  width = std::clamp(width, 240, 20000);
  height = std::clamp(height, 180, 20000);
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
  width = std::clamp(width, 240, 20000);
  height = std::clamp(height, 180, 20000);
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

void write_svg(const std::string& path, const std::string& svg) { write_file_atomic(path, svg); }

}  // namespace tg::plot
