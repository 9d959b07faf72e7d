"""LeJEPA's loss with SIGReg against the same loss with SphereMMD (SFRIK's regulariser) in its
place, on the same V views (V, n, q): forward + backward time and peak memory against n, q and V
(rows of `sfrik-bench losses`, --lejepa-views).

  lejepa_sigreg      lightly's LeJEPALoss: invariance to the 2 global views' mean + SIGReg (M = 1024
                     random directions, 17 knots): about 2 V n q M FLOPs to project, V n M x 17
                     cos/sin, linear in n and q, and random (a new draw every call)
  lejepa_sphere_mmd  sfrik_plugin.hosts.lightly.SphereMMDLeJEPALoss: the same invariance + the exact
                     MMD^2 to the uniform distribution on the sphere: V Gram matrices, 2 V n^2 q
                     FLOPs and n^2 memory per view, deterministic

Each with its default weight (lightly's 0.05 for SIGReg, SFRIK's paper weighting for SphereMMD,
whose loss normalises the projections first); the first 2 views are the global ones, the rest local.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sfrik_plugin.baselines import SIGREG_DIRECTIONS, SIGREG_KNOTS

from . import common

SUITE_METHODS = ("lejepa_sigreg", "lejepa_sphere_mmd")
DEFAULT_VIEWS = (2, 8)  # two global views; LeJEPA's 2 global + 6 local


def build_losses(
    device: torch.device | str = "cpu",
) -> dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """name -> (source, loss of all views (V, n, q) on device); empty where lightly is not installed."""
    try:
        from lightly.loss import LeJEPALoss

        from sfrik_plugin.hosts.lightly import SphereMMDLeJEPALoss
    except ImportError:
        return {}
    # lightly's SIGReg keeps its knots in a buffer: the modules go to the views' device once, here,
    # not inside the timed calls
    sigreg, sphere = LeJEPALoss().to(device), SphereMMDLeJEPALoss().to(device)

    def call(loss: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda z: loss(local_proj=z[2:] if z.shape[0] > 2 else z[:1], global_proj=z[:2])

    return {"lejepa_sigreg": ("lightly", call(sigreg)), "lejepa_sphere_mmd": ("sfrik_plugin", call(sphere))}


def predicted_flops(method: str, views: int, n: int, q: int) -> float:
    """Matmul and transcendental work of forward + backward (about 3x the forward's)."""
    if method == "lejepa_sigreg":
        return 3 * (2 * views * n * q * SIGREG_DIRECTIONS + 2 * views * n * SIGREG_DIRECTIONS * SIGREG_KNOTS * 10)
    return 3 * views * 2 * n * n * q


def predicted_bytes(method: str, views: int, n: int, q: int, element: int) -> float:
    """Rough peak: SIGReg's (views, n, directions, knots) phases, or each view's n x n matrices."""
    per_view = n * SIGREG_DIRECTIONS * SIGREG_KNOTS * 4 if method == "lejepa_sigreg" else 4 * n * n
    return element * views * (per_view + 4 * n * q)


def views_leaf(views: int, n: int, q: int, dtype, device, seed: int = 0) -> torch.Tensor:
    """V correlated views (view k = common + noise), as a projector's outputs of one batch would be."""
    generator = torch.Generator().manual_seed(seed)
    common_part = torch.randn(n, q, generator=generator, dtype=dtype)
    z = torch.stack([common_part + 0.5 * torch.randn(n, q, generator=generator, dtype=dtype) for _ in range(views)])
    return z.to(device).requires_grad_(True)


def run_cell(n: int, q: int, views: int, losses: dict, args, device, dtype, skip: Callable) -> list[dict[str, Any]]:
    """One (n, q, V) cell: both losses timed in turn on the same leaf; skip(method) -> reason or None."""
    rows: list[dict[str, Any]] = []
    runnable = {}
    for name in SUITE_METHODS:
        base = {**common.cell("losses", n, q, args.dtype, device), "method": name, "views": views, "autocast": "none"}
        if name not in losses:
            rows.append({**base, "status": "skipped: lightly is not installed"})
            continue
        reason = skip(name)
        rows.append({**base, "source": losses[name][0], "status": reason or "ok"})
        if reason is None:
            runnable[name] = losses[name][1]
    if runnable:
        leaf = views_leaf(views, n, q, dtype, device)
        repeats = args.repeats or (5 if n * q <= 2048 * 8192 else 3)
        times = common.time_steps_round_robin(runnable, leaf, repeats)
        common.fill_measured(rows, runnable, times, leaf)
    sigreg = next((r for r in rows if r["method"] == "lejepa_sigreg" and r["status"] == "ok"), None)
    for row in rows:
        if sigreg is not None and row["status"] == "ok":
            row["time_vs_sigreg"] = row["ms_median"] / sigreg["ms_median"]
            row["memory_vs_sigreg"] = row["peak_extra_mib"] / sigreg["peak_extra_mib"]
    return rows


def cell_line(rows: list[dict]) -> str:
    """One line per cell: each loss's time and memory, and SphereMMD's ratios to SIGReg."""
    parts = []
    for r in rows:
        if r["status"] != "ok":
            parts.append(f"{r['method']}: {r['status']}")
            continue
        ratio = r.get("time_vs_sigreg", math.nan)
        memory = r.get("memory_vs_sigreg", math.nan)
        extra = "" if r["method"] == "lejepa_sigreg" else f" ({ratio:.3f}x SIGReg's time, {memory:.3f}x its memory)"
        parts.append(f"{r['method']} {r['ms_median']:.1f} ms, {r['peak_extra_mib']:.1f} MiB{extra}")
    first = rows[0]
    return f"LeJEPA, V = {first['views']} views, n = {first['n']}, q = {first['q']}: " + "; ".join(parts)
