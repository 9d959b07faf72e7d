"""Rotation-invariant kernels k(u . v) on the sphere other than the truncated Legendre series,
as MMD regularisers towards the uniform distribution sigma on S^(q-1).

For any such kernel, E_{v ~ sigma} k(u . v) is the same constant for every u, so

    MMD^2(embeddings, sigma) = (1/n^2) sum_{i,j} k(u_i . u_j) - E_{u,v ~ sigma} k(u . v).

The functions here return the first term (a V-statistic over all n^2 pairs, diagonal included):
the MMD^2 up to an additive constant that carries no gradient. The paper's kernel ablation
compares two of them with the Legendre series (which sfrik_plugin.losses evaluates through the
compiled operators):

- the Gaussian kernel k(t) = exp(-2 s (1 - t)) = exp(-s ||u - v||^2), positive definite for s > 0.
  AUH (Wang and Isola) takes the log of the off-diagonal mean instead; here it is a plain MMD.
- the distance kernel k(t) = C - ||u - v||^p = C - (2 - 2t)^(p/2), conditionally positive definite
  for 0 < p < 2 (so its MMD is still a metric: for p = 1 it is the energy distance). C is
  arbitrary; C = 0 here. The diagonal (distance 0) is a constant and is left out of the
  derivative, where (2 - 2t)^(p/2 - 1) is infinite for p < 2.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

__all__ = ["GaussianKernel", "DistanceKernel", "gaussian_kernel_mean", "distance_kernel_mean", "parse_kernel"]

# Squared distances below this are treated as this when differentiating the distance kernel:
# (d^2)^(p/2 - 1) is unbounded as two distinct embeddings meet (bounded by 1e6 for p = 1).
_MIN_SQUARED_DISTANCE = 1e-12


def _positive(value: object, name: str, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (0 < value < upper) or not math.isfinite(value):
        bound = "> 0" if upper == math.inf else f"in (0, {upper:g})"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


class GaussianKernel(NamedTuple):
    """k(t) = exp(-2 s (1 - t)); s > 0 (the paper's t)."""

    s: float = 2.5

    def mean_of_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return gaussian_kernel_mean(gram, self.s)


class DistanceKernel(NamedTuple):
    """k(t) = -||u - v||^p = -(2 - 2t)^(p/2); 0 < p < 2."""

    p: float = 1.0

    def mean_of_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return distance_kernel_mean(gram, self.p)


def gaussian_kernel_mean(gram: torch.Tensor, s: float) -> torch.Tensor:
    """(1/n^2) sum_{i,j} exp(-2 s (1 - G_ij)) of the Gram matrix G of n unit vectors."""
    s = _positive(s, "s")
    return torch.exp((2.0 * s) * (gram - 1.0)).mean()


def distance_kernel_mean(gram: torch.Tensor, p: float) -> torch.Tensor:
    """(1/n^2) sum_{i != j} -(2 - 2 G_ij)^(p/2) of the Gram matrix G of n unit vectors (the
    diagonal terms are 0)."""
    p = _positive(p, "p", upper=2.0)
    n = gram.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=gram.device)
    # Rounding can leave 2 - 2G slightly negative for (near-)equal rows; the floor keeps the
    # power and its derivative finite there.
    squared = (2.0 - 2.0 * gram).clamp_min(_MIN_SQUARED_DISTANCE)
    distances = torch.where(off_diagonal, squared.pow(p / 2), torch.zeros_like(squared))
    return -distances.sum() / n**2


def parse_kernel(name: str, value: float) -> GaussianKernel | DistanceKernel:
    """The kernel called `name` ("gaussian" or "distance") with its parameter (s or p)."""
    if name == "gaussian":
        return GaussianKernel(_positive(value, "s"))
    if name == "distance":
        return DistanceKernel(_positive(value, "p", upper=2.0))
    raise ValueError(f"kernel must be 'gaussian' or 'distance', got {name!r}")
