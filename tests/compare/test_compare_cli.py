"""sfrik-compare's command line without running anything: --dry-run prints the commands, argument
and checkout errors name what is wrong, and a linear probe without a held-out folder is refused
before any run."""

import shlex
import sys

import pytest
from helpers.compare import compare

from sfrik_experiments.compare import cli, val_images


def test_dry_run_prints_the_commands_and_runs_nothing(checkout, tmp_path, capsys):
    out = tmp_path / "out"
    options = ["--dry-run", "--pretrain-override", "+limit_train_batches=2", "--linear-override", "optimizer.lr=0.1"]
    options += ["--linear-override", "data.val_path=/data/val"]
    compare(checkout, out, ["sfrik", "vicreg"], *options, overrides=["data.train_path=/data/tiny", "seed=3"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cd {checkout}"
    commands = [shlex.split(line) for line in lines[1:]]
    assert len(commands) == 4
    expected = [
        (label, stage, script, config)
        for label in ("sfrik", "vicreg")
        for stage, script, config in (
            ("pretrain", "main_pretrain.py", f"{label}_cpu"),
            ("linear", "main_linear.py", "linear_cpu"),
        )
    ]
    for argv, (label, stage, script, config) in zip(commands, expected):
        run_dir = out / label / stage
        assert argv[:3] == [sys.executable, "-m", "sfrik_experiments.compare.probe"]
        assert argv[3:5] == ["--report", str(run_dir / "report.json")]
        assert argv[5:8] == [script, "--config-name", config]
        ours = [f"checkpoint.dir={out / label / 'checkpoints'}", f"++default_root_dir={run_dir}"]
        extra = ["+limit_train_batches=2"] if stage == "pretrain" else ["optimizer.lr=0.1", "data.val_path=/data/val"]
        if stage == "linear":
            ours.insert(0, f'pretrained_feature_extractor="<{label} checkpoint>"')
        # the caller's overrides last: they win over ours
        assert argv[8:] == ours + ["data.train_path=/data/tiny", "seed=3"] + extra
    assert not out.exists()


def test_cli_errors(checkout, tmp_path, monkeypatch):
    base = ["--protocol", "cpu", "--methods", "sfrik", "--out", str(tmp_path / "out"), "--dry-run"]
    with pytest.raises(SystemExit, match=r"^sfrik-compare: --protocol 'gpu': no such protocol"):
        cli.main(["--solo-learn-dir", str(checkout), "--protocol", "gpu", "--methods", "sfrik", "--out", "o"])
    with pytest.raises(SystemExit, match=r"^sfrik-compare: --methods: no config for 'data.train_path=/x'"):
        compare(checkout, "o", ["sfrik", "data.train_path=/x"])  # no `--` before an override: --methods takes it
    monkeypatch.delenv("SOLO_LEARN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"sfrik-compare: no main_knn.py in .*the current directory"):
        cli.main(base)
    (checkout / "main_linear.py").unlink()
    monkeypatch.setenv("SOLO_LEARN_DIR", str(checkout))
    with pytest.raises(SystemExit, match=r"sfrik-compare: no main_linear.py in the solo-learn checkout"):
        cli.main(base)


def test_linear_probe_without_a_held_out_folder_is_refused_before_any_run(checkout, tmp_path, capsys):
    # linear_cpu measured val_acc1 on the training folder; every linear config now needs data.val_path
    out = tmp_path / "out"
    for overrides in (["data.train_path=/data/train"], ["data.train_path=/d", "data.val_path=null"]):
        with pytest.raises(
            SystemExit,
            match=r"^sfrik-compare: the linear probe needs data.val_path, the held-out image folder its linear "
            r"top-1 is measured on .*--linear-override data.val_path=<folder>.*sfrik_experiments.engine.image_folder",
        ):
            compare(checkout, out, ["sfrik"], overrides=overrides)
        assert not out.exists() and capsys.readouterr().out == ""
    # given to both scripts after `--`, or to the probe only: accepted
    compare(checkout, out, ["sfrik"], "--dry-run", overrides=["data.train_path=/d", "data.val_path=/v"])
    compare(checkout, out, ["sfrik"], "--dry-run", "--linear-override", "data.val_path=/v")
    overrides = ["data.train_path=/t", "++limit_val_batches=2", "data.val_path=/v"]
    assert val_images.probe_images(overrides, checkout) == val_images.ProbeImages("/t", "/v", "2", checkout)
