"""Baseline losses from an established implementation, shared by the loss benchmark, the demo and
the study: solo-learn's loss functions or lightly's (no home-made copies). Each is a callable
loss(z1, z2) on the two views' projections, built with its main hyper-parameters."""

from __future__ import annotations

from collections.abc import Callable

import torch

BASELINES = ("vicreg", "barlow_twins", "simclr")
LIBRARIES = ("solo-learn", "lightly")
SIMCLR_TEMPERATURE = 0.15

# Each baseline's hyper-parameters, with the defaults of its paper (SimCLR: the SFRIK paper's
# tuned temperature). The study tunes one of each (VICReg: the invariance weight, Barlow Twins:
# lambda, SimCLR: the temperature).
DEFAULTS: dict[str, dict[str, float]] = {
    "vicreg": {"sim_loss_weight": 25.0, "var_loss_weight": 25.0, "cov_loss_weight": 1.0},
    "barlow_twins": {"lamb": 5e-3},
    "simclr": {"temperature": SIMCLR_TEMPERATURE},
}


def available_library() -> str | None:
    """solo-learn when it imports, else lightly, else None."""
    for library, module in _MODULES.items():
        try:
            __import__(module)
        except ImportError:
            continue
        return library
    return None


_MODULES = {"solo-learn": "solo.losses", "lightly": "lightly.loss"}
_INSTALL = {"solo-learn": "make solo-learn (docs/solo-learn.md)", "lightly": "pip install lightly"}


def require_library(library: str) -> None:
    """Imports the baseline library now, so that a run that needs it stops at its start rather than
    after the methods trained before the first baseline; RuntimeError naming the fix otherwise."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    try:
        __import__(_MODULES[library])
    except ImportError as error:
        raise RuntimeError(
            f"the baselines come from {library!r}, which does not import here ({error}): {_INSTALL[library]}"
        ) from None


def _solo(name: str, p: dict[str, float]) -> Callable:
    from solo.losses import barlow_loss_func, simclr_loss_func, vicreg_loss_func

    if name == "vicreg":
        return lambda z1, z2: vicreg_loss_func(z1, z2, **p)
    if name == "barlow_twins":
        return lambda z1, z2: barlow_loss_func(z1, z2, lamb=p["lamb"])

    def simclr(z1, z2):
        indexes = torch.arange(z1.shape[0], device=z1.device).repeat(2)  # view pairs share an index
        return simclr_loss_func(torch.cat([z1, z2]), indexes=indexes, temperature=p["temperature"])

    return simclr


def _lightly(name: str, p: dict[str, float]) -> Callable:
    from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss

    if name == "vicreg":
        return VICRegLoss(
            lambda_param=p["sim_loss_weight"], mu_param=p["var_loss_weight"], nu_param=p["cov_loss_weight"]
        )
    if name == "barlow_twins":
        return BarlowTwinsLoss(lambda_param=p["lamb"])
    return NTXentLoss(temperature=p["temperature"])


def baseline_loss(name: str, library: str | None = None, **hyper_parameters: float) -> tuple[str, Callable]:
    """(library, loss) for one baseline with the given hyper-parameters (the rest at DEFAULTS).
    library: "solo-learn", "lightly", or None for whichever is installed (solo-learn first)."""
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")
    unknown = set(hyper_parameters) - set(DEFAULTS[name])
    if unknown:
        raise ValueError(f"{name} takes the hyper-parameters {sorted(DEFAULTS[name])}, got {sorted(unknown)}")
    if library is None:
        library = available_library()
        if library is None:
            raise RuntimeError(
                f"the {name} baseline comes from solo-learn or lightly, and neither is installed: "
                f"pip install lightly (or the package's [demo] extra)"
            )
    elif library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES} or None, got {library!r}")
    params = {**DEFAULTS[name], **{k: float(v) for k, v in hyper_parameters.items()}}
    try:
        return library, (_solo if library == "solo-learn" else _lightly)(name, params)
    except ImportError as error:
        raise RuntimeError(
            f"library {library!r} was asked for the {name} baseline but does not import ({error})"
        ) from None


def baseline_losses(library: str | None = None) -> dict[str, tuple[str, Callable]]:
    """name -> (library, loss(z1, z2)) at the defaults; empty when neither library is installed."""
    if library is None and available_library() is None:
        return {}
    return {name: baseline_loss(name, library) for name in BASELINES}
