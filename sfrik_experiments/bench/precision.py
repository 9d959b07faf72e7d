"""Gram-precision suite: the error of the SFRIK regulariser R(u) = mean_{i,j} psi(u_i . u_j) and of
its gradient dR/du = (2 / n^2) psi'(G) u when the Gram matrix G = u u^T is computed in a lower
precision, against float64, for n unit rows of width q.

Embeddings (seeded, rows L2-normalised):
  near-orthogonal   isotropic Gaussian rows (Gram entries ~ 1/sqrt(q)): a well-spread projector
  partly-collapsed  0.7 m + B w_i + 0.3 e_i: a shared direction m, a rank-32 part B w_i and
                    isotropic noise e_i (Gram entries mostly 0.1-0.8): a projector early in
                    training or half-collapsed

Gram precisions (sfrik_plugin.precision; the unit rows u are float32, as the loss normalises them):
  float32            u u^T in float32 (the default)
  tf32, bf16, fp16   u rounded to TF32 / bfloat16 / float16, products accumulated and G kept in
                     float32 (tensor-core GEMMs with float32 output; the option gram_precision)
  bf16-out, fp16-out the same with every Gram entry rounded to bfloat16 / float16 as well: what
                     torch.mm on half tensors and autocast give (the official code's fp16 Gram)
psi and psi' are evaluated in float32 on the float32 Gram (as the plugin does, also under
autocast); the gradient's GEMM S r, S = 2 psi'(G) / n^2 and r the rounded rows (straight-through),
runs in the Gram's precision as the plugin runs it (precision.low_precision_mm: S rounded to TF32 /
bfloat16 / float16, float16 after a power-of-two scaling that keeps S normal), and in float32 for
float32 and the -out variants.
The reduced products are emulated on this device by float32 GEMMs of the rounded rows, exact in
float32 (two 11-bit mantissas), so the figures are those of the rounding, not of one GPU's
accumulation order. Errors: |R - R64| / |R64|; the same over R64's off-diagonal part
R64 - sum(b) / n (the diagonal's constant sum(b) / n dominates R for near-orthogonal rows and has
no gradient); and for the gradient, taken on the sphere's tangent space (g - <g, u> u per row: what
reaches z through the normalisation), ||g - g64|| / ||g64|| (Frobenius) and max |g - g64| / max |g64|.
"""

from __future__ import annotations

import math
import time

import torch

import sfrik_plugin
from sfrik_experiments.utils import output
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.precision import GRAM_PRECISIONS, low_precision_mm, round_rows

from . import common

HELP = "error of the SFRIK regulariser and its gradient against float64, by Gram precision"
DEFAULT_N, DEFAULT_DIMS = 2048, (1024, 8192, 32768)
QUICK_N, QUICK_DIMS = 256, (128, 512)
EMBEDDINGS = ("near-orthogonal", "partly-collapsed")
PRECISIONS = ("float32", "tf32", "bf16", "fp16", "bf16-out", "fp16-out")
CSV_FIELDS = (
    "suite",
    "n",
    "q",
    "embeddings",
    "precision",
    "device",
    "r_float64",
    "r",
    "r_rel_err",
    "r_offdiag_rel_err",
    "grad_rel_err_fro",
    "grad_rel_err_max",
    "seconds",
)
_OUT_TYPES = {"bf16-out": torch.bfloat16, "fp16-out": torch.float16}


def add_arguments(parser) -> None:
    parser.add_argument("--batch", type=common.positive_int, default=DEFAULT_N, metavar="N", help="rows n")
    common.add_size_arguments(parser, None, DEFAULT_DIMS)
    parser.add_argument("--embeddings", nargs="+", choices=EMBEDDINGS, default=list(EMBEDDINGS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--csv", metavar="PATH", default=None, help="write every row to this CSV file")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: n = {QUICK_N}, q in {QUICK_DIMS}")


def embeddings(kind: str, n: int, q: int, seed: int = 0) -> torch.Tensor:
    """(n, q) float64 rows of the given kind, not normalised."""
    g = torch.Generator().manual_seed(seed + q)
    if kind == "near-orthogonal":
        return torch.randn(n, q, generator=g, dtype=torch.float64)
    if kind == "partly-collapsed":
        rank = 32
        mean = torch.nn.functional.normalize(torch.randn(q, generator=g, dtype=torch.float64), dim=0)
        basis = torch.linalg.qr(torch.randn(q, rank, generator=g, dtype=torch.float64))[0]  # (q, rank)
        low_rank = torch.randn(n, rank, generator=g, dtype=torch.float64) / math.sqrt(rank) @ basis.T
        noise = torch.randn(n, q, generator=g, dtype=torch.float64) / math.sqrt(q)
        return 0.7 * mean + low_rank + 0.3 * noise
    raise ValueError(f"embeddings must be one of {EMBEDDINGS}, got {kind!r}")


def regulariser_and_gradient(u: torch.Tensor, gram: torch.Tensor, q: int, precision: str = "float32"):
    """(R, dR/du) from the Gram matrix of the rows u: R = mean psi(G), dR/du = S u with
    S = (2/n^2) psi'(G), psi and psi' in the Gram's dtype (the fused compiled operators), the GEMM
    in `precision` (one of the package's Gram precisions)."""
    coeffs = [0.0, *KERNEL_WEIGHTS]
    n = u.shape[0]
    value = sfrik_plugin.legendre_series(gram, coeffs, q, reduction="mean")
    slope = torch.ops.sfrik.legendre_series_backward(gram.new_ones(()), gram, coeffs, q, 1)
    return value, low_precision_mm(slope * (2.0 / n**2), u, precision)


def tangent(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g without its radial part, row by row (what the normalisation's backward passes on)."""
    return g - (g * u).sum(dim=1, keepdim=True) * u


def low_precision_gram(u32: torch.Tensor, precision: str):
    """(G, r): the float32 Gram matrix for `precision` (see the module docstring) and the rounded rows."""
    r = round_rows(u32, precision.removesuffix("-out"))
    gram = r @ r.T
    if precision in _OUT_TYPES:
        gram = gram.to(_OUT_TYPES[precision]).float()
    return gram, r


def run_cell(n: int, q: int, kind: str, precisions, device: torch.device) -> list:
    z = embeddings(kind, n, q).to(device)
    u64 = torch.nn.functional.normalize(z, dim=1)
    u32 = torch.nn.functional.normalize(z.float(), dim=1)
    r64, g64 = regulariser_and_gradient(u64, u64 @ u64.T, q)
    g64 = tangent(g64, u64)
    g64_norm, g64_max = g64.norm().item(), g64.abs().max().item()
    off_diagonal = r64.item() - sum(KERNEL_WEIGHTS) / n
    rows = []
    for precision in precisions:
        start = time.perf_counter()
        gram, r = low_precision_gram(u32, precision)
        value, grad = regulariser_and_gradient(r, gram, q, precision if precision in GRAM_PRECISIONS else "float32")
        diff = tangent(grad, u32).double() - g64
        rows.append(
            {
                "suite": "precision",
                "n": n,
                "q": q,
                "embeddings": kind,
                "precision": precision,
                "device": str(device),
                "r_float64": r64.item(),
                "r": value.item(),
                "r_rel_err": abs(value.item() - r64.item()) / abs(r64.item()),
                "r_offdiag_rel_err": abs(value.item() - r64.item()) / abs(off_diagonal),
                "grad_rel_err_fro": diff.norm().item() / g64_norm,
                "grad_rel_err_max": diff.abs().max().item() / g64_max,
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def table(rows: list) -> str:
    body = [
        (
            r["embeddings"],
            r["q"],
            r["precision"],
            f"{r['r_float64']:.6g}",
            f"{r['r_rel_err']:.1e}",
            f"{r['r_offdiag_rel_err']:.1e}",
            f"{r['grad_rel_err_fro']:.1e}",
            f"{r['grad_rel_err_max']:.1e}",
        )
        for r in rows
    ]
    return output.format_table(
        (
            "embeddings",
            "q",
            "Gram",
            "R (float64)",
            "R rel err",
            "off-diag rel err",
            "grad rel err (Frobenius)",
            "grad rel err (max)",
        ),
        body,
    )


def run(args) -> int:
    device = common.bench_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "ieee"  # the float32 GEMMs must be float32
    n, dims = (QUICK_N, QUICK_DIMS) if args.quick else (args.batch, args.dims)
    common.print_machine(device)
    print(f"n = {n}, kernel weights {KERNEL_WEIGHTS}; errors against float64")
    rows = []
    for q in dims:
        for kind in args.embeddings:
            cell = run_cell(n, q, kind, args.precisions, device)
            rows.extend(cell)
            print()
            print(table(cell), flush=True)
    if args.csv:
        output.write_csv(args.csv, CSV_FIELDS, rows)
        print(f"rows written to {args.csv}")
    return 0
