"""The interleaved timing pass: every final method (at its chosen setting) takes training steps in
turn on the same batches, the order rotating every round, so that a change of load on a shared
machine falls on all methods alike instead of on whichever one ran first. Also times the network
alone (backbone + projector, a negligible loss) and each loss alone on fixed embeddings, which
gives the network's share of a step. The network and the loss are timed apart from the method's
step, so a share can exceed 100 % where the loss is a few percent of a step (noise of two medians,
as at toy sizes): the pass prints a flag there, and the summary (study.report) marks it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.engine.augment import BatchAugment
from sfrik_experiments.engine.experiment import build_networks, subset
from sfrik_experiments.engine.objectives import build_objective

from .plan import chosen_settings
from .presets import Preset

FIELDS = ("method", "q", "step_ms", "step_iqr_ms", "network_ms", "loss_ms", "network_share", "rounds", "machine")


def _network_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return (z1.square().mean() + z2.square().mean()) * 1e-3


def interleaved_step_times(
    objectives: Mapping[str, Callable], batches: Sequence[torch.Tensor], cfg, channels: int, augment, rounds: int
) -> dict[str, list[float]]:
    """name -> step times (ms): one AdamW step of backbone + projector per call, each name with
    its own networks from the same initial weights, names in a rotating order each round."""
    names = list(objectives)
    models = {}
    for name in names:
        torch.manual_seed(0)
        backbone, projector = build_networks(cfg, channels)
        params = list(backbone.parameters()) + list(projector.parameters())
        models[name] = (backbone.train(), projector.train(), torch.optim.AdamW(params, lr=cfg.lr))
    torch.manual_seed(0)
    views = [(augment(b), augment(b)) for b in batches]
    times: dict[str, list[float]] = {name: [] for name in names}

    def step(name, x1, x2):
        backbone, projector, optimizer = models[name]
        optimizer.zero_grad(set_to_none=True)
        loss = objectives[name](projector(backbone(x1)), projector(backbone(x2)))
        loss.backward()
        optimizer.step()

    for name in names:  # warm-up: first-call costs, allocator growth
        step(name, *views[0])
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        x1, x2 = views[r % len(views)]
        for name in order:
            start = time.perf_counter()
            step(name, x1, x2)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def loss_only_times(objectives: Mapping[str, Callable], n: int, q: int, rounds: int) -> dict[str, list[float]]:
    z = torch.randn(2, n, q, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for r in range(rounds + 1):
        for name, objective in objectives.items():
            z1, z2 = (v.clone().requires_grad_(True) for v in z)
            start = time.perf_counter()
            objective(z1, z2).backward()
            if r:  # round 0 is the warm-up
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def run_timing(
    preset: Preset, data: datasets.ImageData, rows, library: str, path: Path, *, rounds: int = 8, batches: int = 4
) -> list[dict[str, object]]:
    """Times every method with a chosen setting at each q of the table; writes path (CSV)."""
    from sfrik_experiments.utils.machine import cpu_model
    from sfrik_experiments.utils.output import write_csv

    if rounds < 1:
        raise SystemExit(f"--timing-rounds {rounds}: the timing pass needs at least 1 round (default 8)")

    chosen = chosen_settings(preset, rows)
    methods = [m for m in preset.methods if m in chosen]
    if not methods:
        raise SystemExit("the timing pass needs the tuning results (run the tune phase first)")
    images = data.train_images[subset(len(data.train_images), preset.train_size, preset.data_seed)]
    cfg = replace(preset.train, proj_hidden_dim=preset.proj_hidden_dim)
    n = cfg.batch_size
    if len(images) < n:
        raise SystemExit(f"the timing pass needs a batch of {n} images, the preset's subset has {len(images)}")
    chunks = [images[i * n : (i + 1) * n] for i in range(min(batches, len(images) // n))]
    mean, std = data.channel_stats
    augment = BatchAugment(images.shape[-1], mean, std)
    out: list[dict[str, object]] = []
    for q in preset.table_qs:
        qcfg = replace(cfg, proj_dim=q, lr=1e-3)
        objectives = {
            m: build_objective(m, library, **{k: v for k, v in chosen[m].items() if k != "lr"})[1] for m in methods
        }
        steps = interleaved_step_times(
            {**objectives, "network": _network_loss}, chunks, qcfg, images.shape[1], augment, rounds
        )
        losses = loss_only_times(objectives, n, q, rounds)
        network = statistics.median(steps["network"])
        for m in methods:
            step = statistics.median(steps[m])
            quartiles = statistics.quantiles(steps[m], n=4) if len(steps[m]) > 1 else [step, step, step]
            share = round(100 * network / step, 1) if step > 0 else None
            out.append(
                {
                    "method": m,
                    "q": q,
                    "step_ms": round(step, 1),
                    "step_iqr_ms": round(quartiles[2] - quartiles[0], 1),
                    "network_ms": round(network, 1),
                    "loss_ms": round(statistics.median(losses[m]), 1),
                    "network_share": "" if share is None else share,
                    "rounds": rounds,
                    "machine": f"{cpu_model()}, {torch.get_num_threads()} threads",
                }
            )
            flag = "  network share above 100 %: noise, not a measurement" if share is not None and share > 100 else ""
            print(
                f"timing q={q:<5d} {m:13s} step {step:8.1f} ms  network {network:8.1f} ms  "
                f"loss {out[-1]['loss_ms']:8.1f} ms{flag}",
                flush=True,
            )
    write_csv(str(path), FIELDS, out)
    return out
