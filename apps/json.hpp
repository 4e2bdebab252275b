#pragma once

// A minimal JSON writer for the CLI's machine-readable outputs.

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace tg::app {

/// A JSON value rendered as text.
class Json {
 public:
  static Json number(double v) {
    if (!std::isfinite(v)) return Json("null");  // JSON has no NaN/Inf
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return Json(buf);
  }
  static Json integer(long long v) { return Json(std::to_string(v)); }
  static Json boolean(bool v) { return Json(v ? "true" : "false"); }
  static Json string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += c;
          }
      }
    }
    return Json(out + "\"");
  }
  static Json array(const std::vector<Json>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i].text_;
    return Json(out + "]");
  }
  static Json numbers(const std::vector<double>& v) {
    std::vector<Json> items;
    for (double x : v) items.push_back(number(x));
    return array(items);
  }
  /// An object from (key, value) pairs, keys in the given order.
  static Json object(const std::vector<std::pair<std::string, Json>>& fields) {
    std::string out = "{";
    for (size_t i = 0; i < fields.size(); ++i)
      out += (i ? ", " : "") + string(fields[i].first).text_ + ": " + fields[i].second.text_;
    return Json(out + "}");
  }
  const std::string& str() const { return text_; }

 private:
  explicit Json(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

}  // namespace tg::app
