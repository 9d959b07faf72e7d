"""SFRIK, AUH and kernel-MMD losses on L2-normalised embeddings, two-view and SwAV-style multi-crop.

    SFRIK:       sim_w * mse(u1, u2) + mmd_w * (R(u1) + R(u2)) / 2
    AUH:         sim_w * mse(u1, u2) + unif_w * (U(u1) + U(u2)) / 2
    kernel MMD:  sim_w * mse(u1, u2) + mmd_w * (R_k(u1) + R_k(u2)) / 2

u = z / ||z|| row-wise; R, U and R_k are the regularisers of sfrik_plugin.regulariser. The
invariance (mse) uses the local batch; the regularisers the global batch when torch.distributed
runs with more than one process (gather_distributed, default True).

Each loss is one class and one function: the class (SFRIKLoss, AUHLoss, KernelMMDLoss, as lightly
writes losses) defines and checks its options at construction, and its `terms` method gives the
loss with its unweighted terms (SFRIKLoss.multicrop_terms the multi-crop one); the function
(sfrik_loss_func, auh_loss_func, kernel_mmd_loss_func, as solo-learn writes them) takes the same
keyword arguments and returns the loss. The earlier *_terms and multi-crop functions still work
for one release, with a DeprecationWarning naming the method that replaces them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import defaults
from .distributed import gather_views, world_size
from .kernels import check_kernel
from .regulariser import MMDOptions, auh_uniformity, mmd_of_gram, mmd_regularisers, plan_regulariser
from .sphere_autograd import (
    as_compute_dtype,
    autocast_disabled,
    gram_matrix,
    to_sphere,
    two_view_sphere_grams,
    unit_invariance,
)
from .validation import (
    Coeffs,
    check_bool,
    check_kernel_weights,
    check_multicrop_views,
    check_same_views,
    check_weight,
    deprecated_function,
    renamed_kwargs,
)

if TYPE_CHECKING:
    from .kernels import Kernel

__all__ = [
    "LossTerms",
    "SFRIKLoss",
    "sfrik_loss_func",
    "AUHLoss",
    "auh_loss_func",
    "KernelMMDLoss",
    "kernel_mmd_loss_func",
]

_RENAMED = dict(tile_size="mmd_tile_size", shard="shard_mmd")  # old keyword -> new, for one release


class LossTerms(NamedTuple):
    """loss = sim_loss_weight * invariance + (mmd|unif)_loss_weight * regulariser; the terms are
    unweighted and keep their graph (detach them for logging)."""

    loss: torch.Tensor
    invariance: torch.Tensor
    regulariser: torch.Tensor


def _two_view_terms(
    z1: torch.Tensor,
    z2: torch.Tensor,
    regulariser_of_gram: Callable[[torch.Tensor, int], torch.Tensor],
    sim_loss_weight: float,
    reg_loss_weight: float,
    gather_distributed: bool,
    regularisers_of_units: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> LossTerms:
    """The two-view loss shape every loss here shares, for checked views: invariance =
    mse(u1, u2) on the local batch, regulariser = mean of regulariser_of_gram(G, q) over the Gram
    matrices of the two views' global batches, or of regularisers_of_units([u1, u2]) when given
    (the tiled, sharded or reduced-precision MMD, from the local unit rows). Without a gather and
    without regularisers_of_units, normalisation, Gram matrices and invariance run as one fused
    autograd function (fewer passes over the n x q data)."""
    q = z1.shape[1]
    with autocast_disabled(z1.device.type):
        if regularisers_of_units is None and not (gather_distributed and world_size() > 1):
            # every regulariser here is a function of G applied elementwise, then reduced: its
            # gradient is symmetric (two_view_sphere_grams' symmetric_grads)
            *grams, invariance = two_view_sphere_grams(as_compute_dtype(z1), as_compute_dtype(z2), symmetric_grads=True)
            regularisers = [regulariser_of_gram(gram, q) for gram in grams]
        else:
            units = [to_sphere(z1), to_sphere(z2)]
            invariance = unit_invariance(units[0], units[1], as_compute_dtype(z1), as_compute_dtype(z2))
            if regularisers_of_units is not None:
                regularisers = regularisers_of_units(units)
            else:
                regularisers = [regulariser_of_gram(gram_matrix(u), q) for u in gather_views(units, True)]
        regulariser = (regularisers[0] + regularisers[1]) / 2
        loss = sim_loss_weight * invariance + reg_loss_weight * regulariser
    return LossTerms(loss, invariance, regulariser)


class _TwoViewLoss(nn.Module):
    """What the loss modules share: forward is the loss of terms(z1, z2); the losses whose
    regulariser is a function of each view's Gram matrix get terms from regulariser_of_gram."""

    sim_loss_weight: float
    gather_distributed: bool

    def regulariser_weight(self) -> float:
        raise NotImplementedError

    def regulariser_of_gram(self, gram: torch.Tensor, q: int) -> torch.Tensor:
        raise NotImplementedError

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> LossTerms:
        """The loss of two views (n, q), not yet normalised, and its unweighted terms."""
        check_same_views([z1, z2], ["z1", "z2"])
        return _two_view_terms(
            z1, z2, self.regulariser_of_gram, self.sim_loss_weight, self.regulariser_weight(), self.gather_distributed
        )

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.terms(z1, z2).loss


# ---------------------------------------------------------------------------------------------
# SFRIK


class SFRIKLoss(_TwoViewLoss):
    """The SFRIK loss: invariance plus the MMD to the uniform distribution on the sphere.

    loss = sim_loss_weight * mse(u1, u2) + mmd_loss_weight * (R(u1) + R(u2)) / 2, with u the rows
    of z L2-normalised, the invariance on the local batch and R (sfrik_plugin.mmd_uniform) on the
    global batch. Defaults: the paper's IN20% setting (sfrik_plugin.defaults).

    Args:
        sim_loss_weight: Weight of the invariance, finite and >= 0.
        mmd_loss_weight: Weight of the regulariser, finite and >= 0.
        kernel_weights: (b_1, ..., b_L) of psi = sum_l b_l P_l(q; .), finite and >= 0.
        gather_distributed: The regulariser's batch is the global one under torch.distributed.
        mmd_impl: "auto", "dense" or "tiled" (see mmd_uniform).
        mmd_tile_size: Rows per tile, or None for the device's default.
        shard_mmd: With several processes, each computes its own rows of the MMD.
        gram_precision: "float32", "tf32", "bf16" or "fp16": the Gram product's precision.

    Raises:
        TypeError, ValueError: an option of the wrong type or value, at construction (the message
            names it).

    Example:
        >>> loss_fn = SFRIKLoss()
        >>> z1, z2 = torch.randn(64, 128), torch.randn(64, 128)
        >>> loss = loss_fn(z1, z2)
        >>> terms = loss_fn.terms(z1, z2)  # loss, invariance, regulariser

    The old keyword names tile_size= and shard= still work, with a DeprecationWarning.
    """

    @renamed_kwargs(**_RENAMED)
    def __init__(
        self,
        sim_loss_weight: float = defaults.SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = defaults.SFRIK_MMD_LOSS_WEIGHT,
        kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
        gather_distributed: bool = defaults.GATHER_DISTRIBUTED,
        mmd_impl: str = defaults.MMD_IMPL,
        mmd_tile_size: int | None = defaults.MMD_TILE_SIZE,
        shard_mmd: bool = defaults.SHARD_MMD,
        gram_precision: str = defaults.GRAM_PRECISION,
    ) -> None:
        super().__init__()
        self.sim_loss_weight = check_weight(sim_loss_weight, "sim_loss_weight")
        self.mmd_loss_weight = check_weight(mmd_loss_weight, "mmd_loss_weight")
        self.kernel_weights = tuple(check_kernel_weights(kernel_weights))
        self.mmd = MMDOptions.checked(gather_distributed, mmd_impl, mmd_tile_size, shard_mmd, gram_precision)

    def terms(self, z1: torch.Tensor, z2: torch.Tensor) -> LossTerms:
        """The loss of two views (n, q), not yet normalised, and its unweighted terms."""
        check_same_views([z1, z2], ["z1", "z2"])
        plan = plan_regulariser(z1.shape[0], z1.shape[1], z1.device, self.mmd)
        of_units = (
            None  # the fused dense two-view function (float32 Gram)
            if plan.fused_dense
            else lambda units: mmd_regularisers(units, self.kernel_weights, self.mmd.gather_distributed, plan)
        )
        return _two_view_terms(
            z1,
            z2,
            self.regulariser_of_gram,
            self.sim_loss_weight,
            self.mmd_loss_weight,
            self.gather_distributed,
            of_units,
        )

    def regulariser_weight(self) -> float:
        return self.mmd_loss_weight

    def regulariser_of_gram(self, gram: torch.Tensor, q: int) -> torch.Tensor:
        return mmd_of_gram(gram, q, self.kernel_weights)

    def multicrop_terms(
        self, views: Sequence[torch.Tensor], num_large_crops: int, reg_small: bool = False
    ) -> LossTerms:
        """SwAV-style multi-crop SFRIK of views (n, q) of the same images, the first
        num_large_crops from large (global) crops: invariance = mean over large views v of the
        mean over every other view w != v of mse(v, w), local batch; regulariser = mean of R over
        the large views (reg_small=False) or over all views (True), global batch."""
        views, num_large_crops = check_multicrop_views(views, num_large_crops)
        reg_small = check_bool(reg_small, "reg_small")
        plan = plan_regulariser(views[0].shape[0], views[0].shape[1], views[0].device, self.mmd)
        with autocast_disabled(views[0].device.type):
            units = [to_sphere(z) for z in views]
            per_large = [
                torch.stack([F.mse_loss(units[v], units[w]) for w in range(len(units)) if w != v]).mean()
                for v in range(num_large_crops)
            ]
            invariance = torch.stack(per_large).mean()
            regularised = units if reg_small else units[:num_large_crops]
            regularisers = mmd_regularisers(regularised, self.kernel_weights, self.mmd.gather_distributed, plan)
            regulariser = torch.stack(regularisers).mean()
            loss = self.sim_loss_weight * invariance + self.mmd_loss_weight * regulariser
        return LossTerms(loss, invariance, regulariser)

    @property
    def gather_distributed(self) -> bool:  # type: ignore[override]
        return self.mmd.gather_distributed

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.mmd._asdict().items())
        return (
            f"sim_loss_weight={self.sim_loss_weight}, mmd_loss_weight={self.mmd_loss_weight}, "
            f"kernel_weights={self.kernel_weights}, {options}"
        )


@renamed_kwargs(**_RENAMED)
def sfrik_loss_func(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> torch.Tensor:
    """SFRIK loss (a 0-dim tensor) of two views z1, z2 (n, q), not yet normalised.

    Args:
        z1, z2: The two views' embeddings, same shape, dtype and device.
        **options: The options of SFRIKLoss (sim_loss_weight, mmd_loss_weight, kernel_weights,
            gather_distributed, mmd_impl, mmd_tile_size, shard_mmd, gram_precision).

    Raises:
        TypeError, ValueError: a view or an option of the wrong type or value.

    Example:
        >>> loss = sfrik_loss_func(torch.randn(64, 128), torch.randn(64, 128), sim_loss_weight=4000.0)
    """
    return SFRIKLoss(**options).terms(z1, z2).loss


@deprecated_function("SFRIKLoss(**options).terms(z1, z2)")
@renamed_kwargs(**_RENAMED)
def sfrik_loss_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> LossTerms:
    """Deprecated: SFRIKLoss(**options).terms(z1, z2)."""
    return SFRIKLoss(**options).terms(z1, z2)


@deprecated_function("SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small)")
@renamed_kwargs(**_RENAMED)
def sfrik_multicrop_loss_terms(
    views: Sequence[torch.Tensor], num_large_crops: int, *, reg_small: bool = False, **options: Any
) -> LossTerms:
    """Deprecated: SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small)."""
    return SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small)


@deprecated_function("SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small).loss")
@renamed_kwargs(**_RENAMED)
def sfrik_multicrop_loss_func(
    views: Sequence[torch.Tensor], num_large_crops: int, *, reg_small: bool = False, **options: Any
) -> torch.Tensor:
    """Deprecated: SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small).loss."""
    return SFRIKLoss(**options).multicrop_terms(views, num_large_crops, reg_small).loss


# ---------------------------------------------------------------------------------------------
# AUH (alignment and uniformity on the hypersphere, as in the official SFRIK code)


class AUHLoss(_TwoViewLoss):
    """The AUH loss: invariance plus Wang and Isola's uniformity (log-mean Gaussian potential).

    loss = sim_loss_weight * mse(u1, u2) + unif_loss_weight * (U(u1) + U(u2)) / 2 with
    U(u) = log mean_{i != j} exp(-2 t (1 - u_i . u_j)) on the global batch (n >= 2). Defaults: the
    official code's.

    Args:
        sim_loss_weight: Weight of the invariance, finite and >= 0.
        unif_loss_weight: Weight of the uniformity, finite and >= 0.
        t: The Gaussian's scale, finite and > 0.
        gather_distributed: The uniformity's batch is the global one under torch.distributed.

    Raises:
        TypeError, ValueError: an option of the wrong type or value, at construction.

    Example:
        >>> loss = AUHLoss(t=2.5)(torch.randn(64, 128), torch.randn(64, 128))
    """

    def __init__(
        self,
        sim_loss_weight: float = defaults.AUH_SIM_LOSS_WEIGHT,
        unif_loss_weight: float = defaults.AUH_UNIF_LOSS_WEIGHT,
        t: float = defaults.AUH_T,
        gather_distributed: bool = defaults.GATHER_DISTRIBUTED,
    ) -> None:
        super().__init__()
        self.sim_loss_weight = check_weight(sim_loss_weight, "sim_loss_weight")
        self.unif_loss_weight = check_weight(unif_loss_weight, "unif_loss_weight")
        self.t = check_weight(t, "t", positive=True)
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")

    def regulariser_weight(self) -> float:
        return self.unif_loss_weight

    def regulariser_of_gram(self, gram: torch.Tensor, q: int) -> torch.Tensor:
        return auh_uniformity(gram, self.t)

    def extra_repr(self) -> str:
        return (
            f"sim_loss_weight={self.sim_loss_weight}, unif_loss_weight={self.unif_loss_weight}, t={self.t}, "
            f"gather_distributed={self.gather_distributed}"
        )


def auh_loss_func(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> torch.Tensor:
    """AUH loss (a 0-dim tensor) of two views; options: those of AUHLoss.

    Example:
        >>> loss = auh_loss_func(torch.randn(64, 128), torch.randn(64, 128), t=2.5)
    """
    return AUHLoss(**options).terms(z1, z2).loss


@deprecated_function("AUHLoss(**options).terms(z1, z2)")
def auh_loss_terms(z1: torch.Tensor, z2: torch.Tensor, **options: Any) -> LossTerms:
    """Deprecated: AUHLoss(**options).terms(z1, z2)."""
    return AUHLoss(**options).terms(z1, z2)


# ---------------------------------------------------------------------------------------------
# Invariance + MMD to the uniform distribution with another rotation-invariant kernel (the
# paper's kernel ablation: sfrik_plugin.kernels)


class KernelMMDLoss(_TwoViewLoss):
    """SFRIK's loss with another rotation-invariant kernel (sfrik_plugin.kernels) instead of the Legendre series.

    loss = sim_loss_weight * mse(u1, u2) + mmd_loss_weight * (R_k(u1) + R_k(u2)) / 2 with
    R_k = sfrik_plugin.kernel_mmd_uniform (dense, all-gather under torch.distributed).

    Args:
        kernel: A kernel of the registry (sfrik_plugin.kernels.KERNELS: GaussianKernel, DistanceKernel, ...).
        sim_loss_weight: Weight of the invariance, finite and >= 0.
        mmd_loss_weight: Weight of the regulariser, finite and >= 0.
        gather_distributed: The regulariser's batch is the global one under torch.distributed.

    Raises:
        TypeError, ValueError: an option of the wrong type or value, at construction.

    Example:
        >>> from sfrik_plugin.kernels import DistanceKernel
        >>> loss = KernelMMDLoss(DistanceKernel(p=1.0))(torch.randn(64, 128), torch.randn(64, 128))
    """

    def __init__(
        self,
        kernel: Kernel,
        sim_loss_weight: float = defaults.SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = defaults.SFRIK_MMD_LOSS_WEIGHT,
        gather_distributed: bool = defaults.GATHER_DISTRIBUTED,
    ) -> None:
        super().__init__()
        self.kernel = check_kernel(kernel)
        self.sim_loss_weight = check_weight(sim_loss_weight, "sim_loss_weight")
        self.mmd_loss_weight = check_weight(mmd_loss_weight, "mmd_loss_weight")
        self.gather_distributed = check_bool(gather_distributed, "gather_distributed")

    def regulariser_weight(self) -> float:
        return self.mmd_loss_weight

    def regulariser_of_gram(self, gram: torch.Tensor, q: int) -> torch.Tensor:
        return self.kernel.mean_of_gram(gram)

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel}, sim_loss_weight={self.sim_loss_weight}, "
            f"mmd_loss_weight={self.mmd_loss_weight}, gather_distributed={self.gather_distributed}"
        )


def kernel_mmd_loss_func(z1: torch.Tensor, z2: torch.Tensor, kernel: Kernel, **options: Any) -> torch.Tensor:
    """The kernel-MMD loss (a 0-dim tensor) of two views; options: those of KernelMMDLoss.

    Example:
        >>> from sfrik_plugin.kernels import GaussianKernel
        >>> loss = kernel_mmd_loss_func(torch.randn(64, 128), torch.randn(64, 128), GaussianKernel())
    """
    return KernelMMDLoss(kernel, **options).terms(z1, z2).loss


@deprecated_function("KernelMMDLoss(kernel, **options).terms(z1, z2)")
def kernel_mmd_loss_terms(z1: torch.Tensor, z2: torch.Tensor, kernel: Kernel, **options: Any) -> LossTerms:
    """Deprecated: KernelMMDLoss(kernel, **options).terms(z1, z2)."""
    return KernelMMDLoss(kernel, **options).terms(z1, z2)


# Names that sfrik_plugin.losses exported before the regulariser and the distributed helpers got
# modules of their own: still importable from here for one release, with a DeprecationWarning.
_MOVED = {
    "mmd_uniform": "sfrik_plugin.regulariser",
    "kernel_mmd_uniform": "sfrik_plugin.regulariser",
    "gather_rows": "sfrik_plugin.distributed",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"sfrik_plugin.losses.{name} moved to {_MOVED[name]}.{name}; "
            "the old import path will be removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
