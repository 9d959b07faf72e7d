"""Shared test helpers: independent references (scipy, numpy, mpmath) and skips.

Tests marked requires_cuda skip with the reason where no GPU is visible or the extension has no
CUDA kernels; with SFRIK_REQUIRE_CUDA=1 (what scripts/gpu_check.py sets) that is a failure
instead, so a GPU check cannot pass by skipping its CUDA tests."""

import os

import numpy as np
import pytest
import torch
from scipy.special import eval_chebyt, eval_chebyu, eval_gegenbauer, eval_legendre

import sfrik_plugin

DIMS = (2, 3, 4, 7, 64, 1024, 8192, 32768)

EXT = sfrik_plugin.extension_info()
requires_extension = pytest.mark.skipif(
    not EXT["loaded"], reason=f"compiled extension not loaded ({EXT['error']}); CI sets SFRIK_REQUIRE_EXTENSION=1"
)
CUDA_OK = torch.cuda.is_available() and EXT["cuda"]
CUDA_MISSING = (
    None
    if CUDA_OK
    else ("no CUDA GPU visible" if not torch.cuda.is_available() else "extension built without CUDA kernels")
)
REQUIRE_CUDA_ENV = "SFRIK_REQUIRE_CUDA"
requires_cuda = pytest.mark.requires_cuda


def cuda_required() -> bool:
    return os.environ.get(REQUIRE_CUDA_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"requires_cuda: needs a CUDA GPU and CUDA kernels (skipped otherwise; a failure with {REQUIRE_CUDA_ENV}=1)",
    )


def pytest_runtest_setup(item):
    if CUDA_MISSING is not None and item.get_closest_marker("requires_cuda") is not None:
        if cuda_required():
            pytest.fail(
                f"{CUDA_MISSING}, and {REQUIRE_CUDA_ENV}=1 turns a skipped CUDA test into a failure", pytrace=False
            )
        pytest.skip(CUDA_MISSING)


def scipy_legendre(degree: int, dim: int, t: np.ndarray) -> np.ndarray:
    """P_degree(dim; t) from scipy: Chebyshev T for dim 2, Legendre for dim 3, else Gegenbauer
    C_l^a normalised by its value at 1, a = (dim - 2) / 2."""
    if dim == 2:
        return eval_chebyt(degree, t)
    if dim == 3:
        return eval_legendre(degree, t)
    a = (dim - 2) / 2
    return eval_gegenbauer(degree, a, t) / eval_gegenbauer(degree, a, 1.0)


def scipy_legendre_derivative(degree: int, dim: int, t: np.ndarray) -> np.ndarray:
    """Closed-form d/dt P_degree(dim; t): T_l' = l U_{l-1}; (C_l^a)' = 2a C_{l-1}^{a+1}."""
    if degree == 0:
        return np.zeros_like(t)
    if dim == 2:
        return degree * eval_chebyu(degree - 1, t)
    a = (dim - 2) / 2
    return 2 * a * eval_gegenbauer(degree - 1, a + 1, t) / eval_gegenbauer(degree, a, 1.0)


def scipy_series(coeffs, dim, t):
    return sum(c * scipy_legendre(k, dim, t) for k, c in enumerate(coeffs))


def numpy_recurrence(degree: int, dim: int, t: np.ndarray) -> np.ndarray:
    """Float64 three-term recurrence, written independently of the package."""
    p_prev, p = np.ones_like(t), t.copy()
    if degree == 0:
        return p_prev
    for l in range(1, degree):
        p_prev, p = p, ((2 * l + dim - 2) * t * p - l * p_prev) / (l + dim - 2)
    return p


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


def gram(n: int, q: int = 16, dtype=torch.float64, generator=None) -> torch.Tensor:
    """A real Gram matrix of L2-normalised embeddings (entries in [-1, 1], rounding included)."""
    z = torch.randn(n, q, dtype=dtype, generator=generator)
    z = torch.nn.functional.normalize(z, dim=1)
    return z @ z.T
