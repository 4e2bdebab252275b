#pragma once

// Internal: TG_UNDER_ASAN is defined when this translation unit is built with
// AddressSanitizer (g++ or clang). Under ASan every graph node is its own allocation (no node
// free lists, no recycled nodes), so a use after free is still caught; tests that count
// recycled nodes read it too.

#if defined(__SANITIZE_ADDRESS__)
#define TG_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)  // clang before 2025 does not define the macro above
#define TG_UNDER_ASAN 1
#endif
#endif
