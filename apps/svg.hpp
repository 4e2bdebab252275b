#pragma once

// Internal to the plot renderers (apps/plot.cpp, apps/plot_heatmap.cpp): the pieces both
// chart kinds are drawn from. Text is sanitised and escaped here, so whatever a caller
// passes, the document stays well-formed XML.

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace tg::plot::detail {

// ---- Text ----
// NOTE: there is no font engine here, so text widths are estimates: 0.6 em per character is a
// little wider than the average sans-serif glyph, so estimated boxes err on the roomy side.
inline constexpr double kCharWidthEm = 0.6;
/// The text as a list of characters (each a valid UTF-8 sequence; invalid bytes become
/// U+FFFD, control characters spaces).
std::vector<std::string> glyphs(const std::string& s);
/// Sanitised and XML-escaped, for element content and attribute values alike.
std::string escape(const std::string& s);
/// Estimated widths (kCharWidthEm per character).
double text_width(size_t chars, double font_px);
double text_width(const std::string& s, double font_px);
/// The escaped text, cut to at most `max_px` (estimated) with a trailing ellipsis.
std::string fit_text(const std::string& s, double max_px, double font_px);

// ---- Numbers ----
/// A coordinate with at most two decimals and no trailing zeros: "12.5", "300", "0.07".
std::string num(double v);
/// `v` through a caller's printf format with one double conversion ("%.3g" when the format
/// is anything else, which snprintf would make undefined behaviour).
std::string format_value(const std::string& fmt, double v);

// ---- Axes ----
struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // the drawn range, in axis space (log10 of the value when log)
  std::vector<double> ticks;
  std::vector<std::string> labels;
  double pos(double v) const { return ((log ? std::log10(v) : v) - lo) / (hi - lo); }
};
/// The first of 1, 2, 5, 10 (times a power of ten) at least `raw`.
double nice_step(double raw);
/// A linear axis over [lo, hi] with at most `max_intervals` gaps, at 1-2-5 multiples.
Axis linear_axis(double lo, double hi, int max_intervals);
/// A log10 axis over [lo, hi] (both > 0).
Axis log_axis(double lo, double hi, int target);
double max_label_width(const Axis& a, double font_px);

// ---- SVG pieces ----
/// Every picture is 240..20000 px wide and 180..20000 px high.
inline void clamp_canvas(int& width, int& height) {
  width = width < 240 ? 240 : width > 20000 ? 20000 : width;
  height = height < 180 ? 180 : height > 20000 ? 20000 : height;
}
/// Appends <text>; `content` must already be escaped (fit_text or escape).
void text(std::string& out, double x, double y, const std::string& content, double size,
          const char* anchor, const std::string& cls, const std::string& extra = "");
/// The XML declaration, <svg> and a white background.
void svg_open(std::string& out, int width, int height);
void title_text(std::string& out, const std::string& title, int width);
void no_data(std::string& out, double cx, double cy);

}  // namespace tg::plot::detail
