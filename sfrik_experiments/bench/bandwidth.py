"""Bandwidth suite: how close the Legendre operator comes to the memory system's speed on an n x n
Gram matrix G. Its kernels do a few FLOPs per element of G, so bytes moved over time is their
measure, and a device-to-device copy of the same bytes is the reference.

Measured side by side in one run (round robin, median of --repeats calls after --warmup), each
called through torch.ops.sfrik directly (no autograd), c = [0, 1, 40, 40] (SFRIK's kernel), q = --dim:

  forward             legendre_series_reduce(G, c, q, mean=True): reads G once          (1 pass)
  backward            legendre_series_backward(1, G, c, q, 1): reads G, writes dG       (2 passes)
  forward + backward  the two calls back to back                                        (3 passes)
  value_and_grad      legendre_series_value_and_grad(G, c, q, mean=True): the mean and dG
                      from one read of G (the fused forward + backward)                 (2 passes)
  device copy         dG.copy_(G): reads G, writes dG, the reference                    (2 passes)
  fallback forward    the same forward and backward through what runs where the extension has no
  fallback backward   kernel for the device (sfrik_plugin.fallback: the recurrence under
                      torch.compile; half types widened to float32 first, as the package does),
                      passes counted as the operator's; compiled before the timing. Not judged.

GB/s = passes x n^2 x element size / time; "/ copy" is that over the copy's GB/s (1: as fast as a
copy); on CUDA "/ peak" is over the theoretical peak (2 transfers a memory clock x bus width). Each
dtype of --dtypes (float32 and bfloat16 by default) is a separate block of rows. A build of the
extension without value_and_grad says so in that row's status.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

import sfrik_plugin  # noqa: F401  (loads the extension: registers torch.ops.sfrik)
from sfrik_experiments.utils import machine, output
from sfrik_experiments.utils.arguments import non_negative_int, positive_int
from sfrik_plugin import _extension, fallback, series
from sfrik_plugin.defaults import KERNEL_WEIGHTS

from . import common

HELP = "bandwidth of the Legendre operator (forward, backward, fused) against a device copy"
DEFAULT_N = {"cuda": 16384, "cpu": 2048}
DEFAULT_REPEATS = {"cuda": 20, "cpu": 5}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COPY = "device copy"
FUSED = "value_and_grad"
FALLBACK = ("fallback forward", "fallback backward")
OPS = ("forward", "backward", "forward + backward", FUSED, COPY, *FALLBACK)
# Issue 19's target on a GPU: every pass of the operator at >= this fraction of a copy's speed.
COPY_TARGET = 0.7
CSV_FIELDS = (
    *common.CELL_FIELDS,
    "op",
    "status",
    "passes",
    "bytes_moved",
    "ms_median",
    "ms_min",
    "repeats",
    "gb_per_s",
    "fraction_of_copy",
    "peak_gb_per_s",
    "fraction_of_peak",
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--n", type=positive_int, default=None, help="G is n x n (default: 16384 on CUDA, 2048 on the CPU)"
    )
    parser.add_argument("--dim", type=positive_int, default=8192, help="dimension q of the Legendre polynomials")
    parser.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument(
        "--repeats", type=positive_int, default=None, help="timed calls of each op (default: 20 on CUDA, 5 on the CPU)"
    )
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed calls of each op first")
    common.add_device_argument(parser)
    common.add_output_arguments(parser)


def peak_bytes_per_second(device: torch.device) -> float:
    """Theoretical memory bandwidth of a CUDA device (DDR: two transfers a clock); NaN elsewhere."""
    if device.type != "cuda":
        return math.nan
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return math.nan
    return 2 * clock_khz * 1e3 * bus_bits / 8


def fused_op() -> Callable | None:
    """sfrik::legendre_series_value_and_grad, or None in a build that predates it."""
    return getattr(torch.ops.sfrik, "legendre_series_value_and_grad", None)


def operator_calls(g: torch.Tensor, q: int) -> dict[str, tuple[Callable[[], object] | None, int]]:
    """op name -> (zero-argument call or None where the build lacks it, passes over G it makes)."""
    ops, coeffs = torch.ops.sfrik, [0.0, *KERNEL_WEIGHTS]
    upstream = torch.ones((), device=g.device, dtype=g.dtype)
    target = torch.empty_like(g)
    fused = fused_op()

    def forward() -> object:
        return ops.legendre_series_reduce(g, coeffs, q, True)

    def backward() -> object:
        return ops.legendre_series_backward(upstream, g, coeffs, q, 1)

    def forward_backward() -> object:
        return forward(), backward()

    work = g.float() if g.dtype in (torch.float16, torch.bfloat16) else g  # what the fallback saves

    def fallback_forward() -> object:
        with _extension.reference_only():
            return series._reference(g, coeffs, q, "mean")

    def fallback_backward() -> object:
        return fallback.series_times(work, upstream.to(work.dtype), coeffs, q, 1)

    return {
        "forward": (forward, 1),
        "backward": (backward, 2),
        "forward + backward": (forward_backward, 3),
        FUSED: ((lambda: fused(g, coeffs, q, True)) if fused is not None else None, 2),
        COPY: (lambda: target.copy_(g), 2),
        FALLBACK[0]: (fallback_forward, 1),
        FALLBACK[1]: (fallback_backward, 2),
    }


def measure_dtype(n: int, dtype_name: str, args, device: torch.device, peak: float) -> list[dict]:
    """The rows of one dtype: every op timed in turn on the same G."""
    dtype = DTYPES[dtype_name]
    generator = torch.Generator(device).manual_seed(n)
    g = (torch.rand(n, n, generator=generator, device=device) * 2 - 1).to(dtype)
    calls = operator_calls(g, args.dim)
    runnable = {name: call for name, (call, _) in calls.items() if call is not None}
    repeats = args.repeats or DEFAULT_REPEATS[device.type]
    times = common.time_calls_round_robin(runnable, device, repeats, warmup=args.warmup)
    element = g.element_size()
    rows: list[dict] = []
    for name, (_, passes) in calls.items():
        row: dict = {**common.cell("bandwidth", n, args.dim, dtype_name, device), "op": name, "passes": passes}
        if name not in times:
            rows.append({**row, "status": "not in this build of the extension"})
            continue
        ms, moved = common.median(times[name]), passes * n * n * element
        rate = moved / (ms / 1e3)
        rows.append(
            {
                **row,
                "status": "ok",
                "bytes_moved": moved,
                "ms_median": ms,
                "ms_min": min(times[name]),
                "repeats": len(times[name]),
                "gb_per_s": rate / 1e9,
                "peak_gb_per_s": peak / 1e9,
                "fraction_of_peak": rate / peak,
            }
        )
    copy_rate = next(r["gb_per_s"] for r in rows if r["op"] == COPY)
    for row in rows:
        if row["status"] == "ok":
            row["fraction_of_copy"] = row["gb_per_s"] / copy_rate
    return rows


def table(rows: list[dict]) -> str:
    body = [
        (
            r["op"],
            r["dtype"],
            r["passes"],
            output.format_value(r.get("bytes_moved"), ".3g"),
            output.format_value(r.get("ms_median"), ".3f"),
            output.format_value(r.get("gb_per_s"), ".1f"),
            output.format_value(r.get("fraction_of_copy"), ".0%"),
            output.format_value(r.get("fraction_of_peak"), ".0%"),
            "" if r["status"] == "ok" else r["status"],
        )
        for r in rows
    ]
    return output.format_table(
        ("op", "dtype", "passes", "bytes", "ms", "GB/s", "/ copy", "/ peak", "note"),
        body,
    )


def verdicts(rows: list[dict], device: torch.device) -> list[str]:
    """Each op of the operator against COPY_TARGET of a copy (a GPU target: said so on the CPU)."""
    if device.type != "cuda":
        return [f"(the >= {COPY_TARGET:.0%} of a copy target applies on a GPU; on the CPU the ratios are shown only)"]
    lines = []
    for r in rows:
        if r["op"] not in (COPY, *FALLBACK) and r["status"] == "ok":
            ok = r["fraction_of_copy"] >= COPY_TARGET
            lines.append(
                f"{r['op']:<19} {r['dtype']:<9} {r['fraction_of_copy']:.0%} of a copy "
                f"(need >= {COPY_TARGET:.0%}): {'PASS' if ok else 'FAIL'}"
            )
    return lines


def plot(rows: list[dict], path: str, title: str) -> None:
    """GB/s of each op, one group of bars per dtype."""
    plt = output.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    width = 0.8 / len(OPS)
    for i, op in enumerate(OPS):
        values = [
            next((r["gb_per_s"] for r in rows if r["dtype"] == d and r["op"] == op and r["status"] == "ok"), math.nan)
            for d in dtypes
        ]
        ax.bar([j + (i - len(OPS) / 2 + 0.5) * width for j in range(len(dtypes))], values, width=width, label=op)
    ax.set_xticks(range(len(dtypes)), dtypes)
    ax.set_ylabel("GB/s achieved")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    output.save_figure(fig, path)


def run(args) -> int:
    device = common.bench_device(args.device)
    n = args.n or DEFAULT_N[device.type]
    peak = peak_bytes_per_second(device)
    common.print_machine(device)
    print(
        f"n = {n} (G: {n * n / 2**20:.0f} Mi elements), q = {args.dim}; "
        + (f"theoretical peak {peak / 1e9:.0f} GB/s" if not math.isnan(peak) else "no theoretical peak on a CPU")
    )
    if fused_op() is None:
        print("this build of the extension has no legendre_series_value_and_grad: its rows are marked")
    rows = []
    for dtype_name in args.dtypes:
        print(f"\ntiming {dtype_name} ...", flush=True)
        block = measure_dtype(n, dtype_name, args, device, peak)
        print(table(block), flush=True)
        rows.extend(block)
    print()
    print("\n".join(verdicts(rows, device)))
    common.write_outputs(args, CSV_FIELDS, rows, plot, f"Legendre operator bandwidth, {machine.device_name(device)}")
    return 0
