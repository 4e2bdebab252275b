#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "apps/plot.hpp"
#include "graph/error.hpp"

namespace fs = std::filesystem;
using tg::plot::Heatmap;
using tg::plot::LineChart;
using tg::plot::render_svg;
using tg::plot::Series;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("tapegrad_plot_" + std::to_string(::getpid()) + "_" +
                                               std::to_string(reinterpret_cast<uintptr_t>(this)));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

// The contents of every <text class="cls" ...>...</text>.
std::vector<std::string> texts(const std::string& svg, const std::string& cls) {
  const std::regex re("<text class=\"" + cls + "\"[^>]*>([^<]*)</text>");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1].str());
  return out;
}

// Every number printed into the document (attributes and text): none may be NaN or Inf.
void check_no_nan_inf(const std::string& svg) {
  std::string lower = svg;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  CHECK(lower.find("nan") == std::string::npos);
  CHECK(lower.find("inf") == std::string::npos);
}

// Parsed by python's xml.etree when /usr/bin/python3 exists; true (with a warning) otherwise.
bool well_formed(const std::string& svg) {
  if (!fs::exists("/usr/bin/python3")) {
    WARN("/usr/bin/python3 not found: XML well-formedness not checked");
    return true;
  }
  TempDir dir;
  const std::string file = dir.file("doc.svg");
  std::ofstream(file, std::ios::binary) << svg;
  const std::string cmd =
      "/usr/bin/python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' '" +
      file + "'";
  return std::system(cmd.c_str()) == 0;
}

// The tick labels are nice numbers (multiples of a 1, 2 or 5 step times a power of ten, evenly
// spaced), the first and last tick enclose [lo, hi] and, when `tight`, stay within a step of it.
void check_nice_ticks(const std::vector<std::string>& labels, double lo, double hi,
                      bool tight = true) {
  INFO("data range [" << lo << ", " << hi << "]");
  REQUIRE(labels.size() >= 2);
  std::vector<double> t;
  for (const std::string& s : labels) t.push_back(std::stod(s));
  INFO("ticks " << labels.front() << " .. " << labels.back() << " (" << labels.size() << ")");
  CHECK(labels.size() <= 13);
  const double spacing = (t.back() - t.front()) / static_cast<double>(t.size() - 1);
  REQUIRE(spacing > 0);
  for (size_t i = 1; i < t.size(); ++i) CHECK(t[i] - t[i - 1] == Approx(spacing).epsilon(1e-6));
  const double decade = std::pow(10.0, std::floor(std::log10(spacing) + 1e-9));
  const double mant = spacing / decade;
  CHECK((mant == Approx(1) || mant == Approx(2) || mant == Approx(5)));
  const double step = std::round(mant) * decade;  // the exact nice step
  for (double v : t)
    CHECK(std::fabs(v - std::round(v / step) * step) <= 1e-6 * step + 1e-12 * std::fabs(v));
  const double slack = 1e-9 * std::max(std::fabs(lo), std::fabs(hi));
  CHECK(t.front() <= lo + slack);
  CHECK(t.back() >= hi - slack);
  // Covering, but not wastefully: at most one step of padding beyond the data on each side.
  if (tight) {
    CHECK(t.front() > lo - step - slack);
    CHECK(t.back() < hi + step + slack);
  }
}

Series line(const std::string& name, std::vector<double> y) {
  Series s;
  s.name = name;
  for (size_t i = 0; i < y.size(); ++i) s.x.push_back(static_cast<double>(i));
  s.y = std::move(y);
  return s;
}

LineChart loss_chart() {
  LineChart c;
  c.title = "Training loss";
  c.x_label = "epoch";
  c.y_label = "loss";
  c.series.push_back(line("train", {2.3, 0.9, 0.6, 0.5, 0.45, 0.41}));
  c.series.push_back(line("test", {2.2, 1.0, 0.7, 0.62, 0.6, 0.59}));
  return c;
}

// Attributes of the legend's box and of the plot frame, as {x, y, width, height}.
std::vector<double> rect_after(const std::string& svg, const std::string& marker) {
  const size_t at = svg.find(marker);
  REQUIRE(at != std::string::npos);
  const std::regex re(
      "x=\"([-0-9.]+)\" y=\"([-0-9.]+)\" width=\"([-0-9.]+)\" height=\"([-0-9.]+)\"");
  std::smatch m;
  const std::string rest = svg.substr(at);
  REQUIRE(std::regex_search(rest, m, re));
  return {std::stod(m[1]), std::stod(m[2]), std::stod(m[3]), std::stod(m[4])};
}

}  // namespace

TEST_CASE("line chart: title, axis labels, legend and one polyline per series") {
  const std::string svg = render_svg(loss_chart());
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(texts(svg, "title") == std::vector<std::string>{"Training loss"});
  CHECK(texts(svg, "xlabel") == std::vector<std::string>{"epoch"});
  CHECK(texts(svg, "ylabel") == std::vector<std::string>{"loss"});
  CHECK(texts(svg, "legend-entry") == std::vector<std::string>{"train", "test"});
  CHECK(count(svg, "<polyline") == 2);
  CHECK(count(svg, "class=\"grid\"") == 1);
  check_nice_ticks(texts(svg, "xtick"), 0, 5);
  check_nice_ticks(texts(svg, "ytick"), 0.41, 2.3);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: every text is XML-escaped") {
  LineChart c = loss_chart();
  c.title = "a < b & \"c\" 'd' > e";
  c.x_label = "x<y>";
  c.y_label = "&amp;";
  c.series[0].name = "</text><script>alert(1)</script>";
  c.series[1].color = "red\" onload=\"x";
  const std::string svg = render_svg(c);
  CHECK(texts(svg, "title") ==
        std::vector<std::string>{"a &lt; b &amp; &quot;c&quot; &apos;d&apos; &gt; e"});
  CHECK(texts(svg, "xlabel") == std::vector<std::string>{"x&lt;y&gt;"});
  CHECK(texts(svg, "ylabel") == std::vector<std::string>{"&amp;amp;"});
  CHECK(svg.find("<script>") == std::string::npos);
  CHECK(svg.find("onload=\"") == std::string::npos);
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: control characters and invalid UTF-8 never break the document") {
  LineChart c = loss_chart();
  const char raw[] = "tab\there, nul\0, bad \xff\xfe byte, ok \xc3\xa9";
  c.title = std::string(raw, sizeof raw - 1);
  c.series[0].name = "\xe2\x82";  // truncated sequence
  const std::string svg = render_svg(c);
  CHECK(svg.find('\0') == std::string::npos);
  CHECK(svg.find('\t') == std::string::npos);
  CHECK(texts(svg, "title")[0].find("\xc3\xa9") != std::string::npos);  // valid é kept
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: ticks are nice numbers covering the data, whatever the range") {
  const std::vector<std::pair<double, double>> ranges = {
      {0, 1},       {0.41, 2.3},   {-3.7, 12.2},   {-1e-3, -2e-4},  {1e-7, 3e-7},  {0, 60000},
      {1, 5},       {0.87, 0.893}, {-50, 50},      {1234, 1250},    {99.5, 100.5}, {1e6, 3.5e6},
      {-2e9, 7e11}, {0.5, 0.5001}, {1e15, 1.1e15}, {-0.013, 0.021}, {3, 3.0000001}};
  for (const auto& [lo, hi] : ranges) {
    LineChart c;
    c.title = "t";
    c.x_label = "x";
    c.y_label = "y";
    Series s;
    s.name = "s";
    s.x = {lo, (lo + hi) / 2, hi};
    s.y = {hi, lo, (lo + hi) / 2};
    c.series.push_back(s);
    const std::string svg = render_svg(c);
    check_nice_ticks(texts(svg, "xtick"), lo, hi);
    check_nice_ticks(texts(svg, "ytick"), lo, hi);
    check_no_nan_inf(svg);
    // Tick labels are distinct: no two print the same.
    for (const char* axis : {"xtick", "ytick"}) {
      const auto labels = texts(svg, axis);
      CHECK(std::set<std::string>(labels.begin(), labels.end()).size() == labels.size());
    }
  }
}

TEST_CASE("line chart: all-equal y values get a padded range around them") {
  for (double v : {0.0, 5.0, -2.5, 1e-12, 1e9}) {
    LineChart c = loss_chart();
    c.series = {line("flat", {v, v, v, v})};
    const std::string svg = render_svg(c);
    const auto labels = texts(svg, "ytick");
    REQUIRE(labels.size() >= 2);
    INFO("value " << v);
    CHECK(std::stod(labels.front()) < v);
    CHECK(std::stod(labels.back()) > v);
    check_nice_ticks(labels, v, v, /*tight=*/false);
    CHECK(count(svg, "<polyline") == 1);
    check_no_nan_inf(svg);
  }
}

TEST_CASE("line chart: NaN and Inf points are skipped and break the line") {
  LineChart c = loss_chart();
  c.series = {line("gappy", {1, 2, kNaN, 4, 5, 6, kInf, -kInf, 9, 10})};
  c.series[0].x[4] = kNaN;  // x can be bad too: splits {4, 5, 6} into {4} and {6}
  std::string svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 2);  // {1, 2} and {9, 10}; {4} and {6} are single points
  CHECK(count(svg, "<circle") >= 6);    // every kept point has a marker (few points)
  check_nice_ticks(texts(svg, "ytick"), 1, 10);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));

  // With many points (no markers), an isolated point still shows as a dot.
  std::vector<double> y(200, 1.0);
  for (size_t i = 0; i < y.size(); ++i) y[i] = std::sin(0.1 * static_cast<double>(i));
  y[100] = kNaN;
  y[102] = kNaN;  // y[101] stands alone
  c.series = {line("long", y)};
  svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 2);
  CHECK(count(svg, "<circle") == 1);
  check_no_nan_inf(svg);
}

TEST_CASE("line chart: empty series, no series, and only bad points draw an empty plot") {
  LineChart none = loss_chart();
  none.series.clear();
  LineChart empty = loss_chart();
  empty.series = {Series{"empty", {}, {}}, Series{"mismatched", {1, 2, 3}, {}}};
  LineChart bad = loss_chart();
  bad.series = {line("bad", {kNaN, kInf, -kInf})};
  for (const LineChart* c : {&none, &empty, &bad}) {
    const std::string svg = render_svg(*c);
    CHECK(count(svg, "<polyline") == 0);
    CHECK(svg.find(">no data<") != std::string::npos);
    CHECK(texts(svg, "title") == std::vector<std::string>{"Training loss"});
    CHECK(texts(svg, "xtick").size() >= 2);
    CHECK(texts(svg, "ytick").size() >= 2);
    check_no_nan_inf(svg);
    CHECK(well_formed(svg));
  }
  CHECK(texts(render_svg(empty), "legend-entry").size() == 2);  // still listed
}

TEST_CASE("line chart: a single point is drawn as a dot in a padded range") {
  LineChart c = loss_chart();
  c.series = {Series{"one", {3}, {0.25}}};
  const std::string svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 0);
  CHECK(count(svg, "<circle") == 2);  // the point and its legend marker
  const auto x = texts(svg, "xtick"), y = texts(svg, "ytick");
  CHECK(std::stod(x.front()) < 3);
  CHECK(std::stod(x.back()) > 3);
  CHECK(std::stod(y.front()) < 0.25);
  CHECK(std::stod(y.back()) > 0.25);
  check_no_nan_inf(svg);
}

TEST_CASE("line chart: log_y skips non-positive values and ticks at 1-2-5 decades") {
  LineChart c = loss_chart();
  c.log_y = true;
  c.series = {line("loss", {0, 2.0, 0.5, -1, 0.03, 0.004})};
  std::string svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 2);  // {2, 0.5} and {0.03, 0.004}
  auto ticks = texts(svg, "ytick");
  REQUIRE(ticks.size() >= 2);
  CHECK(std::stod(ticks.front()) <= 0.004);
  CHECK(std::stod(ticks.back()) >= 2.0);
  for (const std::string& t : ticks) {
    const double v = std::stod(t);
    const double mant = v / std::pow(10.0, std::floor(std::log10(v) + 1e-9));
    INFO(t);
    CHECK((mant == Approx(1) || mant == Approx(2) || mant == Approx(5)));
  }
  check_no_nan_inf(svg);

  // A narrow range gets 1-2-5 ticks within the decade.
  c.series = {line("narrow", {0.3, 0.25, 0.21})};
  ticks = texts(render_svg(c), "ytick");
  CHECK(ticks == std::vector<std::string>{"0.2", "0.5"});

  // Many decades: ticks at powers of ten only, and not too many.
  c.series = {line("wide", {1e-12, 1, 1e12})};
  ticks = texts(render_svg(c), "ytick");
  CHECK(ticks.size() <= 13);
  CHECK(std::stod(ticks.front()) <= 1e-12);
  CHECK(std::stod(ticks.back()) >= 1e12);

  // Nothing positive at all: an empty plot, no log of zero anywhere.
  c.series = {line("nonpositive", {0, -1, -2})};
  svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 0);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: many series cycle the palette with changing line styles") {
  LineChart c = loss_chart();
  c.series.clear();
  for (int i = 0; i < 25; ++i)
    c.series.push_back(line("unit " + std::to_string(i), {1.0 * i, 2.0 * i, 1.5 * i}));
  const std::string svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 25);
  const std::regex style_re(
      "<g class=\"series\" stroke=\"([^\"]*)\"[^>]*?(stroke-dasharray=\"([^\"]*)\")?>");
  std::set<std::string> styles;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), style_re);
       it != std::sregex_iterator(); ++it)
    styles.insert((*it)[1].str() + "|" + (*it)[3].str());
  CHECK(styles.size() == 25);  // every series is distinguishable
  // The legend lists what fits and says how many more there are.
  const auto entries = texts(svg, "legend-entry");
  const auto more = texts(svg, "legend-more");
  REQUIRE(more.size() == 1);
  CHECK(entries.size() + std::stoul(more[0].substr(1)) == 25);
  CHECK(entries.size() >= 10);
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: explicit colors and dashed lines are honoured") {
  LineChart c = loss_chart();
  c.series[0].color = "#123456";
  c.series[1].dashed = true;
  const std::string svg = render_svg(c);
  CHECK(svg.find("stroke=\"#123456\"") != std::string::npos);
  CHECK(count(svg, "stroke-dasharray=") == 2);  // the series and its legend sample
}

TEST_CASE("line chart: long titles, labels and names are truncated with an ellipsis") {
  LineChart c = loss_chart();
  c.title = std::string(500, 'T');
  c.x_label = std::string(500, 'X');
  c.y_label = std::string(500, 'Y');
  c.series[0].name = std::string(300, 'N') + " tail";
  const std::string svg = render_svg(c);
  const std::string ellipsis = "\xe2\x80\xa6";
  for (const char* cls : {"title", "xlabel", "ylabel", "legend-entry"}) {
    const std::string t = texts(svg, cls).at(0);
    INFO(cls << ": " << t);
    CHECK(t.size() < 130);
    CHECK(t.size() > 10);
    CHECK(t.substr(t.size() - ellipsis.size()) == ellipsis);
  }
  CHECK(texts(svg, "legend-entry").at(1) == "test");
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: the legend stays off the data when a corner is free") {
  // A falling curve leaves the top-right corner empty: the legend goes inside there.
  std::string svg = render_svg(loss_chart());
  auto frame = rect_after(svg, "class=\"frame\"");
  auto legend = rect_after(svg, "class=\"legend\"");
  CHECK(legend[0] > frame[0]);
  CHECK(legend[0] + legend[2] < frame[0] + frame[2]);
  CHECK(legend[1] < frame[1] + frame[3] / 2);  // top half

  // A fast zigzag through every corner: the legend moves outside, right of the plot.
  std::vector<double> zigzag(60);
  for (size_t i = 0; i < zigzag.size(); ++i) zigzag[i] = static_cast<double>(i % 2);
  LineChart c = loss_chart();
  c.series = {line("zigzag", zigzag)};
  svg = render_svg(c);
  frame = rect_after(svg, "class=\"frame\"");
  legend = rect_after(svg, "class=\"legend\"");
  CHECK(legend[0] > frame[0] + frame[2]);
  CHECK(legend[0] + legend[2] <= 800);
}

TEST_CASE("line chart: 10,000 points render compactly with two-decimal coordinates") {
  std::vector<double> y(10000);
  for (size_t i = 0; i < y.size(); ++i) y[i] = std::exp(-1e-3 * static_cast<double>(i)) + 0.01;
  LineChart c = loss_chart();
  c.series = {line("loss", y)};
  const std::string svg = render_svg(c);
  CHECK(count(svg, "<polyline") == 1);
  CHECK(count(svg, "<circle") == 0);
  CHECK(svg.size() < 200000);
  const size_t p = svg.find("points=\"");
  const std::string points = svg.substr(p + 8, svg.find('"', p + 8) - p - 8);
  // (No std::regex here: libstdc++'s recursive matcher overflows the stack on 100 kB.)
  CHECK(points.find_first_not_of("-0123456789., ") == std::string::npos);
  size_t longest_decimals = 0, run = 0;
  bool after_dot = false;
  for (char ch : points) {
    if (ch == '.')
      after_dot = true, run = 0;
    else if (std::isdigit(static_cast<unsigned char>(ch)) && after_dot)
      ++run;
    else
      after_dot = false;
    longest_decimals = std::max(longest_decimals, run);
  }
  CHECK(longest_decimals <= 2);
  CHECK(count(points, " ") > 500);  // really one line of many points
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("line chart: tiny and huge picture sizes still render") {
  for (auto [w, h] :
       {std::pair{0, 0}, std::pair{-5, 100}, std::pair{300, 200}, std::pair{3000, 2000}}) {
    const std::string svg = render_svg(loss_chart(), w, h);
    check_no_nan_inf(svg);
    CHECK(count(svg, "<polyline") == 2);
  }
}

namespace {

Heatmap confusion() {
  Heatmap m;
  m.title = "Confusion matrix";
  m.x_label = "predicted";
  m.y_label = "true";
  m.row_labels = m.col_labels = {"cat", "dog", "bird"};
  m.values = {{50, 3, 1}, {4, 45, 0}, {2, 1, 60}};
  return m;
}

}  // namespace

TEST_CASE("heatmap: title, axis labels, row/col labels, annotations and color bar") {
  const std::string svg = render_svg(confusion());
  CHECK(texts(svg, "title") == std::vector<std::string>{"Confusion matrix"});
  CHECK(texts(svg, "xlabel") == std::vector<std::string>{"predicted"});
  CHECK(texts(svg, "ylabel") == std::vector<std::string>{"true"});
  CHECK(texts(svg, "rowlabel") == std::vector<std::string>{"cat", "dog", "bird"});
  CHECK(texts(svg, "collabel") == std::vector<std::string>{"cat", "dog", "bird"});
  CHECK(texts(svg, "colorbar-min") == std::vector<std::string>{"0"});
  CHECK(texts(svg, "colorbar-max") == std::vector<std::string>{"60"});
  CHECK(count(svg, "<rect x=") == 9 + 1);  // the cells and the color bar
  CHECK(count(svg, "<rect class=\"frame\"") == 1);
  for (const char* v : {">50<", ">45<", ">60<", ">0<"}) CHECK(svg.find(v) != std::string::npos);
  CHECK(svg.find("linearGradient") != std::string::npos);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("heatmap: value_format, bad formats and annotate = false") {
  Heatmap m = confusion();
  m.values = {{0.5, 0.25}, {0.125, 1}};
  m.value_format = "%.2f";
  std::string svg = render_svg(m);
  CHECK(svg.find(">0.12<") != std::string::npos);
  CHECK(svg.find(">1.00<") != std::string::npos);
  CHECK(texts(svg, "colorbar-max") == std::vector<std::string>{"1.00"});

  for (const char* bad : {"%s", "%d", "%f %f", "no conversion", "%n", "%.999f", "%"}) {
    m.value_format = bad;
    svg = render_svg(m);
    INFO(bad);
    CHECK(svg.find(">0.125<") != std::string::npos);  // fell back to %.3g
    CHECK(well_formed(svg));
  }
  m.value_format = "%.1f%%";
  CHECK(render_svg(m).find(">12.5%<") == std::string::npos);  // the value as given, not scaled
  CHECK(render_svg(m).find(">0.1%<") != std::string::npos);

  m.value_format = "%.0f";  // 0.125 and 1 print as "0" and "1"; 0.5 as "0"
  m.values = {{0.2, 0.3}};
  svg = render_svg(m);  // min and max would both print "0": the bar falls back to %.4g
  CHECK(texts(svg, "colorbar-min") == std::vector<std::string>{"0.2"});
  CHECK(texts(svg, "colorbar-max") == std::vector<std::string>{"0.3"});

  m = confusion();
  m.annotate = false;
  svg = render_svg(m);
  CHECK(svg.find("class=\"annotations\"") == std::string::npos);
}

TEST_CASE("heatmap: NaN cells, ragged rows, missing labels and escaping") {
  Heatmap m;
  m.title = "<&>";
  m.row_labels = {"r\"0\""};
  m.col_labels = {"a", "b"};
  m.values = {{1, kNaN, 3}, {kInf}, {}};
  const std::string svg = render_svg(m);
  CHECK(texts(svg, "title") == std::vector<std::string>{"&lt;&amp;&gt;"});
  CHECK(texts(svg, "rowlabel") == std::vector<std::string>{"r&quot;0&quot;", "1", "2"});
  CHECK(texts(svg, "collabel") == std::vector<std::string>{"a", "b", "2"});
  CHECK(count(svg, "fill=\"#d9d9d9\"") == 7);  // 9 cells, 2 finite
  CHECK(texts(svg, "colorbar-min") == std::vector<std::string>{"1"});
  CHECK(texts(svg, "colorbar-max") == std::vector<std::string>{"3"});
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("heatmap: empty, all-NaN, all-equal and large maps") {
  Heatmap empty = confusion();
  empty.values.clear();
  empty.row_labels.clear();
  empty.col_labels.clear();
  std::string svg = render_svg(empty);
  CHECK(svg.find(">no data<") != std::string::npos);
  CHECK(texts(svg, "xlabel").size() == 1);
  CHECK(texts(svg, "ylabel").size() == 1);
  CHECK(well_formed(svg));

  Heatmap nans = confusion();
  nans.values = {{kNaN, kNaN}, {kNaN, kNaN}};
  svg = render_svg(nans);
  CHECK(svg.find(">no data<") != std::string::npos);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));

  Heatmap flat = confusion();
  flat.values = {{7, 7}, {7, 7}};
  svg = render_svg(flat);
  CHECK(count(svg, ">7<") == 2 + 4);  // four cells and both bar labels
  check_no_nan_inf(svg);

  Heatmap big;
  big.title = "big";
  big.values.assign(100, std::vector<double>(100));
  for (size_t r = 0; r < 100; ++r)
    for (size_t c = 0; c < 100; ++c) big.values[r][c] = static_cast<double>(r * c);
  svg = render_svg(big);
  CHECK(svg.find("class=\"annotations\"") == std::string::npos);  // cells too small to read
  CHECK(texts(svg, "rowlabel").size() < 100);                     // every k-th label
  CHECK(texts(svg, "rowlabel").size() >= 10);
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("heatmap: long column labels rotate, and very long labels are cut") {
  Heatmap m = confusion();
  m.row_labels = m.col_labels = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  m.row_labels[3] = std::string(400, 'R');
  m.values.assign(10, std::vector<double>(10, 3));
  for (int i = 0; i < 10; ++i) m.values[i][i] = 900;
  const std::string svg = render_svg(m);
  CHECK(count(svg, "class=\"collabel\"") == 10);
  CHECK(count(svg, "rotate(-45") == 10);
  const std::string r3 = texts(svg, "rowlabel").at(3);
  CHECK(r3.size() < 200);
  CHECK(r3.substr(r3.size() - 3) == "\xe2\x80\xa6");
  check_no_nan_inf(svg);
  CHECK(well_formed(svg));
}

TEST_CASE("write_svg: writes the file, replaces it whole, and fails without touching it") {
  TempDir dir;
  const std::string path = dir.file("chart.svg");
  const std::string first = render_svg(loss_chart());
  tg::plot::write_svg(path, first);
  CHECK(slurp(path) == first);

  const std::string second = render_svg(confusion());
  tg::plot::write_svg(path, second);
  CHECK(slurp(path) == second);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);

  const std::string missing = dir.file("no/such/dir/chart.svg");
  try {
    tg::plot::write_svg(missing, first);
    FAIL("write_svg into a missing directory did not throw");
  } catch (const tg::IoError& e) {
    CHECK(std::string(e.what()).find(missing) != std::string::npos);
  }
  CHECK(slurp(path) == second);  // the previous file is intact
  CHECK_FALSE(fs::exists(missing));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);

  // A directory in the way of the target: the rename fails and nothing is left behind.
  fs::create_directory(dir.file("taken"));
  CHECK_THROWS_AS(tg::plot::write_svg(dir.file("taken"), first), tg::IoError);
  CHECK(fs::is_directory(dir.file("taken")));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
}
