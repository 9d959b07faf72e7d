"""Gram-product suite: the forward Gram matrix u u^T of n unit rows of width q, from its upper
triangle in m row blocks (sfrik_plugin.gram.symmetric_gram: m GEMMs, then the mirror), against the
full product as the loss computed it before issue 32 (one GEMM, not mirrored), for each
gram_precision (precision.low_precision_gram: on CUDA, TF32 or bfloat16/float16 GEMMs with float32
output; elsewhere float32 GEMMs of the rounded rows).

m = 1 is the full product mirrored (what a batch below the device's threshold gets); m row blocks do
(m + 1) / (2 m) of the full product's multiply-adds ("work" column), so "x full" below "work" means
the smaller GEMMs lost nothing. The backward's GEMM (S + S^T) u does not depend on m and is not
timed here. Calls are timed in turn (one of each per round), median of --repeats after a warm-up;
"default" marks the block count gram.default_blocks picks for n on this device, and the summary
says how far the default is from the fastest count of each cell: what GRAM_BLOCKS is chosen from.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from sfrik_experiments.utils import machine, output
from sfrik_plugin.gram import default_blocks
from sfrik_plugin.precision import GRAM_PRECISIONS, low_precision_gram, low_precision_mm, round_rows

from . import common

HELP = "the Gram product from its upper triangle in m row blocks, against the full product"
DEFAULT_BATCHES, DEFAULT_DIMS, DEFAULT_BLOCKS = (256, 512, 1024, 2048), (1024, 8192), (1, 2, 3, 4, 6, 8)
QUICK_BATCHES, QUICK_DIMS, QUICK_BLOCKS = (64, 130), (32,), (1, 2, 4)
CSV_FIELDS = (
    *common.CELL_FIELDS,
    "precision",
    "blocks",
    "default",
    "ms_median",
    "ms_min",
    "repeats",
    "ratio_to_full",
    "work",
    "max_abs_diff",
)


def add_arguments(parser) -> None:
    common.add_size_arguments(parser, DEFAULT_BATCHES, DEFAULT_DIMS)
    parser.add_argument(
        "--blocks", type=common.positive_int, nargs="+", default=list(DEFAULT_BLOCKS), metavar="M", help="row blocks"
    )
    parser.add_argument(
        "--precisions", nargs="+", choices=GRAM_PRECISIONS, default=["float32"], help="gram_precision values to time"
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: n in {QUICK_BATCHES}, q in {QUICK_DIMS}")
    common.add_common_arguments(parser)


def unit_rows(n: int, q: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, q, generator=generator, dtype=dtype), dim=1).to(device)


def work(blocks: int) -> float:
    """The multiply-adds of m row blocks over those of the full product (equal blocks)."""
    return (blocks + 1) / (2 * blocks) if blocks > 1 else 1.0


def run_cell(n: int, q: int, precision: str, args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    r = round_rows(unit_rows(n, q, dtype, device), precision)
    calls: dict[str, Callable[[], torch.Tensor]] = {"full": lambda: low_precision_mm(r, r.T, precision, False)}
    for m in args.blocks:
        calls[f"m{m}"] = functools.partial(low_precision_gram, r, precision, m)
    repeats = args.repeats or (5 if n * n * q >= 2048 * 2048 * 8192 and device.type == "cpu" else 11)
    times = common.time_calls_round_robin(calls, device, repeats)
    full = calls["full"]()
    full_ms = common.median(times["full"])
    chosen = default_blocks(n, device, reduced_precision=precision != "float32")
    rows = []
    for name, call in calls.items():
        m = 0 if name == "full" else int(name[1:])
        t = times[name]
        rows.append(
            {
                **common.cell("gram", n, q, args.dtype, device),
                "precision": precision,
                "blocks": "full" if m == 0 else m,
                "default": m == chosen,
                "ms_median": common.median(t),
                "ms_min": min(t),
                "repeats": len(t),
                "ratio_to_full": common.median(t) / full_ms,
                "work": 1.0 if m == 0 else work(m),
                "max_abs_diff": float((call() - full).abs().max()) if m else 0.0,
            }
        )
    return rows


def cell_table(rows: list[dict]) -> str:
    header = ("blocks", "ms", "ms min", "x full", "work", "max |G - full|", "")
    body = [
        (
            str(r["blocks"]),
            f"{r['ms_median']:.3f}",
            f"{r['ms_min']:.3f}",
            f"{r['ratio_to_full']:.3f}",
            f"{r['work']:.3f}",
            f"{r['max_abs_diff']:.1e}",
            "default" if r["default"] else "",
        )
        for r in rows
    ]
    return output.format_table(header, body)


def summary(rows: list[dict]) -> list[str]:
    """Per cell: the fastest block count, and the default's time over the fastest's."""
    lines = ["block counts (fastest / default, default's time over the fastest's):"]
    cells = dict.fromkeys((r["n"], r["q"], r["precision"]) for r in rows)
    for n, q, precision in cells:
        cell = [r for r in rows if (r["n"], r["q"], r["precision"]) == (n, q, precision) and r["blocks"] != "full"]
        best = min(cell, key=lambda r: r["ms_median"])
        default = next((r for r in cell if r["default"]), None)
        over = f"{default['ms_median'] / best['ms_median']:.3f}" if default else "n/a (not timed)"
        chosen = default["blocks"] if default else "-"
        lines.append(
            f"  n = {n:>5}, q = {q:>6}, {precision:<7}: fastest {best['blocks']} blocks ({best['ratio_to_full']:.3f} "
            f"of the full product), default {chosen}: {over}"
        )
    return lines


def plot(rows: list, path: str, title: str) -> None:
    """Time over the full product against the block count, one line per cell."""
    plt = output.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, q, precision in dict.fromkeys((r["n"], r["q"], r["precision"]) for r in rows):
        points = [
            (r["blocks"], r["ratio_to_full"])
            for r in rows
            if (r["n"], r["q"], r["precision"]) == (n, q, precision) and r["blocks"] != "full"
        ]
        ax.plot(*zip(*points), marker="o", label=f"n = {n}, q = {q}, {precision}")
    blocks = sorted({r["blocks"] for r in rows if r["blocks"] != "full"})
    ax.plot(blocks, [work(m) for m in blocks], "k--", label="work (m + 1) / 2m")
    ax.set(xlabel="row blocks m", ylabel="time / full product", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    output.save_figure(fig, path)


def run(args) -> int:
    device, dtype = common.bench_device(args.device), common.DTYPES[args.dtype]
    if args.quick:
        args.batches, args.dims, args.blocks = QUICK_BATCHES, QUICK_DIMS, QUICK_BLOCKS
        args.repeats = args.repeats or 2
    common.print_machine(device)
    print(f"threads {torch.get_num_threads()}; block counts {list(args.blocks)}; precisions {list(args.precisions)}")
    rows: list[dict] = []
    for precision in args.precisions:
        for n in args.batches:
            for q in args.dims:
                cell = run_cell(n, q, precision, args, device, dtype)
                print(f"\nn = {n}, q = {q}, gram_precision {precision}")
                print(cell_table(cell), flush=True)
                rows.extend(cell)
                common.write_rows_so_far(args, CSV_FIELDS, rows)
    print()
    print("\n".join(summary(rows)))
    bad = [r for r in rows if not math.isfinite(r["ms_median"])]
    common.write_outputs(args, CSV_FIELDS, rows, plot, f"Gram product in row blocks, {machine.device_name(device)}")
    return 1 if bad else 0
