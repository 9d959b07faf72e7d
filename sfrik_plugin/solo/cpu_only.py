"""Runs a solo-learn evaluation script on the CPU: main_knn.py and main_umap.py call `.cuda()`
and `.to("cuda")` on their batches and models unconditionally; inside `cpu_only()` those calls
keep tensors and modules on the CPU. Nothing else changes (the script's own code and numerics)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _cpu(device):
    return "cpu" if isinstance(device, (str, torch.device)) and str(device).startswith("cuda") else device


@contextlib.contextmanager
def cpu_only() -> Iterator[None]:
    """CUDA moves of tensors and modules become CPU moves (restored on exit)."""
    saved = [(cls, name, getattr(cls, name)) for cls in (torch.Tensor, torch.nn.Module) for name in ("to", "cuda")]

    def patched_to(original):
        def to(self, *args, **kwargs):
            args = tuple(_cpu(a) for a in args)
            if "device" in kwargs:
                kwargs["device"] = _cpu(kwargs["device"])
            return original(self, *args, **kwargs)

        return to

    try:
        for cls, name, original in saved:
            setattr(cls, name, patched_to(original) if name == "to" else (lambda self, *a, **k: self))
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)
