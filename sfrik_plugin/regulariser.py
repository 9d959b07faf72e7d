"""The regularisers towards the uniform distribution on the sphere, on L2-normalised rows.

    R(u) = (1/n^2) sum_{i,j} psi(u_i . u_j),  psi = sum_{l=1..L} b_l P_l(q; .)

is SFRIK's MMD^2 (V-statistic) to the uniform distribution for the truncated Legendre kernel psi
(b_l >= 0, so psi is positive definite and R >= 0); degree 0 is a constant that cancels. It is
computed densely (the n x n Gram matrix, fused mean through the compiled operator), in tiles that
never hold that matrix (tiled.py), or sharded over processes (distributed.py); plan_regulariser
picks the path from the options and the sizes. kernel_mmd_uniform is the same MMD for the other
rotation-invariant kernels (kernels.py), and auh_uniformity is AUH's log-mean Gaussian potential.

Normalisation, Gram matrix and kernel run in float32 (float64 stays float64), also under autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch

from . import defaults
from .distributed import gather_views, sharded_mmd, world_size
from .kernels import check_kernel
from .precision import reduced_precision_gram, rounded_rows
from .series import legendre_series
from .sphere_autograd import autocast_disabled, gram_matrix, to_sphere
from .tiled import default_tile_size, gram_series_sum, use_tiled
from .validation import (
    Coeffs,
    check_bool,
    check_embedding,
    check_gram_precision,
    check_kernel_weights,
    check_mmd_impl,
    check_mmd_tile_size,
    renamed_kwargs,
)

if TYPE_CHECKING:
    from .kernels import Kernel

__all__ = ["mmd_uniform", "kernel_mmd_uniform", "MMDOptions", "auh_uniformity"]


def mmd_of_gram(gram: torch.Tensor, q: int, kernel_weights: Sequence[float]) -> torch.Tensor:
    """R from the Gram matrix of n unit vectors of R^q (diagonal included); no n x n psi written."""
    return legendre_series(gram, [0.0, *kernel_weights], q, reduction="mean")


class MMDOptions(NamedTuple):
    """How R is computed (checked by MMDOptions.checked); see mmd_uniform."""

    gather_distributed: bool = defaults.GATHER_DISTRIBUTED
    mmd_impl: str = defaults.MMD_IMPL
    mmd_tile_size: int | None = defaults.MMD_TILE_SIZE
    shard_mmd: bool = defaults.SHARD_MMD
    gram_precision: str = defaults.GRAM_PRECISION

    @classmethod
    def checked(
        cls,
        gather_distributed: object,
        mmd_impl: object,
        mmd_tile_size: object,
        shard_mmd: object,
        gram_precision: object,
    ) -> MMDOptions:
        return cls(
            check_bool(gather_distributed, "gather_distributed"),
            check_mmd_impl(mmd_impl),
            check_mmd_tile_size(mmd_tile_size),
            check_bool(shard_mmd, "shard_mmd"),
            check_gram_precision(gram_precision),
        )


class RegulariserPlan(NamedTuple):
    """How R is computed for one batch: sharded over processes, in tiles (else dense)."""

    sharded: bool
    tiled: bool
    tile_size: int
    gram_precision: str

    @property
    def fused_dense(self) -> bool:
        """The dense path with a float32 Gram matrix (the losses' fused two-view function)."""
        return not (self.sharded or self.tiled) and self.gram_precision == defaults.GRAM_PRECISION


def plan_regulariser(local_rows: int, q: int, device: torch.device, options: MMDOptions) -> RegulariserPlan:
    tile_size = options.mmd_tile_size or default_tile_size(device)
    world = world_size() if options.gather_distributed else 1
    return RegulariserPlan(
        options.shard_mmd and world > 1,
        use_tiled(options.mmd_impl, local_rows * world, q, tile_size, device),
        tile_size,
        options.gram_precision,
    )


def mmd_regularisers(
    units: Sequence[torch.Tensor], kernel_weights: Sequence[float], gather_distributed: bool, plan: RegulariserPlan
) -> list[torch.Tensor]:
    """R of the global batch of each view of local unit rows, as planned."""
    q = units[0].shape[1]
    coeffs = [0.0, *kernel_weights]
    if plan.gram_precision != defaults.GRAM_PRECISION and (plan.sharded or plan.tiled):
        # The tile GEMMs are float32 by design: the rows rounded first give the same numerics.
        units = [rounded_rows(u, plan.gram_precision) for u in units]
    if plan.sharded:
        rows = units[0].shape[0] * world_size()
        return sharded_mmd(units, coeffs, q, plan.tile_size if plan.tiled else rows)  # dense: one tile
    gathered = gather_views(units, gather_distributed)
    if plan.tiled:
        return [gram_series_sum(u, None, coeffs, q, plan.tile_size) / u.shape[0] ** 2 for u in gathered]
    return [mmd_of_gram(reduced_precision_gram(u, plan.gram_precision), q, kernel_weights) for u in gathered]


@renamed_kwargs(impl="mmd_impl", tile_size="mmd_tile_size", shard="shard_mmd")
def mmd_uniform(
    z: torch.Tensor,
    kernel_weights: Coeffs,
    *,
    gather_distributed: bool = defaults.GATHER_DISTRIBUTED,
    mmd_impl: str = defaults.MMD_IMPL,
    mmd_tile_size: int | None = defaults.MMD_TILE_SIZE,
    shard_mmd: bool = defaults.SHARD_MMD,
    gram_precision: str = defaults.GRAM_PRECISION,
) -> torch.Tensor:
    """MMD^2 between the rows of z, L2-normalised here, and the uniform distribution on S^(q-1).

    The kernel is psi(u . v) = sum_{l=1..L} b_l P_l(q; u . v); the V-statistic
    (1/n^2) sum_{i,j} psi(u_i . u_j) over all n^2 pairs (diagonal included) is >= 0.

    Args:
        z: Embeddings (n, q), q >= 2, not yet normalised; any floating dtype (computed in float32,
            float64 stays float64), CPU or CUDA.
        kernel_weights: (b_1, ..., b_L), finite and >= 0 (the kernel stays positive definite).
        gather_distributed: When torch.distributed runs with world size W > 1, the batch is the
            concatenation of z over the default process group (the gradient convention of
            sfrik_plugin.distributed). Default True, as in the losses.
        mmd_impl: "dense" (the n x n Gram matrix), "tiled" (tiles of mmd_tile_size rows, never the
            n x n matrix; only tiles i <= j) or "auto" (the faster by size).
        mmd_tile_size: Rows per tile; None: 512 on CPU, 4096 on CUDA.
        shard_mmd: With W > 1, each process computes only its own rows against the gathered batch
            (1/W of the pairs); False all-gathers z with gradients and computes every pair.
        gram_precision: The Gram product's precision: "float32", "tf32", "bf16" or "fp16" (rows
            rounded to it, products accumulated in float32; see sfrik_plugin.precision).

    Returns:
        A 0-dim tensor, float32 (float64 for float64 z).

    Raises:
        TypeError, ValueError: an argument of the wrong type or value (the message names it).

    Example:
        >>> z = torch.randn(256, 128)
        >>> r = mmd_uniform(z, [1.0, 40.0, 40.0])  # the paper's kernel
        >>> bool(r >= 0)
        True

    The old keyword names impl=, tile_size= and shard= still work, with a DeprecationWarning.
    """
    check_embedding(z, "z")
    weights = check_kernel_weights(kernel_weights)
    options = MMDOptions.checked(gather_distributed, mmd_impl, mmd_tile_size, shard_mmd, gram_precision)
    plan = plan_regulariser(z.shape[0], z.shape[1], z.device, options)
    with autocast_disabled(z.device.type):
        return mmd_regularisers([to_sphere(z)], weights, options.gather_distributed, plan)[0]


def kernel_mmd_uniform(
    z: torch.Tensor,
    kernel: Kernel,
    *,
    gather_distributed: bool = defaults.GATHER_DISTRIBUTED,
) -> torch.Tensor:
    """MMD^2 to the uniform distribution for a kernel of sfrik_plugin.kernels, up to a constant.

    (1/n^2) sum over all pairs of k(u_i . u_j) of the rows of z, L2-normalised here: the MMD^2
    minus E_{u,v ~ uniform} k(u . v), a constant with no gradient (sfrik_plugin.kernels). The
    Legendre kernel is mmd_uniform.

    Args:
        z: Embeddings (n, q), as for mmd_uniform.
        kernel: A kernel of the registry (sfrik_plugin.kernels.KERNELS).
        gather_distributed: As for mmd_uniform (always the all-gather with gradients).

    Returns:
        A 0-dim tensor.

    Raises:
        TypeError, ValueError: an argument of the wrong type or value.

    Example:
        >>> from sfrik_plugin.kernels import GaussianKernel
        >>> r = kernel_mmd_uniform(torch.randn(64, 32), GaussianKernel(s=2.5))
    """
    check_embedding(z, "z")
    kernel = check_kernel(kernel)
    gather = check_bool(gather_distributed, "gather_distributed")
    with autocast_disabled(z.device.type):
        u = gather_views([to_sphere(z)], gather)[0]
        return kernel.mean_of_gram(gram_matrix(u))


def auh_uniformity(gram: torch.Tensor, t: float) -> torch.Tensor:
    """AUH's U = log mean_{i != j} exp(-2 t (1 - G_ij)) of a Gram matrix, as a logsumexp: the
    mean of the exponentials underflows in float32 once 4t exceeds about 87 (antipodal pairs)
    and loses digits before."""
    n = gram.shape[0]
    if n < 2:
        raise ValueError(f"AUH needs at least 2 embeddings in the (global) batch, got {n}")
    logits = (2.0 * t) * (gram - 1.0)
    diagonal = torch.eye(n, dtype=torch.bool, device=gram.device)
    logits = logits.masked_fill(diagonal, float("-inf"))
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(n * (n - 1))
