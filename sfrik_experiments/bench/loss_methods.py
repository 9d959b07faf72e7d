"""The losses the loss-cost suite (bench/losses.py) times, each computing its whole two-view loss
from one packed leaf Z = (2, n, q): SFRIK (compiled, at each Gram precision, through the reference
recurrence, on the fallback path), AUH and the registered baselines from an established library;
and SFRIK's floor, the two bare Gram-matrix products its "time / Gram floor" column divides by.
The training-step suite (bench/step.py) takes its baselines from here too."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

import sfrik_plugin
from sfrik_plugin._extension import reference_only
from sfrik_plugin.baselines import baseline_losses
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.reference import legendre_series_reference

from . import common


def _sfrik_reference_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """sfrik_loss_func's formula with psi through the eager pure-PyTorch recurrence."""
    u1, u2 = (torch.nn.functional.normalize(z, dim=1) for z in (z1, z2))
    coeffs, q = [0.0, *KERNEL_WEIGHTS], z1.shape[1]
    mmd = [legendre_series_reference(u @ u.T, coeffs, q).mean() for u in (u1, u2)]
    return 4000.0 * torch.nn.functional.mse_loss(u1, u2) + (mmd[0] + mmd[1]) / 2


def _sfrik_fallback_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """sfrik_loss_func on the paths a device without the extension's kernels takes."""
    with reference_only():
        return sfrik_plugin.sfrik_loss_func(z1, z2, gather_distributed=False)


def build_methods() -> dict[str, tuple]:
    """name -> (source, loss(z1, z2)); baselines that no installed library provides are missing."""
    methods: dict[str, tuple] = {
        "sfrik": ("sfrik_plugin", lambda z1, z2: sfrik_plugin.sfrik_loss_func(z1, z2, gather_distributed=False)),
        **{
            f"sfrik_gram_{p}": (
                "sfrik_plugin",
                lambda z1, z2, p=p: sfrik_plugin.sfrik_loss_func(z1, z2, gather_distributed=False, gram_precision=p),
            )
            for p in ("tf32", "bf16")
        },
        "sfrik_reference": ("sfrik_plugin.reference", _sfrik_reference_loss),
        "sfrik_fallback": ("sfrik_plugin.fallback", _sfrik_fallback_loss),
        "auh": ("sfrik_plugin", lambda z1, z2: sfrik_plugin.auh_loss_func(z1, z2, gather_distributed=False)),
    }
    methods.update(baseline_losses())
    return methods


def as_step(loss: Callable, autocast: str = "none") -> common.Step:
    """A step on the packed leaf Z = (2, n, q) (the benchmark helpers take one leaf), its forward
    under bfloat16 autocast with autocast="bf16"."""
    if autocast == "none":
        return lambda z: loss(z[0], z[1])

    def step(z):
        with torch.autocast(z.device.type, dtype=torch.bfloat16):
            return loss(z[0], z[1])

    return step


class _FullGram(torch.autograd.Function):
    """v v^T as one full GEMM forward and one backward ((S + S^T) v): the floor's definition since
    issue 19, kept when the loss's own Gram product went down to its upper triangle (issue 32), so
    that "time / Gram floor" stays comparable with the earlier figures."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return v @ v.T

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return (grad + grad.T) @ v


def floor_step(z: torch.Tensor) -> torch.Tensor:
    """SFRIK's floor: two full Gram-matrix products, one GEMM forward and one backward each
    (_FullGram), summed so backward runs through both."""
    return cast(torch.Tensor, sum(_FullGram.apply(v).sum() for v in (z[0], z[1])))  # two terms: never the start 0


def plain_floor_step(z: torch.Tensor) -> torch.Tensor:
    """The same products through autograd's matmul rule (two GEMMs backward), for reference."""
    return cast(torch.Tensor, sum((v @ v.T).sum() for v in (z[0], z[1])))  # two terms: never the start 0
