"""What fits on this machine, predicted before a cell of the loss-cost suite runs (bench/losses.py):
the FLOPs and bytes of one forward + backward of each loss (a baseline's from its registry entry,
sfrik_plugin.baselines), the memory available and the machine's matmul rate, and the reason a run
predicted too large or too slow is skipped. The tiled suite (bench/tiled.py) reads the memory
available from here too."""

from __future__ import annotations

import math
import time

import torch

from sfrik_plugin import baselines

from . import common, lejepa

# The plugin's own methods; a baseline's cost model is its registry entry's (sfrik_plugin.baselines).
_PLUGIN_MATRICES = {"sfrik_reference": 12, "auh": 8}  # n x n matrices alive at the peak (default 4)


def predicted_flops(method: str, n: int, q: int) -> float:
    """Matmul FLOPs of forward + backward (about 3x the forward's), both branches."""
    if method in baselines.BASELINES_REGISTRY:
        return baselines.BASELINES_REGISTRY[method].cost.flops(n, q)
    return 3 * 2 * (2 * n * n * q)  # the plugin's losses: a Gram matrix per view


def predicted_bytes(method: str, n: int, q: int, element: int) -> float:
    """Rough peak of forward + backward: the q x q or n x n matrices each method keeps alive."""
    if method in baselines.BASELINES_REGISTRY:
        return baselines.BASELINES_REGISTRY[method].cost.bytes(n, q, element)
    return element * (_PLUGIN_MATRICES.get(method, 4) * n * n + 8 * n * q)


def available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    return math.inf


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype) -> float:
    """The machine's matmul rate, measured on a 2048^3 product (for the time predictions)."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    (a @ a).sum().item()
    common.synchronize(device)
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    common.synchronize(device)
    return 3 * 2 * 2048**3 / (time.perf_counter() - start)


def skip_reason(method: str, n: int, q: int, args, device, dtype, rate: float) -> str | None:
    need = predicted_bytes(method, n, q, torch.finfo(dtype).bits // 8)
    return predicted_skip(need, predicted_flops(method, n, q), args, device, rate)


def lejepa_skip(method: str, views: int, n: int, q: int, args, device, dtype, rate: float) -> str | None:
    """skip_reason for a LeJEPA row (V views)."""
    need = lejepa.predicted_bytes(method, views, n, q, torch.finfo(dtype).bits // 8)
    return predicted_skip(need, lejepa.predicted_flops(method, views, n, q), args, device, rate)


def predicted_skip(need: float, flops: float, args, device, rate: float) -> str | None:
    """Why a run predicted to need `need` bytes and `flops` FLOPs is skipped (None: it runs)."""
    have = available_bytes(device)
    if need > args.memory_fraction * have:
        return f"does not fit: needs ~{need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB available"
    seconds = flops / rate
    if seconds > args.max_seconds:
        return f"too slow here: ~{seconds:.0f} s per run > --max-seconds {args.max_seconds:g}"
    return None
