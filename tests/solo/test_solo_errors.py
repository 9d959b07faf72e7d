"""Errors that say what to do (issue 28), in the solo-learn integration: each refused at start with
the config key or flag and the fix, instead of a failure deep in solo-learn, Lightning or PyTorch.

- optimizer.batch_size=1 for the plugin's methods (was BatchNorm's "Expected more than 1 value
  per channel" at the first step);
- a ResNet-50 checkpoint with a ResNet-18 linear config (was a size mismatch for every layer);
- sfrik-knn on a machine without a GPU (was "Found no NVIDIA driver"), and --umap without pandas;
- sfrik-convert on a solo-learn checkpoint (was "not the shared projector"), on an existing output
  (was silently overwritten) and on an unwritable folder; its writes are atomic.

Skipped where solo-learn is not installed; the tests that run solo's scripts are slow and need
$SOLO_LEARN_DIR. Checkpoints of the other architecture are state dicts on the meta device: their
keys and shapes, no weights.
"""

from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
import torchvision
from helpers.images import make_image_folder
from helpers.solo import cpu_cfg, run_script, solo_learn_checkout

from sfrik_plugin.solo import AUH, SFRIK
from sfrik_plugin.solo.simclr import SimCLRShared

TIMEOUT_S = 600


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "train")


def resnet_state(arch: str) -> dict:
    """torchvision's `arch` state dict without fc, on the meta device (keys and shapes only)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def solo_checkpoint(path: Path, arch: str, projector: dict | None = None) -> Path:
    state = {f"backbone.{k}": v for k, v in resnet_state(arch).items()}
    state.update({f"projector.{k}": v for k, v in (projector or {}).items()})
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def official_backbone(path: Path) -> Path:
    """An official-format backbone .pth (real weights: it is converted)."""
    torch.manual_seed(0)
    torch.save({k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}, path)
    return path


# ---------------------------------------------------------------------------------------------
# optimizer.batch_size


@pytest.mark.parametrize("name, cls", [("sfrik_cpu", SFRIK), ("auh_cpu", AUH), ("simclr_cpu", SimCLRShared)])
def test_a_batch_of_one_is_refused_naming_the_key(image_folder, name, cls):
    cfg = cpu_cfg(name, image_folder, "optimizer.batch_size=1")
    with pytest.raises(
        ValueError,
        match=rf"{cls.__name__}: optimizer.batch_size must be an integer >= 2 \(images per process and step\), "
        r"got 1: BatchNorm .* set optimizer.batch_size=2 or more",
    ):
        cls.add_and_assert_specific_cfg(cfg)
    cls.add_and_assert_specific_cfg(cpu_cfg(name, image_folder, "optimizer.batch_size=2"))  # the smallest that trains


@pytest.mark.slow
def test_main_pretrain_refuses_a_batch_of_one_before_training(image_folder, tmp_path):
    proc = run_script(
        solo_learn_checkout(),
        "main_pretrain.py",
        "--config-name",
        "sfrik_cpu",
        f"data.train_path={image_folder}",
        "optimizer.batch_size=1",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
        f"+default_root_dir={tmp_path / 'runs'}",
        check=False,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode != 0
    assert "SFRIK: optimizer.batch_size must be an integer >= 2" in proc.stderr, proc.stderr[-3000:]
    assert "Expected more than 1 value per channel" not in proc.stderr and "Epoch 0" not in proc.stderr
