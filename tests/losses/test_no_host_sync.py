"""The SFRIK loss never waits for the device: no value is read back to the host (so the host runs
ahead, the step compiles as one graph and captures in a CUDA graph), and the number of ops it runs
does not grow with the embedding width q.

CPU: torch.compile(fullgraph=True) traces forward and backward (AOTAutograd, which fails on any
data-dependent branch or .item()), and the profiler counts the ops at q = 1024 and q = 32768.
CUDA: a forward and backward under torch.cuda.set_sync_debug_mode("error"), and a whole training
step (projector, loss, optimiser) captured in a CUDA graph and replayed on new data."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers.cuda import requires_cuda

from sfrik_plugin import SFRIKLoss

# The paths a training run takes: the fused dense default, a reduced-precision Gram (non-fused dense),
# and the tiled MMD.
OPTIONS = {
    "default": {},
    "bf16": {"gram_precision": "bf16"},
    "tiled": {"mmd_impl": "tiled", "mmd_tile_size": 16},
}


def views(n: int, q: int, device: str = "cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, q, generator=generator)
    z2 = z1 + 0.3 * torch.randn(n, q, generator=generator)
    return z1.to(device).requires_grad_(), z2.to(device).requires_grad_()


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.fresh_interpreter
def test_the_loss_compiles_as_one_graph_forward_and_backward(name):
    loss_fn = SFRIKLoss(gather_distributed=False, **OPTIONS[name])
    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    z1, z2 = views(48, 40)
    loss = compiled(z1, z2)
    grads = torch.autograd.grad(loss, (z1, z2))
    eager = loss_fn(z1, z2)
    expected = torch.autograd.grad(eager, (z1, z2))
    torch.testing.assert_close(loss, eager, rtol=1e-6, atol=0)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def op_counts(loss_fn: SFRIKLoss, n: int, q: int) -> Counter:
    z1, z2 = views(n, q)
    loss_fn(z1, z2).backward()  # warm-up (first-call setup is not the steady state)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loss = loss_fn(z1, z2)
        loss.backward()
    return Counter(event.name for event in prof.events() if event.name.startswith(("aten::", "sfrik::")))


@pytest.mark.parametrize("name", OPTIONS)
def test_the_loss_runs_the_same_ops_at_every_width(name):
    loss_fn = SFRIKLoss(gather_distributed=False, **OPTIONS[name])
    narrow, wide = op_counts(loss_fn, 32, 1024), op_counts(loss_fn, 32, 32768)
    assert narrow == wide, f"ops that differ: {(narrow - wide) + (wide - narrow)}"


@requires_cuda
@pytest.mark.parametrize("name", OPTIONS)
def test_a_cuda_step_never_synchronises_with_the_host(name):
    loss_fn = SFRIKLoss(gather_distributed=False, **OPTIONS[name])
    z1, z2 = views(256, 512, "cuda")
    loss_fn(z1, z2).backward()  # warm-up: one-time setup (cuBLAS handles, workspaces) may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = loss_fn(z1, z2)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss.detach()).all()


@requires_cuda
def test_a_training_step_captures_in_a_cuda_graph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 256)).cuda()
    loss_fn = SFRIKLoss(gather_distributed=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    generator = torch.Generator().manual_seed(1)
    static_x = torch.randn(128, 64, generator=generator).cuda()

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=False)
        z1, z2 = model(static_x), model(static_x.flip(1))
        loss = loss_fn(z1, z2)
        loss.backward()
        optimizer.step()
        return loss.detach()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as CUDA graph capture requires
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
    # Replays on new data compute what the eager step computes from the same parameters.
    eager_model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 256)).cuda()
    for _ in range(2):
        static_x.copy_(torch.randn(128, 64, generator=generator).cuda())
        eager_model.load_state_dict(model.state_dict())
        with torch.no_grad():
            expected = loss_fn(eager_model(static_x), eager_model(static_x.flip(1)))
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(static_loss, expected, rtol=1e-4, atol=1e-4 * float(expected.abs()))
