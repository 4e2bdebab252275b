#include "models/warning.hpp"

#include <iostream>
#include <mutex>

namespace tg {

namespace {
std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}
WarningHandler& handler_slot() {
  static WarningHandler h;
  return h;
}
}  // namespace

WarningHandler set_warning_handler(WarningHandler handler) {
  std::lock_guard<std::mutex> lock(handler_mutex());
  WarningHandler previous = std::move(handler_slot());
  handler_slot() = std::move(handler);
  return previous;
}

void warn(const std::string& message) {
  WarningHandler h;
  {
    std::lock_guard<std::mutex> lock(handler_mutex());
    h = handler_slot();
  }
  // The handler runs outside the lock, so it may itself replace the handler.
  if (h)
    h(message);
  else
    std::cerr << "tapegrad warning: " << message << '\n';
}

}  // namespace tg
