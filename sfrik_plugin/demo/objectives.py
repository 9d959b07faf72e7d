"""The self-supervised objectives the demo compares, each a loss(z1, z2) on two views' projections:
SFRIK and AUH from this plugin, VICReg, Barlow Twins and SimCLR from solo-learn or lightly (the same
implementations as the loss benchmark, sfrik_plugin.baselines)."""
from __future__ import annotations

from typing import Callable, Tuple

from sfrik_plugin.baselines import BASELINES, baseline_loss
from sfrik_plugin.losses import AUHLoss, SFRIKLoss

METHODS = ("sfrik", *BASELINES, "auh")


def build_objective(name: str, *, sfrik_sim_weight: float = 4000.0) -> Tuple[str, Callable]:
    """(source, loss) for a method name."""
    if name == "sfrik":
        return "sfrik_plugin", SFRIKLoss(sim_loss_weight=sfrik_sim_weight)
    if name == "auh":
        return "sfrik_plugin", AUHLoss()
    if name in BASELINES:
        return baseline_loss(name)
    raise ValueError(f"method must be one of {METHODS}, got {name!r}")
