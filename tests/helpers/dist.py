"""Worker of the two-process gloo test of test_losses.py. A module of its own so that the
spawned processes import only torch and sfrik_plugin (not pytest, scipy or the test module).

Each rank holds its half of a fixed global batch and a copy of a small shared linear layer, computes
a loss over the global batch (the regulariser sharded or all-gathered, dense or tiled),
backpropagates, then averages the layer's gradients over the ranks with
all_reduce (as DDP does). The result must equal one process computing the same loss on the whole
global batch: same loss (the invariance term averaged over ranks), same gradients.
"""

from __future__ import annotations

import datetime

import torch
import torch.distributed as dist

from sfrik_experiments.utils.processes import exit_without_teardown, free_port  # noqa: F401  (free_port: the test's)
from sfrik_plugin.distributed import gather_rows
from sfrik_plugin.losses import AUHLoss, SFRIKLoss
from sfrik_plugin.regulariser import mmd_uniform

GLOBAL_BATCH, IN_FEATURES, OUT_FEATURES = 8, 6, 16


def make_problem(num_views: int):
    """The fixed global batch (num_views x (GLOBAL_BATCH, IN_FEATURES)) and the shared layer, in float64."""
    gen = torch.Generator().manual_seed(1234)
    inputs = [torch.randn(GLOBAL_BATCH, IN_FEATURES, generator=gen, dtype=torch.float64) for _ in range(num_views)]
    layer = torch.nn.Linear(IN_FEATURES, OUT_FEATURES, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64))
    return inputs, layer


# The regulariser's ways across processes: sharded (each rank its rows against the gathered batch)
# with one dense block or in tiles of 3 rows, and the all-gather with autograd (shard_mmd=False).
VARIANTS = {
    "sharded dense": dict(shard_mmd=True, mmd_impl="dense"),
    "sharded tiled": dict(shard_mmd=True, mmd_impl="tiled", mmd_tile_size=3),
    "gathered dense": dict(shard_mmd=False, mmd_impl="dense"),
    "gathered tiled": dict(shard_mmd=False, mmd_impl="tiled", mmd_tile_size=3),
}

# name -> (number of views, loss terms of the projected views, variants); invariance is the local-batch term.
CASES = {
    "sfrik": (
        2,
        lambda zs, gather, **kw: SFRIKLoss(kernel_weights=(1.0, 40.0, 40.0), gather_distributed=gather, **kw).terms(
            zs[0], zs[1]
        ),
        VARIANTS,
    ),
    "auh": (2, lambda zs, gather, **kw: AUHLoss(gather_distributed=gather).terms(zs[0], zs[1]), {"gathered": {}}),
    "multicrop": (
        4,
        lambda zs, gather, **kw: SFRIKLoss(
            kernel_weights=(1.0, 5.0, 2.0, 1.0), gather_distributed=gather, **kw
        ).multicrop_terms(zs, 2, True),
        VARIANTS,
    ),
}


def _loss_and_grads(layer, inputs, case, gather, variant=None):
    layer.zero_grad()
    options = CASES[case][2][variant] if variant else {}
    terms = CASES[case][1]([layer(x) for x in inputs], gather, **options)
    terms.loss.backward()
    return terms, [p.grad.detach().clone() for p in layer.parameters()]


def _mean_over_ranks(x: torch.Tensor, world_size: int) -> torch.Tensor:
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size


def _check_close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")


def check_case(rank: int, world_size: int, case: str, variant: str) -> None:
    inputs, layer = make_problem(CASES[case][0])
    local = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)

    expected, expected_grads = _loss_and_grads(layer, inputs, case, gather=False)
    terms, grads = _loss_and_grads(layer, [x[local] for x in inputs], case, gather=True, variant=variant)
    case = f"{case} ({variant})"

    # The regulariser is global: identical on every rank and equal to the single-process one.
    _check_close(terms.regulariser.detach(), expected.regulariser.detach(), f"{case} regulariser, rank {rank}")
    # The invariance is local: its mean over ranks is the global one (equal local batch sizes).
    _check_close(_mean_over_ranks(terms.loss, world_size), expected.loss.detach(), f"{case} loss")
    for name, grad, expected_grad in zip(("weight", "bias"), grads, expected_grads):
        _check_close(_mean_over_ranks(grad, world_size), expected_grad, f"{case} grad of {name}")


def check_mmd_uniform(rank: int, world_size: int) -> None:
    (x,), layer = make_problem(1)
    local = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
    expected = mmd_uniform(layer(x), (1.0, 2.0))
    expected.backward()
    expected_grad = layer.weight.grad.clone()
    for name, variant in VARIANTS.items():
        options = {("impl" if k == "mmd_impl" else k): v for k, v in variant.items()}
        layer.zero_grad()
        loss = mmd_uniform(layer(x[local]), (1.0, 2.0), gather_distributed=True, **options)
        loss.backward()
        _check_close(loss.detach(), expected.detach(), f"mmd_uniform ({name}), rank {rank}")
        _check_close(_mean_over_ranks(layer.weight.grad, world_size), expected_grad, f"mmd_uniform ({name}) grad")
        # The sharded path's gradient per rank is the all-gather path's (W x dR/dz_r), not only its mean.
        if name == "sharded dense":
            sharded_grad = layer.weight.grad.clone()
        if name == "gathered dense":
            _check_close(layer.weight.grad, sharded_grad, f"mmd_uniform per-rank grad, rank {rank}")
    # The sharded path without the compiled operator (the pure-PyTorch fallback over the same tiles).
    import sfrik_plugin.tiled as tiled

    compiled, tiled._use_extension = tiled._use_extension, lambda t: False
    try:
        layer.zero_grad()
        loss = mmd_uniform(layer(x[local]), (1.0, 2.0), gather_distributed=True, mmd_impl="tiled", mmd_tile_size=3)
        loss.backward()
    finally:
        tiled._use_extension = compiled
    _check_close(loss.detach(), expected.detach(), f"mmd_uniform (sharded, fallback), rank {rank}")
    _check_close(layer.weight.grad, sharded_grad, f"mmd_uniform (sharded, fallback) per-rank grad, rank {rank}")
    # gather_rows concatenates in rank order.
    rows = gather_rows(torch.full((2, 3), float(rank)))
    assert rows[:, 0].tolist() == [float(r) for r in range(world_size) for _ in range(2)], rows


def worker(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        for case, (_, _, variants) in CASES.items():
            for variant in variants:
                check_case(rank, world_size, case, variant)
        check_mmd_uniform(rank, world_size)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_without_teardown()  # all checks passed
