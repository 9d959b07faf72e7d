"""Helpers of the tests that run solo-learn: the packaged config names, configs composed through
the Hydra plugin, solo's training batch and step, and runs of solo's scripts from its checkout
($SOLO_LEARN_DIR). Importable without solo-learn (hydra, omegaconf and solo are imported where
they are used); the test modules skip first where solo-learn is not installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers.images import NUM_CLASSES
from helpers.processes import run_python

SUBPROCESS_TIMEOUT_S = 300

# The packaged configs (configs/ installed as sfrik_plugin_configs), by protocol.
IN20 = ["sfrik", "sfrik_in20", "vicreg_in20", "simclr_in20", "barlow_twins_in20", "auh_in20"]
IN100 = ["sfrik_in100", "sfrik_in100_q8192", "vicreg_in100"]
CPU = ["sfrik_cpu", "auh_cpu", "vicreg_cpu", "simclr_cpu", "barlow_twins_cpu"]
MULTICROP = ["sfrik_in20_multicrop"]  # in20 with the SwAV-style augmentations (test_solo_protocol.py)
LINEAR = ["linear_in20", "linear_in20_tuning", "linear_in100", "linear_cpu"]
SEMISUP = ["semisup_in100_1pct", "semisup_in100_10pct", "semisup_cpu"]
PRETRAIN = IN20 + IN100 + CPU + MULTICROP


def require_solo_learn() -> None:
    """Skips the calling test module (or test) where solo-learn, or the Hydra it brings, is not
    installed; a module calls it before importing them."""
    pytest.importorskip("solo.methods", reason="solo-learn is not installed (make solo-learn)")
    pytest.importorskip("hydra", reason="hydra-core is not installed (it comes with solo-learn)")


def solo_cfg(name: str, *overrides: str):
    """A config composed through the Hydra plugin's search path (as solo's scripts do), then
    completed by solo's parse_cfg, as main_pretrain.py does before building the method."""
    import omegaconf
    from hydra import compose, initialize
    from solo.args.pretrain import parse_cfg

    with initialize(version_base="1.2", config_path=None):
        cfg = compose(config_name=name, overrides=list(overrides))
    omegaconf.OmegaConf.set_struct(cfg, False)
    return parse_cfg(cfg)


def cpu_cfg(name: str, image_folder: Path, *overrides: str):
    return solo_cfg(name, f"data.train_path={image_folder}", *overrides)


def fake_batch(n: int = 4, crops=(32, 32), num_classes: int = NUM_CLASSES):
    """solo's training batch: [indexes, [X_1, ..., X_crops], targets]."""
    import torch

    g = torch.Generator().manual_seed(0)
    views = [torch.randn(n, 3, s, s, generator=g) for s in crops]
    return [torch.arange(n), views, torch.arange(n) % num_classes]


def run_training_step(model, batch):
    """training_step with self.log_dict captured (no Trainer attached)."""
    import torch

    logged = {}

    def capture(metrics, **kwargs):
        assert kwargs.get("on_epoch") is True and kwargs.get("sync_dist") is True
        logged.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in metrics.items()})

    model.log_dict = capture
    model.train()
    loss = model.training_step(batch, 0)
    return loss, logged


# What solo's scripts run with here: no wandb, Hydra's full errors.
SCRIPT_ENV = {"WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}


def solo_learn_checkout() -> Path:
    """$SOLO_LEARN_DIR, the solo-learn checkout with main_pretrain.py (the test skips without it)."""
    where = os.environ.get("SOLO_LEARN_DIR")
    if not where:
        pytest.skip("SOLO_LEARN_DIR is not set: the solo-learn checkout with main_pretrain.py")
    path = Path(where)
    if not (path / "main_pretrain.py").is_file():
        pytest.skip(f"SOLO_LEARN_DIR={where} has no main_pretrain.py")
    return path


def run_script(
    checkout: Path, *args: object, set_env=None, check: bool = True, timeout: float = SUBPROCESS_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """One of solo's scripts (or a wrapper of it) run from its checkout with SCRIPT_ENV; with check,
    asserts success."""
    return run_python(*args, cwd=checkout, set_env={**SCRIPT_ENV, **(set_env or {})}, timeout=timeout, check=check)
