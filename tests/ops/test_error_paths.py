"""Every error path of the compiled operators is safe on toolchains where stream formatting from
the extension crashes.

Seen on an H200 image (torch 2.11, g++ 13.3): TORCH_CHECK(cond, "... got ", q) in an extension
formats q through std::ostream::_M_insert<long>, which bound to a copy inside torch's _C.so and
crashed the process (SIGSEGV) instead of raising. cpp/messages.h builds every message without
iostreams. Here the crash is made deterministic: an LD_PRELOAD guard (helpers/iostream_guard.c)
aborts the process whenever a stream formatting function is called from sfrik_plugin's library,
and every bad argument of every operator must still come back as a Python exception naming it.
The control test shows that the guard does catch such calls (from torch's own library)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.cuda import requires_extension
from helpers.processes import failure, run_code, run_python

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process (with an LD_PRELOAD guard)

GUARD_SOURCE = Path(__file__).resolve().parents[1] / "helpers" / "iostream_guard.c"

# (device-independent call with x a float32 (10, 5) tensor and t a float32 (5,) tensor on the device,
#  the exception, a part of its message)
BAD_CALLS = [
    ("ops.legendre_series(t, [1.0], 1)", "ValueError", "q must be an integer >= 2"),
    ("ops.legendre_series(t, [], 3)", "ValueError", "coeffs must be a non-empty"),
    ("ops.legendre_series_reduce(t, [float('nan')], 3, True)", "ValueError", "coeffs must be finite"),
    ("ops.legendre_series(t.long(), [1.0], 3)", "TypeError", "t must be a floating-point tensor"),
    ("ops.legendre_series_reduce(t.long(), [1.0], 3, False)", "TypeError", "t must be a floating-point"),
    ("ops.legendre_series_backward(t[:4], t, [1.0, 2.0], 3, 1)", "ValueError", "grad must have the shape of t"),
    ("ops.legendre_series_backward(t.double(), t, [1.0, 2.0], 3, 1)", "ValueError", "grad must have the dtype"),
    ("ops.legendre_series_backward(t, t, [1.0, 2.0], 3, -1)", "ValueError", "order must be >= 0"),
    ("ops.legendre_series_backward(t, t, [0.0, 0.0, 1e308], 3, 1)", "ValueError", "order 1 overflows"),
    ("ops.gram_series_sum(x, x[:, :3], [0.0, 1.0], 5, 8, False, False)", "ValueError", "as many features"),
    ("ops.gram_series_sum(x, x.double(), [0.0, 1.0], 5, 8, False, False)", "ValueError", "y must have the dtype"),
    ("ops.gram_series_sum(x, None, [0.0, 1.0], 5, 8, True, True)", "ValueError", "grad_y must be false"),
    ("ops.gram_series_sum(x, None, [0.0, 1.0], 5, 0, False, False)", "ValueError", "tile must be"),
    ("ops.gram_series_sum(x, None, [0.0, 1.0], 1, 8, False, False)", "ValueError", "q must be"),
    ("ops.gram_series_sum(x[0], None, [0.0, 1.0], 5, 8, False, False)", "ValueError", "must be 2-D"),
    ("ops.gram_series_sum(x.half(), None, [0.0, 1.0], 5, 8, False, False)", "TypeError", "float32 or float64"),
    ("ops.legendre_series_value_and_grad(t, [1.0, 2.0], 1, True)", "ValueError", "q must be an integer >= 2"),
    ("ops.legendre_series_value_and_grad(t.long(), [1.0], 3, True)", "TypeError", "t must be a floating-point"),
    ("ops.legendre_series_value_and_grad(t, [0.0, 0.0, 1e308], 3, True)", "ValueError", "overflows"),
    ("ops.row_stats(t, None)", "ValueError", "x must be 2-D"),
    ("ops.row_stats(x, x[:4])", "ValueError", "y must have the shape of x"),
    ("ops.row_stats(x, x.double())", "ValueError", "y must have the dtype of x"),
    ("ops.row_stats(x.long(), None)", "TypeError", "x must be a floating-point tensor"),
]

PROBE = """
import sys, torch, sfrik_plugin
ops = torch.ops.sfrik
device = sys.argv[1]
x = torch.randn(10, 5, device=device)
t = torch.linspace(-1, 1, 5, device=device)
raised = 0
for call, error, match in {cases!r}:
    try:
        eval(call)
    except Exception as err:
        assert type(err).__name__ == error and match in str(err), (call, type(err).__name__, str(err)[:300])
        raised += 1
    else:
        raise AssertionError(f"{{call}} did not raise")
print("RAISED", raised)
"""


@pytest.fixture(scope="module")
def iostream_guard(tmp_path_factory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the LD_PRELOAD guard")
    library = tmp_path_factory.mktemp("guard") / "iostream_guard.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", library, GUARD_SOURCE, "-ldl"], check=True)
    return library


def guarded(library: Path, forbid: str) -> dict[str, str]:
    return {"LD_PRELOAD": str(library), "IOSTREAM_GUARD_FORBID": forbid}


def test_the_guard_catches_stream_formatting_from_the_named_library(iostream_guard):
    # torch's own shape error formats integers through ostream::_M_insert<long> from libtorch_cpu:
    # with that library named, the guard must abort the process where the formatting happens.
    code = "import torch\ntry:\n    torch.zeros(2).view(3)\nexcept RuntimeError:\n    pass\nprint('SURVIVED')"
    proc = run_code(code, set_env=guarded(iostream_guard, "libtorch_cpu"), check=False)
    assert proc.returncode != 0 and "iostream_guard:" in proc.stderr and "SURVIVED" not in proc.stdout, failure(proc)
    unguarded = run_code(code, set_env=guarded(iostream_guard, ""), check=False)
    assert unguarded.returncode == 0 and "SURVIVED" in unguarded.stdout, failure(unguarded)


@requires_extension
def test_every_bad_argument_raises_without_stream_formatting(device, iostream_guard):
    code = PROBE.format(cases=BAD_CALLS)
    proc = run_python("-c", code, device, set_env=guarded(iostream_guard, "sfrik_plugin/_C"), check=False)
    assert proc.returncode == 0, failure(proc)
    assert f"RAISED {len(BAD_CALLS)}" in proc.stdout
