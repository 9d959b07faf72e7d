"""Independent references of the Legendre polynomials P_l(dim; t) (scipy's closed forms, a
float64 numpy recurrence), written without the package."""

import numpy as np
from scipy.special import eval_chebyt, eval_chebyu, eval_gegenbauer, eval_legendre

DIMS = (2, 3, 4, 7, 64, 1024, 8192, 32768)


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
