"""Pure-PyTorch reference of the Legendre series: the test oracle and the fallback used when the
compiled extension is not available. Differentiable through ordinary autograd.

P_l(q; t) is the Legendre polynomial in dimension q normalised so that P_l(q; 1) = 1:
    P_0 = 1,  P_1 = t,  P_{l+1} = ((2l + q - 2) t P_l - l P_{l-1}) / (l + q - 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def legendre_series_reference(t: torch.Tensor, coeffs: Sequence[float], q: int) -> torch.Tensor:
    """sum_k coeffs[k] * P_k(q; t), elementwise, by the three-term recurrence."""
    qd = float(q)
    out = torch.full_like(t, float(coeffs[0]))
    if len(coeffs) == 1:
        return out
    p_prev, p = torch.ones_like(t), t
    out = out + float(coeffs[1]) * t
    for l in range(1, len(coeffs) - 1):
        p_prev, p = p, ((2 * l + qd - 2) / (l + qd - 2)) * t * p - (l / (l + qd - 2)) * p_prev
        out = out + float(coeffs[l + 1]) * p
    return out


def official_legendre_polynomial(dim: int, degree: int, t: torch.Tensor) -> torch.Tensor:
    """The closed forms of the official SFRIK code (valeoai/sfrik, src/sfrik/ssl.py), degrees 1-4."""
    if degree == 1:
        return t
    if degree == 2:
        constant = 1 / (dim - 1)
        return (1 + constant) * t**2 - constant
    if degree == 3:
        constant = 3 / (dim - 1)
        return (1 + constant) * t**3 - constant * t
    if degree == 4:
        a_1 = 1 + 6 / (dim - 1) + 3 / ((dim + 1) * (dim - 1))
        a_2 = -6 / (dim - 1) * (1 + 1 / (dim + 1))
        a_3 = 3 / ((dim + 1) * (dim - 1))
        return a_1 * t**4 + a_2 * t**2 + a_3
    raise NotImplementedError(f"the official closed forms stop at degree 4, got {degree}")


def official_psi(t: torch.Tensor, kernel_weights: Sequence[float], dim: int) -> torch.Tensor:
    """psi(t) = sum_{l>=1} b_l P_l(dim; t) written as the official code writes it (b = kernel_weights)."""
    out = kernel_weights[0] * official_legendre_polynomial(dim, 1, t)
    for degree, b in enumerate(kernel_weights[1:], start=2):
        out = out + b * official_legendre_polynomial(dim, degree, t)
    return out
