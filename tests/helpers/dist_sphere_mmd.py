"""Worker of tests/hosts/test_sphere_mmd_distributed.py (a module of its own so that the spawned
processes import only torch and sfrik_plugin). Each rank holds its half of every view of a fixed
batch, projected by a shared layer, and calls SphereMMD(gather_distributed=True) the way
LeJEPA._compute_loss calls SIGReg (all views' rows in one (V * n, K) batch); the value must be the
MMD of the whole batch on every rank, as SlicedEppsPulley's all-reduced statistic is, and the
gradients averaged over ranks (DDP) those of one process on the whole batch."""

from __future__ import annotations

import datetime

import torch
import torch.distributed as dist

from sfrik_experiments.utils.processes import exit_without_teardown, free_port  # noqa: F401  (free_port: the test's)
from sfrik_plugin import SphereMMD

VIEWS, BATCH, IN_FEATURES, K = 4, 8, 5, 6


def _projected(layer: torch.nn.Linear, rows: slice) -> torch.Tensor:
    inputs = torch.randn(VIEWS, BATCH, IN_FEATURES, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return layer(inputs[:, rows])  # (views, rows, K)


def _value_and_grad(layer: torch.nn.Linear, rows: slice, **options) -> tuple[torch.Tensor, torch.Tensor]:
    layer.zero_grad()
    projected = _projected(layer, rows)
    value = SphereMMD(**options)(projected.reshape(-1, K))
    value.backward()
    return value.detach(), layer.weight.grad.detach().clone()


def _check_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")


def worker(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)  # two processes on a shared 2-core machine
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    try:
        torch.manual_seed(0)  # the same layer on every rank
        layer = torch.nn.Linear(IN_FEATURES, K, dtype=torch.float64)
        expected, expected_grad = _value_and_grad(layer, slice(None))
        local = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
        for shard_mmd in (True, False):
            value, grad = _value_and_grad(layer, local, gather_distributed=True, shard_mmd=shard_mmd)
            _check_close(value, expected, f"value, rank {rank}, shard_mmd={shard_mmd}")
            dist.all_reduce(grad)
            _check_close(grad / world_size, expected_grad, f"mean gradient, shard_mmd={shard_mmd}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_without_teardown()
