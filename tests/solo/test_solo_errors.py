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

import json
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
import torchvision
from helpers.images import make_image_folder
from helpers.solo import cpu_cfg, run_script, solo_learn_checkout

from sfrik_plugin.solo import AUH, SFRIK
from sfrik_plugin.solo import knn as knn_command
from sfrik_plugin.solo.checkpoints import CheckpointFormatError, build_backbone, load_backbone_weights
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


# ---------------------------------------------------------------------------------------------
# A checkpoint of another architecture than backbone.name


def test_loading_a_resnet50_into_a_resnet18_names_both_and_the_key(tmp_path):
    path = solo_checkpoint(tmp_path / "r50.ckpt", "resnet50")
    with pytest.raises(CheckpointFormatError) as error:
        load_backbone_weights(build_backbone("resnet18"), path)
    message = str(error.value)
    assert message == (
        f"the backbone of {str(path)!r} holds a resnet50 backbone (its keys and shapes), but the model is a "
        "resnet18: set backbone.name=resnet50"
    )
    # the other way round
    with pytest.raises(CheckpointFormatError, match=r"holds a resnet18 backbone .* set backbone.name=resnet18"):
        load_backbone_weights(build_backbone("resnet50"), solo_checkpoint(tmp_path / "r18.ckpt", "resnet18"))


def test_sfrik_linear_checks_the_architecture_against_backbone_name(tmp_path):
    from sfrik_plugin.solo.linear_eval import check_backbone_arch

    path = solo_checkpoint(tmp_path / "r50.ckpt", "resnet50")
    with pytest.raises(
        SystemExit,
        match=r"sfrik-linear: pretrained_feature_extractor .*r50.ckpt' holds a resnet50 backbone .* but the model is "
        r"a resnet18: set backbone.name=resnet50 on the command line, or use the linear config of that architecture "
        r"\(--config-name linear_in100\)",
    ):
        check_backbone_arch(path, "resnet18")
    check_backbone_arch(path, "resnet50")  # the right one: nothing to say


@pytest.mark.slow
def test_sfrik_linear_refuses_a_resnet50_with_the_resnet18_config_at_start(image_folder, tmp_path):
    path = solo_checkpoint(tmp_path / "r50.ckpt", "resnet50")
    args = ["-m", "sfrik_plugin.solo.linear_eval", "--solo-learn-dir", solo_learn_checkout()]
    args += ["--final-val-path", image_folder, "--out", tmp_path / "out", "--", "--config-name", "linear_cpu"]
    args += [f"data.train_path={image_folder}", f"pretrained_feature_extractor='{path}'", "checkpoint.enabled=False"]
    args += [f"+default_root_dir={tmp_path / 'runs'}"]
    proc = run_script(tmp_path, *args, check=False, timeout=TIMEOUT_S)
    assert proc.returncode != 0
    assert "holds a resnet50 backbone" in proc.stderr and "set backbone.name=resnet50" in proc.stderr
    assert "size mismatch" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("\n") < 40  # one message, not one line per layer


# ---------------------------------------------------------------------------------------------
# sfrik-knn


def stand_in_checkout(root: Path) -> Path:
    """main_knn.py and main_umap.py stand-ins that do what the real ones do first: move a batch to
    CUDA; main_umap.py imports solo's UMAP module (pandas, seaborn, umap)."""
    root.mkdir()
    report = "print(json.dumps({'device': str(x.device), 'sfrik': METHODS['sfrik'].__name__}))"
    (root / "main_knn.py").write_text(
        textwrap.dedent(f"""
        import json, torch
        from solo.methods import METHODS
        x = torch.ones(2).cuda()
        {report}
        """)
    )
    (root / "main_umap.py").write_text(
        textwrap.dedent(f"""
        import json, torch
        from solo.methods import METHODS
        from solo.utils.auto_umap import OfflineUMAP
        x = torch.ones(2).cuda()
        {report}
        """)
    )
    return root


def run_knn(monkeypatch, argv: list) -> None:
    """sfrik-knn in this process (it changes sys.argv and sys.path: restored after the test)."""
    monkeypatch.setattr(sys, "argv", ["sfrik-knn", *map(str, argv)])
    monkeypatch.setattr(sys, "path", list(sys.path))
    knn_command.main()


def test_sfrik_knn_without_a_gpu_runs_on_the_cpu_and_says_so(tmp_path, monkeypatch, capsys):
    checkout = stand_in_checkout(tmp_path / "checkout")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_knn(monkeypatch, ["--solo-learn-dir", checkout, "--k", "10"])
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1]) == {"device": "cpu", "sfrik": "SFRIK"}
    assert "sfrik-knn: torch sees no CUDA GPU here: running main_knn.py on the CPU (as with --cpu)" in err
    assert torch.ones(1).device.type == "cpu" and torch.Tensor.cuda is not None  # the patches are undone


def test_sfrik_knn_umap_names_the_missing_packages_to_install(tmp_path, monkeypatch):
    checkout = stand_in_checkout(tmp_path / "checkout")
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas not importable, whatever is installed
    monkeypatch.delitem(sys.modules, "solo.utils.auto_umap", raising=False)  # imported afresh
    with pytest.raises(SystemExit) as exit_info:
        run_knn(monkeypatch, ["--solo-learn-dir", checkout, "--umap", "--cpu"])
    message = str(exit_info.value.code)
    assert message.startswith("sfrik-knn --umap: main_umap.py needs pandas")
    assert "not installed here (import of pandas halted; None in sys.modules): pip install pandas" in message
