"""Rotation-invariant kernels k(u . v) on the sphere other than the truncated Legendre series,
as MMD regularisers towards the uniform distribution sigma on S^(q-1).

For any such kernel, E_{v ~ sigma} k(u . v) is the same constant for every u, so

    MMD^2(embeddings, sigma) = (1/n^2) sum_{i,j} k(u_i . u_j) - E_{u,v ~ sigma} k(u . v).

The functions here return the first term (a V-statistic over all n^2 pairs, diagonal included):
the MMD^2 up to an additive constant that carries no gradient. The paper's kernel ablation
compares two of them with the Legendre series (sfrik_plugin.regulariser.mmd_uniform, through
the compiled operators):

- the Gaussian kernel k(t) = exp(-2 s (1 - t)) = exp(-s ||u - v||^2), positive definite for s > 0.
  AUH (Wang and Isola) takes the log of the off-diagonal mean instead; here it is a plain MMD.
- the distance kernel k(t) = C - ||u - v||^p = C - (2 - 2t)^(p/2), conditionally positive definite
  for 0 < p < 2 (so its MMD is still a metric: for p = 1 it is the energy distance). C is
  arbitrary; C = 0 here. The diagonal (distance 0) is a constant and is left out of the
  derivative, where (2 - 2t)^(p/2 - 1) is infinite for p < 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np
import torch

from . import defaults
from .validation import check_weight

__all__ = [
    "GaussianKernel",
    "DistanceKernel",
    "KERNELS",
    "Kernel",
    "KernelEntry",
    "gaussian_kernel_mean",
    "distance_kernel_mean",
    "parse_kernel",
    "check_kernel",
]

# Squared distances below this are treated as this when differentiating the distance kernel:
# (d^2)^(p/2 - 1) is unbounded as two distinct embeddings meet (bounded by 1e6 for p = 1).
_MIN_SQUARED_DISTANCE = 1e-12


class _GaussianKernelFields(NamedTuple):
    s: float = defaults.GAUSSIAN_KERNEL_S


class GaussianKernel(_GaussianKernelFields):
    """The Gaussian kernel k(t) = exp(-2 s (1 - t)) of t = u . v, as an MMD kernel.

    Args:
        s: The scale, finite and > 0 (the paper's t), checked here: a bad s is a ValueError or
            TypeError naming it, before any loss is built or computed.

    Example:
        >>> from sfrik_plugin import kernel_mmd_uniform
        >>> r = kernel_mmd_uniform(torch.randn(64, 32), GaussianKernel(s=2.5))
    """

    __slots__ = ()

    def __new__(cls, s: float = defaults.GAUSSIAN_KERNEL_S) -> GaussianKernel:
        return super().__new__(cls, _checked_parameter(cls, s))

    def mean_of_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return gaussian_kernel_mean(gram, self.s)


class _DistanceKernelFields(NamedTuple):
    p: float = defaults.DISTANCE_KERNEL_P


class DistanceKernel(_DistanceKernelFields):
    """The distance kernel k(t) = -||u - v||^p = -(2 - 2t)^(p/2) of t = u . v (C = 0).

    Args:
        p: The exponent, in (0, 2); p = 1 is the energy distance. Checked here: a bad p is a
            ValueError or TypeError naming it.

    Example:
        >>> from sfrik_plugin import kernel_mmd_uniform
        >>> r = kernel_mmd_uniform(torch.randn(64, 32), DistanceKernel(p=1.0))
    """

    __slots__ = ()

    def __new__(cls, p: float = defaults.DISTANCE_KERNEL_P) -> DistanceKernel:
        return super().__new__(cls, _checked_parameter(cls, p))

    def mean_of_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return distance_kernel_mean(gram, self.p)


def _checked_parameter(cls: type, value: object) -> float:
    """The kernel class's parameter checked as its KERNELS entry says, the error naming the class
    and the parameter (at construction: a bad kernel never reaches a forward pass)."""
    entry = next(e for e in KERNELS.values() if e.cls is cls)
    try:
        return check_weight(value, entry.parameter, **entry.check)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise type(err)(f"{cls.__name__}: {err}") from None


def gaussian_kernel_mean(gram: torch.Tensor, s: float) -> torch.Tensor:
    """(1/n^2) sum_{i,j} exp(-2 s (1 - G_ij)) of the Gram matrix G of n unit vectors."""
    s = check_weight(s, "s", positive=True)
    return torch.exp((2.0 * s) * (gram - 1.0)).mean()


def distance_kernel_mean(gram: torch.Tensor, p: float) -> torch.Tensor:
    """(1/n^2) sum_{i != j} -(2 - 2 G_ij)^(p/2) of the Gram matrix G of n unit vectors (the
    diagonal terms are 0)."""
    p = check_weight(p, "p", below=2.0)
    n = gram.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=gram.device)
    # Rounding can leave 2 - 2G slightly negative for (near-)equal rows; the floor keeps the
    # power and its derivative finite there.
    squared = (2.0 - 2.0 * gram).clamp_min(_MIN_SQUARED_DISTANCE)
    distances = torch.where(off_diagonal, squared.pow(p / 2), torch.zeros_like(squared))
    return -distances.sum() / n**2


class Kernel(Protocol):
    """What the losses ask of a kernel: (1/n^2) sum_ij k(G_ij) of the Gram matrix of unit rows."""

    def mean_of_gram(self, gram: torch.Tensor) -> torch.Tensor: ...


def _gaussian_reference(t: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.exp(-2.0 * s * (1.0 - t))
    return k, 2.0 * s * k


def _distance_reference(t: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    d2 = 2.0 - 2.0 * t
    return -np.power(d2, p / 2), p * np.power(d2, p / 2 - 1)


class KernelEntry(NamedTuple):
    """One kernel of the registry: everything any part of the project asks of it.

    cls: a NamedTuple class with the one parameter and mean_of_gram(gram) (the default parameter
    is its field's default); check: check_weight's keyword arguments for the parameter; title: its
    name in prose ("the <title> kernel"); label: its formula in the study's tables; ladder:
    (centre, factor) of the study's ladder for its MMD weight; reference: (k(t), k'(t)) in float64
    numpy from the formula, for t in [-1, 1) (the tests' oracle: the diagonal, t = 1, counts k(1)
    and no derivative)."""

    cls: type
    parameter: str
    check: dict[str, object]
    title: str
    label: str
    ladder: tuple[float, float]
    reference: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]

    @property
    def default(self) -> float:
        return float(getattr(self.cls(), self.parameter))


# The registry of the kernels besides the Legendre series: adding one is an entry here plus its
# tests; the losses, the demo, the study (its grid, its report), the benchmarks and the help texts
# take kernels from it (tests/test_registries.py walks every entry through them).
KERNELS: dict[str, KernelEntry] = {
    "gaussian": KernelEntry(
        GaussianKernel,
        "s",
        {"positive": True},
        "Gaussian",
        "Gaussian exp(-2s(1-t))",
        (100.0, 2.0),
        _gaussian_reference,
    ),
    "distance": KernelEntry(
        DistanceKernel,
        "p",
        {"below": 2.0},
        "distance",
        "distance -||u-v||^p",
        (3.0, 2.0),
        _distance_reference,
    ),
}


def parse_kernel(name: str, value: float | None = None) -> Kernel:
    """The kernel called `name` with its parameter (its default, defaults.py, when value is None).

    Args:
        name: A name of KERNELS ("gaussian", "distance", ...).
        value: Its parameter (s > 0, p in (0, 2), ...); None: the default.

    Returns:
        The registry's kernel (a GaussianKernel, a DistanceKernel, ...).

    Raises:
        ValueError: an unknown name or a parameter out of range.
        TypeError: a parameter that is not a real number.

    Example:
        >>> parse_kernel("distance", 1.0)
        DistanceKernel(p=1.0)
        >>> parse_kernel("gaussian")
        GaussianKernel(s=2.5)
    """
    if name not in KERNELS:
        raise ValueError(f"kernel must be {' or '.join(map(repr, KERNELS))}, got {name!r}")
    entry = KERNELS[name]
    if value is None:
        return entry.cls()
    return entry.cls(check_weight(value, entry.parameter, **entry.check))  # type: ignore[arg-type]


def check_kernel(kernel: object) -> Kernel:
    """kernel itself if it is one of the registry's kernels, else a TypeError naming them."""
    classes = tuple(entry.cls for entry in KERNELS.values())
    if not isinstance(kernel, classes):
        names = " or a ".join(c.__name__ for c in classes)
        raise TypeError(f"kernel must be a {names} (sfrik_plugin.kernels), got {kernel!r}")
    return kernel  # type: ignore[return-value]
