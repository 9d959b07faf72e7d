"""Self-supervised pretraining of a backbone + projector with one objective, as a LightningModule,
and a callback that measures the seconds per training step and the peak memory of one step."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import lightning as L
import torch
from torch import nn

from sfrik_experiments.utils.memory import profiled_cpu_peak_bytes

if TYPE_CHECKING:
    from torch.profiler import profile


class SelfSupervised(L.LightningModule):
    """Two augmented views of each image through backbone and projector, one loss on the two
    projections. AdamW with a linear warm-up and a cosine decay per step (the same for every method)."""

    def __init__(
        self,
        backbone: nn.Module,
        projector: nn.Module,
        objective: Callable,
        augment: nn.Module,
        *,
        lr: float,
        weight_decay: float,
        warmup_epochs: float,
    ):
        super().__init__()
        self.backbone, self.projector, self.augment = backbone, projector, augment
        self.objective = objective
        self.lr, self.weight_decay, self.warmup_epochs = lr, weight_decay, warmup_epochs

    def training_step(self, batch, batch_idx):
        images = batch[0]
        z1, z2 = (self.projector(self.backbone(self.augment(images))) for _ in range(2))
        loss = self.objective(z1, z2)
        if not torch.isfinite(loss):
            # Never train on NaN silently: stop and say where.
            raise FloatingPointError(f"the loss is {loss.item()} at step {self.global_step} (batch {batch_idx})")
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)
        max_epochs = cast(int, self.trainer.max_epochs)  # set by the engine's Trainer (engine/experiment.py)
        warmup = min(total - 1, round(self.warmup_epochs * total / max(1, max_epochs)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null: the CPU memory profiler's C++ layers print start/stop
    lines, a failed GPU probe ("gpuGetDeviceCount failed") and allocator notes there, which say
    nothing about the run."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class StepCost(L.Callback):
    """Median wall time of a training step (forward, backward, optimiser; the first `skip` steps
    and the measured step excluded) and the peak extra memory of step number `measure_at`: exact
    allocator events on CPU (the torch profiler), torch.cuda.max_memory_allocated on a GPU."""

    def __init__(self, skip: int = 2, measure_at: int = 1):
        self.skip, self.measure_at = skip, measure_at
        self.times: list[float] = []
        self.peak_bytes = math.nan
        self._start = 0.0
        self._profiler: profile | None = None
        self._silence: contextlib.ExitStack = contextlib.ExitStack()
        self._baseline = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        step = trainer.global_step
        if step == self.measure_at:
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
                self._baseline = torch.cuda.memory_allocated(module.device)
                torch.cuda.reset_peak_memory_stats(module.device)
            else:
                from torch.profiler import ProfilerActivity, profile

                self._silence.enter_context(stderr_silenced())
                self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                self._profiler.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        elapsed = time.perf_counter() - self._start
        step = trainer.global_step - 1  # global_step counts optimiser steps already taken
        if step == self.measure_at:
            if module.device.type == "cuda":
                self.peak_bytes = torch.cuda.max_memory_allocated(module.device) - self._baseline
            else:
                profiler = cast("profile", self._profiler)  # entered in on_train_batch_start at this step
                profiler.__exit__(None, None, None)
                self.peak_bytes = profiled_cpu_peak_bytes(profiler)
                self._profiler = None
                self._silence.close()
        elif step >= self.skip:
            self.times.append(elapsed)

    def _stop_profiling(self) -> None:
        """Stops a profiler still running (a step that failed or was interrupted between the batch's
        start and end hooks: one left running crashes the interpreter at exit) and brings stderr back."""
        profiler, self._profiler = self._profiler, None
        try:
            if profiler is not None:
                profiler.__exit__(None, None, None)
        finally:
            self._silence.close()  # never leave stderr silenced for the traceback

    def on_exception(self, trainer, module, exception):
        self._stop_profiling()

    def teardown(self, trainer, module, stage):
        self._stop_profiling()

    @property
    def seconds_per_step(self) -> float:
        return statistics.median(self.times) if self.times else math.nan
