"""Fixtures and hooks only; the shared helpers are in tests/helpers (importable as helpers.*).

Tests marked requires_cuda skip with the reason where no GPU is visible or the extension has no
CUDA kernels; with SFRIK_REQUIRE_CUDA=1 (what scripts/gpu_check.py sets) that is a failure
instead, so a GPU check cannot pass by skipping its CUDA tests. The `device` fixture runs a test
once per device, "cpu" and "cuda", the cuda case marked requires_cuda."""

import pytest
import torch
from helpers import fast_loop
from helpers.cuda import CUDA_MISSING, REQUIRE_CUDA_ENV, cuda_required, requires_cuda


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"requires_cuda: needs a CUDA GPU and CUDA kernels (skipped otherwise; a failure with {REQUIRE_CUDA_ENV}=1)",
    )
    fast_loop.install(config)


def pytest_runtest_setup(item):
    if CUDA_MISSING is not None and item.get_closest_marker("requires_cuda") is not None:
        if cuda_required():
            pytest.fail(
                f"{CUDA_MISSING}, and {REQUIRE_CUDA_ENV}=1 turns a skipped CUDA test into a failure", pytrace=False
            )
        pytest.skip(CUDA_MISSING)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=requires_cuda)])
def device(request) -> str:
    """The device type a test runs on, "cpu" or "cuda" (the cuda case carries requires_cuda: it
    skips, or fails with SFRIK_REQUIRE_CUDA=1, where there is no GPU or no CUDA kernels)."""
    return request.param
