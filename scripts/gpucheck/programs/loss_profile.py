"""Where the SFRIK loss's time goes on the device: forward + backward of SFRIKLoss (float32, its
defaults) at n rows and each q, timed without the profiler, then once under torch.profiler. Prints
one line per q, `q = Q: W ms a call; device busy B ms in K kernels a call` (on the CPU: the aten
and sfrik ops the profiler sees), then the top kernels by time. The H100 run of 2026-12-06 read the
loss at 1.27x its two Gram products at q = 8192 and 0.995x at q = 32768: this says whether the
rest is kernels (which ones) or launches (the device idle between them).

    python loss_profile.py [--device cuda] [--n 2048] [--dims 8192 32768] [--calls 5] [--top 12]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.autograd import DeviceType

from sfrik_experiments.bench.common import synchronize
from sfrik_plugin import SFRIKLoss


def device_events(prof: torch.profiler.profile, device: torch.device) -> list:
    """The kernels (CUDA) or the leaf operators (CPU) the profiler recorded."""
    if device.type == "cuda":
        return [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    return [e for e in prof.events() if e.name.startswith(("aten::", "sfrik::")) and not e.cpu_children]


def profile_q(loss: SFRIKLoss, n: int, q: int, device: torch.device, calls: int, top: int) -> list[str]:
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(n, q, generator=generator).to(device).requires_grad_()
    z2 = (z1.detach() + 0.3 * torch.randn(n, q, generator=generator).to(device)).requires_grad_()

    def call() -> None:
        loss(z1, z2).backward()

    for _ in range(3):  # warm-up: allocator, cuBLAS handles, the extension's first calls
        call()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    synchronize(device)
    wall_ms = (time.perf_counter() - start) / calls * 1e3
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(calls):
            call()
        synchronize(device)
    events = device_events(prof, device)
    by_name: dict[str, list[float]] = defaultdict(list)
    for e in events:
        by_name[e.name].append(e.device_time if device.type == "cuda" else e.cpu_time)
    busy_ms = sum(sum(t) for t in by_name.values()) / calls / 1e3
    what, unit = ("device busy", "kernels") if device.type == "cuda" else ("ops", "ops")
    lines = [f"q = {q}: {wall_ms:.2f} ms a call; {what} {busy_ms:.2f} ms in {len(events) / calls:.0f} {unit} a call"]
    ranked = sorted(by_name.items(), key=lambda item: -sum(item[1]))[:top]
    for name, times in ranked:
        lines.append(f"    {sum(times) / calls / 1e3:8.3f} ms  x{len(times) / calls:4.1f}  {name[:110]}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--dims", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    loss = SFRIKLoss(gather_distributed=False)
    for q in args.dims:
        print("\n".join(profile_q(loss, args.n, q, device, args.calls, args.top)), flush=True)


if __name__ == "__main__":
    main()
