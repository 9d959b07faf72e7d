"""Worker of the two-process gloo test of tests/test_losses.py. A module of its own so that the
spawned processes import only torch and sfrik_plugin (not pytest, scipy or the test module).

Each rank holds its half of a fixed global batch and a copy of a small shared linear layer, computes
a loss with the all-gather, backpropagates, then averages the layer's gradients over the ranks with
all_reduce (as DDP does). The result must equal one process computing the same loss on the whole
global batch: same loss (the invariance term averaged over ranks), same gradients.
"""
from __future__ import annotations

import datetime
import os
import socket
import sys

import torch
import torch.distributed as dist

from sfrik_plugin.losses import (auh_loss_terms, gather_rows, mmd_uniform, sfrik_loss_terms,
                                 sfrik_multicrop_loss_terms)

GLOBAL_BATCH, IN_FEATURES, OUT_FEATURES = 8, 6, 16


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_problem(num_views: int):
    """The fixed global batch (num_views x (GLOBAL_BATCH, IN_FEATURES)) and the shared layer, in float64."""
    gen = torch.Generator().manual_seed(1234)
    inputs = [torch.randn(GLOBAL_BATCH, IN_FEATURES, generator=gen, dtype=torch.float64) for _ in range(num_views)]
    layer = torch.nn.Linear(IN_FEATURES, OUT_FEATURES, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=torch.float64))
    return inputs, layer


# name -> (number of views, loss terms of the projected views); invariance is the local-batch term.
CASES = {
    "sfrik": (2, lambda zs, gather: sfrik_loss_terms(zs[0], zs[1], kernel_weights=(1.0, 40.0, 40.0),
                                                     gather_distributed=gather)),
    "auh": (2, lambda zs, gather: auh_loss_terms(zs[0], zs[1], gather_distributed=gather)),
    "multicrop": (4, lambda zs, gather: sfrik_multicrop_loss_terms(zs, 2, reg_small=True,
                                                                   kernel_weights=(1.0, 5.0, 2.0, 1.0),
                                                                   gather_distributed=gather)),
}


def _loss_and_grads(layer, inputs, case, gather):
    layer.zero_grad()
    terms = CASES[case][1]([layer(x) for x in inputs], gather)
    terms.loss.backward()
    return terms, [p.grad.detach().clone() for p in layer.parameters()]


def _mean_over_ranks(x: torch.Tensor, world_size: int) -> torch.Tensor:
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size


def _check_close(actual, expected, what):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")


def check_case(rank: int, world_size: int, case: str) -> None:
    inputs, layer = make_problem(CASES[case][0])
    local = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)

    expected, expected_grads = _loss_and_grads(layer, inputs, case, gather=False)
    terms, grads = _loss_and_grads(layer, [x[local] for x in inputs], case, gather=True)

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
    layer.zero_grad()
    loss = mmd_uniform(layer(x[local]), (1.0, 2.0), gather_distributed=True)
    loss.backward()
    _check_close(loss.detach(), expected.detach(), f"mmd_uniform, rank {rank}")
    _check_close(_mean_over_ranks(layer.weight.grad, world_size), expected_grad, "mmd_uniform grad")
    # gather_rows concatenates in rank order.
    rows = gather_rows(torch.full((2, 3), float(rank)))
    assert rows[:, 0].tolist() == [float(r) for r in range(world_size) for _ in range(2)], rows


def worker(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        for case in CASES:
            check_case(rank, world_size, case)
        check_mmd_uniform(rank, world_size)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # All checks passed. Leave without the interpreter's teardown: on this torch, about one run in
    # ten aborted there ("terminate called without an active exception", no Python frame left)
    # after a clean destroy_process_group, a gloo/c10d shutdown race unrelated to the losses.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
