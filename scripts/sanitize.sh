#!/usr/bin/env bash
# Memory safety of the compiled operators: builds sfrik_plugin._C with AddressSanitizer and
# UndefinedBehaviorSanitizer (SFRIK_SANITIZE=1 in setup.py; UBSan fatal) into a scratch folder,
# so the normal in-place build is untouched, then runs the operator tests and the fuzz test
# against that build. Exit status 0 means: no sanitizer report, every test passed.
#
#   scripts/sanitize.sh            (or: make sanitize)
#   PY=python SANITIZE_DIR=/tmp/x scripts/sanitize.sh [extra pytest args]
#
# gcc only (the runtime is found with `g++ -print-file-name=libasan.so`). Python and torch are
# not instrumented: libasan is preloaded so that its allocator is in place before anything
# else, with libstdc++ (else ASan cannot find the real __cxa_throw and aborts on the first C++
# exception, e.g. an argument check), and leak detection is off (CPython keeps objects alive
# until exit by design). Reports go to $SCRATCH/reports/, which must stay empty.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
CXX=${CXX:-g++}
SCRATCH=${SANITIZE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sfrik-sanitize-XXXXXX")}
TESTS=(tests/ops/test_legendre_values.py tests/ops/test_legendre_grad.py tests/ops/test_inputs.py tests/fuzz tests/losses/test_tiled.py)

LIBASAN=$("$CXX" -print-file-name=libasan.so)
LIBSTDCXX=$("$CXX" -print-file-name=libstdc++.so.6)
for lib in "$LIBASAN" "$LIBSTDCXX"; do
    if [[ "$lib" != /* || ! -e "$lib" ]]; then
        echo "sanitize: $CXX does not provide $(basename "$lib") (install gcc with libasan)" >&2
        exit 2
    fi
done
REPORTS="$SCRATCH/reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
echo "sanitize: scratch folder $SCRATCH, runtime $LIBASAN"

# 1. The toolchain reports what it should: a deliberate heap overflow (ASan) and a deliberate
# signed overflow (UBSan, fatal as in the extension) must each abort with their report. Built
# with one sanitizer each, so that UBSan's object-size check does not catch the ASan canary first.
mkdir -p "$SCRATCH/canary"
cat > "$SCRATCH/canary/canary.cpp" <<'CPP'
#include <climits>
#include <cstdlib>
int main(int argc, char** argv) {
#ifdef UBSAN_CANARY
  int big = INT_MAX - argc + 1;  // INT_MAX at argc == 1, unknown to the compiler
  return big + argc;             // signed overflow
#else
  int* a = static_cast<int*>(std::malloc(4 * sizeof(int)));
  int v = a[argc + 3];           // one past the end at argc == 1
  std::free(a);
  return v;
#endif
}
CPP
"$CXX" -fsanitize=address -fno-omit-frame-pointer -g -O1 "$SCRATCH/canary/canary.cpp" -o "$SCRATCH/canary/asan"
"$CXX" -fsanitize=undefined -fno-sanitize-recover=all -g -O1 -DUBSAN_CANARY "$SCRATCH/canary/canary.cpp" \
    -o "$SCRATCH/canary/ubsan"
for kind in asan:heap-buffer-overflow "ubsan:signed integer overflow"; do
    name=${kind%%:*} report=${kind#*:}
    # (in a child shell whose stderr is dropped: its "Aborted" notice is expected noise)
    if bash -c '"$0" > "$1" 2>&1' "$SCRATCH/canary/$name" "$SCRATCH/canary/$name.log" 2>/dev/null; then
        echo "sanitize: the $name canary ran to completion: the sanitizers do not work here" >&2
        exit 2
    fi
    grep -q "$report" "$SCRATCH/canary/$name.log" || {
        cat "$SCRATCH/canary/$name.log" >&2; echo "sanitize: no '$report' report from the $name canary" >&2; exit 2; }
done
echo "sanitize: canaries caught (heap-buffer-overflow, signed integer overflow)"

# 2. The sanitized extension, beside a copy of the package and of the tests.
echo "sanitize: building sfrik_plugin._C with -fsanitize=address,undefined (a few minutes)"
(cd "$ROOT" && SFRIK_SANITIZE=1 SFRIK_CPU_ONLY=1 MAX_JOBS=${MAX_JOBS:-2} \
    "$PY" setup.py -q build_ext --build-lib "$SCRATCH/lib" --build-temp "$SCRATCH/build")
(cd "$ROOT" && tar --exclude='_C*.so' --exclude='_build_info.json' --exclude='__pycache__' -cf - sfrik_plugin tests pyproject.toml) \
    | tar -C "$SCRATCH/lib" -xf -
SO=$(ls "$SCRATCH"/lib/sfrik_plugin/_C*.so)
readelf -d "$SO" | grep -q "libasan" || { echo "sanitize: $SO is not linked to libasan" >&2; exit 2; }

# 3. The tests, from the scratch folder (python -m puts the working directory first on
# sys.path: the sanitized copy is the sfrik_plugin imported, which the probe checks).
cd "$SCRATCH/lib"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
export LD_PRELOAD="$LIBASAN $LIBSTDCXX" SFRIK_REQUIRE_EXTENSION=1 PYTHONDONTWRITEBYTECODE=1
"$PY" -c "
import sfrik_plugin, sfrik_plugin._extension as e
assert e._C is not None and e._C.__file__ == '$SO', e._C
print('sanitize: loaded', e._C.__file__)
"
status=0
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@" || status=$?
if compgen -G "$REPORTS/*" > /dev/null; then
    for report in "$REPORTS"/*; do echo "---- $report"; cat "$report"; done >&2
    echo "sanitize: FAILED: sanitizer reports above" >&2
    exit 1
fi
if [[ $status -eq 0 ]]; then
    echo "sanitize: OK: no AddressSanitizer or UndefinedBehaviorSanitizer report, all tests passed"
else
    echo "sanitize: FAILED (exit status $status): see the report above" >&2
fi
exit $status
