"""Learning curves: the frozen encoder measured at the end of chosen training epochs, inside one
fit, without changing the training itself.

`LearningCurve` is a Lightning callback. At the end of each chosen epoch it measures copies of the
backbone and projector (evaluation mode, the training networks untouched) with the function the
caller gives, the same one that measures the encoder after training, so that the curve's last
point (at the last epoch) is that post-training measurement. The random states the training draws
from (torch's, on the CPU and the training GPU, numpy's and Python's) are saved before a
measurement and restored after it: the probe seeds torch, and the augmentations and any other
draw of the training would otherwise change. The data order has its own generator. The same seed
therefore gives the same trained weights with or without the callback (tests/study/test_long.py).
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import lightning as L
import torch
from torch import nn

from .runs import CURVE_MEASURES

Measure = Callable[[nn.Module, nn.Module], Mapping[str, object]]


@contextlib.contextmanager
def random_states_kept(device: torch.device | None = None) -> Iterator[None]:
    """torch's CPU generator (and `device`'s, for a CUDA device), numpy's and Python's random
    states as they were before the block, whatever the block draws or seeds."""
    import numpy as np

    devices = [device] if device is not None and device.type == "cuda" else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class LearningCurve(L.Callback):
    """Measures the encoder at the end of each epoch in `epochs` (1-based) with `measure(backbone,
    projector)`, which gets copies of the networks, so that neither their modes, devices and
    weights nor the training's random states change. `points` holds one dict per measured epoch:
    the epoch, CURVE_MEASURES' step and train_s, and what `measure` returned. `on_point(point)`,
    if given, is called after each (a progress line)."""

    def __init__(
        self,
        epochs: Sequence[int],
        measure: Measure,
        on_point: Callable[[dict[str, object]], None] | None = None,
    ):
        self.epochs = tuple(epochs)
        self.measure, self.on_point = measure, on_point
        self.points: list[dict[str, object]] = []
        self._start = 0.0
        self._measuring_s = 0.0

    def on_train_start(self, trainer, module):
        self.points, self._measuring_s = [], 0.0
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        epoch = trainer.current_epoch + 1
        if epoch not in self.epochs:
            return
        started = time.perf_counter()
        train_s = started - self._start - self._measuring_s
        with random_states_kept(module.device):
            backbone, projector = copy.deepcopy(module.backbone), copy.deepcopy(module.projector)
            measures = dict(self.measure(backbone, projector))
        point = {"epoch": epoch, "step": trainer.global_step, "train_s": round(train_s, 1), **measures}
        self.points.append(point)
        self._measuring_s += time.perf_counter() - started
        if self.on_point is not None:
            self.on_point(point)

    def row(self, epochs: Sequence[int] | None = None) -> dict[str, object]:
        """The curve as results columns (curve_fields); an epoch not measured (a run that diverged
        before it) has empty cells."""
        by_epoch = {p["epoch"]: p for p in self.points}
        out: dict[str, object] = {}
        for epoch in epochs or self.epochs:
            point = by_epoch.get(epoch, {})
            out.update({f"ep{epoch}_{name}": point.get(name, "") for name in CURVE_MEASURES})
        return out
