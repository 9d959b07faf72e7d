"""The stop on a non-finite loss without a host read every step.

Reading a loss value on the host (bool(torch.isfinite(loss))) makes the host wait for the device at
every step: the pipeline drains and the step cannot be captured in a CUDA graph. Instead:
- each step records on the device whether a term is NaN or Inf, the terms' values at the first such
  step and its position in a window of steps whose (global step, epoch, batch) the host keeps;
- before each optimiser step, gradients are zeroed on the device when that step's loss, or any step
  of the window, was non-finite, or when a gradient is non-finite (one fused check, the same on
  every process after the all-reduce): no update ever comes from a non-finite loss;
- the host reads the flag once per `interval` steps and at the last batch of an epoch, and raises
  NonFiniteLossError naming the first bad step and the terms (or warns once, opted out).
With stop=False nothing is masked: the user asked to go on with whatever the loss gives.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch


class NonFiniteLossError(FloatingPointError):
    """A loss term went NaN or Inf in a training step (method_kwargs.stop_on_non_finite=true)."""


class NonFiniteMonitor:
    """Device-side record of non-finite loss terms, read by the host every `interval` steps."""

    def __init__(self, method: str, stop: bool, interval: int) -> None:
        self.method = method
        self.stop = stop
        self.interval = interval
        self.warned = False
        self._reset()

    def _reset(self) -> None:
        self.window: list[tuple[int, int, int]] = []  # (global step, epoch, batch) of the recorded steps
        self.names: list[str] = []
        self.seen: torch.Tensor | None = None  # 0-dim bool: a recorded step was non-finite
        self.first: torch.Tensor | None = None  # 0-dim int64: its index in the window
        self.values: torch.Tensor | None = None  # its terms' values

    def record(self, where: tuple[int, int, int], terms: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Records one step's terms ((name, 0-dim tensor) pairs) on their device; reads the flag on
        the host when the window is full."""
        values = torch.stack([value.detach().float() for _, value in terms])
        bad = ~torch.isfinite(values).all()
        if self.seen is None:
            self.seen = torch.zeros((), dtype=torch.bool, device=values.device)
            self.first = torch.zeros((), dtype=torch.int64, device=values.device)
            self.values = torch.zeros_like(values)
        assert self.first is not None and self.values is not None
        new = bad & ~self.seen
        self.first = torch.where(new, len(self.window), self.first)
        self.values = torch.where(new, values, self.values)
        self.seen = self.seen | bad
        self.window.append(where)
        self.names = [name for name, _ in terms]
        if len(self.window) >= self.interval:
            self.check()

    def mask_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Zeroes every gradient, on the device, when a recorded step or a gradient is non-finite
        (stop=True only)."""
        if not self.stop:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        skips = []
        for device_grads in _by_device(grads):
            found = torch.zeros(1, device=device_grads[0].device)
            # One fused pass that sets found where a gradient is NaN or Inf (GradScaler's check, scale 1).
            torch._amp_foreach_non_finite_check_and_unscale_(device_grads, found, torch.ones_like(found))
            skip = found[0] > 0
            if self.seen is not None:
                skip = skip | self.seen.to(skip.device, non_blocking=True)
            skips.append((device_grads, skip))
        for device_grads, skip in skips:
            for g in device_grads:
                g.masked_fill_(skip, 0.0)

    def check(self) -> None:
        """Reads the record on the host (one synchronisation); raises or warns for a non-finite step."""
        seen, first, values, window, names = self.seen, self.first, self.values, self.window, self.names
        self._reset()
        if seen is None or not bool(seen):
            return
        assert first is not None and values is not None
        step, epoch, batch = window[int(first)]
        found = [(name, float(v)) for name, v in zip(names, values.cpu())]
        report = ", ".join(f"{name} = {v}" for name, v in found)
        bad = " and ".join(name for name, v in found if not math.isfinite(v))
        where = f"global step {step} (epoch {epoch}, batch {batch})"
        if self.stop:
            raise NonFiniteLossError(
                f"{self.method}: non-finite loss at {where}: {bad} went non-finite ({report}). "
                "Training stops here rather than go on with NaN parameters (no update was made from that step "
                "on): lower the learning rate, check the inputs or the precision, or set "
                "method_kwargs.stop_on_non_finite=false to go on anyway."
            )
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"{self.method}: non-finite loss at {where}: {bad} ({report}); training goes "
                "on (method_kwargs.stop_on_non_finite=false). Warned once.",
                RuntimeWarning,
                stacklevel=3,
            )


def _by_device(grads: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The gradients grouped by device and dtype (what the fused check takes), in order."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.device, g.dtype), []).append(g)
    return list(groups.values())
