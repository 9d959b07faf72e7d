"""SFRIK_REQUIRE_CUDA=1 turns a skipped CUDA test into a failure (what the GPU check relies on):
two CUDA tests run in a fresh pytest, with and without the variable: a CUDA-only one (marked
requires_cuda) and the "cuda" case of a test that takes the `device` fixture."""

import subprocess
from pathlib import Path

import pytest
from helpers.cuda import CUDA_OK, REQUIRE_CUDA_ENV
from helpers.processes import run_python

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

ROOT = Path(__file__).resolve().parents[2]
CUDA_TESTS = (
    "tests/ops/test_cuda_kernels.py::test_reduction_accumulates_in_double",
    "tests/ops/test_legendre_values.py::test_normalised_at_one[cuda]",
)
TIMEOUT_S = 120


def run_one_cuda_test(require: bool) -> subprocess.CompletedProcess:
    return run_python(
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        *CUDA_TESTS,
        cwd=ROOT,
        unset_env=[REQUIRE_CUDA_ENV],
        set_env={REQUIRE_CUDA_ENV: "1"} if require else None,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_skipped_cuda_test_fails_when_cuda_is_required():
    proc = run_one_cuda_test(require=True)
    if CUDA_OK:
        assert proc.returncode == 0 and f"{len(CUDA_TESTS)} passed" in proc.stdout, proc.stdout[-3000:]
    else:
        assert proc.returncode != 0, proc.stdout[-3000:]
        # both of them: the fixture's cuda case as well as the CUDA-only test
        assert f"{len(CUDA_TESTS)} errors" in proc.stdout, proc.stdout[-3000:]
        message = f"{REQUIRE_CUDA_ENV}=1 turns a skipped CUDA test into a failure"
        assert proc.stdout.count(message) >= len(CUDA_TESTS), proc.stdout[-3000:]


def test_cuda_test_skips_with_the_reason_otherwise():
    proc = run_one_cuda_test(require=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    if CUDA_OK:
        assert f"{len(CUDA_TESTS)} passed" in proc.stdout, proc.stdout[-3000:]
    else:
        assert f"{len(CUDA_TESTS)} skipped" in proc.stdout and (
            "no CUDA GPU visible" in proc.stdout or "built without CUDA kernels" in proc.stdout
        ), proc.stdout[-3000:]
