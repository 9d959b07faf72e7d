"""SFRIK in lightly's conventions: losses that take two views (z_a, z_b) with gather_distributed
(False by default, as lightly's), and LeJEPA's loss with SphereMMD in SIGReg's place.

    from sfrik_plugin.hosts.lightly import SFRIKLoss
    criterion = SFRIKLoss()             # as lightly.loss.VICRegLoss()
    loss = criterion(z_a, z_b)          # projections (n, q) of two views, not normalised

Importing this module checks the installed lightly (hosts.requirements) and stops with a
HostError naming the fix when it is missing or untested.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import defaults
from ..losses import AUHLoss as _AUHLoss
from ..losses import SFRIKLoss as _SFRIKLoss
from ..sphere_autograd import to_sphere
from ..sphere_mmd import LEJEPA_WEIGHT, SphereMMD
from ..validation import Coeffs
from .requirements import require_host

require_host("lightly")

from lightly.loss import LeJEPALoss  # noqa: E402  (after the version check, which names the fix)

__all__ = ["SFRIKLoss", "AUHLoss", "SphereMMDLeJEPALoss", "SphereMMD"]


class SFRIKLoss(_SFRIKLoss):
    """SFRIK's loss as a lightly loss: sfrik_plugin.SFRIKLoss with lightly's call and default.

    loss = sim_loss_weight * mse(u_a, u_b) + mmd_loss_weight * (R(u_a) + R(u_b)) / 2 on the rows
    L2-normalised (the paper's IN20% weights by default). With gather_distributed=True the
    regulariser's batch is the global one, as lightly's losses gather theirs.

    Example:
        >>> criterion = SFRIKLoss()
        >>> loss = criterion(torch.randn(64, 128), torch.randn(64, 128))
    """

    def __init__(
        self,
        sim_loss_weight: float = defaults.SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = defaults.SFRIK_MMD_LOSS_WEIGHT,
        kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
        gather_distributed: bool = False,
        **mmd_options: Any,
    ) -> None:
        super().__init__(
            sim_loss_weight, mmd_loss_weight, kernel_weights, gather_distributed=gather_distributed, **mmd_options
        )

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return self.terms(z_a, z_b).loss


class AUHLoss(_AUHLoss):
    """AUH's loss (alignment + Wang and Isola's uniformity) as a lightly loss (z_a, z_b)."""

    def __init__(
        self,
        sim_loss_weight: float = defaults.AUH_SIM_LOSS_WEIGHT,
        unif_loss_weight: float = defaults.AUH_UNIF_LOSS_WEIGHT,
        t: float = defaults.AUH_T,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(sim_loss_weight, unif_loss_weight, t, gather_distributed)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return self.terms(z_a, z_b).loss


class SphereMMDLeJEPALoss(LeJEPALoss):
    """lightly's LeJEPALoss with SFRIK's MMD to the uniform distribution on the sphere in SIGReg's
    place: the same call (local_proj, global_proj of shape (V, N, D)) and the same convex
    combination lambda_param * R(all views) + (1 - lambda_param) * invariance, both on the
    projections L2-normalised. SphereMMD sees only directions: on raw projections the invariance
    could be made as small as wished by shrinking them, which SIGReg's Gaussian target forbids.

    lambda_param defaults to SFRIK's paper weighting (sphere_mmd.LEJEPA_WEIGHT, as
    lambda / (1 - lambda)): derived, not tuned.

    Example:
        >>> criterion = SphereMMDLeJEPALoss()
        >>> loss = criterion(local_proj=torch.randn(6, 32, 64), global_proj=torch.randn(2, 32, 64))
    """

    def __init__(
        self,
        lambda_param: float = LEJEPA_WEIGHT / (1 + LEJEPA_WEIGHT),
        gather_distributed: bool = False,
        kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
        **mmd_options: Any,
    ) -> None:
        super().__init__(lambda_param=lambda_param, gather_distributed=gather_distributed)
        self.sigreg = SphereMMD(kernel_weights, gather_distributed, **mmd_options)

    def forward(self, *, local_proj: torch.Tensor, global_proj: torch.Tensor) -> torch.Tensor:
        return super().forward(local_proj=_on_sphere(local_proj), global_proj=_on_sphere(global_proj))


def _on_sphere(proj: torch.Tensor) -> torch.Tensor:
    """The last dimension L2-normalised (LeJEPALoss checks the shapes next)."""
    if not isinstance(proj, torch.Tensor) or proj.dim() == 0:
        return proj
    return to_sphere(proj.reshape(-1, proj.shape[-1])).reshape(proj.shape)
