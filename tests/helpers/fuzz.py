"""Shared by the fuzz tests (tests/fuzz): hypothesis settings, the per-example watchdog, the
float dtypes, the float64 numpy oracle of the Legendre series with its rounding bound, and an
operator's output held against it (expected_elementwise, assert_matches).

Example counts: the suite runs a bounded, derandomised number per property (CI stays fast and
reproducible); SFRIK_FUZZ_EXAMPLES=N runs N per property with fresh randomness, which is what
scripts/fuzz.py (make fuzz) does for the long run.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os

import numpy as np
import torch
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("SFRIK_FUZZ_EXAMPLES", "0"))
HANG_S = float(os.environ.get("SFRIK_FUZZ_HANG_S", "120"))  # one example longer than this is a hang


def fuzz_settings(in_suite: int):
    """in_suite examples, derandomised, in the test suite; SFRIK_FUZZ_EXAMPLES fresh random ones
    otherwise. No example database (nothing written into the checkout)."""
    return settings(
        max_examples=EXAMPLES or in_suite,
        derandomize=not EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def watchdog():
    """Kills the process with every thread's traceback if the body runs longer than HANG_S."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision the kernels compute in: float32 for the half types."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# The oracle: float64 numpy, written from the definition, independent of the package


def oracle(t: np.ndarray, coeffs, dim: int, order: int = 0):
    """d^order/dt^order of sum_k c_k P_k(dim; t) in float64, by the three-term recurrence
    differentiated m times:
        P^(m)_{l+1} = a_l (t P^(m)_l + m P^(m-1)_l) - b_l P^(m)_{l-1},
        a_l = (2l + q - 2) / (l + q - 2),  b_l = l / (l + q - 2).
    Also returns, per element,
      scale: sum_k |c_k| max(1, max_{j<=k} |P^(order)_j(t)|, P^(order)_k(1)), the size of what
             the kernel adds up (its rounding error is a multiple of eps * scale), and
      peak:  max_{j<=L} |P^(order)_j(t)|, the largest intermediate (intermediates of the kernel's
             series in dim + 2 order are at most this), for overflow in the compute type.
    """
    q = float(dim)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(all="ignore"):
        pts = np.stack([t, np.ones_like(t)])  # t and 1, in one pass
        prev = [np.ones_like(pts)] + [np.zeros_like(pts) for _ in range(order)]  # P^(m)_0
        cur = [pts.copy(), np.ones_like(pts)] + [np.zeros_like(pts) for _ in range(order - 1)]  # P^(m)_1
        cur = cur[: order + 1]
        value = np.zeros_like(t)
        scale = np.zeros_like(t)
        running = np.zeros_like(t)  # max_{j<=k} |P^(order)_j(t)|
        for k, c in enumerate(coeffs):
            if k == 0:
                p = prev[order]
            elif k == 1:
                p = cur[order]
            else:
                l = k - 1  # advance from (P_{l-1}, P_l) to P_{l+1}
                a, b = (2 * l + q - 2) / (l + q - 2), l / (l + q - 2)
                # P^(m)_l is identically 0 for l < m: no t * 0 there (NaN for t = NaN or inf)
                nxt = [
                    a * ((pts * cur[m] if l >= m else 0.0) + (m * cur[m - 1] if m else 0.0)) - b * prev[m]
                    for m in range(order + 1)
                ]
                prev, cur = cur, nxt
                p = cur[order]
            running = np.fmax(running, np.abs(p[0]))
            value = value + c * p[0]
            scale = scale + abs(c) * np.fmax(np.fmax(1.0, running), np.abs(p[1]))
        # the kernel computes every P_j up to the degree, whatever the coefficients
        peak = running
    return value, scale, peak


def tolerance(ref, scale, dtype, degree: int, t, grad=1.0):
    """Bound on |kernel - oracle| for one value: rounding in the compute type, K(t) eps scale,
    then the rounding to the output dtype and subnormal rounding. K(t) = 8 (L + 2) (one rounding
    per step, accumulated) + A(t) / 4, A(t) = min((L + 2)^2, (L + 2) / sqrt|1 - t^2|): rounding
    inside the recurrence acts like a relative perturbation of t, which the series amplifies by
    its conditioning (Markov's L^2 near +-1, Bernstein's L / sqrt(1 - t^2) inside). Measured:
    at most ~1/8 of K(t) for L <= 1000, orders 0..3, float32 and float64."""
    comp, out = torch.finfo(compute_dtype(dtype)), torch.finfo(dtype)
    grad = np.abs(grad)
    with np.errstate(all="ignore"):
        n = degree + 2.0
        amplification = np.fmin(n * n, n / np.sqrt(np.abs(1.0 - np.square(t))))
    k = 8 * n + amplification / 4
    return (
        k * comp.eps * scale * grad
        + out.eps * np.abs(ref)
        + (degree + 2) * comp.smallest_normal * np.fmax(1.0, scale) * np.fmax(grad, 1.0)
        + out.smallest_normal * out.eps
    )


# ---------------------------------------------------------------------------------------------
# An operator's output held against the oracle

OTHER_DTYPES = (  # what t may not be: the operators take floating-point tensors only
    torch.int8,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
)


def assert_matches(got: torch.Tensor, ref, tol, overflow, finite_input, dtype, what: str):
    """got (the kernel) against ref (float64 oracle), elementwise:
      - within tol, or
      - +-inf where a value within tol of the exact one overflows the output dtype that way, or
      - NaN where the input was NaN and the oracle is NaN, or
      - any non-finite value where the oracle's intermediates overflow the compute type or the
        input was +-inf (then the exact polynomial value is out of reach of the recurrence).
    A finite wrong number is never accepted."""
    g = got.detach().double().numpy().reshape(np.shape(ref))
    ref, tol = np.asarray(ref, dtype=np.float64), np.asarray(tol, dtype=np.float64)
    big = torch.finfo(dtype).max
    with np.errstate(all="ignore"):
        ok = np.abs(g - ref) <= tol
        ok |= np.isinf(g) & (np.where(g > 0, ref + tol, -(ref - tol)) >= big)  # reachable overflow
        ok |= np.isnan(g) & np.isnan(ref) & ~finite_input
        ok |= ~np.isfinite(g) & (overflow | (~finite_input & ~np.isnan(ref) & ~np.isfinite(ref)))
        ok |= ~np.isfinite(g) & ~finite_input & np.isnan(ref)
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[:5]
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} values wrong; first: got "
            f"{g.ravel()[i]}, float64 oracle {ref.ravel()[i]}, tolerance {tol.ravel()[i]}"
        )


def overflows(scale, peak, dtype, grad=1.0):
    limit = torch.finfo(compute_dtype(dtype)).max / 16
    with np.errstate(all="ignore"):
        size = np.fmax(np.fmax(scale, peak), scale * np.abs(grad))
        return ~(size < limit)  # NaN counts


def expected_elementwise(t: torch.Tensor, coeffs, dim, order=0, grad=None):
    """(oracle value, tolerance, overflow mask, finite-input mask) for each element of t."""
    x = t.detach().double().numpy()
    value, scale, peak = oracle(x, coeffs, dim, order)
    g = 1.0 if grad is None else grad
    degree = len(coeffs) - 1
    with np.errstate(all="ignore"):
        ref = value * g
    return ref, tolerance(ref, scale, t.dtype, degree, x, g), overflows(scale, peak, t.dtype, g), np.isfinite(x)
