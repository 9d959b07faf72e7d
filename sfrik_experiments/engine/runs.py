"""What one run of the engine is: the protocol every run of a comparison shares (data subsets,
training configuration, evaluation sizes) and a run's specification (phase, method, q, seed, split
and setting). The demo, the budget sweep and the study all describe their runs with these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .experiment import TrainConfig


@dataclass(frozen=True)
class Protocol:
    name: str
    train: TrainConfig  # lr and proj_dim are set per run
    dataset: str = "fashion-mnist"
    train_size: int = 15000  # pretraining images (a fixed subset, the same for every run)
    probe_size: int = 10000  # linear probe / kNN bank images (a fixed subset)
    eval_size: int = 0  # evaluation images (0 = the whole validation or test split)
    quality_size: int = 2048  # evaluation images the label-free measures use
    knn_k: int = 20
    proj_hidden_dim: int = 1024  # projector hidden width, the same at every q
    data_seed: int = 0  # fixes the validation split and the subsets

    def protocol(self) -> str:
        """The fixed part of every run (a results file holds one protocol)."""
        t = self.train
        return (
            f"{self.dataset} {t.arch} w{t.width} {t.epochs} epochs batch {t.batch_size} wd {t.weight_decay} "
            f"warm-up {t.warmup_epochs} train {self.train_size} probe {self.probe_size} eval {self.eval_size} "
            f"hidden {self.proj_hidden_dim} k {self.knn_k}"
        )


@dataclass(frozen=True)
class RunSpec:
    phase: str  # tune, final, ablation
    method: str  # a method name, or "random" (the untrained encoder)
    q: int
    seed: int
    split: str  # validation or test
    setting: tuple[tuple[str, object], ...] = ()  # lr and the loss's hyper-parameters, in order

    @property
    def params(self) -> dict[str, object]:
        return dict(self.setting)

    @property
    def setting_text(self) -> str:
        return format_setting(self.params)

    @property
    def run_id(self) -> str:
        return f"{self.phase}|{self.method}|q={self.q}|seed={self.seed}|{self.split}|{self.setting_text}"


def format_setting(params: Mapping[str, object]) -> str:
    def value(v):
        if isinstance(v, (tuple, list)):
            return "(" + ",".join(value(x) for x in v) + ")"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={value(v)}" for k, v in params.items())


# What each point of a curve holds: the optimiser steps taken, the seconds of training so far
# (the measurements excluded), and the measures of the encoder (those of a results row).
CURVE_MEASURES = ("step", "train_s", "linear_top1", "knn_top1", "rankme", "alignment", "uniformity", "mmd_l3")


def curve_fields(epochs: Sequence[int]) -> tuple[str, ...]:
    """The results columns of a curve: ep<E>_<measure> for each epoch E, in order."""
    return tuple(f"ep{epoch}_{name}" for epoch in epochs for name in CURVE_MEASURES)


def check_curve_epochs(epochs: Sequence[int], max_epochs: int) -> tuple[int, ...]:
    """The epochs of a curve: increasing positive integers, the last one the training's last epoch
    (the curve then ends at the trained encoder)."""
    epochs = tuple(epochs)
    if not epochs or any(not isinstance(e, int) or e < 1 for e in epochs) or list(epochs) != sorted(set(epochs)):
        raise ValueError(f"curve epochs must be increasing positive integers, got {epochs}")
    if epochs[-1] != max_epochs:
        raise ValueError(f"curve epochs must end at the last training epoch ({max_epochs}), got {epochs}")
    return epochs
