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
from helpers.solo import cpu_cfg, run_script, solo_learn_checkout

from sfrik_plugin.solo import AUH, SFRIK
from sfrik_plugin.solo import knn as knn_command
from sfrik_plugin.solo.checkpoints import CheckpointFormatError, build_backbone, load_backbone_weights
from sfrik_plugin.solo.convert import convert
from sfrik_plugin.solo.convert import main as convert_main
from sfrik_plugin.solo.simclr import SimCLRShared

TIMEOUT_S = 600


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


# ---------------------------------------------------------------------------------------------
# sfrik-convert


def test_convert_says_a_solo_learn_checkpoint_is_one_already(tmp_path):
    # a VICReg checkpoint of solo-learn: its projector is not the shared one
    vicreg_projector = {"0.weight": torch.zeros(16, 512), "0.bias": torch.zeros(16), "3.weight": torch.zeros(8, 16)}
    path = solo_checkpoint(tmp_path / "vicreg-abc-ep=9.ckpt", "resnet18", vicreg_projector)
    with pytest.raises(
        SystemExit,
        match=r"sfrik-convert: SRC .*vicreg-abc-ep=9.ckpt' is already a solo-learn checkpoint .* read it as it is",
    ):
        convert_main([str(path), "--out", str(tmp_path / "out"), "--name", "vicreg"])
    assert not (tmp_path / "out").exists()


def test_convert_never_replaces_an_existing_result_without_overwrite(tmp_path, capsys):
    src, out = official_backbone(tmp_path / "r18_backbone.pth"), tmp_path / "out"
    convert_main([str(src), "--out", str(out)])
    ckpt, args = out / "r18_backbone.ckpt", out / "args.json"
    before = ckpt.read_bytes(), args.read_text()
    for existing in ((ckpt, args), (args,)):
        if len(existing) == 1:
            ckpt.unlink()
        with pytest.raises(SystemExit, match=r"already holds .*args.json: pass --overwrite to replace"):
            convert_main([str(src), "--out", str(out)])
        assert args.read_text() == before[1]
    convert_main([str(src), "--out", str(out), "--overwrite"])
    assert ckpt.is_file() and json.loads(args.read_text())["backbone"]["name"] == "resnet18"
    assert sorted(p.name for p in out.iterdir()) == ["args.json", "r18_backbone.ckpt"]  # no temporary left


def test_convert_checks_the_output_folder_before_any_work(tmp_path, monkeypatch):
    src = official_backbone(tmp_path / "r18_backbone.pth")

    def no_work(*args, **kwargs):
        raise AssertionError("sfrik-convert read SRC before checking --out")

    monkeypatch.setattr("sfrik_plugin.solo.convert.torch_load", no_work)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"--out .*file' is a file, not a folder"):
        convert_main([str(src), "--out", str(tmp_path / "file")])
    with pytest.raises(SystemExit, match=r"--out .*file/sub': .*file' is a file, not a folder"):
        convert_main([str(src), "--out", str(tmp_path / "file" / "sub")])
    with pytest.raises(SystemExit, match=r"--out '/proc/sfrik_convert_out' is not writable"):
        convert_main([str(src), "--out", "/proc/sfrik_convert_out"])


def test_a_failed_write_leaves_the_previous_files(tmp_path, monkeypatch):
    src, out = official_backbone(tmp_path / "r18_backbone.pth"), tmp_path / "out"
    first = convert(src, out)
    before = first.read_bytes(), (out / "args.json").read_text()
    real_save = torch.save

    def save_then_fail(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # half written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        convert(src, out, overwrite=True)
    assert (first.read_bytes(), (out / "args.json").read_text()) == before
    assert sorted(p.name for p in out.iterdir()) == ["args.json", "r18_backbone.ckpt"]
