// Error messages built without iostreams. TORCH_CHECK(cond, a, b, ...) with more than one message
// argument formats them through a std::ostringstream compiled into this extension; on some
// toolchains (seen: torch 2.11 on Ubuntu 24.04's g++ 13, whose _C.so exports its own copy of
// std::ostream::_M_insert<long>) the extension's integer insertion binds to that copy, which reads
// locale facets the extension's stream never registered with it: SIGSEGV instead of a Python error.
// A single const char* message takes c10's no-formatting path, so every check
// here goes through SFRIK_CHECK_* with message(...) below; tests/ops/test_error_paths.py checks
// that the built library references no iostream symbol at all.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

namespace sfrik {
namespace detail {

inline void append(std::string& out, const char* s) { out += s; }
inline void append(std::string& out, const std::string& s) { out += s; }
inline void append(std::string& out, char c) { out += c; }
inline void append(std::string& out, bool b) { out += b ? "true" : "false"; }
inline void append(std::string& out, double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", v);
  out += buffer;
}
inline void append(std::string& out, c10::ScalarType s) { out += c10::toString(s); }
inline void append(std::string& out, const c10::Device& d) {
  out += c10::DeviceTypeName(d.type(), /*lower_case=*/true);
  if (d.has_index()) {
    out += ':';
    out += std::to_string(static_cast<int>(d.index()));
  }
}
inline void append(std::string& out, c10::IntArrayRef sizes) {
  out += '[';
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(sizes[i]);
  }
  out += ']';
}
template <typename Int, typename = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool> &&
                                                    !std::is_same_v<Int, char>>>
void append(std::string& out, Int v) {
  out += std::to_string(v);
}

}  // namespace detail

// The concatenation of the arguments (strings, integers, doubles, dtypes, devices, shapes).
template <typename... Args>
std::string message(const Args&... args) {
  std::string out;
  (detail::append(out, args), ...);
  return out;
}

}  // namespace sfrik

// TORCH_CHECK_* with the message formatted by sfrik::message (never an ostream); the arguments
// are evaluated only when the check fails.
// The message goes in as one const char* (alive until the end of the throw expression): c10::str
// returns it as is. (A std::string would go through c10's out-of-line _str_wrapper<const std::string&>,
// an ostringstream again.)
#define SFRIK_CHECK(cond, ...) TORCH_CHECK(cond, ::sfrik::message(__VA_ARGS__).c_str())
#define SFRIK_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE(cond, ::sfrik::message(__VA_ARGS__).c_str())
#define SFRIK_CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, ::sfrik::message(__VA_ARGS__).c_str())
