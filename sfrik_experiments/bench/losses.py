"""Loss-cost suite: forward + backward time and peak memory of SFRIK against the registered baselines
(sfrik_plugin.baselines, listed at the end of this help) and AUH on the same random embeddings, for
a global batch n and an embedding width q.

Every method computes its whole two-view loss from the same z1, z2 (n, q) (one leaf Z = (2, n, q),
requires_grad) and the gradient with respect to them:

  sfrik            sfrik_plugin.sfrik_loss_func: Gram matrices + the compiled fused Legendre mean
  sfrik_gram_tf32  the same with gram_precision="tf32" (TF32 Gram product on a GPU)
  sfrik_gram_bf16  the same with gram_precision="bf16" (bfloat16 inputs, float32 accumulation)
  sfrik_reference  the same loss with psi through the pure-PyTorch recurrence (eager autograd)
  sfrik_fallback   sfrik_plugin.sfrik_loss_func as it runs where the extension has no kernel for the
                   device (sfrik_plugin.fallback: the recurrence and the row sums under torch.compile,
                   compiled in the warm-up run)
  <baseline>       each registered baseline, from an established library: solo-learn's loss
                   functions when solo-learn is installed, otherwise lightly's; a baseline neither
                   provides is skipped and said so (no home-made copies)
  auh              sfrik_plugin.auh_loss_func (the official AUH formula)

LeJEPA rows (--lejepa-views, bench/lejepa.py): lightly's LeJEPALoss with SIGReg against the same
loss with SphereMMD in SIGReg's place, on the same V views, for each n, q and V.

The cost model: SFRIK's regulariser costs 2 n^2 q FLOPs per Gram
matrix and n^2 memory, VICReg's covariance 2 n q^2 FLOPs and q^2 memory; their ratio is n / q in
time and n^2 / q^2 in memory. The table puts each measured ratio to VICReg next to it.

Cells that would not fit are skipped before they run, and the skip is printed: a method whose
predicted peak memory exceeds --memory-fraction of the available memory, or whose predicted time
of one forward + backward (FLOP count over the machine's measured matmul rate) exceeds
--max-seconds.

--autocast bf16 runs every forward under torch.autocast(bfloat16): the baselines' GEMMs then run in
bfloat16, while SFRIK keeps its float32 region (its gram_precision decides). "time / Gram floor"
is each method's time over that of SFRIK's floor below (two float32 Gram products, fwd + bwd,
outside autocast), measured in the same cell.

"Floor" check: the whole SFRIK loss (both branches, forward + backward) against its floor, the
forward + backward of the two bare Gram-matrix products (z1 z1^T and z2 z2^T, summed), each one full
GEMM forward and one backward (the loss computed them so before issue 32; it now computes the
forward's upper triangle only, half a GEMM, so it can go below this floor); at FLOOR_N x FLOOR_Q the
loss should cost at most FLOOR_TARGETS[device] times the floor. The ratio to the same products through
autograd's plain matmul rule (two GEMMs backward) is printed beside it.
"""

from __future__ import annotations

import math

import torch

from sfrik_experiments.utils import machine, output
from sfrik_experiments.utils.arguments import positive_int
from sfrik_plugin.baselines import BASELINES
from sfrik_plugin.tiled import default_tile_size, use_tiled

from . import common, lejepa
from .capacity import lejepa_skip, matmul_flops_per_second, skip_reason
from .loss_methods import as_step, build_methods, floor_step, plain_floor_step

HELP = "SFRIK loss against the registered baselines and AUH: time and memory"


def description() -> str:
    """The help text: this module's docstring and the registered baselines."""
    return common.with_baselines(__doc__)


DEFAULT_BATCHES = (256, 1024, 2048)
DEFAULT_DIMS = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK_BATCHES, QUICK_DIMS = (64,), (128, 512)
METHODS = (
    "sfrik",
    "sfrik_gram_tf32",
    "sfrik_gram_bf16",
    "sfrik_reference",
    "sfrik_fallback",
    *BASELINES,
    "auh",
)  # the registry's baselines
# Issue 32's targets: the loss below its floor, since it computes half of each forward Gram product
FLOOR_N, FLOOR_Q, FLOOR_TARGETS = 2048, 8192, {"cpu": 0.95, "cuda": 1.0}
HEADLINE_N, HEADLINE_Q, HEADLINE_TARGET = 2048, 32768, 10.0
CSV_FIELDS = (
    *common.CELL_FIELDS,
    "method",
    "source",
    "status",
    "ms_median",
    "ms_min",
    "repeats",
    "peak_extra_mib",
    "time_vs_vicreg",
    "memory_vs_vicreg",
    "model_time_vs_vicreg",
    "model_memory_vs_vicreg",
    "autocast",
    "time_vs_gram_floor",
    "views",
    "time_vs_sigreg",
    "memory_vs_sigreg",
)


def add_arguments(parser) -> None:
    common.add_size_arguments(parser, DEFAULT_BATCHES, DEFAULT_DIMS)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="skip a method whose predicted forward + backward time exceeds this",
    )
    common.add_memory_fraction_argument(parser, "a method")
    parser.add_argument(
        "--slow-repeats",
        type=positive_int,
        default=None,
        help="timed runs of a method whose warm-up run took longer than --slow-seconds (default: --repeats); "
        "its runs are timed after the others' round robin",
    )
    parser.add_argument("--slow-seconds", type=float, default=0.25, help="see --slow-repeats (default 0.25)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: n in {QUICK_BATCHES}, q in {QUICK_DIMS}")
    parser.add_argument(
        "--autocast",
        choices=("none", "bf16"),
        default="none",
        help="run every forward under torch.autocast(bfloat16) (default: none)",
    )
    parser.add_argument(
        "--lejepa-views",
        type=int,
        nargs="*",
        default=list(lejepa.DEFAULT_VIEWS),
        help="LeJEPA rows (SIGReg against SphereMMD) at these numbers of views, >= 2 "
        f"(default {' '.join(map(str, lejepa.DEFAULT_VIEWS))}; none: no LeJEPA rows)",
    )
    common.add_common_arguments(parser)


# ---------------------------------------------------------------------------------------------
# Running a cell (one n, q)


def embeddings(n: int, q: int, dtype, device, seed: int = 0) -> torch.Tensor:
    """Z = (z1, z2): correlated views (z2 = z1 + noise), as a projector's outputs would be."""
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, q, generator=generator, dtype=dtype)
    z2 = z1 + 0.5 * torch.randn(n, q, generator=generator, dtype=dtype)
    return torch.stack([z1, z2]).to(device).requires_grad_(True)


def run_cell(n: int, q: int, methods: dict, args, device, dtype, rate: float) -> list:
    rows, runnable = [], {}
    for name in args.methods:
        base = {
            **common.cell("losses", n, q, args.dtype, device),
            "method": name,
            "autocast": getattr(args, "autocast", "none"),
        }
        if name not in methods:
            rows.append({**base, "status": "skipped: neither solo-learn nor lightly is installed"})
            continue
        reason = skip_reason(name, n, q, args, device, dtype, rate)
        rows.append({**base, "source": methods[name][0], "status": reason or "ok"})
        if reason is None:
            runnable[name] = as_step(methods[name][1], getattr(args, "autocast", "none"))
    floor_ms = math.nan
    if runnable:
        leaf = embeddings(n, q, dtype, device)
        repeats = args.repeats or (5 if n * q <= 2048 * 8192 else 3)
        times = time_cell({**runnable, "_floor": floor_step}, leaf, repeats, args)
        floor_ms = common.median(times.pop("_floor"))
        common.fill_measured(rows, runnable, times, leaf)
    vicreg = next((r for r in rows if r["method"] == "vicreg" and r["status"] == "ok"), None)
    for row in rows:
        row["model_time_vs_vicreg"] = n / q if row["method"].startswith("sfrik") else math.nan
        row["model_memory_vs_vicreg"] = n * n / (q * q) if row["method"].startswith("sfrik") else math.nan
        if row["status"] == "ok":
            row["time_vs_gram_floor"] = row["ms_median"] / floor_ms
        if vicreg is not None and row["status"] == "ok":
            row["time_vs_vicreg"] = row["ms_median"] / vicreg["ms_median"]
            row["memory_vs_vicreg"] = row["peak_extra_mib"] / vicreg["peak_extra_mib"]
    return rows


def time_cell(steps: dict, leaf: torch.Tensor, repeats: int, args) -> dict:
    """name -> ms of each timed run: every step warmed up once (and that run timed); the steps whose
    warm-up took at most --slow-seconds (SFRIK, its floor, the fast baselines) then timed `repeats`
    times in turn, and the slower ones (MMCR's batched SVD: 0.8 s a call on an H200; VICReg at large
    q) --slow-repeats times after them: a round robin that waits on them measures nothing more."""
    warm = {name: common.first_call_seconds(step, leaf) for name, step in steps.items()}
    slow_repeats: int = getattr(args, "slow_repeats", None) or repeats
    slow = {name for name, seconds in warm.items() if slow_repeats < repeats and seconds > args.slow_seconds}
    times = common.time_steps_round_robin({k: v for k, v in steps.items() if k not in slow}, leaf, repeats, warmup=0)
    if slow:
        times |= common.time_steps_round_robin({k: steps[k] for k in slow}, leaf, slow_repeats, warmup=0)
    return times


def cell_table(rows: list) -> str:
    header = (
        "method",
        "source",
        "ms fwd+bwd",
        "peak extra MiB",
        "time / VICReg",
        "model",
        "memory / VICReg",
        "model",
        "time / Gram floor",
    )

    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append((r["method"], r.get("source", ""), r["status"], "", "", "", "", "", ""))
            continue
        body.append(
            (
                r["method"],
                r["source"],
                output.format_value(r["ms_median"], ".1f"),
                output.format_value(r["peak_extra_mib"], ".1f"),
                output.format_value(r.get("time_vs_vicreg"), ".3f"),
                output.format_value(r["model_time_vs_vicreg"], ".3f"),
                output.format_value(r.get("memory_vs_vicreg"), ".3f"),
                output.format_value(r["model_memory_vs_vicreg"], ".4f"),
                output.format_value(r.get("time_vs_gram_floor"), ".3f"),
            )
        )
    return output.format_table(header, body)


def floor_check(methods: dict, args, device, dtype) -> str:
    """The whole SFRIK loss against its floor (the two bare Gram products), fwd + bwd, at n x q."""
    n, q = FLOOR_N, FLOOR_Q
    if not ({n} <= set(args.batches) and {q} <= set(args.dims)) or args.quick:
        n, q = max(args.batches if not args.quick else QUICK_BATCHES), max(args.dims if not args.quick else QUICK_DIMS)
    leaf = embeddings(n, q, dtype, device)
    steps = {"sfrik": as_step(methods["sfrik"][1]), "floor": floor_step, "plain": plain_floor_step}
    ms = {name: common.median(t) for name, t in common.time_steps_round_robin(steps, leaf, args.repeats or 7).items()}
    ratio = ms["sfrik"] / ms["floor"]
    target = FLOOR_TARGETS.get(device.type, FLOOR_TARGETS["cuda"])
    verdict = "PASS" if ratio <= target else "FAIL"
    path = "tiled" if use_tiled("auto", n, q, default_tile_size(device), device) else "dense"
    where = "" if (n, q) == (FLOOR_N, FLOOR_Q) else f" (n = {FLOOR_N}, q = {FLOOR_Q} not in the grid)"
    return (
        f"SFRIK loss / its floor (two full Gram products, one GEMM forward and one backward each) at "
        f"n = {n}, q = {q}{where}: {ms['sfrik']:.1f} ms / {ms['floor']:.1f} ms = {ratio:.3f} "
        f"(need <= {target}; the {path} path): {verdict}; against the products through autograd's plain matmul rule "
        f"({ms['plain']:.1f} ms): {ms['sfrik'] / ms['plain']:.3f}"
    )


def headline(rows: list) -> str:
    cell = [r for r in rows if (r["n"], r["q"]) == (HEADLINE_N, HEADLINE_Q)]
    if not cell:
        return f"n = {HEADLINE_N}, q = {HEADLINE_Q} not in the grid"
    by = {r["method"]: r for r in cell}
    sfrik, vicreg = by.get("sfrik"), by.get("vicreg")
    if sfrik is None or sfrik["status"] != "ok":
        return f"at n = {HEADLINE_N}, q = {HEADLINE_Q}: SFRIK did not run ({sfrik and sfrik['status']})"
    if vicreg is None or vicreg["status"] != "ok":
        return (
            f"at n = {HEADLINE_N}, q = {HEADLINE_Q}: SFRIK runs ({sfrik['ms_median']:.0f} ms, "
            f"{sfrik['peak_extra_mib']:.0f} MiB); VICReg {vicreg['status'] if vicreg else 'absent'}"
        )
    t, m = 1 / sfrik["time_vs_vicreg"], 1 / sfrik["memory_vs_vicreg"]
    ok = t >= HEADLINE_TARGET and m >= HEADLINE_TARGET
    return (
        f"at n = {HEADLINE_N}, q = {HEADLINE_Q}: SFRIK {t:.1f}x cheaper in time and {m:.1f}x in memory "
        f"than VICReg (need >= {HEADLINE_TARGET:g}): {'PASS' if ok else 'FAIL'}"
    )


def plot(rows: list, path: str, title: str) -> None:
    """Time and memory against q (log-log): one line per method and n."""
    plt = output.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    batches = sorted({r["n"] for r in rows})
    styles = ["-", "--", ":", "-."]
    for key, ax, label in (
        ("ms_median", axes[0], "ms, forward + backward"),
        ("peak_extra_mib", axes[1], "peak extra MiB"),
    ):
        # a colour per method drawn (the registry has more than matplotlib's 10 cycle colours)
        drawn = [m for m in METHODS if any(r["method"] == m and r["status"] == "ok" for r in rows)]
        colours = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20")
        for i, method in enumerate(drawn):
            for j, n in enumerate(batches):
                points = sorted(
                    (r["q"], r[key]) for r in rows if r["method"] == method and r["n"] == n and r["status"] == "ok"
                )
                if points:
                    ax.plot(
                        *zip(*points),
                        styles[j % len(styles)],
                        marker="o",
                        markersize=3,
                        color=colours(i),
                        label=f"{method}, n = {n}",
                    )
        ax.set(xscale="log", yscale="log", xlabel="q (embedding width)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    output.save_figure(fig, path)


def run(args) -> int:
    device, dtype = common.bench_device(args.device), common.DTYPES[args.dtype]
    batches, dims = (QUICK_BATCHES, QUICK_DIMS) if args.quick else (args.batches, args.dims)
    common.print_machine(device)
    methods = build_methods()
    missing = [m for m in args.methods if m not in methods]
    if missing:
        print(f"baselines without an implementation here (install solo-learn or lightly): {missing}")
    rate = matmul_flops_per_second(device, dtype)
    print(
        f"matmul rate {rate / 1e9:.0f} GFLOP/s; skip limits: {args.max_seconds:g} s per run, "
        f"{args.memory_fraction:g} of available memory"
    )
    bad_views = [v for v in args.lejepa_views if v < 2]
    if bad_views:
        raise SystemExit(f"--lejepa-views takes numbers of views >= 2 (2 global + local), got {bad_views}")
    lejepa_views = args.lejepa_views if getattr(args, "autocast", "none") == "none" else []
    if args.lejepa_views and not lejepa_views:
        print("LeJEPA rows: run without --autocast (they compare the two regularisers in float32)")
    lejepa_losses = lejepa.build_losses(device) if lejepa_views else {}
    rows = []
    for n in batches:
        for q in dims:
            cell = run_cell(n, q, methods, args, device, dtype, rate)
            print(
                f"\nn = {n}, q = {q} (cost model SFRIK / VICReg: time n/q = {n / q:.3f}, memory n^2/q^2 = "
                f"{n * n / (q * q):.4f})"
            )
            print(cell_table(cell), flush=True)
            rows.extend(cell)
            for views in lejepa_views:
                lejepa_cell = lejepa.run_cell(
                    n,
                    q,
                    views,
                    lejepa_losses,
                    args,
                    device,
                    dtype,
                    lambda m, v=views: lejepa_skip(m, v, n, q, args, device, dtype, rate),
                )
                print(lejepa.cell_line(lejepa_cell), flush=True)
                rows.extend(lejepa_cell)
            common.write_rows_so_far(args, CSV_FIELDS, rows)
    print()
    if "sfrik" in methods:
        print(floor_check(methods, args, device, dtype))
    print(headline(rows))
    common.write_outputs(
        args,
        CSV_FIELDS,
        rows,
        plot,
        f"two-view losses, forward + backward, {machine.device_name(device)}, {args.dtype}",
    )
    return 0
