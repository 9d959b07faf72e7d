"""Tiled-MMD suite: the regulariser R(z) = mean_{i,j} psi(u_i . u_j) (sfrik_plugin.mmd_uniform)
computed three ways on the same random z (n, q), measured side by side in one run:

  dense        mmd_impl="dense": the n x n Gram matrix, the fused Legendre mean, autograd
  tiled-all    the tiled operator over every tile (y = x passed explicitly: no symmetry)
  tiled        mmd_impl="tiled": the tiled operator over tiles i <= j only (the symmetric variant)

Each is timed forward only (under torch.no_grad: the value) and forward + backward (the value and
the gradient with respect to z), round robin, median of --repeats; peak extra memory of forward +
backward (CPU: the profiler's allocation events, CUDA: the allocator's counters).

Targets, checked and printed at the end (their values: the constants below): forward + backward
of the tiled path within WITHIN_TARGET of dense at WITHIN_BATCHES; the symmetric forward at least
SYMMETRY_TARGET faster than dense at SYMMETRY_CELL; the LARGE_N x LARGE_Q cell, whose dense n x n
matrix does not fit, runs tiled. The large cell runs only the tiled variant when the dense one's
predicted memory does not fit; the skip is printed. --loss adds the two-view SFRIK loss
(SFRIKLoss) dense against tiled, the evidence behind mmd_impl="auto".

The tile sweep: --tiles T.. times the tiled regulariser (forward, forward + backward, memory) at each
tile size, at the symmetry cell or at every --sweep-cell N Q, and names the best tile: the lowest sum
over the cells of its forward + backward time over that cell's fastest (a tile larger than a cell's
n runs only where it fits, and is ranked only if it ran in every cell), beside the package's
default for the device, sfrik_plugin.tiled.DEFAULT_TILE_SIZE (a reviewed one-line change: the
package reads no machine-specific file). --sweep-only runs the sweep alone.
"""

from __future__ import annotations

import math
import resource

import torch

from sfrik_experiments.utils import machine, output
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.losses import SFRIKLoss
from sfrik_plugin.regulariser import mmd_uniform
from sfrik_plugin.sphere_autograd import to_sphere
from sfrik_plugin.tiled import DEFAULT_TILE_SIZE, default_tile_size, gram_series_sum

from . import common
from .capacity import available_bytes

HELP = "tiled (memory-free, symmetric) MMD against the dense n x n path: time and memory"
DEFAULT_BATCHES, DEFAULT_DIMS = (2048, 4096, 8192), (256, 8192)
LARGE_N, LARGE_Q = 65536, 256  # one dense n x n float32 matrix alone is 16 GiB
QUICK_BATCHES, QUICK_DIMS, QUICK_LARGE = (300, 700), (64,), (3000, 32)
QUICK_SWEEP_CELL = (700, 64)
WITHIN_TARGET, WITHIN_BATCHES = 1.3, (2048, 8192)
SYMMETRY_TARGET, SYMMETRY_CELL = 1.6, (4096, 8192)
IMPLS = ("dense", "tiled-all", "tiled")
CSV_FIELDS = (
    *common.CELL_FIELDS,
    "what",
    "impl",
    "tile",
    "status",
    "forward_ms",
    "forward_backward_ms",
    "repeats",
    "peak_extra_mib",
    "forward_speedup_vs_dense",
    "forward_backward_ratio_to_dense",
    "peak_rss_mib",
    "sweep_score",
)


def add_arguments(parser) -> None:
    common.add_size_arguments(parser, DEFAULT_BATCHES, DEFAULT_DIMS)
    parser.add_argument(
        "--large",
        type=common.positive_int,
        nargs=2,
        default=[LARGE_N, LARGE_Q],
        metavar=("N", "Q"),
        help="the memory cell (default: 65536 256)",
    )
    parser.add_argument("--no-large", action="store_true", help="skip the memory cell")
    parser.add_argument(
        "--tile-size",
        type=common.positive_int,
        default=None,
        help="rows per tile (default: the package's, 512 on CPU, 4096 on CUDA)",
    )
    parser.add_argument(
        "--tiles",
        type=common.positive_int,
        nargs="*",
        default=[],
        help="also time the tiled operator at these tile sizes (the tile sweep) and name the best",
    )
    parser.add_argument(
        "--sweep-cell",
        type=common.positive_int,
        nargs=2,
        action="append",
        metavar=("N", "Q"),
        help="a cell of the tile sweep, repeatable (default: the symmetry cell 4096 x 8192; --quick: 700 x 64)",
    )
    parser.add_argument(
        "--sweep-only", action="store_true", help="run the tile sweep alone (no dense comparison, no memory cell)"
    )
    parser.add_argument("--loss", action="store_true", help="also the two-view SFRIK loss, dense against tiled")
    common.add_memory_fraction_argument(parser, "the dense path")
    parser.add_argument("--quick", action="store_true", help="smoke run on small sizes")
    common.add_common_arguments(parser)


def regulariser(impl: str, tile: int):
    """z -> R(z) computed as `impl`."""
    if impl == "tiled-all":

        def tiled_all(z):
            u = to_sphere(z)
            return gram_series_sum(u, u, [0.0, *KERNEL_WEIGHTS], z.shape[1], tile) / z.shape[0] ** 2

        return tiled_all
    return lambda z: mmd_uniform(z, KERNEL_WEIGHTS, mmd_impl=impl, mmd_tile_size=tile)


def dense_bytes(n: int, element: int) -> int:
    """The dense path's peak, about three n x n matrices (Gram, psi', their symmetrised sum)."""
    return 3 * n * n * element


def leaf_for(n: int, q: int, dtype, device) -> torch.Tensor:
    return torch.randn(n, q, generator=torch.Generator().manual_seed(n + q), dtype=dtype).to(device).requires_grad_()


def forward_only(fn, leaf):
    def call():
        with torch.no_grad():
            fn(leaf)

    return call


def measure(steps: dict[str, common.Step], leaf: torch.Tensor, repeats: int) -> dict[str, dict]:
    """name -> forward ms, forward + backward ms (medians) and peak extra MiB of forward + backward."""
    fwd = common.time_calls_round_robin({k: forward_only(f, leaf) for k, f in steps.items()}, leaf.device, repeats)
    both = common.time_steps_round_robin(steps, leaf, repeats)
    out = {}
    for name, step in steps.items():
        peak = common.peak_extra_bytes(step, leaf)
        leaf.grad = None
        out[name] = dict(
            forward_ms=common.median(fwd[name]),
            forward_backward_ms=common.median(both[name]),
            repeats=repeats,
            peak_extra_mib=peak / 2**20,
            status="ok",
        )
    return out


def run_cell(n: int, q: int, args, device, dtype, tile: int, impls=IMPLS) -> list[dict]:
    base = {
        **common.cell("tiled", n, q, args.dtype, device),
        "what": "mmd_uniform",
        "tile": tile,
    }
    element = torch.finfo(dtype).bits // 8
    rows, steps = [], {}
    for impl in impls:
        need = dense_bytes(n, element) if impl == "dense" else 0
        if need > args.memory_fraction * available_bytes(device):
            rows.append(
                {
                    **base,
                    "impl": impl,
                    "status": f"skipped: needs ~{need / 2**30:.0f} GiB "
                    f"({available_bytes(device) / 2**30:.0f} GiB available)",
                }
            )
        else:
            steps[impl] = regulariser(impl, tile)
            rows.append({**base, "impl": impl})
    repeats = args.repeats or (3 if n * n * q <= 4096 * 4096 * 8192 else 1)
    results = measure(steps, leaf_for(n, q, dtype, device), repeats)
    for row in rows:
        row.update(results.get(row["impl"], {}))
    dense = results.get("dense")
    for row in rows:
        if dense is not None and row.get("status") == "ok":
            row["forward_speedup_vs_dense"] = dense["forward_ms"] / row["forward_ms"]
            row["forward_backward_ratio_to_dense"] = row["forward_backward_ms"] / dense["forward_backward_ms"]
    return rows


def loss_cell(n: int, q: int, args, device, dtype, tile: int) -> list[dict]:
    """The two-view SFRIK loss (invariance + both views' R), dense (fused) against tiled."""
    generator = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, q, generator=generator, dtype=dtype)
    leaf = torch.stack([z1, z1 + 0.5 * torch.randn(n, q, generator=generator, dtype=dtype)]).to(device)
    leaf.requires_grad_()

    def loss(impl: str) -> common.Step:
        return lambda z: SFRIKLoss(mmd_impl=impl, mmd_tile_size=tile, gather_distributed=False)(z[0], z[1])

    steps = {impl: loss(impl) for impl in ("dense", "tiled")}
    results = measure(steps, leaf, args.repeats or 3)
    rows = [
        {
            **common.cell("tiled", n, q, args.dtype, device),
            "what": "sfrik_loss",
            "impl": impl,
            "tile": tile,
            **results[impl],
        }
        for impl in steps
    ]
    for row in rows:
        row["forward_speedup_vs_dense"] = results["dense"]["forward_ms"] / row["forward_ms"]
        row["forward_backward_ratio_to_dense"] = row["forward_backward_ms"] / results["dense"]["forward_backward_ms"]
    return rows


def table(rows: list[dict]) -> str:
    body = [
        (
            r["what"],
            r["n"],
            r["q"],
            r["impl"],
            r["tile"],
            output.format_value(r.get("forward_ms"), ".1f"),
            output.format_value(r.get("forward_speedup_vs_dense"), ".2f"),
            output.format_value(r.get("forward_backward_ms"), ".1f"),
            output.format_value(r.get("forward_backward_ratio_to_dense"), ".2f"),
            output.format_value(r.get("peak_extra_mib"), ".1f"),
            r["status"] if r["status"] != "ok" else output.format_value(r.get("sweep_score"), ".3f"),
        )
        for r in rows
    ]
    return output.format_table(
        (
            "what",
            "n",
            "q",
            "impl",
            "tile",
            "fwd ms",
            "fwd speed-up",
            "fwd+bwd ms",
            "fwd+bwd / dense",
            "peak extra MiB",
            "note (tile sweep: score)",
        ),
        body,
    )


def verdicts(rows: list[dict], large) -> list[str]:
    lines = []
    for n in WITHIN_BATCHES:
        cells = [
            r
            for r in rows
            if r["what"] == "mmd_uniform"
            and r["n"] == n
            and r["impl"] == "tiled"
            and "forward_backward_ratio_to_dense" in r
        ]
        for r in cells:
            ok = r["forward_backward_ratio_to_dense"] <= WITHIN_TARGET
            lines.append(
                f"fwd+bwd tiled / dense at n = {n}, q = {r['q']}: {r['forward_backward_ratio_to_dense']:.2f} "
                f"(need <= {WITHIN_TARGET}): {'PASS' if ok else 'FAIL'}"
            )
        if not cells:
            lines.append(f"n = {n}: not in the grid")
    n, q = SYMMETRY_CELL
    # The symmetry is measured within the tiled path (tiles i <= j against every tile): the dense
    # path computes its Gram matrix from the upper triangle too since issue 32, so tiled / dense no
    # longer isolates it.
    by_impl = {
        r["impl"]: r
        for r in rows
        if (r["what"], r["n"], r["q"]) == ("mmd_uniform", n, q) and r.get("forward_ms") is not None
    }
    if "tiled" in by_impl and "tiled-all" in by_impl:
        tiled, every = by_impl["tiled"], by_impl["tiled-all"]
        s = every["forward_ms"] / tiled["forward_ms"]
        lines.append(
            f"forward speed-up of the symmetric tiled path over every tile at n = {n}, q = {q}: {s:.2f}x "
            f"(need >= {SYMMETRY_TARGET}): {'PASS' if s >= SYMMETRY_TARGET else 'FAIL'}; fwd+bwd "
            f"{every['forward_backward_ms'] / tiled['forward_backward_ms']:.2f}x"
        )
        if "dense" in by_impl:
            lines[-1] += (
                f"; over dense (its Gram matrix from the upper triangle too): forward "
                f"{by_impl['dense']['forward_ms'] / tiled['forward_ms']:.2f}x"
            )
    else:
        lines.append(f"n = {n}, q = {q}: not in the grid")
    if large:
        r = large
        if r.get("status") == "ok":
            lines.append(
                f"n = {r['n']}, q = {r['q']}: tiled fwd+bwd ran in {r['forward_backward_ms'] / 1e3:.1f} s, "
                f"peak extra {r['peak_extra_mib']:.0f} MiB (profiler), process peak RSS over the cell "
                f"{r['peak_rss_mib'] / 1024:.2f} GiB (torch and the libraries included); "
                "one dense n x n float32 matrix: "
                f"{r['n'] ** 2 * 4 / 2**30:.0f} GiB: PASS"
            )
        else:
            lines.append(f"n = {r['n']}, q = {r['q']}: tiled did not run ({r.get('status')}): FAIL")
    return lines


def reset_peak_rss() -> bool:
    """Resets the process's peak RSS (VmHWM) so that it measures what follows (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """VmHWM (peak resident set since the last reset), or the lifetime peak where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sweep_cells(args) -> list[tuple[int, int]]:
    """The (n, q) cells of the tile sweep."""
    if args.sweep_cell:
        return [(n, q) for n, q in args.sweep_cell]
    return [QUICK_SWEEP_CELL if args.quick else SYMMETRY_CELL]


def tile_sweep(args, device, dtype) -> list[dict]:
    """The tiled regulariser at every tile size of --tiles that fits each sweep cell."""
    rows = []
    for n, q in sweep_cells(args):
        tiles = [t for t in args.tiles if t <= n]
        print(f"tile sweep at n = {n}, q = {q}: tiles {tiles}", flush=True)
        leaf = leaf_for(n, q, dtype, device)
        results = measure({f"tile {t}": regulariser("tiled", t) for t in tiles}, leaf, args.repeats or 3)
        del leaf
        rows += [
            {
                **common.cell("tiled", n, q, args.dtype, device),
                "what": "tile sweep",
                "impl": "tiled",
                "tile": t,
                **results[f"tile {t}"],
            }
            for t in tiles
        ]
    add_sweep_scores(rows)
    return rows


def add_sweep_scores(rows: list[dict]) -> None:
    """sweep_score of each tile that ran in every cell: the sum over the cells of its forward +
    backward time over the cell's fastest (the number of cells where it is the best)."""
    cells = {(r["n"], r["q"]) for r in rows}
    best = {c: min(r["forward_backward_ms"] for r in rows if (r["n"], r["q"]) == c) for c in cells}
    for tile in {r["tile"] for r in rows}:
        own = [r for r in rows if r["tile"] == tile]
        if len(own) == len(cells):
            score = sum(r["forward_backward_ms"] / best[(r["n"], r["q"])] for r in own)
            for r in own:
                r["sweep_score"] = score


def best_tile_line(rows: list[dict], device) -> str:
    """The sweep's best tile and what to do with it."""
    scored = {r["tile"]: r["sweep_score"] for r in rows if "sweep_score" in r}
    if not scored:
        return "tile sweep: no tile ran in every cell"
    best, current = min(scored, key=lambda t: scored[t]), DEFAULT_TILE_SIZE.get(device.type)
    advice = (
        "the default already"
        if best == current
        else f"set sfrik_plugin/tiled.py DEFAULT_TILE_SIZE[{device.type!r}] = {best} (now {current})"
    )
    cells = len({(r["n"], r["q"]) for r in rows})
    return f"best tile {best} (score {scored[best]:.3f}; the fastest in every cell scores {cells}): {advice}"


def run(args) -> int:
    device, dtype = common.bench_device(args.device), common.DTYPES[args.dtype]
    tile = args.tile_size or default_tile_size(device)
    batches, dims = (QUICK_BATCHES, QUICK_DIMS) if args.quick else (args.batches, args.dims)
    if args.sweep_only and not args.tiles:
        raise SystemExit("--sweep-only needs the tile sizes to sweep: --tiles T ...")
    common.print_machine(device)
    print(f"tile: {tile} rows")
    rows = []
    for n in [] if args.sweep_only else batches:
        for q in dims:
            cell = run_cell(n, q, args, device, dtype, tile)
            if args.loss:
                cell += loss_cell(n, q, args, device, dtype, tile)
            print()
            print(table(cell), flush=True)
            rows.extend(cell)
    sweep_line = None
    if args.tiles:
        sweep = tile_sweep(args, device, dtype)
        print()
        print(table(sweep), flush=True)
        rows.extend(sweep)
        sweep_line = best_tile_line(sweep, device)
    large = None
    if not args.no_large and not args.sweep_only:
        n, q = QUICK_LARGE if args.quick else args.large
        reset_peak_rss()
        cell = run_cell(n, q, args, device, dtype, tile, impls=("dense", "tiled"))
        large = next(r for r in cell if r["impl"] == "tiled")
        large["peak_rss_mib"] = peak_rss_mib() if device.type == "cpu" else math.nan
        print()
        print(table(cell), flush=True)
        rows.extend(cell)
    print()
    for line in [] if args.sweep_only else verdicts(rows, large):
        print(line)
    if sweep_line:
        print(sweep_line)
    common.write_outputs(
        args, CSV_FIELDS, rows, plot, f"MMD regulariser, {machine.device_name(device)}, {args.dtype}, tile {tile}"
    )
    return 0


def plot(rows: list[dict], path: str, title: str) -> None:
    """Forward and forward + backward time against n, one line per impl and q."""
    plt = output.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    data = [r for r in rows if r["what"] == "mmd_uniform" and r.get("status") == "ok"]
    for ax, key, label in (
        (axes[0], "forward_ms", "ms, forward"),
        (axes[1], "forward_backward_ms", "ms, forward + backward"),
        (axes[2], "peak_extra_mib", "peak extra MiB (fwd + bwd)"),
    ):
        for i, impl in enumerate(IMPLS):
            for j, q in enumerate(sorted({r["q"] for r in data})):
                points = sorted((r["n"], r[key]) for r in data if r["impl"] == impl and r["q"] == q)
                if points:
                    ax.plot(*zip(*points), ["-", "--", ":"][j % 3], marker="o", color=f"C{i}", label=f"{impl}, q = {q}")
        ax.set(xscale="log", yscale="log", xlabel="n (global batch)", ylabel=label)
        ax.set_xticks(sorted({r["n"] for r in data}), [str(n) for n in sorted({r["n"] for r in data})])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    output.save_figure(fig, path)
