"""Runs one study run: pretraining (or none, for the random encoder), the linear probe and kNN on
the run's split, and the label-free measures; returns its results row."""

from __future__ import annotations

import datetime
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import cast

import torch

from . import data as datasets
from .augment import BatchAugment
from .curve import LearningCurve
from .experiment import evaluate, pretrain, seeded_networks, subset
from .quality import encoder_quality
from .results import MEASURES
from .runs import CURVE_MEASURES, Protocol, RunSpec, check_curve_epochs


def library_versions(library: str | None) -> str:
    names = ["torch", "lightning", "sfrik-plugin"] + (
        [{"solo-learn": "solo-learn"}.get(library, library)] if library else []
    )
    parts = []
    for name in names:
        try:
            parts.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name}=?")
    return " ".join(parts)


def source_commit() -> str:
    """The git commit of the package's checkout ('' outside one); '+' marks uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+" if head and dirty else "")


class Runner:
    """Holds the data of both splits and runs specs of one protocol."""

    def __init__(
        self,
        protocol: Protocol,
        data: datasets.ImageData,
        *,
        library: str | None,
        accelerator: str = "cpu",
        devices: str = "1",
        precision: str = "32-true",
        progress_bar: bool = False,
    ):
        if str(devices).strip() != "1":
            # Lightning would start a process per device, each pretraining on its own batch with the
            # lr and the loss of one process: the engine trains in one process
            raise ValueError(f"devices must be 1 (the engine trains in one process on one device), got {devices!r}")
        self.protocol, self.library = protocol, library
        self.accelerator, self.progress_bar = accelerator, progress_bar
        self.devices, self.precision = devices, precision
        self.device = torch.device("cuda" if accelerator in ("gpu", "cuda") else "cpu")
        self.splits = {"test": data, "validation": data.validation_split(seed=protocol.data_seed)}
        self.versions, self.commit = library_versions(library), source_commit()

    def _views(self, split: str):
        """(pretraining images, probe images and labels, evaluation images and labels) of a split."""
        p, data = self.protocol, self.splits[split]
        n = len(data.train_images)
        train = data.train_images[subset(n, p.train_size, p.data_seed)]
        probe = subset(n, p.probe_size, p.data_seed + 1)
        held = subset(len(data.test_images), p.eval_size, p.data_seed + 2)
        return (
            train,
            data.train_images[probe],
            data.train_labels[probe],
            data.test_images[held],
            data.test_labels[held],
            data.channel_stats,
        )

    def run(self, spec: RunSpec, curve_epochs: Sequence[int] = (), on_point=None) -> dict[str, object]:
        """The results row of one run. curve_epochs: also measure the encoder at the end of these
        training epochs (the last one the training's last), in the row's curve columns
        (engine.runs.curve_fields); on_point(point) is called after each point."""
        p = self.protocol
        start = time.perf_counter()
        train_images, probe_x, probe_y, eval_x, eval_y, stats = self._views(spec.split)
        params = spec.params
        cfg = replace(
            p.train,
            lr=float(cast(float, params.get("lr", p.train.lr))),
            proj_dim=spec.q,
            proj_hidden_dim=p.proj_hidden_dim,
        )

        def measure(backbone, projector) -> dict[str, object]:
            return self._measure(backbone, projector, probe_x, probe_y, eval_x, eval_y, stats)

        curve = None
        if curve_epochs:
            curve = LearningCurve(check_curve_epochs(curve_epochs, cfg.epochs), measure, on_point)
        if spec.method == "random":
            backbone, projector = seeded_networks(cfg, train_images.shape[1], spec.seed)
            cost = {"sec_per_step": "", "peak_mem_mb": "", "train_minutes": 0.0}
        else:
            loss_params = {k: v for k, v in params.items() if k != "lr"}
            try:
                trained = pretrain(
                    spec.method,
                    train_images,
                    stats,
                    cfg,
                    seed=spec.seed,
                    hyper_parameters=loss_params,
                    library=self.library,
                    accelerator=self.accelerator,
                    devices=self.devices,
                    precision=self.precision,
                    progress_bar=self.progress_bar,
                    callbacks=[curve] if curve is not None else [],
                )
            except FloatingPointError as error:  # a setting that diverges is a result, not a crash
                # the curve's points before the divergence are kept
                return self._row(spec, start, {"status": f"diverged: {error}", **(curve.row() if curve else {})})
            backbone, projector = trained.backbone, trained.projector
            cost = {
                "sec_per_step": trained.sec_per_step,
                "peak_mem_mb": trained.peak_mem_mb,
                "train_minutes": round(trained.minutes, 3),
            }
        results = {"status": "ok", **measure(backbone, projector), **cost}
        if curve is not None:
            # the random encoder is not trained: its curve is the untrained encoder at every point
            results.update(curve.row() if spec.method != "random" else _flat_curve(curve.epochs, results))
        return self._row(spec, start, results)

    def _measure(self, backbone, projector, probe_x, probe_y, eval_x, eval_y, stats) -> dict[str, object]:
        """Linear probe and kNN top-1 of the frozen backbone, then the label-free measures."""
        p = self.protocol
        backbone.to(self.device)
        projector.to(self.device)
        scores = evaluate(backbone, probe_x, probe_y, eval_x, eval_y, stats, device=self.device, knn_k=p.knn_k)
        backbone.cpu()
        projector.cpu()
        mean, std = stats
        quality = encoder_quality(
            backbone, projector, BatchAugment(eval_x.shape[-1], mean, std), eval_x[: p.quality_size], mean, std
        )
        return {**scores, **quality}

    def _row(self, spec: RunSpec, start: float, results: dict[str, object]) -> dict[str, object]:
        empty = dict.fromkeys(MEASURES, "")
        p = self.protocol
        return {
            "phase": spec.phase,
            "method": spec.method,
            "q": spec.q,
            "seed": spec.seed,
            "setting": spec.setting_text,
            "split": spec.split,
            **empty,
            **results,
            "wall_s": round(time.perf_counter() - start, 1),
            "preset": p.name,
            "protocol": p.protocol(),
            "library": self.library or "",
            "versions": self.versions,
            "commit": self.commit,
            "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "run_id": spec.run_id,
        }


def _flat_curve(epochs: Sequence[int], results: dict[str, object]) -> dict[str, object]:
    """The curve columns of an encoder that is not trained: step 0 and its measures at every point."""
    fixed = {"step": 0, "train_s": 0.0}
    return {f"ep{e}_{name}": fixed.get(name, results.get(name, "")) for e in epochs for name in CURVE_MEASURES}
