"""The engine's backbone trains on right gradients at every width: oneDNN's channels-last weight
gradient of a 1x1, stride-2 convolution with 2-7 input channels was wrong by up to 1e3, changed from
run to run with 2 threads and corrupted the heap with one (torch 2.14.1, an AVX2 AMD EPYC), so the
study's toy networks (width 2 and 4) trained differently on every run there. engine.model keeps
narrow networks in the contiguous format; these tests fail on the code before that (on such a
processor; where oneDNN's kernel is right, as on the AVX-512 Xeon of the records, they pass either way)."""

from __future__ import annotations

import pytest
import torch
from helpers.processes import failure, run_code

from sfrik_experiments.engine.model import build_backbone

# In a fresh process per thread count: the faulty kernel can corrupt the heap, which must fail this
# test, not abort pytest. Each width: the backbone's weight gradients from three networks built as
# the engine builds them, on one batch, the same bits, and close to the float64 gradient of a
# contiguous copy with oneDNN off.
CHECK = """
import sys, torch
from sfrik_experiments.engine.experiment import TrainConfig, seeded_networks
from sfrik_experiments.engine.model import build_backbone
torch.set_num_threads({threads})
bad = []
for width in {widths}:
    x = torch.randn(32, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=torch.channels_last)  # any input format: the backbone converts it
    grads = []
    for _ in range(3):  # a new network each time, as each run builds one (the engine's way)
        net, projector = seeded_networks(TrainConfig(width=width, proj_dim=64), 1, seed=0)
        projector(net(x)).square().sum().backward()
        grads.append([p.grad for p in net.parameters()])
    same = all(all(torch.equal(a, b) for a, b in zip(grads[0], g)) for g in grads[1:])
    ref = build_backbone("resnet10", width, 1).double().to(memory_format=torch.contiguous_format)
    ref.memory_format = torch.contiguous_format
    ref.load_state_dict(net.state_dict())
    projector.double().zero_grad()
    torch.backends.mkldnn.enabled = False
    projector(ref(x.double().contiguous())).square().sum().backward()
    torch.backends.mkldnn.enabled = True
    scale = max(p.grad.abs().max() for p in ref.parameters())  # one scale: a BN weight's sum may cancel
    error = max(((a.double() - p.grad).abs().max() / scale).item() for a, p in zip(grads[0], ref.parameters()))
    if not same or error > 1e-4:
        bad.append(f"width {{width}}: repeatable {{same}}, largest error {{error:.1e}} of the largest gradient")
print("\\n".join(bad) or "ok")
sys.exit(1 if bad else 0)
"""


@pytest.mark.fresh_interpreter  # one process per thread count (a heap corruption must not abort pytest)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_backbones_weight_gradients_are_right_and_repeatable_at_every_width(threads):
    widths = [1, 2, 3, 4, 5, 6, 7, 8, 16]
    proc = run_code(CHECK.format(threads=threads, widths=widths), check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", failure(proc)


def test_the_backbone_is_channels_last_from_the_minimum_width_on():
    # the fast format stays where it is right: every recorded run used width 16
    for width, expected in [(1, torch.contiguous_format), (7, torch.contiguous_format), (8, torch.channels_last)]:
        net = build_backbone("resnet18", width, 3)
        assert net.memory_format == expected
        conv_weights = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.is_contiguous(memory_format=expected) for w in conv_weights)
    out = build_backbone("resnet10", 16, 1)(torch.randn(2, 1, 28, 28))  # any input format is taken
    assert out.shape == (2, 128)
