"""Sharded-regulariser suite: the per-process cost of the MMD over a global batch split across W
processes (torch.distributed, gloo on CPU or nccl on CUDA), two ways, side by side in one run:

  gathered   shard_mmd=False: all-gather with autograd, every process computes all N^2 pairs (the
             official code's way, and solo-learn's for its other methods)
  sharded    shard_mmd=True: each process computes its N/W rows against the gathered batch, the value
             all-reduced, the gradient local (sfrik_plugin/tiled.py)

each with the dense and the tiled operator, forward + backward of mmd_uniform(z_local,
gather_distributed=True) per process (median of --repeats, the slowest rank reported; every rank
starts each run after a barrier) and its peak extra memory (rank 0). The regulariser's FLOPs per
process should drop by W: the table prints the measured ratio gathered / sharded next to W.
On CPU each process gets --threads threads (default: the cores divided among the processes), so
gathered and sharded use the same hardware.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sfrik_experiments.utils import machine, output, processes
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.regulariser import mmd_uniform

from . import common

HELP = "sharded MMD across processes against the all-gather: per-process time and memory"
DEFAULT_BATCHES, DEFAULT_DIMS = (2048, 4096, 8192), (256, 2048)
QUICK_BATCHES, QUICK_DIMS = (256,), (32,)
VARIANTS: dict[str, dict[str, Any]] = {  # mmd_uniform keyword arguments
    "gathered dense": dict(shard_mmd=False, mmd_impl="dense"),
    "sharded dense": dict(shard_mmd=True, mmd_impl="dense"),
    "gathered tiled": dict(shard_mmd=False, mmd_impl="tiled"),
    "sharded tiled": dict(shard_mmd=True, mmd_impl="tiled"),
}
CSV_FIELDS = (
    "suite",
    "world_size",
    "n",
    "q",
    "dtype",
    "device",
    "variant",
    "threads",
    "ms_median",
    "ms_min",
    "repeats",
    "peak_extra_mib",
    "gathered_over_sharded",
)


def add_arguments(parser) -> None:
    parser.add_argument("--world-size", type=common.positive_int, default=2, help="processes (W)")
    parser.add_argument(
        "--threads", type=common.positive_int, default=None, help="CPU threads per process (default: cores // W)"
    )
    common.add_size_arguments(parser, DEFAULT_BATCHES, DEFAULT_DIMS, "global batch sizes (multiples of W)")
    parser.add_argument("--quick", action="store_true", help="smoke run on small sizes")
    common.add_common_arguments(parser)


def _slowest(ms: float, device) -> float:
    t = torch.tensor([ms], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def _time_variant(options: dict, z: torch.Tensor, repeats: int) -> list:
    times = []
    for run in range(repeats + 1):  # run 0 warms up
        z.grad = None
        dist.barrier()
        common.synchronize(z.device)
        begin = time.perf_counter()
        mmd_uniform(z, KERNEL_WEIGHTS, gather_distributed=True, **options).backward()
        common.synchronize(z.device)
        if run:
            times.append(_slowest((time.perf_counter() - begin) * 1e3, z.device))
    return times


def _worker(rank: int, world: int, port: int, config: dict, out_path: str) -> None:
    device = torch.device(config["device"])
    if device.type == "cuda":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        torch.set_num_threads(config["threads"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(minutes=10),
    )
    rows = []
    try:
        dtype = common.DTYPES[config["dtype"]]
        for n in config["batches"]:
            for q in config["dims"]:
                generator = torch.Generator().manual_seed(n + q)
                full = torch.randn(n, q, generator=generator, dtype=dtype)
                z = full[rank * n // world : (rank + 1) * n // world].to(device).requires_grad_()
                for name, options in VARIANTS.items():
                    times = _time_variant(options, z, config["repeats"])
                    z.grad = None
                    peak = common.peak_extra_bytes(
                        lambda leaf: mmd_uniform(leaf, KERNEL_WEIGHTS, gather_distributed=True, **options), z
                    )
                    z.grad = None
                    rows.append(
                        {
                            "suite": "sharded",
                            "world_size": world,
                            "n": n,
                            "q": q,
                            "dtype": config["dtype"],
                            "device": str(device.type),
                            "variant": name,
                            "threads": config["threads"],
                            "ms_median": common.median(times),
                            "ms_min": min(times),
                            "repeats": len(times),
                            "peak_extra_mib": peak / 2**20,
                        }
                    )
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(rows, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    processes.exit_without_teardown()  # rank 0 wrote the rows


def run(args) -> int:
    device = torch.device(args.device)
    world = args.world_size
    if device.type == "cuda" and torch.cuda.device_count() < world:
        raise SystemExit(f"--world-size {world} on CUDA needs {world} GPUs, {torch.cuda.device_count()} visible")
    batches, dims = (QUICK_BATCHES, QUICK_DIMS) if args.quick else (args.batches, args.dims)
    bad = [n for n in batches if n % world]
    if bad:
        raise SystemExit(f"--batches must be multiples of --world-size {world}, got {bad}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    config = {
        "device": device.type,
        "dtype": args.dtype,
        "batches": list(batches),
        "dims": list(dims),
        "repeats": args.repeats or 3,
        "threads": threads,
    }
    common.print_machine(device)
    print(f"{world} processes, {threads} thread(s) each" if device.type == "cpu" else f"{world} processes")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "rows.json")
        mp.spawn(_worker, args=(world, processes.free_port(), config, out_path), nprocs=world, join=True)
        with open(out_path) as f:
            rows = json.load(f)
    for row in rows:
        mode, impl = row["variant"].split()
        if mode == "sharded":
            gathered = next(
                r for r in rows if (r["n"], r["q"], r["variant"]) == (row["n"], row["q"], f"gathered {impl}")
            )
            row["gathered_over_sharded"] = gathered["ms_median"] / row["ms_median"]
    body = [
        (
            r["variant"],
            r["n"],
            r["q"],
            f"{r['ms_median']:.1f}",
            f"{r['peak_extra_mib']:.1f}",
            f"{r['gathered_over_sharded']:.2f}" if "gathered_over_sharded" in r else "",
        )
        for r in rows
    ]
    print()
    print(
        output.format_table(
            (
                "variant",
                "N (global)",
                "q",
                "ms fwd+bwd per process",
                "peak extra MiB (rank 0)",
                f"gathered / sharded (W = {world})",
            ),
            body,
        )
    )
    common.write_outputs(
        args, CSV_FIELDS, rows, plot, f"MMD per process, {world} processes, {machine.device_name(device)}, {args.dtype}"
    )
    return 0


def plot(rows: list, path: str, title: str) -> None:
    """Per-process forward + backward time of each variant, grouped by (N, q)."""
    plt = output.pyplot()
    cells = sorted({(r["n"], r["q"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cells)), 4.5))
    width = 0.8 / len(VARIANTS)
    for i, name in enumerate(VARIANTS):
        values = [
            next(r["ms_median"] for r in rows if (r["n"], r["q"], r["variant"]) == (n, q, name)) for n, q in cells
        ]
        ax.bar([c + (i - (len(VARIANTS) - 1) / 2) * width for c in range(len(cells))], values, width, label=name)
    ax.set_xticks(range(len(cells)), [f"N = {n}\nq = {q}" for n, q in cells])
    ax.set(yscale="log", ylabel="ms, forward + backward, per process")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    output.save_figure(fig, path)
