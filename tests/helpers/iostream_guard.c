/* LD_PRELOAD guard for tests/ops/test_error_paths.py: stands in for the C++ library's stream
 * formatting entry points (std::ostringstream's constructor, ostream::_M_insert<T> for every
 * number type, __ostream_insert) and aborts the process when one is called from a shared object
 * whose path contains $IOSTREAM_GUARD_FORBID; other callers get the real function. This is what a
 * toolchain that binds these symbols to an incompatible copy does (a crash), made deterministic. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void guard(void* caller, const char* what) {
  const char* forbid = getenv("IOSTREAM_GUARD_FORBID");
  Dl_info info;
  if (forbid && *forbid && dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, forbid)) {
    fprintf(stderr, "iostream_guard: %s called from %s\n", what, info.dli_fname);
    fflush(stderr);
    abort();
  }
}

/* The real function, from the C++ library itself: RTLD_NEXT would miss it where libstdc++ came in
 * as a dependency of a library loaded with RTLD_LOCAL (torch's extension modules). */
static void* next(const char* symbol) {
  static void* library;
  if (!library) library = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
  void* real = library ? dlsym(library, symbol) : NULL;
  if (!real) {
    fprintf(stderr, "iostream_guard: %s not found\n", symbol);
    abort();
  }
  return real;
}

#define GUARD_INSERT(symbol, type, what)                                 \
  void* symbol(void* self, type value) {                                 \
    static void* (*real)(void*, type);                                   \
    guard(__builtin_return_address(0), what);                            \
    if (!real) real = (void* (*)(void*, type))next(#symbol);             \
    return real(self, value);                                            \
  }

GUARD_INSERT(_ZNSo9_M_insertIlEERSoT_, long, "ostream::_M_insert<long>")
GUARD_INSERT(_ZNSo9_M_insertImEERSoT_, unsigned long, "ostream::_M_insert<unsigned long>")
GUARD_INSERT(_ZNSo9_M_insertIxEERSoT_, long long, "ostream::_M_insert<long long>")
GUARD_INSERT(_ZNSo9_M_insertIyEERSoT_, unsigned long long, "ostream::_M_insert<unsigned long long>")
GUARD_INSERT(_ZNSo9_M_insertIbEERSoT_, _Bool, "ostream::_M_insert<bool>")
GUARD_INSERT(_ZNSo9_M_insertIdEERSoT_, double, "ostream::_M_insert<double>")
GUARD_INSERT(_ZNSo9_M_insertIPKvEERSoT_, const void*, "ostream::_M_insert<const void*>")

void* _ZSt16__ostream_insertIcSt11char_traitsIcEERSt13basic_ostreamIT_T0_ES6_PKS3_l(void* os, const char* s, long n) {
  static void* (*real)(void*, const char*, long);
  guard(__builtin_return_address(0), "__ostream_insert<char>");
  if (!real) real = (void* (*)(void*, const char*, long))next("_ZSt16__ostream_insertIcSt11char_traitsIcEERSt13basic_ostreamIT_T0_ES6_PKS3_l");
  return real(os, s, n);
}

void _ZNSt7__cxx1119basic_ostringstreamIcSt11char_traitsIcESaIcEEC1Ev(void* self) {
  static void (*real)(void*);
  guard(__builtin_return_address(0), "std::ostringstream()");
  if (!real) real = (void (*)(void*))next("_ZNSt7__cxx1119basic_ostringstreamIcSt11char_traitsIcESaIcEEC1Ev");
  real(self);
}
