"""Label-free measures of an encoder on evaluation images: RankMe (the effective rank of the
backbone's features, Garrido et al. 2023), Wang and Isola's alignment and uniformity of the
normalised projections, and the SFRIK MMD (L = 3) of the normalised projections to the uniform
distribution on the sphere."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.regulariser import auh_uniformity, mmd_uniform


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """exp of the entropy of the normalised singular values of the (n, d) feature matrix."""
    s = torch.linalg.svdvals(features.double())
    p = s / s.sum() + eps
    return math.exp(-(p * p.log()).sum().item())


def alignment(u1: torch.Tensor, u2: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||u1 - u2||^alpha over positive pairs (rows of two views; unit vectors)."""
    return (u1 - u2).norm(dim=1).pow(alpha).mean().item()


def uniformity(u: torch.Tensor, t: float = 2.0) -> float:
    """log E_{i != j} exp(-t ||u_i - u_j||^2) of unit rows, in float64: AUH's uniformity term
    (sfrik_plugin.regulariser.auh_uniformity, exp(-2t(1 - G)) = exp(-t ||u - v||^2) on the sphere)."""
    units = u.double()
    return auh_uniformity(units @ units.T, t).item()


@torch.no_grad()
def encoder_quality(
    backbone: nn.Module,
    projector: nn.Module,
    augment: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    seed: int = 0,
    batch_size: int = 512,
) -> dict[str, float]:
    """The four measures on uint8 images (n, c, h, w), networks in eval mode; alignment on two
    augmented views drawn from a fixed seed (the same views for every encoder)."""
    backbone.eval()
    projector.eval()
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)

    def embed(x):
        feats = torch.cat([backbone(c) for c in x.split(batch_size)])
        return feats.float(), F.normalize(projector(feats).float(), dim=1)

    clean = (images.float() / 255 - mean_t) / std_t
    features, units = embed(clean)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        view1, view2 = augment(images), augment(images)
    _, u1 = embed(view1)
    _, u2 = embed(view2)
    return {
        "rankme": round(rankme(features), 2),
        "alignment": round(alignment(u1, u2), 4),
        "uniformity": round(uniformity(units), 4),
        "mmd_l3": float(f"{mmd_uniform(units.double(), KERNEL_WEIGHTS, mmd_impl='dense').item():.6g}"),
    }
