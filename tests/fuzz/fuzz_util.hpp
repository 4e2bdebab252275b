#pragma once

// Helpers for the fuzz targets: the readers take a path, so inputs go to an anonymous
// in-memory file (memfd) reached through /proc/self/fd.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tgfuzz {

/// An in-memory file holding `data`; `path()` names it for the readers.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) : fd_(memfd_create("tapegrad-fuzz", 0)) {
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

/// Stops the fuzzer with a message (a finding).
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::abort();
}

}  // namespace tgfuzz
