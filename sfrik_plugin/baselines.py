"""Baseline losses from an established implementation, shared by the loss benchmark and the demo:
solo-learn's loss functions when solo-learn is installed, otherwise lightly's (no home-made copies).
Each is a callable loss(z1, z2) on the two views' projections."""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch

BASELINES = ("vicreg", "barlow_twins", "simclr")
SIMCLR_TEMPERATURE = 0.15


def baseline_losses() -> Dict[str, Tuple[str, Callable]]:
    """name -> (source, loss(z1, z2)) from solo-learn, else lightly; empty when neither is installed."""
    try:
        from solo.losses import barlow_loss_func, simclr_loss_func, vicreg_loss_func
    except ImportError:
        pass
    else:
        def simclr(z1, z2):
            indexes = torch.arange(z1.shape[0], device=z1.device).repeat(2)  # view pairs share an index
            return simclr_loss_func(torch.cat([z1, z2]), indexes=indexes, temperature=SIMCLR_TEMPERATURE)

        return {"vicreg": ("solo-learn", vicreg_loss_func), "barlow_twins": ("solo-learn", barlow_loss_func),
                "simclr": ("solo-learn", simclr)}
    try:
        from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
    except ImportError:
        return {}
    return {"vicreg": ("lightly", VICRegLoss()), "barlow_twins": ("lightly", BarlowTwinsLoss()),
            "simclr": ("lightly", NTXentLoss(temperature=SIMCLR_TEMPERATURE))}


def baseline_loss(name: str) -> Tuple[str, Callable]:
    """(source, loss) for one baseline, or a clear error saying what to install."""
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    losses = baseline_losses()
    if name not in losses:
        raise RuntimeError(f"the {name} baseline comes from solo-learn or lightly, and neither is installed: "
                           f"pip install lightly (or the package's [demo] extra)")
    return losses[name]
