// The pieces both chart kinds are drawn from (apps/svg.hpp): text, numbers, axes, SVG.
#include "apps/svg.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string_view>
#include <utility>

namespace tg::plot::detail {

// ---------------------------------------------------------------------------------------------
// Text: sanitising, escaping, width estimates, truncation.

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

static std::string escape_glyph(const std::string& g) {
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
static std::string tidy_exponent(std::string s) {
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
static bool valid_double_format(const std::string& fmt) {
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

// The first of 1, 2, 5, 10 (times a power of ten) at least `raw`.
double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

static std::vector<std::string> linear_labels(const std::vector<double>& ticks, double step) {
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
// SVG pieces.

constexpr const char* kTextColor = "#222222";
constexpr const char* kFont = "DejaVu Sans, Helvetica, Arial, sans-serif";

// Appends <text>; `content` must already be escaped (fit_text or escape).
void text(std::string& out, double x, double y, const std::string& content, double size,
          const char* anchor, const std::string& cls, const std::string& extra) {
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

}  // namespace tg::plot::detail
