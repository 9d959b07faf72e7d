"""SphereMMD: SFRIK's regulariser with SIGReg's call, the drop-in for LeJEPA.

LeJEPA's SIGReg (lightly.loss.SIGReg, stable-pretraining's SlicedEppsPulley) takes projections
(..., N, D) and returns a scalar that is small when each batch of N rows looks like a sample of the
target distribution, estimated from random 1-D slices. SphereMMD takes the same tensor, projects
every row to the unit sphere and returns the mean over the leading dimensions of the exact MMD^2 to
the uniform distribution on S^(D-1) under SFRIK's truncated Legendre kernel (mmd_uniform): no
slices, no randomness, O(N^2 D) per batch. Its scale is not SIGReg's (a V-statistic in [0, psi(1)]
rather than N times an integrated squared error), so the weight beside the invariance is re-tuned.
"""

from __future__ import annotations

import torch
from torch import nn

from . import defaults
from .regulariser import MMDOptions, mmd_regularisers, plan_regulariser
from .sphere_autograd import autocast_disabled, to_sphere
from .validation import Coeffs, check_embedding, check_floating_tensor, check_kernel_weights

__all__ = ["SphereMMD", "LEJEPA_WEIGHT"]

# SphereMMD's weight beside LeJEPA's invariance (both on the sphere): SFRIK's paper weighting
# (mmd 1 : sim 4000) with LeJEPA's invariance, which for two views is a quarter of SFRIK's
# mse(u1, u2) (each view against their mean). A derivation, not a tuned value.
LEJEPA_WEIGHT = 4 * defaults.SFRIK_MMD_LOSS_WEIGHT / defaults.SFRIK_SIM_LOSS_WEIGHT


class SphereMMD(nn.Module):
    """MMD^2 to the uniform distribution on the sphere of each batch of rows, averaged.

    Args:
        kernel_weights: (b_1, ..., b_L) of psi = sum_l b_l P_l(D; .), finite and >= 0 (default:
            the paper's).
        gather_distributed: Each batch is the concatenation over the default process group
            (default False, as lightly's SIGReg).
        mmd_impl, mmd_tile_size, shard_mmd, gram_precision: as in sfrik_plugin.mmd_uniform.

    Shape: proj (..., N, D) with N >= 1, D >= 2 -> a 0-dim tensor (float32; float64 for float64).

    Example:
        >>> sigreg = SphereMMD()
        >>> views = torch.randn(4, 64, 128)  # 4 views of 64 images, 128 features
        >>> bool(sigreg(views) >= 0)
        True
    """

    def __init__(
        self,
        kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
        gather_distributed: bool = False,
        mmd_impl: str = defaults.MMD_IMPL,
        mmd_tile_size: int | None = defaults.MMD_TILE_SIZE,
        shard_mmd: bool = defaults.SHARD_MMD,
        gram_precision: str = defaults.GRAM_PRECISION,
    ) -> None:
        super().__init__()
        self.kernel_weights = tuple(check_kernel_weights(kernel_weights))
        self.mmd = MMDOptions.checked(gather_distributed, mmd_impl, mmd_tile_size, shard_mmd, gram_precision)

    def forward(self, proj: torch.Tensor) -> torch.Tensor:
        proj = check_floating_tensor(proj, "proj")
        if proj.dim() < 2:
            raise ValueError(f"proj must have shape (..., N, D), got shape {tuple(proj.shape)}")
        batches = list(proj.reshape(-1, *proj.shape[-2:]).unbind(0))
        if not batches:
            raise ValueError(f"proj must hold at least one batch of rows, got shape {tuple(proj.shape)}")
        check_embedding(batches[0], "proj[..., :, :]")
        plan = plan_regulariser(proj.shape[-2], proj.shape[-1], proj.device, self.mmd)
        with autocast_disabled(proj.device.type):
            units = [to_sphere(z) for z in batches]
            return torch.stack(mmd_regularisers(units, self.kernel_weights, self.mmd.gather_distributed, plan)).mean()

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.mmd._asdict().items())
        return f"kernel_weights={self.kernel_weights}, {options}"
