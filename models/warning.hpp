#pragma once

#include <functional>
#include <string>

namespace tg {

/// Receives every warning tapegrad emits (e.g. a constant initializer on a weight matrix).
using WarningHandler = std::function<void(const std::string& message)>;

/// Replaces the warning handler (an empty function restores the default, which prints
/// "tapegrad warning: ..." to stderr); returns the previous one. Thread-safe.
WarningHandler set_warning_handler(WarningHandler handler);

/// Sends `message` to the current warning handler.
void warn(const std::string& message);

}  // namespace tg
