"""Evaluations of the paper with solo-learn: sfrik-convert (the official checkpoint formats),
strict backbone loading, the linear evaluation (sfrik-linear: best tuning epoch, then the final
set once), semi-supervised fine-tuning (sfrik-semisup, SimCLR-format split files), and solo's own
main_linear.py / main_knn.py / main_umap.py on converted checkpoints in fresh processes (the
methods registered by the import hook alone).

Synthetic official checkpoints: torchvision ResNet-18 weights (the official ResNet-50's key
layout, smaller) with random batch-norm statistics, saved in both official layouts. Skipped where
solo-learn is not installed; the tests that run scripts are slow and need $SOLO_LEARN_DIR.
"""

import csv
import json
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.solo import require_solo_learn

require_solo_learn()

import torch
import torchvision
from helpers.images import make_image_folder
from helpers.interrupts import start_paused
from helpers.solo import SCRIPT_ENV, run_script, solo_learn_checkout
from omegaconf import OmegaConf

from sfrik_experiments.utils.arguments import command_line
from sfrik_plugin.projector import build_projector
from sfrik_plugin.solo import register_methods
from sfrik_plugin.solo.checkpoints import (
    CheckpointFormatError,
    build_backbone,
    infer_resnet_arch,
    load_backbone_weights,
    split_official,
)
from sfrik_plugin.solo.convert import convert
from sfrik_plugin.solo.convert import main as convert_main
from sfrik_plugin.solo.linear_eval import init_head
from sfrik_plugin.solo.semisup import labelled_samples, read_split_file

TIMEOUT_S = 600
PROJ = (64, 32)  # hidden, output widths of the synthetic projector


def random_resnet18_state() -> dict:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-default statistics: a real check of the copy
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Both official layouts, and their conversions."""
    root = tmp_path_factory.mktemp("official")
    backbone = random_resnet18_state()
    torch.manual_seed(1)
    projector = build_projector(512, *PROJ).state_dict()
    torch.save(backbone, root / "r18_backbone.pth")
    full = {
        "model": {
            **{f"module.backbone.{k}": v for k, v in backbone.items()},
            **{f"module.projector.{k}": v for k, v in projector.items()},
        },
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "weight_decay": 1e-6, "params": [0, 1]}]},
        "epoch": 100,
    }
    torch.save(full, root / "last_ckp.pth")
    out = {"backbone": backbone, "projector": projector, "root": root}
    out["bb_ckpt"] = convert(root / "r18_backbone.pth", root / "conv_backbone")
    out["full_ckpt"] = convert(root / "last_ckp.pth", root / "conv_full")
    out["auh_ckpt"] = convert(root / "last_ckp.pth", root / "conv_auh", method="auh", name="auh_full")
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {
        name: make_image_folder(root / name, seed=seed, unique_names=True)
        for name, seed in (("train", 0), ("tuning", 1), ("final", 2))
    }


# ---------------------------------------------------------------------------------------------
# sfrik-convert and strict loading


def test_convert_backbone_pth(official):
    ckpt = torch.load(official["bb_ckpt"], map_location="cpu")
    state = ckpt["state_dict"]
    assert set(state) == {f"backbone.{k}" for k in official["backbone"]}
    assert all(torch.equal(state[f"backbone.{k}"], v) for k, v in official["backbone"].items())
    args = json.loads((official["bb_ckpt"].parent / "args.json").read_text())
    assert args["method"] == "sfrik" and args["backbone"]["name"] == "resnet18"
    assert args["method_kwargs"]["proj_output_dim"] == 8192  # no projector: the config's widths


def test_convert_full_checkpoint(official):
    ckpt = torch.load(official["full_ckpt"], map_location="cpu")
    state = ckpt["state_dict"]
    expected = {
        **{f"backbone.{k}": v for k, v in official["backbone"].items()},
        **{f"projector.{k}": v for k, v in official["projector"].items()},
    }
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert ckpt["epoch"] == 100
    args = json.loads((official["full_ckpt"].parent / "args.json").read_text())
    assert (args["method_kwargs"]["proj_hidden_dim"], args["method_kwargs"]["proj_output_dim"]) == PROJ
    assert args["scheduler"]["min_lr"] == pytest.approx(0.001 * args["optimizer"]["lr"])


@pytest.mark.parametrize("key, method", [("full_ckpt", "sfrik"), ("auh_ckpt", "auh"), ("bb_ckpt", "sfrik")])
def test_plugin_methods_load_converted_checkpoints_exactly(official, key, method):
    methods = register_methods()
    path = official[key]
    args = json.loads((path.parent / "args.json").read_text())
    assert args["method"] == method
    model = methods[method].load_from_checkpoint(path, strict=False, cfg=OmegaConf.create(args))
    own = model.state_dict()
    for k, v in official["backbone"].items():
        assert torch.equal(own[f"backbone.{k}"], v), k
    if key != "bb_ckpt":
        for k, v in official["projector"].items():
            assert torch.equal(own[f"projector.{k}"], v), k


def test_arch_is_inferred_from_the_keys():
    with torch.device("meta"):
        r50 = torchvision.models.resnet50().state_dict()
        r34 = torchvision.models.resnet34().state_dict()
        wide = torchvision.models.wide_resnet50_2().state_dict()
    assert infer_resnet_arch(r50) == "resnet50"
    assert infer_resnet_arch(random_resnet18_state()) == "resnet18"
    with pytest.raises(CheckpointFormatError, match="resnet34, which solo-learn has no backbone for"):
        infer_resnet_arch(r34)
    with pytest.raises(CheckpointFormatError, match="widened resnet50"):
        infer_resnet_arch(wide)
    # DDP and method prefixes, torchvision's fc
    full = {f"module.backbone.{k}": v for k, v in r50.items()}
    backbone, projector, info = split_official({"model": full, "epoch": 3})
    assert projector is None and info["epoch"] == 3 and "fc.weight" not in backbone
    assert infer_resnet_arch(backbone) == "resnet50"


def test_convert_names_the_option_to_fix_a_bad_name(official, tmp_path):
    # solo's own checkpoints are named "<method>-<id>-ep=<n>.ckpt": the '=' comes from the file name.
    src = tmp_path / "sfrik-abc-ep=9.pth"
    src.write_bytes((official["root"] / "r18_backbone.pth").read_bytes())
    with pytest.raises(SystemExit, match=r"the name taken from 'sfrik-abc-ep=9.pth' \(choose another with --name\)"):
        convert_main([str(src), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"--name: 'a=b' must not contain"):
        convert_main([str(src), "--out", str(tmp_path / "out"), "--name", "a=b"])
    convert_main([str(src), "--out", str(tmp_path / "out"), "--name", "sfrik_ep9"])
    assert (tmp_path / "out" / "sfrik_ep9.ckpt").is_file()


def test_sfrik_linear_points_an_official_checkpoint_to_sfrik_convert(official, tmp_path):
    from sfrik_plugin.solo.linear_eval import main as linear_main

    final = tmp_path / "final"
    final.mkdir()
    pth = official["root"] / "r18_backbone.pth"
    args = ["--final-val-path", str(final), "--out", str(tmp_path / "out"), "--"]
    with pytest.raises(SystemExit, match=r"is not a solo-learn checkpoint .*run `sfrik-convert .*r18_backbone.pth"):
        linear_main([*args, f"pretrained_feature_extractor={pth}"])
    with pytest.raises(SystemExit, match="is not a solo-learn checkpoint"):
        linear_main([*args, f"pretrained_feature_extractor='{pth}'"])  # quoted, as Hydra takes paths
    with pytest.raises(SystemExit, match="does not exist"):
        linear_main([*args, f"++pretrained_feature_extractor={tmp_path / 'missing.ckpt'}"])


def test_convert_refuses_what_is_not_a_resnet(tmp_path, capsys):
    vit = {"cls_token": torch.zeros(1, 1, 8), "blocks.0.attn.qkv.weight": torch.zeros(24, 8)}
    torch.save(vit, tmp_path / "vit.pth")
    with pytest.raises(SystemExit, match="is not a ResNet: no 'conv1.weight' and 'layer1.\\*' keys"):
        convert_main([str(tmp_path / "vit.pth"), "--out", str(tmp_path / "out")])
    torch.save({"a": 1}, tmp_path / "junk.pth")
    with pytest.raises(SystemExit, match="not a state dict"):
        convert_main([str(tmp_path / "junk.pth"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_convert_arch_override_must_fit(official, tmp_path):
    with pytest.raises(
        SystemExit, match="holds a resnet18 backbone .* but the model is a resnet50: set --arch=resnet18"
    ):
        convert_main([str(official["root"] / "r18_backbone.pth"), "--out", str(tmp_path / "o"), "--arch", "resnet50"])


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    state = random_resnet18_state()
    wrong = {f"encoder.{k}": v for k, v in state.items()}  # a wrongly prefixed state dict
    torch.save({"state_dict": wrong}, tmp_path / "wrong.ckpt")
    with pytest.raises(CheckpointFormatError, match="missing keys: conv1.weight.*unexpected keys: encoder.conv1"):
        load_backbone_weights(build_backbone("resnet18"), tmp_path / "wrong.ckpt")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "right.ckpt")
    backbone = build_backbone("resnet18")
    load_backbone_weights(backbone, tmp_path / "right.ckpt")
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in state.items())


def test_head_init_is_official():
    torch.manual_seed(0)
    head = torch.nn.Linear(512, 1000)
    init_head(head)
    assert float(head.weight.std()) == pytest.approx(0.01, rel=0.02) and abs(float(head.weight.mean())) < 1e-3
    assert torch.count_nonzero(head.bias) == 0


# ---------------------------------------------------------------------------------------------
# Split files


def test_split_file_names_images_by_file_name(folders, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("class0_1.png\nclass3_2.png\n\nclass4_0.png\n")
    samples, classes = labelled_samples(folders["train"], read_split_file(split))
    assert classes == [f"class{c}" for c in range(5)]
    assert [(Path(p).name, label) for p, label in samples] == [
        ("class0_1.png", 0),
        ("class3_2.png", 3),
        ("class4_0.png", 4),
    ]


def test_split_file_with_missing_images_lists_a_few(folders, tmp_path):
    split = tmp_path / "split.txt"
    names = ["class0_1.png"] + [f"n0144_{i}.JPEG" for i in range(8)]
    split.write_text("\n".join(names))
    with pytest.raises(
        FileNotFoundError,
        match=r"8 of its 9 images are not in the class folders.*n0144_0.JPEG, "
        r"n0144_1.JPEG, .*n0144_4.JPEG and 3 more",
    ):
        labelled_samples(folders["train"], read_split_file(split), "split_file")
    split.write_text("\n")
    with pytest.raises(ValueError, match="names no image"):
        read_split_file(split)


# ---------------------------------------------------------------------------------------------
# The commands and solo's scripts, in fresh processes


def run(args, cwd, env_update=None, check=True) -> subprocess.CompletedProcess:
    """args run with solo's script environment, in cwd."""
    return run_script(cwd, *args, set_env=env_update, check=check, timeout=TIMEOUT_S)


# main_linear.py as it is, in this process; its backbone is saved when fit starts, then it stops
LINEAR_PROBE = """
import sys, runpy, torch
from lightning.pytorch import Trainer
out = sys.argv.pop(1)
def fit(trainer, model, *args, **kwargs):
    torch.save(model.backbone.state_dict(), out)
    raise SystemExit(0)
Trainer.fit = fit
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize("key", ["bb_ckpt", "full_ckpt"])
def test_main_linear_loads_converted_checkpoints_exactly(official, folders, tmp_path, key):
    checkout = solo_learn_checkout()
    (tmp_path / "probe.py").write_text(LINEAR_PROBE)
    out = tmp_path / "backbone.pt"
    run(
        [
            str(tmp_path / "probe.py"),
            str(out),
            str(checkout / "main_linear.py"),
            "--config-name",
            "linear_cpu",
            f"data.train_path={folders['train']}",
            f"data.val_path={folders['tuning']}",
            f"pretrained_feature_extractor='{official[key]}'",
            f"+default_root_dir={tmp_path / 'runs'}",
            "checkpoint.enabled=False",
        ],
        cwd=checkout,
    )
    loaded = torch.load(out, map_location="cpu")
    assert set(loaded) == set(official["backbone"])
    assert all(torch.equal(loaded[k], v) for k, v in official["backbone"].items())


# solo's script as it is under the package's cpu_only() (no GPU here) and nothing else: the
# methods can only come from the import hook
HOOK_ONLY = """
import runpy, sys
from sfrik_plugin.solo.cpu_only import cpu_only
script = sys.argv[1]
sys.argv = sys.argv[1:]
with cpu_only():
    runpy.run_path(script, run_name="__main__")
"""


def eval_words(checkpoint: Path, folders, **options) -> list:
    """solo's underscore options for main_knn.py / main_umap.py: the checkpoint's folder, the train
    folder and the final one."""
    data = {"dataset": "custom", "train_data_path": folders["train"], "val_data_path": folders["final"]}
    words = {"pretrained_checkpoint_dir": checkpoint.parent, **data, "batch_size": 8, "num_workers": 0, **options}
    return command_line(words, separator="_")


def sfrik_knn(*words) -> list:
    """`sfrik-knn --cpu` (the supported CPU path) on the checkout."""
    return ["-m", "sfrik_plugin.solo.knn", "--solo-learn-dir", solo_learn_checkout(), "--cpu", *words]


KNN = {"k": [2, 5], "temperature": 0.07, "distance_function": "cosine", "feature_type": "backbone"}


@pytest.mark.slow
@pytest.mark.parametrize("key", ["full_ckpt", "auh_ckpt"])
def test_solo_main_knn_runs_on_plugin_checkpoints_through_the_hook(official, folders, tmp_path, key):
    (tmp_path / "hook_only.py").write_text(HOOK_ONLY)
    args = [
        tmp_path / "hook_only.py",
        solo_learn_checkout() / "main_knn.py",
        *eval_words(official[key], folders, **KNN),
    ]
    proc = run(args, cwd=tmp_path)
    assert proc.stdout.count("Result: acc@1=") == 2, proc.stdout[-2000:]
    off = run(args, cwd=tmp_path, env_update={"SFRIK_PLUGIN_SOLO_HOOK": "0"}, check=False)
    assert off.returncode != 0 and "KeyError" in off.stderr  # without the hook: solo's KeyError


@pytest.mark.slow
def test_sfrik_knn_cpu_runs_main_knn_and_registers_without_the_hook(official, folders, tmp_path):
    args = sfrik_knn(*eval_words(official["full_ckpt"], folders, **KNN))
    proc = run(args, cwd=tmp_path, env_update={"SFRIK_PLUGIN_SOLO_HOOK": "0"})
    assert proc.stdout.count("Result: acc@1=") == 2, proc.stdout[-2000:]


@pytest.mark.slow
def test_sfrik_knn_umap_on_the_cpu_draws_a_sfrik_checkpoint(official, folders, tmp_path):
    pytest.importorskip("umap", reason="umap-learn is not installed (main_umap.py needs it)")
    run(sfrik_knn("--umap", *eval_words(official["full_ckpt"], folders)), cwd=tmp_path)
    assert (tmp_path / "im100_train_umap.pdf").is_file() and (tmp_path / "im100_val_umap.pdf").is_file()


def sfrik_linear(checkpoint: Path, folders, out: Path, *overrides: str) -> list:
    """sfrik-linear's words: linear_cpu on the train folder, validated on the tuning folder (or the
    data.val_path among the overrides), the final folder read once at the end."""
    tuning = folders.get("tuning", folders["final"])
    solo = ["--config-name", "linear_cpu", f"data.train_path={folders['train']}", f"data.val_path={tuning}"]
    solo += list(overrides)  # a data.val_path here wins: Hydra keeps the last value of a key
    solo += [f"pretrained_feature_extractor='{checkpoint}'", "checkpoint.enabled=False"]
    solo += [f"+default_root_dir={out.parent / 'runs'}"]
    ours = ["--solo-learn-dir", solo_learn_checkout(), "--final-val-path", folders["final"], "--out", out]
    return ["-m", "sfrik_plugin.solo.linear_eval", *ours, "--", *solo]


@pytest.mark.slow
def test_sfrik_linear_keeps_the_best_tuning_head_and_evaluates_it_once(official, folders, tmp_path):
    out = tmp_path / "out"
    args = sfrik_linear(official["full_ckpt"], folders, out, f"data.val_path={folders['tuning']}", "max_epochs=3")
    proc = run(args, cwd=tmp_path)
    assert "best tuning epoch" in proc.stdout
    (row,) = list(csv.DictReader(open(out / "linear_eval.csv")))
    assert int(row["best_epoch"]) in (0, 1, 2) and int(row["epochs"]) == 3 and int(row["final_images"]) == 20
    # the kept head, on the converted backbone, through main_linear's validation transform: the CSV's numbers
    from solo.data.classification_dataloader import prepare_transforms
    from torchvision.datasets import ImageFolder

    from sfrik_plugin.solo.linear_eval import evaluate

    head = torch.nn.Linear(512, 5)
    kept = torch.load(out / "best_head.pt", map_location="cpu")
    assert kept["epoch"] == int(row["best_epoch"])
    head.load_state_dict(kept["head"])
    backbone = build_backbone("resnet18")
    load_backbone_weights(backbone, official["full_ckpt"])
    _, t_val = prepare_transforms("custom")
    loader = torch.utils.data.DataLoader(ImageFolder(str(folders["final"]), t_val), batch_size=7)
    scores = evaluate(backbone, head, loader, "cpu")
    assert scores["top1"] == pytest.approx(float(row["final_top1"]))
    assert scores["top5"] == pytest.approx(float(row["final_top5"]))


@pytest.mark.slow
def test_sfrik_linear_refuses_a_checkpoint_whose_keys_do_not_fit(folders, tmp_path):
    state = {f"encoder_.{k}": v for k, v in random_resnet18_state().items()}  # main_linear keeps none of these
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    proc = run(sfrik_linear(tmp_path / "bad.ckpt", folders, tmp_path / "out"), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "missing keys: conv1.weight" in proc.stderr, proc.stderr[-3000:]


def semisup_words(official, folders, tmp_path) -> tuple[list, Path, Path]:
    """sfrik-semisup's words on semisup_cpu (two labelled images per class), its split file and
    its out_dir."""
    split = tmp_path / "2images_per_class.txt"
    split.write_text("".join(f"class{c}_{i}.png\n" for c in range(5) for i in range(2)))
    out = tmp_path / "out"
    words = [
        "--config-name",
        "semisup_cpu",
        f"pretrained_feature_extractor='{official['full_ckpt']}'",
        f"data.train_path={folders['train']}",
        f"data.val_path={folders['final']}",
        f"out_dir={out}",
        "optimizer.batch_size=4",
    ]
    return words, split, out


@pytest.mark.slow
def test_sfrik_semisup_fine_tunes_on_a_split_file(official, folders, tmp_path):
    words, split, out = semisup_words(official, folders, tmp_path)
    base = ["-m", "sfrik_plugin.solo.semisup", *words]
    proc = run([*base, f"split_file={split}", "max_epochs=2"], cwd=tmp_path)
    (row,) = list(csv.DictReader(open(out / "semisup.csv")))
    assert int(row["labelled_images"]) == 10 and int(row["epochs"]) == 2
    assert 0 <= float(row["val_top1"]) <= float(row["val_top5"]) <= 100
    metrics = list(csv.DictReader(open(out / "metrics.csv")))
    assert sum(1 for m in metrics if m.get("val_acc1")) == 2
    assert "val_acc1" in proc.stderr + proc.stdout  # Lightning's progress bar

    split.write_text("class0_0.png\nmissing_1.JPEG\nmissing_2.JPEG\n")
    bad = run([*base, f"split_file={split}", "overwrite=true"], cwd=tmp_path, check=False)
    assert bad.returncode != 0
    assert "2 of its 3 images are not in the class folders" in bad.stderr and "missing_1.JPEG" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [0, 1])
def test_sfrik_linear_cut_short_writes_nothing_and_exits_with_the_signal(official, folders, tmp_path, epoch):
    # a real SIGINT while the head trains in epoch `epoch` of 3 (tests/helpers/interrupts.py)
    out = tmp_path / "out"
    args = sfrik_linear(official["full_ckpt"], folders, out, f"data.val_path={folders['tuning']}", "max_epochs=3")
    child = start_paused(*args[1:], workdir=tmp_path / "child", at_epoch=epoch, cwd=tmp_path, set_env=SCRIPT_ENV)
    status = child.interrupt(signal.SIGINT)
    log = child.output()
    assert status == 130, log
    assert "the linear head's training was interrupted by SIGINT" in log and "no validation epoch ran" not in log
    assert not (out / "linear_eval.csv").exists() and not (out / "best_head.pt").exists()


@pytest.mark.slow
def test_sfrik_linear_checks_its_out_before_training_and_never_replaces_results(official, folders, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = sfrik_linear(official["full_ckpt"], folders, blocker / "out")
    proc = run(args, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "--out" in proc.stderr and "not a folder this process can write to" in proc.stderr
    assert "Epoch" not in proc.stdout + proc.stderr  # refused before training, not after it
    out = tmp_path / "out"
    out.mkdir()
    (out / "linear_eval.csv").write_text("earlier results\n")
    proc = run(sfrik_linear(official["full_ckpt"], folders, out), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "already hold(s) results; pass --overwrite" in proc.stderr
    assert (out / "linear_eval.csv").read_text() == "earlier results\n"
    args = sfrik_linear(official["full_ckpt"], folders, out, f"data.val_path={folders['tuning']}")
    run([*args[:2], "--overwrite", *args[2:]], cwd=tmp_path)
    (row,) = list(csv.DictReader(open(out / "linear_eval.csv")))
    assert int(row["epochs"]) == 1


@pytest.mark.slow
def test_sfrik_semisup_cut_short_writes_nothing_and_never_replaces_results(official, folders, tmp_path):
    words, split, out = semisup_words(official, folders, tmp_path)
    base = [*words, f"split_file={split}", "max_epochs=2"]
    child = start_paused(
        "sfrik_plugin.solo.semisup", *base, workdir=tmp_path / "child", at_epoch=1, cwd=tmp_path, set_env=SCRIPT_ENV
    )
    assert child.interrupt(signal.SIGTERM) == 143, child.output()
    assert "the semi-supervised fine-tuning was interrupted by SIGTERM" in child.output()
    assert not (out / "semisup.csv").exists()
    (out / "semisup.csv").write_text("earlier results\n")
    proc = run(["-m", "sfrik_plugin.solo.semisup", *base], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "pass overwrite=true to replace them" in proc.stderr
    assert (out / "semisup.csv").read_text() == "earlier results\n"
    run(["-m", "sfrik_plugin.solo.semisup", *base, "overwrite=true"], cwd=tmp_path)
    (row,) = list(csv.DictReader(open(out / "semisup.csv")))
    assert int(row["epochs"]) == 2


@pytest.mark.slow
def test_sfrik_linear_refuses_fewer_than_five_classes_before_training(official, tmp_path):
    four = make_image_folder(tmp_path / "four", num_classes=4)
    folders = {"train": four, "final": four}
    proc = run(sfrik_linear(official["full_ckpt"], folders, tmp_path / "out"), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "has 4 class(es)" in proc.stderr and "at least 5 classes" in proc.stderr
    assert "Epoch" not in proc.stdout + proc.stderr  # stopped before training, not solo's topk crash
