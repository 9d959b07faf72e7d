"""The self-supervised objectives the demo and the study compare, each a loss(z1, z2) on two views'
projections: SFRIK, AUH and SFRIK's loss with each registered kernel (sfrik_plugin.kernels: the
kernel ablation, methods mmd_<kernel>) from this plugin; the registered baselines
(sfrik_plugin.baselines) from solo-learn or lightly, the same implementations as the loss benchmark."""

from __future__ import annotations

from collections.abc import Callable

from sfrik_plugin.baselines import BASELINES, baseline_loss
from sfrik_plugin.kernels import KERNELS, parse_kernel
from sfrik_plugin.losses import AUHLoss, KernelMMDLoss, SFRIKLoss

METHODS = ("sfrik", *BASELINES, "auh")
KERNEL_METHODS = tuple(f"mmd_{name}" for name in KERNELS)  # the registry's kernels
ALL_METHODS = (*METHODS, *KERNEL_METHODS)


def build_objective(name: str, library: str | None = None, **hyper_parameters) -> tuple[str, Callable]:
    """(source, loss) for a method name and its hyper-parameters (the loss's keyword arguments;
    for the kernel methods also the kernel's parameter). library: where the baselines come from (see
    sfrik_plugin.baselines.baseline_loss); the plugin's own losses ignore it."""
    if name == "sfrik":
        return "sfrik_plugin", SFRIKLoss(**hyper_parameters)
    if name == "auh":
        return "sfrik_plugin", AUHLoss(**hyper_parameters)
    if name in KERNEL_METHODS:
        kernel_name = name.removeprefix("mmd_")
        params = dict(hyper_parameters)
        kernel = parse_kernel(kernel_name, params.pop(KERNELS[kernel_name].parameter, None))  # None: its default
        return "sfrik_plugin", KernelMMDLoss(kernel, **params)
    if name in BASELINES:
        return baseline_loss(name, library, **hyper_parameters)
    raise ValueError(f"method must be one of {ALL_METHODS}, got {name!r}")
