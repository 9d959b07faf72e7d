"""Checkpoints and args.json written by an earlier version of the plugin still load (fixtures in
tests/solo/fixtures/solo_checkpoints, written by tests/solo/fixtures/make_solo_checkpoints.py at the commit
WRITTEN_AT.json names): solo's parse-time checks accept the stored method_kwargs, main_knn's way
of loading (load_from_checkpoint with the args.json config) restores every tensor, a training
step runs with the stored loss options, and the plugin's backbone loader reads the file.

Needs solo-learn (skipped otherwise).
"""

import copy
import gzip
import json
import shutil
import warnings
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import omegaconf
import torch

from sfrik_plugin.solo import register_methods
from sfrik_plugin.solo.checkpoints import build_backbone, load_backbone_weights

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "solo_checkpoints"
METHODS = ["sfrik", "auh"]


# method_kwargs added after the fixtures were written, with the defaults an old config gets.
ADDED_SINCE = {"non_finite_check_interval": 50}


def unpack(method: str, tmp_path: Path) -> tuple[Path, dict]:
    ckpt = tmp_path / f"{method}.ckpt"
    with gzip.open(FIXTURES / f"{method}.ckpt.gz", "rb") as src, open(ckpt, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return ckpt, json.loads((FIXTURES / f"{method}_args.json").read_text())


def test_fixtures_record_where_they_were_written():
    written = json.loads((FIXTURES / "WRITTEN_AT.json").read_text())
    assert len(written["commit"]) == 40 and written["torch"]


@pytest.mark.parametrize("method", METHODS)
def test_old_args_json_passes_the_config_checks_without_warnings(method, tmp_path):
    _, args = unpack(method, tmp_path)
    cfg = omegaconf.OmegaConf.create(copy.deepcopy(args))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the stored names are current ones
        checked = register_methods()[method].add_and_assert_specific_cfg(cfg)
    kwargs = omegaconf.OmegaConf.to_container(checked.method_kwargs)
    assert {k: v for k, v in kwargs.items() if k in args["method_kwargs"]} == args["method_kwargs"]
    assert {k: kwargs[k] for k in kwargs.keys() - args["method_kwargs"].keys()} == ADDED_SINCE  # their defaults


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_old_checkpoint_loads_as_main_knn_loads_it_and_trains(method, tmp_path):
    ckpt, args = unpack(method, tmp_path)
    cfg = omegaconf.OmegaConf.create(args)
    cls = register_methods()[method]
    model = cls.load_from_checkpoint(str(ckpt), strict=True, cfg=cfg)
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    loaded = model.state_dict()
    assert stored.keys() == loaded.keys()
    assert all(torch.equal(v, loaded[k]) for k, v in stored.items())

    # one training step with the stored loss options (the classifier and projector are real)
    g = torch.Generator().manual_seed(0)
    batch = [torch.arange(4), [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)], torch.arange(4) % 5]
    model.log_dict = lambda *a, **k: None
    model.train()
    loss = model.training_step(batch, 0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.projector.parameters() if p.grad is not None)


@pytest.mark.parametrize("method", METHODS)
def test_old_checkpoint_backbone_loads_strictly(method, tmp_path):
    ckpt, args = unpack(method, tmp_path)
    backbone = build_backbone(args["backbone"]["name"])
    load_backbone_weights(backbone, ckpt)
