"""SFRIK and AUH losses on L2-normalised embeddings, two-view and SwAV-style multi-crop.

    SFRIK:  sim_w * mse(u1, u2) + mmd_w * (R(u1) + R(u2)) / 2
            R(u) = (1/n^2) sum_{i,j} psi(u_i . u_j),  psi = sum_{l=1..L} b_l P_l(q; .)
    AUH:    sim_w * mse(u1, u2) + unif_w * (U(u1) + U(u2)) / 2
            U(u) = log mean_{i != j} exp(-2 t (1 - u_i . u_j))

u = z / ||z|| row-wise. The invariance (mse) uses the local batch; the regulariser uses the global
batch when torch.distributed runs with more than one process: sharded (each process its own rows
against the gathered batch, sfrik_plugin/tiled.py) or all-gathered with gradients (shard=False).
R is computed densely (n x n Gram matrix) or in tiles that never hold it (impl / mmd_impl).
Normalisation, Gram matrix and kernel run in float32 (float64 stays float64), also under autocast.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .defaults import (
    AUH_SIM_LOSS_WEIGHT,
    AUH_T,
    AUH_UNIF_LOSS_WEIGHT,
    KERNEL_WEIGHTS,
    SFRIK_MMD_LOSS_WEIGHT,
    SFRIK_SIM_LOSS_WEIGHT,
)
from .precision import DEFAULT_GRAM_PRECISION, check_gram_precision, reduced_precision_gram, rounded_rows
from .series import SUPPORTED_DTYPES, Coeffs, check_coeffs, check_int, legendre_series
from .sphere_autograd import _RowNormalize, gram_matrix, two_view_sphere_grams
from .tiled import check_impl, check_shard, check_tile_size, default_tile_size, gram_series_sum, sharded_mmd, use_tiled

if TYPE_CHECKING:
    from .kernels import DistanceKernel, GaussianKernel

__all__ = [
    "LossTerms",
    "mmd_uniform",
    "sfrik_loss_terms",
    "sfrik_loss_func",
    "SFRIKLoss",
    "auh_loss_terms",
    "auh_loss_func",
    "AUHLoss",
    "sfrik_multicrop_loss_terms",
    "sfrik_multicrop_loss_func",
    "gather_rows",
    "kernel_mmd_uniform",
    "kernel_mmd_loss_terms",
    "KernelMMDLoss",
]


class LossTerms(NamedTuple):
    """loss = sim_loss_weight * invariance + (mmd|unif)_loss_weight * regulariser; the terms are
    unweighted and keep their graph (detach them for logging)."""

    loss: torch.Tensor
    invariance: torch.Tensor
    regulariser: torch.Tensor


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_embedding(z: object, name: str) -> None:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dtype not in SUPPORTED_DTYPES:  # the kernels' dtypes (float8: no GEMM, no norm either)
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {z.dtype}"
        )
    if z.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, features), got shape {tuple(z.shape)}")
    if z.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one embedding (batch size >= 1), got shape {tuple(z.shape)}")
    if z.shape[1] < 2:
        raise ValueError(
            f"{name} must have at least 2 features (the sphere S^(q-1) needs q >= 2), got shape {tuple(z.shape)}"
        )


def _check_same_views(views: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """Each view a valid embedding, all with the shape, device and dtype of the first."""
    for z, name in zip(views, names):
        _check_embedding(z, name)
    first, first_name = views[0], names[0]
    for z, name in zip(views[1:], names[1:]):
        if z.shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {first_name}: got {tuple(z.shape)} and {tuple(first.shape)}"
            )
        if z.device != first.device:
            raise ValueError(f"{name} must be on the device of {first_name}: got {z.device} and {first.device}")
        if z.dtype != first.dtype:
            raise TypeError(f"{name} must have the dtype of {first_name}: got {z.dtype} and {first.dtype}")


def _check_weight(value: object, name: str, *, positive: bool = False) -> float:
    """A finite real number, >= 0 (or > 0 with positive=True)."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number {bound}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_kernel_weights(kernel_weights: Coeffs) -> list[float]:
    """(b_1, ..., b_L): non-empty, finite, >= 0. b_1 is the weight of degree 1 (degree 0 is a
    constant that cancels in the MMD). b_l >= 0 keeps the kernel positive definite (Schoenberg),
    which makes the regulariser an MMD, hence >= 0."""
    weights = check_coeffs(kernel_weights, "kernel_weights")
    for degree, b in enumerate(weights, start=1):
        if b < 0:
            raise ValueError(
                f"kernel_weights must be >= 0 (positive definite kernel), got b_{degree} = {b} "
                f"(kernel_weights[{degree - 1}])"
            )
    return weights


# ---------------------------------------------------------------------------------------------
# Shared numerics: float32 region, normalisation, all-gather


@contextlib.contextmanager
def _autocast_disabled(device_type: str) -> Iterator[None]:
    # torch.autocast rejects device types it does not know; there is nothing to disable there.
    ctx: AbstractContextManager[object]
    try:
        ctx = torch.autocast(device_type, enabled=False)
    except RuntimeError:
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _as_float(z: torch.Tensor) -> torch.Tensor:
    """float32 for half inputs (float64 stays float64). Used inside an autocast-disabled region:
    1/(q-1) at q = 32768 is subnormal in float16, and the Gram entries of a long float16 dot
    product lose the digits psi needs."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


def _to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Rows of z L2-normalised (F.normalize's eps), in float32 for half inputs (see _as_float)."""
    return _RowNormalize.apply(_as_float(z), 1e-12)


def _distributed_world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """Concatenation along dim 0 of z from every process of the default group, rank order,
    differentiable; z itself when torch.distributed is not initialised or has one process.
    Every process must pass the same shape (equal local batch sizes).

    Gradient: torch.distributed.nn.functional.all_gather's backward sums, over all ranks, the
    gradients that reach this rank's slice. Every rank computes the same global regulariser R, so
    rank r receives sum_r' dR/dz_r = W * dR/dz_r (W = world size). DDP then averages parameter
    gradients over the W ranks: (1/W) sum_r W * dR/dz_r * dz_r/dtheta = dR/dtheta, exactly the
    gradient of one process holding the global batch, with no 1/W error. (A backward that only
    kept the local slice of one rank's gradient would give dR/dtheta / W.)
    """
    if _distributed_world_size() <= 1:
        return z
    import torch.distributed.nn.functional as dist_nn

    with warnings.catch_warnings():
        # Recent torch marks it deprecated (FutureWarning on every call) in favour of the private
        # _functional_collectives; it is still the public autograd all-gather of every torch >= 2.6,
        # for gloo and nccl alike.
        warnings.filterwarnings(
            "ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated", category=FutureWarning
        )
        parts = dist_nn.all_gather(z)
    return torch.cat(parts, dim=0)


def _gather_views(views: Sequence[torch.Tensor], enabled: bool) -> list[torch.Tensor]:
    """The global batch of each view, with one collective for all views (latency)."""
    if not enabled or _distributed_world_size() <= 1:
        return list(views)
    stacked = torch.stack(list(views), dim=1)  # (n, V, q): gather dim 0 stays the batch
    return list(gather_rows(stacked).unbind(dim=1))  # V x (W n, q)


# ---------------------------------------------------------------------------------------------
# Regularisers on unit vectors (u: (n, q), rows of norm 1)


def _mmd_of_gram(gram: torch.Tensor, q: int, kernel_weights: Sequence[float]) -> torch.Tensor:
    """(1/n^2) sum_{i,j} psi(G_ij) for the Gram matrix of n unit vectors of R^q, diagonal
    included; fused mean, no n x n psi written."""
    return legendre_series(gram, [0.0, *kernel_weights], q, reduction="mean")


def _mmd_on_sphere(
    u: torch.Tensor, kernel_weights: Sequence[float], gram_precision: str = DEFAULT_GRAM_PRECISION
) -> torch.Tensor:
    """(1/n^2) sum_{i,j} psi(u_i . u_j) of unit rows u (n, q), the Gram product in gram_precision."""
    return _mmd_of_gram(reduced_precision_gram(u, gram_precision), u.shape[1], kernel_weights)


class _RegulariserPlan(NamedTuple):
    """How R is computed for a batch: sharded over processes, and in tiles (else dense)."""

    sharded: bool
    tiled: bool
    tile_size: int
    gram_precision: str = DEFAULT_GRAM_PRECISION  # the Gram product's precision (sfrik_plugin.precision)


def _plan_regulariser(
    local_rows: int,
    q: int,
    device: torch.device,
    gather_distributed: bool,
    impl: str,
    tile_size: int | None,
    shard: bool,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> _RegulariserPlan:
    impl = check_impl(impl)
    tile_size = check_tile_size(tile_size) or default_tile_size(device)
    world = _distributed_world_size() if gather_distributed else 1
    return _RegulariserPlan(
        check_shard(shard) and world > 1,
        use_tiled(impl, local_rows * world, q, tile_size),
        tile_size,
        check_gram_precision(gram_precision),
    )


def _mmd_regularisers(
    units: Sequence[torch.Tensor], kernel_weights: Sequence[float], gather_distributed: bool, plan: _RegulariserPlan
) -> list[torch.Tensor]:
    """R of the global batch of each view of local unit rows, as planned."""
    q = units[0].shape[1]
    coeffs = [0.0, *kernel_weights]
    if plan.gram_precision != DEFAULT_GRAM_PRECISION and (plan.sharded or plan.tiled):
        # The tile GEMMs are float32 by design: the rows rounded first give the same numerics.
        units = [rounded_rows(u, plan.gram_precision) for u in units]
    if plan.sharded:
        rows = units[0].shape[0] * _distributed_world_size()
        return sharded_mmd(units, coeffs, q, plan.tile_size if plan.tiled else rows)  # dense: one tile
    gathered = _gather_views(units, gather_distributed)
    if plan.tiled:
        return [gram_series_sum(u, None, coeffs, q, plan.tile_size) / u.shape[0] ** 2 for u in gathered]
    return [_mmd_on_sphere(u, kernel_weights, plan.gram_precision) for u in gathered]


def _log_mean_gaussian_off_diagonal(gram: torch.Tensor, t: float) -> torch.Tensor:
    """log mean_{i != j} exp(-2 t (1 - G_ij)) as a logsumexp: the mean of the exponentials
    underflows in float32 once 4t exceeds about 87 (antipodal pairs) and loses digits before."""
    n = gram.shape[0]
    if n < 2:
        raise ValueError(f"AUH needs at least 2 embeddings in the (global) batch, got {n}")
    logits = (2.0 * t) * (gram - 1.0)
    diagonal = torch.eye(n, dtype=torch.bool, device=gram.device)
    logits = logits.masked_fill(diagonal, float("-inf"))
    return torch.logsumexp(logits.flatten(), dim=0) - math.log(n * (n - 1))


def _two_view_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    regulariser_of_gram: Callable[[torch.Tensor, int], torch.Tensor],
    sim_loss_weight: float,
    reg_loss_weight: float,
    gather_distributed: bool,
    regularisers_of_units: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> LossTerms:
    """The two-view loss shape SFRIK and AUH share: invariance = mse(u1, u2) on the local batch,
    regulariser = mean of regulariser_of_gram(G, q) over the Gram matrices of the two views'
    global batches (weights checked), or of regularisers_of_units([u1, u2]) when given (the
    tiled or sharded MMD, from the local unit rows). Without a gather and without
    regularisers_of_units, normalisation, Gram matrices and invariance run as one fused autograd
    function (fewer passes over the n x q data)."""
    _check_same_views([z1, z2], ["z1", "z2"])
    q = z1.shape[1]
    with _autocast_disabled(z1.device.type):
        if regularisers_of_units is None and not (gather_distributed and _distributed_world_size() > 1):
            *grams, invariance = two_view_sphere_grams(_as_float(z1), _as_float(z2))
            regularisers = [regulariser_of_gram(gram, q) for gram in grams]
        else:
            units = [_to_sphere(z1), _to_sphere(z2)]
            invariance = F.mse_loss(units[0], units[1])
            if regularisers_of_units is not None:
                regularisers = regularisers_of_units(units)
            else:
                regularisers = [regulariser_of_gram(gram_matrix(u), q) for u in _gather_views(units, True)]
        regulariser = (regularisers[0] + regularisers[1]) / 2
        loss = sim_loss_weight * invariance + reg_loss_weight * regulariser
    return LossTerms(loss, invariance, regulariser)


# ---------------------------------------------------------------------------------------------
# SFRIK


def mmd_uniform(
    z: torch.Tensor,
    kernel_weights: Coeffs,
    *,
    gather_distributed: bool = False,
    impl: str = "auto",
    tile_size: int | None = None,
    shard: bool = True,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> torch.Tensor:
    """MMD^2 (V-statistic) between the rows of z, L2-normalised here, and the uniform distribution
    on S^(q-1) for the kernel psi(u . v) = sum_{l=1..L} b_l P_l(q; u . v):
    (1/n^2) sum over all n^2 pairs (diagonal included) of psi(u_i . u_j). >= 0.

    kernel_weights: (b_1, ..., b_L), b_l >= 0. gather_distributed: the batch is the concatenation
    of z over the default process group, when torch.distributed runs with world size > 1; then
    shard=True has each process compute its own rows against it (1/W of the pairs; the gradient
    convention of gather_rows), shard=False all-gathers z with gradients and computes every pair.
    impl: "dense" (the n x n Gram matrix), "tiled" (tiles of tile_size rows, never the n x n
    matrix; only tiles i <= j), "auto" (the faster of the two by size, see tiled.use_tiled).
    tile_size: rows per tile (default: 512 on CPU, 4096 on CUDA). gram_precision: "float32"
    (default), "tf32", "bf16" or "fp16": the precision of the Gram matrix's product (the rows rounded
    to it, products accumulated and kept in float32; see sfrik_plugin.precision).
    """
    _check_embedding(z, "z")
    weights = check_kernel_weights(kernel_weights)
    plan = _plan_regulariser(
        z.shape[0], z.shape[1], z.device, gather_distributed, impl, tile_size, shard, gram_precision
    )
    with _autocast_disabled(z.device.type):
        return _mmd_regularisers([_to_sphere(z)], weights, gather_distributed, plan)[0]


def sfrik_loss_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
    mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
    kernel_weights: Coeffs = KERNEL_WEIGHTS,
    gather_distributed: bool = True,
    mmd_impl: str = "auto",
    tile_size: int | None = None,
    shard: bool = True,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> LossTerms:
    """SFRIK loss of two views z1, z2 (n, q), not yet normalised, and its unweighted terms:
    invariance = mse(u1, u2) on the local batch, regulariser = (R(u1) + R(u2)) / 2 on the global
    batch (see mmd_uniform, whose impl, tile_size, shard and gram_precision are mmd_impl, tile_size,
    shard and gram_precision here). Defaults: the paper's IN20% setting."""
    sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
    mmd_loss_weight = _check_weight(mmd_loss_weight, "mmd_loss_weight")
    weights = check_kernel_weights(kernel_weights)
    _check_same_views([z1, z2], ["z1", "z2"])
    plan = _plan_regulariser(
        z1.shape[0], z1.shape[1], z1.device, gather_distributed, mmd_impl, tile_size, shard, gram_precision
    )
    of_units = (
        (lambda units: _mmd_regularisers(units, weights, gather_distributed, plan))
        if plan.sharded or plan.tiled or plan.gram_precision != DEFAULT_GRAM_PRECISION
        else None
    )  # None: the fused dense two-view function (float32 Gram)
    return _two_view_terms(
        z1,
        z2,
        lambda gram, q: _mmd_of_gram(gram, q, weights),
        sim_loss_weight,
        mmd_loss_weight,
        gather_distributed,
        of_units,
    )


def sfrik_loss_func(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
    mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
    kernel_weights: Coeffs = KERNEL_WEIGHTS,
    gather_distributed: bool = True,
    mmd_impl: str = "auto",
    tile_size: int | None = None,
    shard: bool = True,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> torch.Tensor:
    """SFRIK loss (a 0-dim tensor); see sfrik_loss_terms."""
    return sfrik_loss_terms(
        z1,
        z2,
        sim_loss_weight=sim_loss_weight,
        mmd_loss_weight=mmd_loss_weight,
        kernel_weights=kernel_weights,
        gather_distributed=gather_distributed,
        mmd_impl=mmd_impl,
        tile_size=tile_size,
        shard=shard,
        gram_precision=gram_precision,
    ).loss


class SFRIKLoss(nn.Module):
    """SFRIK loss as a module: forward(z1, z2) -> loss. Arguments as sfrik_loss_terms."""

    def __init__(
        self,
        sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
        kernel_weights: Coeffs = KERNEL_WEIGHTS,
        gather_distributed: bool = True,
        mmd_impl: str = "auto",
        tile_size: int | None = None,
        shard: bool = True,
        gram_precision: str = DEFAULT_GRAM_PRECISION,
    ) -> None:
        super().__init__()
        # Validated here so that a bad configuration fails at construction, not at step 1.
        self.sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
        self.mmd_loss_weight = _check_weight(mmd_loss_weight, "mmd_loss_weight")
        self.kernel_weights = tuple(check_kernel_weights(kernel_weights))
        self.gather_distributed = bool(gather_distributed)
        self.mmd_impl = check_impl(mmd_impl)
        self.tile_size = check_tile_size(tile_size)
        self.shard = check_shard(shard)
        self.gram_precision = check_gram_precision(gram_precision)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> LossTerms:
        return sfrik_loss_terms(
            z1,
            z2,
            sim_loss_weight=self.sim_loss_weight,
            mmd_loss_weight=self.mmd_loss_weight,
            kernel_weights=self.kernel_weights,
            gather_distributed=self.gather_distributed,
            mmd_impl=self.mmd_impl,
            tile_size=self.tile_size,
            shard=self.shard,
            gram_precision=self.gram_precision,
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.terms(z1, z2).loss

    def extra_repr(self) -> str:
        return (
            f"sim_loss_weight={self.sim_loss_weight}, mmd_loss_weight={self.mmd_loss_weight}, "
            f"kernel_weights={self.kernel_weights}, gather_distributed={self.gather_distributed}, "
            f"mmd_impl={self.mmd_impl!r}, tile_size={self.tile_size}, shard={self.shard}, "
            f"gram_precision={self.gram_precision!r}"
        )


def _check_num_large_crops(num_large_crops: object, num_views: int) -> int:
    num_large_crops = check_int(num_large_crops, "num_large_crops", 1)
    if num_large_crops > num_views:
        raise ValueError(f"num_large_crops must be between 1 and len(views) = {num_views}, got {num_large_crops}")
    return num_large_crops


def sfrik_multicrop_loss_terms(
    views: Sequence[torch.Tensor],
    num_large_crops: int,
    *,
    reg_small: bool = False,
    sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
    mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
    kernel_weights: Coeffs = KERNEL_WEIGHTS,
    gather_distributed: bool = True,
    mmd_impl: str = "auto",
    tile_size: int | None = None,
    shard: bool = True,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> LossTerms:
    """SwAV-style multi-crop SFRIK. views: list of (n, q) embeddings of the same images, the first
    num_large_crops from large (global) crops. invariance = mean over large views v of the mean
    over every other view w != v of mse(v, w), local batch; regulariser = mean of R over the
    large views (reg_small=False) or over all views (reg_small=True), global batch (mmd_impl,
    tile_size, shard, gram_precision: see sfrik_loss_terms)."""
    if isinstance(views, torch.Tensor) or not isinstance(views, Sequence):
        raise TypeError(f"views must be a list of (n, q) tensors, got {type(views).__name__}")
    if len(views) < 2:
        raise ValueError(f"views must hold at least 2 views, got {len(views)}")
    _check_same_views(views, [f"views[{i}]" for i in range(len(views))])
    num_large_crops = _check_num_large_crops(num_large_crops, len(views))
    sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
    mmd_loss_weight = _check_weight(mmd_loss_weight, "mmd_loss_weight")
    weights = check_kernel_weights(kernel_weights)
    plan = _plan_regulariser(
        views[0].shape[0],
        views[0].shape[1],
        views[0].device,
        gather_distributed,
        mmd_impl,
        tile_size,
        shard,
        gram_precision,
    )
    with _autocast_disabled(views[0].device.type):
        units = [_to_sphere(z) for z in views]
        per_large = [
            torch.stack([F.mse_loss(units[v], units[w]) for w in range(len(units)) if w != v]).mean()
            for v in range(num_large_crops)
        ]
        invariance = torch.stack(per_large).mean()
        regularised = units if reg_small else units[:num_large_crops]
        regulariser = torch.stack(_mmd_regularisers(regularised, weights, gather_distributed, plan)).mean()
        loss = sim_loss_weight * invariance + mmd_loss_weight * regulariser
    return LossTerms(loss, invariance, regulariser)


def sfrik_multicrop_loss_func(
    views: Sequence[torch.Tensor],
    num_large_crops: int,
    *,
    reg_small: bool = False,
    sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
    mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
    kernel_weights: Coeffs = KERNEL_WEIGHTS,
    gather_distributed: bool = True,
    mmd_impl: str = "auto",
    tile_size: int | None = None,
    shard: bool = True,
    gram_precision: str = DEFAULT_GRAM_PRECISION,
) -> torch.Tensor:
    """SwAV-style multi-crop SFRIK loss (a 0-dim tensor); see sfrik_multicrop_loss_terms."""
    return sfrik_multicrop_loss_terms(
        views,
        num_large_crops,
        reg_small=reg_small,
        sim_loss_weight=sim_loss_weight,
        mmd_loss_weight=mmd_loss_weight,
        kernel_weights=kernel_weights,
        gather_distributed=gather_distributed,
        mmd_impl=mmd_impl,
        tile_size=tile_size,
        shard=shard,
        gram_precision=gram_precision,
    ).loss


# ---------------------------------------------------------------------------------------------
# AUH (alignment and uniformity on the hypersphere, as in the official SFRIK code)


def auh_loss_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    sim_loss_weight: float = AUH_SIM_LOSS_WEIGHT,
    unif_loss_weight: float = AUH_UNIF_LOSS_WEIGHT,
    t: float = AUH_T,
    gather_distributed: bool = True,
) -> LossTerms:
    """AUH loss of two views z1, z2 (n, q), not yet normalised, and its unweighted terms:
    invariance = mse(u1, u2) on the local batch, regulariser = (U(u1) + U(u2)) / 2 with
    U(u) = log mean_{i != j} exp(-2 t (1 - u_i . u_j)) on the global batch (n >= 2)."""
    sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
    unif_loss_weight = _check_weight(unif_loss_weight, "unif_loss_weight")
    t = _check_weight(t, "t", positive=True)
    return _two_view_terms(
        z1,
        z2,
        lambda gram, q: _log_mean_gaussian_off_diagonal(gram, t),
        sim_loss_weight,
        unif_loss_weight,
        gather_distributed,
    )


def auh_loss_func(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    sim_loss_weight: float = AUH_SIM_LOSS_WEIGHT,
    unif_loss_weight: float = AUH_UNIF_LOSS_WEIGHT,
    t: float = AUH_T,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """AUH loss (a 0-dim tensor); see auh_loss_terms."""
    return auh_loss_terms(
        z1,
        z2,
        sim_loss_weight=sim_loss_weight,
        unif_loss_weight=unif_loss_weight,
        t=t,
        gather_distributed=gather_distributed,
    ).loss


class AUHLoss(nn.Module):
    """AUH loss as a module: forward(z1, z2) -> loss. Arguments as auh_loss_terms."""

    def __init__(
        self,
        sim_loss_weight: float = AUH_SIM_LOSS_WEIGHT,
        unif_loss_weight: float = AUH_UNIF_LOSS_WEIGHT,
        t: float = AUH_T,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
        self.unif_loss_weight = _check_weight(unif_loss_weight, "unif_loss_weight")
        self.t = _check_weight(t, "t", positive=True)
        self.gather_distributed = bool(gather_distributed)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> LossTerms:
        return auh_loss_terms(
            z1,
            z2,
            sim_loss_weight=self.sim_loss_weight,
            unif_loss_weight=self.unif_loss_weight,
            t=self.t,
            gather_distributed=self.gather_distributed,
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.terms(z1, z2).loss

    def extra_repr(self) -> str:
        return (
            f"sim_loss_weight={self.sim_loss_weight}, unif_loss_weight={self.unif_loss_weight}, t={self.t}, "
            f"gather_distributed={self.gather_distributed}"
        )


# ---------------------------------------------------------------------------------------------
# Invariance + MMD to the uniform distribution with another rotation-invariant kernel (the
# paper's kernel ablation: sfrik_plugin.kernels)


def _check_kernel(kernel: object) -> GaussianKernel | DistanceKernel:
    from .kernels import DistanceKernel, GaussianKernel

    if not isinstance(kernel, (GaussianKernel, DistanceKernel)):
        raise TypeError(f"kernel must be a GaussianKernel or a DistanceKernel (sfrik_plugin.kernels), got {kernel!r}")
    return kernel


def kernel_mmd_uniform(
    z: torch.Tensor, kernel: GaussianKernel | DistanceKernel, *, gather_distributed: bool = False
) -> torch.Tensor:
    """MMD^2 between the rows of z, L2-normalised here, and the uniform distribution on S^(q-1)
    for a Gaussian or distance kernel (sfrik_plugin.kernels), up to an additive constant with no
    gradient: (1/n^2) sum over all pairs of k(u_i . u_j). The Legendre kernel is mmd_uniform."""
    _check_embedding(z, "z")
    kernel = _check_kernel(kernel)
    with _autocast_disabled(z.device.type):
        u = _gather_views([_to_sphere(z)], gather_distributed)[0]
        return kernel.mean_of_gram(gram_matrix(u))


def kernel_mmd_loss_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    kernel: GaussianKernel | DistanceKernel,
    *,
    sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
    mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
    gather_distributed: bool = True,
) -> LossTerms:
    """SFRIK's loss with another kernel: sim_w * mse(u1, u2) + mmd_w * (R_k(u1) + R_k(u2)) / 2,
    R_k = kernel_mmd_uniform (global batch when gather_distributed and a process group runs)."""
    kernel = _check_kernel(kernel)
    sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
    mmd_loss_weight = _check_weight(mmd_loss_weight, "mmd_loss_weight")
    return _two_view_terms(
        z1, z2, lambda gram, q: kernel.mean_of_gram(gram), sim_loss_weight, mmd_loss_weight, gather_distributed
    )


class KernelMMDLoss(nn.Module):
    """kernel_mmd_loss_terms as a module: forward(z1, z2) -> loss."""

    def __init__(
        self,
        kernel: GaussianKernel | DistanceKernel,
        sim_loss_weight: float = SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = SFRIK_MMD_LOSS_WEIGHT,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = _check_kernel(kernel)
        self.sim_loss_weight = _check_weight(sim_loss_weight, "sim_loss_weight")
        self.mmd_loss_weight = _check_weight(mmd_loss_weight, "mmd_loss_weight")
        self.gather_distributed = bool(gather_distributed)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> LossTerms:
        return kernel_mmd_loss_terms(
            z1,
            z2,
            self.kernel,
            sim_loss_weight=self.sim_loss_weight,
            mmd_loss_weight=self.mmd_loss_weight,
            gather_distributed=self.gather_distributed,
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.terms(z1, z2).loss

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel}, sim_loss_weight={self.sim_loss_weight}, "
            f"mmd_loss_weight={self.mmd_loss_weight}, gather_distributed={self.gather_distributed}"
        )
