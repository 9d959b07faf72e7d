"""Legendre-series suite: forward + backward of psi(G), psi(t) = sum_l b_l P_l(q; t), with the two
upstream gradients a network gives it: a broadcast scalar (psi(G).mean(), the SFRIK loss's case)
and a dense one (y = psi(G) elementwise, then y.backward(gy) for a fixed random gy: a kernel
matrix that a later computation uses elementwise).

G is the Gram matrix z @ z.T of n L2-normalised random embeddings z (n, 128), entries in
[-1, 1], a leaf with requires_grad=True. The methods of the mean compute the same scalar loss and
its gradient with respect to G:

  ext_mean                         legendre_series(G, c, q, reduction="mean"): fused reduction,
                                   never writes psi(G); backward is one compiled pass.
  ext_elementwise                  legendre_series(G, c, q).mean(): psi(G) written, mean in eager.
  eager_official                   official_psi(G, b, q).mean(): the official SFRIK closed forms
                                   (L <= 4 only; "n/a" otherwise).
  eager_recurrence                 legendre_series_reference(G, c, q).mean(), eager autograd.
  compiled_recurrence_mean         torch.compile of G -> legendre_series_reference(G, c, q).mean():
                                   Inductor may fuse the reduction, as ext_mean does.
  compiled_recurrence_elementwise  torch.compile of G -> legendre_series_reference(G, c, q)
                                   (returns psi(G)), then .mean() in eager, exactly as
                                   ext_elementwise: both write psi(G) and reduce it outside.
  fallback_mean, fallback_elementwise  ext_mean and ext_elementwise where the extension has no
                                   kernel for the device (sfrik_plugin.fallback: the recurrence
                                   under torch.compile, what a GPU without the CUDA kernels runs).
The methods of the dense upstream gradient (the backward gets gy, not a broadcast scalar):
  ext_elementwise_grad             legendre_series(G, c, q), then backward(gy): the operator's
                                   elementwise-grad kernel.
  compiled_recurrence_elementwise_grad  the compiled recurrence, then backward(gy).

c = [0] + b (no degree 0); b = (1, 40, 40) for L = 3 and L ones otherwise. Compiled functions
are built per (n, L) after torch._dynamo.reset(), with dynamic=False (shapes specialised, the
compiler's best case), and warmed up before timing; their first call (compile time, which
includes any Inductor cache hit) is reported separately; Inductor compiles in-process
(compile_threads = 1) so that no pool of compile workers competes with the timed runs. Times are
the median of --repeats runs after one warm-up, the methods timed in turn (one run of each per
round, so a change of load hits all alike); "x ext_mean" is a method's time over ext_mean's
(above 1: slower). Peak extra memory and how it is measured: see bench.common.
"grad rel err" is max |dG - dG_ref| / max |dG_ref| against ext_mean's gradient (the mean's
methods) or ext_elementwise_grad's (the dense upstream's): every method must agree.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch._inductor.config

import sfrik_plugin
from sfrik_experiments.utils import machine, output
from sfrik_plugin import _extension
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.reference import legendre_series_reference, official_psi

from . import common

HELP = "psi(G).mean() forward + backward: extension vs eager and torch.compile"
DEFAULT_SIZES = (512, 2048, 4096)
DEFAULT_DEGREES = (3, 10)
QUICK_SIZES, QUICK_DEGREES, QUICK_REPEATS = (256, 512), (3,), 2
HEADLINE_N, HEADLINE_DEGREE = 2048, 3
OFFICIAL_MAX_DEGREE = 4
# Check (c) is about n x n buffers: the 0-dim temporaries (the loss, its gradient, mean's
# divisor) take a few bytes each and are allowed for.
SCALAR_SLACK_BYTES = 4096
EMBEDDING_DIM = 128
METHODS = (
    "ext_mean",
    "ext_elementwise",
    "eager_official",
    "eager_recurrence",
    "compiled_recurrence_mean",
    "compiled_recurrence_elementwise",
    "fallback_mean",
    "fallback_elementwise",
    "ext_elementwise_grad",
    "compiled_recurrence_elementwise_grad",
)
DENSE_UPSTREAM = ("ext_elementwise_grad", "compiled_recurrence_elementwise_grad")  # the first: their reference
COMPILED = {
    "compiled_recurrence_mean",
    "compiled_recurrence_elementwise",
    "compiled_recurrence_elementwise_grad",
    "fallback_mean",
    "fallback_elementwise",
}
CSV_FIELDS = (
    "suite",
    "n",
    "degree",
    "dim",
    "dtype",
    "device",
    "method",
    "status",
    "ms_median",
    "ms_min",
    "repeats",
    "ratio_to_ext_mean",
    "peak_extra_mib",
    "peak_extra_buffers",
    "compile_s",
    "grad_rel_err",
    "background_load",
)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--sizes", type=common.positive_int, nargs="+", default=list(DEFAULT_SIZES), metavar="N", help="G is n x n"
    )
    parser.add_argument(
        "--degrees",
        type=common.positive_int,
        nargs="+",
        default=list(DEFAULT_DEGREES),
        metavar="L",
        help="number of kernel weights b_1 .. b_L",
    )
    parser.add_argument("--dim", type=int, default=8192, help="dimension q of the Legendre polynomials")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: n in {QUICK_SIZES}, L in {QUICK_DEGREES}, {QUICK_REPEATS} repeats",
    )
    parser.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="K",
        help="also time every cell with K busy processes running beside it (as data-loader workers are "
        "in training): both conditions in one run, rows marked by background_load",
    )
    common.add_common_arguments(parser)


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """`processes` busy Python processes (a spinning loop each) for the duration of the block."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5 if busy else 0.0)  # let them get scheduled
        yield
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()


def kernel_weights(degree: int) -> list:
    """b_1 .. b_L: the SFRIK default (1, 40, 40) for L = 3, ones otherwise."""
    return list(KERNEL_WEIGHTS) if degree == 3 else [1.0] * degree


def default_repeats(n: int) -> int:
    # The fused steps take milliseconds: many repeats steady their medians on a noisy machine;
    # a 4096 x 4096 eager run takes seconds on a small CPU: fewer repeats keep the grid short.
    return 21 if n <= 512 else 11 if n <= 2048 else 3


def gram_matrix(n: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Leaf n x n Gram matrix of L2-normalised random embeddings, entries in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, EMBEDDING_DIM, generator=generator, dtype=dtype).to(device)
    z = torch.nn.functional.normalize(z, dim=1)
    # Rounding can put the diagonal a hair above 1, outside the series' natural domain.
    return (z @ z.T).clamp_(-1.0, 1.0).requires_grad_(True)


class _Upstream:
    """What a dense-upstream step returns: .backward() runs y.backward(gy), so the suite's helpers
    (which call step(leaf).backward()) time it as any other step."""

    def __init__(self, y: torch.Tensor, gy: torch.Tensor) -> None:
        self.y, self.gy = y, gy

    def backward(self) -> None:
        self.y.backward(self.gy)


def upstream_gradient(n: int, dtype: torch.dtype, device: torch.device, seed: int = 1) -> torch.Tensor:
    """The fixed dense upstream gradient gy (n x n) of the dense-upstream methods."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=generator, dtype=dtype).to(device)


def on_fallback(step):
    """step on the paths a device without the extension's kernels takes."""

    def run(g):
        with _extension.reference_only():
            return step(g)

    return run


def build_steps(weights: list, dim: int, gy: torch.Tensor | None = None) -> dict:
    """method name -> step(G) returning the scalar loss (or, for the dense upstream, what runs
    y.backward(gy)), or None where the method does not apply."""
    coeffs = [0.0] + weights
    torch._dynamo.reset()  # fresh compiles per cell: no recompile limits, comparable compile times
    compiled_mean = torch.compile(lambda g: legendre_series_reference(g, coeffs, dim).mean(), dynamic=False)
    compiled_psi = torch.compile(lambda g: legendre_series_reference(g, coeffs, dim), dynamic=False)
    official = None
    if len(weights) <= OFFICIAL_MAX_DEGREE:
        official = lambda g: official_psi(g, weights, dim).mean()  # noqa: E731
    ext_mean = lambda g: sfrik_plugin.legendre_series(g, coeffs, dim, reduction="mean")  # noqa: E731
    ext_elementwise = lambda g: sfrik_plugin.legendre_series(g, coeffs, dim).mean()  # noqa: E731
    steps = {
        "ext_mean": ext_mean,
        "ext_elementwise": ext_elementwise,
        "eager_official": official,
        "eager_recurrence": lambda g: legendre_series_reference(g, coeffs, dim).mean(),
        "compiled_recurrence_mean": compiled_mean,
        "compiled_recurrence_elementwise": lambda g: compiled_psi(g).mean(),
        "fallback_mean": on_fallback(ext_mean),
        "fallback_elementwise": on_fallback(ext_elementwise),
        "ext_elementwise_grad": None,
        "compiled_recurrence_elementwise_grad": None,
    }
    if gy is not None:
        steps["ext_elementwise_grad"] = lambda g: _Upstream(sfrik_plugin.legendre_series(g, coeffs, dim), gy)
        steps["compiled_recurrence_elementwise_grad"] = lambda g: _Upstream(compiled_psi(g), gy)
    return steps


def compile_all(steps: dict, leaf: torch.Tensor) -> dict:
    """Compile (first call of) every compiled method; method name -> seconds. Done before any
    timing, so no compile work overlaps a timed run."""
    return {name: common.first_call_seconds(steps[name], leaf) for name in METHODS if name in COMPILED}


def measure(name: str, step, leaf: torch.Tensor, times: list):
    """Peak extra memory of one method, with its timings: (row, the gradient it computed)."""
    n = leaf.shape[0]
    peak = common.peak_extra_bytes(step, leaf)  # leaves this method's gradient in leaf.grad
    grad, leaf.grad = leaf.grad, None
    row = {
        "method": name,
        "status": "ok",
        "ms_median": common.median(times),
        "ms_min": min(times),
        "repeats": len(times),
        "peak_extra_mib": peak / 2**20,
        "peak_extra_buffers": peak / common.buffer_bytes(n, leaf.dtype),
    }
    return row, grad


def relative_error(grad: torch.Tensor, reference: torch.Tensor) -> float:
    """max |grad - reference| / max |reference|: all methods compute the same gradient."""
    scale = reference.abs().max().item() or 1.0
    return (grad - reference).abs().max().item() / scale


def run_cell(n: int, degree: int, args, device: torch.device, dtype: torch.dtype) -> list:
    """All methods at one (n, L); rows in METHODS order."""
    leaf = gram_matrix(n, dtype, device)
    repeats = args.repeats or default_repeats(n)
    steps = build_steps(kernel_weights(degree), args.dim, upstream_gradient(n, dtype, device))
    compile_s = compile_all(steps, leaf)
    applicable = {name: steps[name] for name in METHODS if steps[name] is not None}
    rows = []
    for load in sorted({0, args.background_load}):
        with background_load(load):
            times = common.time_steps_round_robin(applicable, leaf, repeats)
        rows.extend(cell_rows(n, degree, args, device, steps, leaf, times, compile_s, load))
    return rows


def cell_rows(n, degree, args, device, steps, leaf, times, compile_s, load) -> list:
    """The rows of one (n, L) cell timed under one background load."""
    rows: list[dict[str, Any]] = []
    reference_grads: dict[bool, torch.Tensor] = {}
    for name in METHODS:
        if steps[name] is None:
            row: dict[str, Any] = {"method": name, "status": f"n/a (L > {OFFICIAL_MAX_DEGREE})"}
        else:
            row, grad = measure(name, steps[name], leaf, times[name])
            kind = name in DENSE_UPSTREAM
            reference_grads.setdefault(kind, grad)  # ext_mean's, ext_elementwise_grad's
            row["grad_rel_err"] = relative_error(grad, reference_grads[kind])
        row.update(
            suite="legendre",
            n=n,
            degree=degree,
            dim=args.dim,
            dtype=args.dtype,
            device=str(device),
            compile_s=compile_s.get(name, math.nan),
            background_load=load,
        )
        rows.append(row)
    base = rows[0]["ms_median"]
    for row in rows:
        if row["status"] == "ok":
            row["ratio_to_ext_mean"] = row["ms_median"] / base
    return rows


def cell_table(rows: list) -> str:
    header = (
        "method",
        "ms fwd+bwd",
        "ms min",
        "x ext_mean",
        "peak extra MiB",
        "n x n buffers",
        "compile s",
        "grad rel err",
    )
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append((r["method"], "n/a", "", "", "", "", "", ""))
            continue
        compile_s = "" if math.isnan(r["compile_s"]) else f"{r['compile_s']:.1f}"
        body.append(
            (
                r["method"],
                f"{r['ms_median']:.2f}",
                f"{r['ms_min']:.2f}",
                f"{r['ratio_to_ext_mean']:.2f}",
                f"{r['peak_extra_mib']:.1f}",
                f"{r['peak_extra_buffers']:.2f}",
                compile_s,
                f"{r['grad_rel_err']:.0e}",
            )
        )
    return output.format_table(header, body)


def headline_cell(rows: list):
    """(n, L) of the headline checks: n = 2048, L = 3, or the largest n with L = 3 in the grid."""
    sizes = sorted({r["n"] for r in rows if r["degree"] == HEADLINE_DEGREE})
    if not sizes:
        return None
    return (HEADLINE_N if HEADLINE_N in sizes else sizes[-1]), HEADLINE_DEGREE


def loaded_lines(rows: list) -> list:
    """Per background load > 0, how the extension's forms compare with the compiled recurrence
    at the headline cell, beside the quiet figures of the same run."""
    cell = headline_cell(rows)
    loads = sorted({r.get("background_load", 0) for r in rows} - {0})
    if cell is None or not loads:
        return []
    lines = []
    for load in (0, *loads):
        ms = {
            r["method"]: r.get("ms_median", math.nan)
            for r in rows
            if (r["n"], r["degree"]) == cell and r.get("background_load", 0) == load
        }
        lines.append(
            f"  background load {load}: ext_elementwise {ms['ext_elementwise']:.2f} ms, compiled elementwise "
            f"{ms['compiled_recurrence_elementwise']:.2f} ms (compiled / ext = "
            f"{ms['compiled_recurrence_elementwise'] / ms['ext_elementwise']:.2f}); ext_mean {ms['ext_mean']:.2f} ms, "
            f"compiled mean {ms['compiled_recurrence_mean']:.2f} ms "
            f"({ms['compiled_recurrence_mean'] / ms['ext_mean']:.2f})"
        )
    return [f"n = {cell[0]}, L = {cell[1]}, quiet and with busy processes beside it:", *lines]


def headline_checks(rows: list) -> list:
    """Lines of text, one per check, each ending in PASS or FAIL (the quiet rows)."""
    rows = [r for r in rows if r.get("background_load", 0) == 0]
    cell = headline_cell(rows)
    if cell is None:
        return [f"headline checks skipped: no L = {HEADLINE_DEGREE} in the grid"]
    n, degree = cell
    by = {r["method"]: r for r in rows if (r["n"], r["degree"]) == cell}
    ms = {m: r.get("ms_median", math.nan) for m, r in by.items()}
    speedup = ms["eager_official"] / ms["ext_mean"]
    mean_vs = ms["compiled_recurrence_mean"] / ms["ext_mean"]
    elem_vs = ms["compiled_recurrence_elementwise"] / ms["ext_elementwise"]
    grad_vs = ms["compiled_recurrence_elementwise_grad"] / ms["ext_elementwise_grad"]
    fallback = (ms["fallback_mean"] / ms["ext_mean"], ms["fallback_elementwise"] / ms["ext_elementwise"])
    eager = ms["eager_recurrence"] / ms["ext_mean"]
    buffers = max(by["ext_mean"]["peak_extra_buffers"], by["ext_elementwise"]["peak_extra_buffers"])
    slack_buffers = SCALAR_SLACK_BYTES / common.buffer_bytes(n, common.DTYPES[by["ext_mean"]["dtype"]])

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    where = "" if n == HEADLINE_N else f" (n = {HEADLINE_N} not in the grid)"
    return [
        f"headline checks at n = {n}, L = {degree}{where}:",
        f"  (a) ext_mean {speedup:.2f}x faster than eager_official (need >= 3): {verdict(speedup >= 3)}",
        f"  (b) compiled_recurrence_mean / ext_mean = {mean_vs:.2f}, compiled_recurrence_elementwise"
        f" / ext_elementwise = {elem_vs:.2f} (need both >= 1): {verdict(mean_vs >= 1 and elem_vs >= 1)}",
        f"  (c) ext peak extra memory {buffers:.2f} n x n buffers (need <= 2): {verdict(buffers <= 2 + slack_buffers)}",
        f"  (d) dense upstream gradient: compiled_recurrence_elementwise_grad / ext_elementwise_grad = {grad_vs:.2f}"
        f" (need >= 1): {verdict(grad_vs >= 1)}",
        f"  (e) the fallback (no kernel for the device) over the operator: {fallback[0]:.2f} (mean), "
        f"{fallback[1]:.2f} (elementwise); the eager recurrence was {eager:.2f} (need <= 2): "
        f"{verdict(max(fallback) <= 2)}",
    ]


def plot(rows: list, path: str, title: str) -> None:
    """Time of forward + backward against n, one panel per L, one line per method (log-log; the
    quiet rows)."""
    rows = [r for r in rows if r.get("background_load", 0) == 0]
    plt = output.pyplot()
    degrees = sorted({r["degree"] for r in rows})
    fig, axes = plt.subplots(1, len(degrees), figsize=(6 * len(degrees), 4.5), squeeze=False)
    for ax, degree in zip(axes[0], degrees):
        for method in METHODS:
            points = sorted(
                (r["n"], r["ms_median"])
                for r in rows
                if r["degree"] == degree and r["method"] == method and r["status"] == "ok"
            )
            if points:
                style = "-o" if method.startswith("ext") else "--x"
                ax.plot(
                    *zip(*points), style, label=method, color=f"C{METHODS.index(method)}"
                )  # same colour in every panel
        ax.set(
            xscale="log", yscale="log", xlabel="n (G is n x n)", ylabel="ms, forward + backward", title=f"L = {degree}"
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    output.save_figure(fig, path)


def print_header(device: torch.device, dtype: torch.dtype) -> None:
    common.print_machine(device)
    print(f" extension: {sfrik_plugin.extension_info()}")
    probe_n = 256
    measured = common.probe_self_check(probe_n, dtype, device)
    print(f"memory probe self-check: known peak 3.00 n x n buffers, measured {measured:.2f}")


def run(args) -> int:
    device, dtype = common.bench_device(args.device), common.DTYPES[args.dtype]
    # Compile in this process: Inductor's pool of compile workers would otherwise start in the
    # background and compete with the timed runs for the CPU cores.
    torch._inductor.config.compile_threads = 1
    sizes, degrees = (QUICK_SIZES, QUICK_DEGREES) if args.quick else (args.sizes, args.degrees)
    if args.quick and args.repeats is None:
        args.repeats = QUICK_REPEATS
    print_header(device, dtype)
    print(f"q = {args.dim}, dtype = {args.dtype}, sizes = {list(sizes)}, degrees = {list(degrees)}")
    rows = []
    for n in sizes:
        for degree in degrees:
            cell = run_cell(n, degree, args, device, dtype)
            for load in sorted({r["background_load"] for r in cell}):
                part = [r for r in cell if r["background_load"] == load]
                print(
                    f"\nn = {n}, L = {degree}, b = {kernel_weights(degree)}, repeats = {part[0]['repeats']}, "
                    f"{load} busy processes beside it"
                )
                print(cell_table(part), flush=True)
            rows.extend(cell)
    print()
    print("\n".join(headline_checks(rows) + loaded_lines(rows)))
    common.write_outputs(
        args, CSV_FIELDS, rows, plot, f"psi(G).mean(), {machine.device_name(device)}, q = {args.dim}, {args.dtype}"
    )
    return 0
