"""The Gram matrix x x^T of the rows of x from its upper triangle: half the multiply-adds of a full
product (n^2 q instead of 2 n^2 q), and exactly symmetric.

    row block k (rows b_k .. b_{k+1}):  G[b_k:b_{k+1}, b_k:] = x[b_k:b_{k+1}] x[b_k:]^T   (one GEMM)
    then the strict lower triangle is the upper one mirrored (one elementwise pass)

With m equal row blocks the GEMMs do (m + 1) / (2 m) of a full product's work (m = 4: 62.5 %),
in m calls: the number of kernels depends on m only (at most GRAM_BLOCKS' max_blocks, never on n or
q), and nothing is read back to the host. Below a number of rows (by device) the full product,
mirrored the same way, is used: there smaller GEMMs lose more than the saved work (GRAM_BLOCKS,
measured with sfrik-bench gram).

The products of a row block may sum in another order than the full GEMM's, so the entries equal
x @ x.T within float32 rounding, not bit for bit; the mirror makes G[i, j] and G[j, i] the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from . import _extension

Product = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (a, b) -> a @ b^T


class GramBlocks(NamedTuple):
    """How a device splits the Gram product: row blocks of at least `min_block_rows` rows, at most
    `max_blocks` of them (one full product, mirrored, below 2 * min_block_rows rows)."""

    max_blocks: int
    min_block_rows: int


# Measured with `sfrik-bench gram` on a quiet 2-core Xeon, 2 threads (BENCHMARKS.md, "The Gram matrix
# from its upper triangle"): from n = 1024 on, 4 blocks were within 3 % of the fastest count (6-8
# blocks, each saving less: (m + 1) / (2 m) of the work, with narrower GEMMs): 0.685 of the full
# product at n = 2048, q = 8192. At n = 256-512 blocks of 128 rows beat the full product mirrored
# by 4-22 % (q >= 1024); at n = 128 the full product was as fast or faster. So: 4 blocks of at least
# 128 rows. CUDA, float32 (one H100, 2026-12-06, docs/records/gpu/gram_h100_2026-12-06.csv): blocks
# of 256 rows or more, 8 at most, were the fastest count in all six cells (n 1024-4096, q 8192 and
# 32768): 0.60-0.96 of the full product; the former 4 blocks of 1024 rows took 1.08-1.37x as long.
GRAM_BLOCKS = {"cpu": GramBlocks(4, 128), "cuda": GramBlocks(8, 256)}
# Reduced-precision products (TF32, bf16, fp16, autocast) on CUDA: the tensor cores finish a full
# product so fast that narrower GEMMs lose below n = 4096 (the same H100: 2 blocks 1.2-2.1x the time
# of 1 at n = 1024-2048, q = 8192) and gain up to 25 % above. Blocks of 2048 rows or more were within
# 11 % of the fastest count in all twelve cells (the former rule: up to 1.53x).
REDUCED_PRECISION_GRAM_BLOCKS = {"cuda": GramBlocks(4, 2048)}
_OTHER_DEVICES = GramBlocks(1, 1)
ROW_ALIGNMENT = 16  # block boundaries on multiples of this: aligned rows for the GEMMs and the copies


def default_blocks(rows: int, device: torch.device, reduced_precision: bool = False) -> int:
    """The number of row blocks for `rows` rows on `device` (1: the full product), for float32
    products or, with reduced_precision, TF32 / bf16 / fp16 ones."""
    setting = GRAM_BLOCKS.get(device.type, _OTHER_DEVICES)
    if reduced_precision:
        setting = REDUCED_PRECISION_GRAM_BLOCKS.get(device.type, setting)
    return max(1, min(setting.max_blocks, rows // setting.min_block_rows))


def block_bounds(rows: int, blocks: int) -> list[int]:
    """[b_0 = 0, b_1, ..., b_m = rows]: `blocks` row blocks of nearly equal size, the inner bounds
    multiples of ROW_ALIGNMENT; fewer blocks where rows are too few for that many."""
    bounds = [0]
    for k in range(1, blocks):
        bound = round(rows * k / blocks / ROW_ALIGNMENT) * ROW_ALIGNMENT
        if bounds[-1] < bound < rows:
            bounds.append(bound)
    return [*bounds, rows]


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.mT


def _tiled_kernel(t: torch.Tensor) -> bool:
    """Whether sfrik::symmetrize has a kernel for t: the CPU one (its tiles read the transpose in
    cache-sized pieces, where g.mT read down the columns cost 3-10x more at n = 2048)."""
    return t.device.type == "cpu" and _extension.available_for(t)


def mirror_upper(gram: torch.Tensor) -> torch.Tensor:
    """A new matrix with gram's upper triangle (diagonal included) and its mirror image below: exactly
    symmetric. The strict lower triangle of gram is never read into the result (it may hold anything)."""
    if _tiled_kernel(gram):
        from . import ops  # loaded with the extension

        return ops.symmetrize(gram, False)
    n = gram.shape[-1]
    index = torch.arange(n, device=gram.device)
    return torch.where(index.unsqueeze(1) <= index, gram, gram.mT)


def symmetric_sum(g: torch.Tensor) -> torch.Tensor:
    """g + g^T (exactly symmetric: IEEE addition commutes), differentiable."""
    if _tiled_kernel(g):
        from . import ops

        return ops.symmetrize(g, True)
    return g + g.mT


def reduced_precision(x: torch.Tensor, product: Product | None = None) -> bool:
    """Whether the GEMMs of x x^T run below float32: a half type, a product of its own (the
    precision module's), TF32 allowed for CUDA matmuls, or autocast on x's device."""
    if x.dtype in (torch.float16, torch.bfloat16) or product is not None:
        return True
    if x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return True
    return x.device.type in ("cuda", "cpu") and torch.is_autocast_enabled(x.device.type)


def symmetric_gram(x: torch.Tensor, product: Product | None = None, blocks: int | None = None) -> torch.Tensor:
    """x x^T (x: (n, q)) from its upper triangle, in `blocks` row blocks (None: default_blocks),
    exactly symmetric.

    product(a, b) computes a b^T for a row block a of x and the rows b from it on (None: a plain
    GEMM in x's dtype, written straight into the result where PyTorch allows it; the precision
    module passes its reduced-precision GEMM). Inside a torch.func transform the blocks' in-place
    writes are not available, so the full product is mirrored instead (same values, full cost)."""
    n = x.shape[0]
    blocks = default_blocks(n, x.device, reduced_precision(x, product)) if blocks is None else blocks
    bounds = block_bounds(n, blocks)
    if len(bounds) <= 2 or torch._C._are_functorch_transforms_active():
        return mirror_upper((product or _product)(x, x))
    # out= straight into a view of the result saves a copy of each block, in eager mode only
    # (torch.compile refuses a non-contiguous out=; it copies the block into place instead).
    direct = product is None and not torch.compiler.is_compiling()
    gram: torch.Tensor | None = None
    for start, end in zip(bounds[:-1], bounds[1:]):
        if direct:
            gram = x.new_empty((n, n)) if gram is None else gram
            torch.mm(x[start:end], x[start:].mT, out=gram[start:end, start:])
            continue
        rows = (product or _product)(x[start:end], x[start:])
        gram = rows.new_empty((n, n)) if gram is None else gram  # the product's dtype
        gram[start:end, start:].copy_(rows)
    assert gram is not None  # (at least two blocks)
    return mirror_upper(gram)


__all__ = [
    "GRAM_BLOCKS",
    "REDUCED_PRECISION_GRAM_BLOCKS",
    "GramBlocks",
    "block_bounds",
    "default_blocks",
    "mirror_upper",
    "reduced_precision",
    "symmetric_gram",
    "symmetric_sum",
]
