"""One experiment of the demo and the study: pretrain a backbone + projector with one objective on
uint8 images (Lightning), then evaluate the frozen backbone (linear probe and weighted kNN).
The command lines (sfrik-demo, sfrik-study) only choose what to run."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

ChannelStats = tuple[Sequence[float], Sequence[float]]


@dataclass(frozen=True)
class TrainConfig:
    """What every method shares in a comparison."""

    arch: str = "resnet10"
    width: int = 16
    epochs: int = 3
    batch_size: int = 256
    proj_dim: int = 1024  # projector hidden width and output width q, unless proj_hidden_dim is set
    proj_hidden_dim: int = 0  # 0: proj_dim
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5


@dataclass
class Pretrained:
    backbone: nn.Module
    projector: nn.Module
    source: str  # where the objective's implementation comes from
    sec_per_step: float
    peak_mem_mb: float
    minutes: float
    extra: dict[str, object] = field(default_factory=dict)


def subset(n: int, size: int, seed: int) -> torch.Tensor:
    """A fixed random subset of range(n) (all of it for size 0 or size >= n)."""
    if size == 0 or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's start-up chatter (the accelerator summary, an advertising tip) off; its
    progress bars and warnings about the run itself stay."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")  # Lightning vs torch
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def seeded_networks(cfg: TrainConfig, channels: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """Every random stream (torch, numpy, Python) seeded with `seed`, then the networks: one seed
    gives every method, and the random encoder, the same initial backbone."""
    import lightning as L

    with quiet_lightning():
        L.seed_everything(seed)  # its "Seed set to" line is muted by quiet_lightning
    return build_networks(cfg, channels)


def build_networks(cfg: TrainConfig, channels: int) -> tuple[nn.Module, nn.Module]:
    """Backbone (in its memory format: engine.model) and projector from the current torch random state."""
    from sfrik_plugin.projector import build_projector

    from .model import build_backbone

    backbone = build_backbone(cfg.arch, cfg.width, channels)
    projector = build_projector(backbone.features_dim, cfg.proj_hidden_dim or cfg.proj_dim, cfg.proj_dim)
    return backbone, projector


def pretrain(
    method: str,
    images: torch.Tensor,
    channel_stats: ChannelStats,
    cfg: TrainConfig,
    *,
    seed: int,
    hyper_parameters: Mapping[str, object] | None = None,
    library: str | None = None,
    accelerator: str = "cpu",
    devices="1",
    precision: str = "32-true",
    progress_bar: bool = True,
    callbacks: Sequence[Any] = (),
) -> Pretrained:
    """Pretrains one method on uint8 images (n, c, h, w). The seed sets the initial networks, the
    augmentation stream and the data order (one seed gives every method the same initial
    backbone). callbacks: more Lightning callbacks for the fit (a learning curve: engine.curve)."""
    import lightning as L

    from sfrik_plugin.utils.interrupt import fit_to_end

    from .augment import BatchAugment
    from .objectives import build_objective
    from .pretrain import SelfSupervised, StepCost

    if len(images) < cfg.batch_size:
        raise ValueError(f"batch size {cfg.batch_size} is larger than the {len(images)} pretraining images")
    source, objective = build_objective(method, library, **(hyper_parameters or {}))
    backbone, projector = seeded_networks(cfg, images.shape[1], seed)
    mean, std = channel_stats
    module = SelfSupervised(
        backbone,
        projector,
        objective,
        BatchAugment(images.shape[-1], mean, std),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    cost = StepCost()
    start = time.perf_counter()
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=accelerator,
            devices=devices,
            precision=cast(Any, precision),  # any str: Lightning checks it against its precision Literals
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
            callbacks=[cost, *callbacks],
            log_every_n_steps=10,
        )
        fit_to_end(trainer, module, loader, what=f"pretraining {method}")
    return Pretrained(
        backbone,
        projector,
        source,
        round(cost.seconds_per_step, 4),
        round(cost.peak_bytes / 2**20, 1),
        (time.perf_counter() - start) / 60,
    )


def evaluate(
    backbone: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    eval_images: torch.Tensor,
    eval_labels: torch.Tensor,
    channel_stats: ChannelStats,
    *,
    device,
    knn_k: int = 20,
) -> dict[str, float]:
    """Linear-probe and weighted-kNN top-1 (percent) of the frozen backbone: trained on the
    training images, scored on the evaluation images."""
    from .evaluate import extract_features, knn_top1, linear_probe_top1

    mean, std = channel_stats
    train_x = extract_features(backbone, train_images, mean, std, device=device)
    eval_x = extract_features(backbone, eval_images, mean, std, device=device)
    return {
        "linear_top1": round(linear_probe_top1(train_x, train_labels, eval_x, eval_labels), 2),
        "knn_top1": round(knn_top1(train_x, train_labels, eval_x, eval_labels, k=knn_k), 2),
    }
