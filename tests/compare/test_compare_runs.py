"""sfrik-compare's runs: a failed run named with its log, the run loop with a stand-in probe (no
solo-learn needed: pretraining then the linear probe on its checkpoint, a failure or an interruption
stopping the comparison with the earlier rows kept, the tables never replaced without --overwrite),
and, slow, the real comparison of two methods on the CPU protocol with solo-learn's scripts
($SOLO_LEARN_DIR)."""

import csv
import json
import sys
from pathlib import Path

import pytest
from helpers.compare import compare
from helpers.images import make_image_folder
from helpers.processes import run_python
from helpers.solo import require_solo_learn, solo_learn_checkout

from sfrik_experiments.compare import runs
from sfrik_experiments.compare.runs import RunFailed, Step


@pytest.mark.fresh_interpreter
def test_run_step_failures_name_the_method_and_log(tmp_path):
    step = Step("vicreg", "pretrain", "vicreg_cpu", tmp_path / "vicreg" / "pretrain")
    failing = [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"]
    with pytest.raises(
        RunFailed,
        match=r"(?s)vicreg: pretrain \(vicreg_cpu\) failed with exit status 3; "
        rf"log: {step.log}\n.*boom: bad config",
    ):
        runs.run_step(step, failing, tmp_path)
    log = step.log.read_text()
    assert log.startswith(f"$ cd {tmp_path} && ") and "boom: bad config" in log

    step.report.write_text("{}")  # left by an earlier run: must not count
    with pytest.raises(RunFailed, match=r"vicreg: pretrain \(vicreg_cpu\) exited without writing .*report.json"):
        runs.run_step(step, [sys.executable, "-c", "pass"], tmp_path)


FAKE_PROBE = """
import json, sys
from pathlib import Path

# sfrik_experiments.compare.probe's command line: --report FILE SCRIPT ARGS...
report, script, args = Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
config = args[args.index("--config-name") + 1]
overrides = dict(a.split("=", 1) for a in args if "=" in a)
print("stand-in probe", script, config)
if overrides.get("fail") == config:
    raise SystemExit("stand-in failure of " + config)
if overrides.get("interrupt") == config:
    raise SystemExit(130)  # what the probe does when its run is cut short by SIGINT
ckpt = overrides["checkpoint.dir"] + "/" + config + "-ep=1.ckpt"
report.write_text(json.dumps({
    "script": script, "args": args, "epoch_seconds": [1.0, 2.0], "peak_rss_mib": 100.0, "peak_cuda_mib": None,
    "device": "cpu", "checkpoint": ckpt if script == "main_pretrain.py" else None,
    "metrics": {"val_acc1": float(len(config))}}))
"""


@pytest.fixture
def fake_probe(checkout, monkeypatch):
    # the runs start in the checkout, where `python -m fake_probe` finds this module
    (checkout / "fake_probe.py").write_text(FAKE_PROBE)
    monkeypatch.setattr(runs, "PROBE", "fake_probe")


@pytest.mark.fresh_interpreter
def test_compare_runs_pretrain_then_linear_on_its_checkpoint(checkout, fake_probe, tmp_path, capsys):
    out = tmp_path / "out"
    compare(checkout, out, ["sfrik", "barlow_twins"], overrides=["data.train_path=/data/tiny", "data.val_path=/v"])
    printed = capsys.readouterr().out
    assert [line.split(",")[0] for line in printed.splitlines() if line.startswith("[")] == [
        "[1/4] sfrik: pretrain (sfrik_cpu)",
        "[2/4] sfrik: linear (linear_cpu)",
        "[3/4] barlow_twins: pretrain (barlow_twins_cpu)",
        "[4/4] barlow_twins: linear (linear_cpu)",
    ]

    for label, config in (("sfrik", "sfrik_cpu"), ("barlow_twins", "barlow_twins_cpu")):
        lin = json.loads((out / label / "linear" / "report.json").read_text())
        ckpt = f"{out / label / 'checkpoints'}/{config}-ep=1.ckpt"
        assert f'pretrained_feature_extractor="{ckpt}"' in lin["args"]  # quoted: the name has "="
        assert "stand-in probe main_linear.py linear_cpu" in (out / label / "linear" / "run.log").read_text()

    md = (out / "compare.md").read_text()
    assert md in printed
    assert md.splitlines()[2:] == [
        "| sfrik | sfrik_cpu | 10.00 | /v | 1.50 | 2 | 100 | - | cpu |",
        "| barlow_twins | barlow_twins_cpu | 10.00 | /v | 1.50 | 2 | 100 | - | cpu |",
    ]
    with open(out / "compare.csv", newline="") as f:
        assert [r["checkpoint"] for r in csv.DictReader(f)] == [
            f"{out / 'sfrik' / 'checkpoints'}/sfrik_cpu-ep=1.ckpt",
            f"{out / 'barlow_twins' / 'checkpoints'}/barlow_twins_cpu-ep=1.ckpt",
        ]


@pytest.mark.fresh_interpreter
def test_compare_stops_at_a_failure_and_keeps_earlier_rows(checkout, fake_probe, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(
        SystemExit,
        match=r"(?s)sfrik-compare: vicreg: pretrain \(vicreg_cpu\) failed with exit "
        r"status 1; log: .*vicreg/pretrain/run.log\n.*stand-in failure of vicreg_cpu",
    ):
        compare(checkout, out, ["sfrik", "vicreg", "auh"], overrides=["fail=vicreg_cpu", "data.val_path=/v"])
    with open(out / "compare.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["sfrik"]
    assert not (out / "auh").exists()


@pytest.mark.fresh_interpreter
def test_an_interrupted_run_stops_the_comparison_with_its_status_and_records_it_nowhere(checkout, fake_probe, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        compare(checkout, out, ["sfrik", "vicreg", "auh"], overrides=["interrupt=vicreg_cpu", "data.val_path=/v"])
    assert stopped.value.code == 130
    with open(out / "compare.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["sfrik"]
    assert not (out / "auh").exists() and not (out / "vicreg" / "pretrain" / "report.json").exists()


@pytest.mark.fresh_interpreter
def test_compare_never_replaces_its_tables_without_overwrite(checkout, fake_probe, tmp_path):
    out = tmp_path / "out"
    compare(checkout, out, ["sfrik"], overrides=["data.val_path=/v"])
    before = (out / "compare.csv").read_text()
    with pytest.raises(SystemExit, match=r"already hold\(s\) results; pass --overwrite"):
        compare(checkout, out, ["vicreg"], overrides=["data.val_path=/v"])
    assert (out / "compare.csv").read_text() == before and not (out / "vicreg").exists()
    compare(checkout, out, ["vicreg"], "--overwrite", overrides=["data.val_path=/v"])
    with open(out / "compare.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["vicreg"]


# ---------------------------------------------------------------------------------------------
# End to end with solo-learn's scripts


@pytest.mark.slow
def test_compare_two_methods_on_the_cpu_protocol(tmp_path):
    require_solo_learn()
    checkout = solo_learn_checkout().resolve()
    before = sorted(p.name for p in checkout.iterdir())
    images = make_image_folder(tmp_path / "images" / "train")
    held_out = make_image_folder(tmp_path / "images" / "val", seed=1)
    out = tmp_path / "out"

    overrides = [f"data.train_path={images}", "++limit_train_batches=1"]
    probe = ["--linear-override", f"data.val_path={held_out}"]
    args = ["--protocol", "cpu", "--methods", "sfrik", "vicreg", "--out", out, *probe, "--", *overrides]
    proc = run_python("-m", "sfrik_experiments.compare", *args, cwd=tmp_path)  # finds $SOLO_LEARN_DIR
    assert "[1/4] sfrik: pretrain (sfrik_cpu)" in proc.stdout and "[4/4] vicreg: linear (linear_cpu)" in proc.stdout

    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["config"]) for r in rows] == [("sfrik", "sfrik_cpu"), ("vicreg", "vicreg_cpu")]
    for row in rows:
        assert 0 <= float(row["top1"]) <= 100
        assert row["top1_measured_on"] == row["top1_val_path"] == str(held_out)
        assert row["top1_on_training_images"] == "False"
        assert row["pretrain_epochs"] == "1" and float(row["pretrain_s_per_epoch"]) > 0
        assert float(row["pretrain_wall_s"]) > float(row["pretrain_s_per_epoch"])
        assert float(row["pretrain_peak_rss_mib"]) > 100 and row["pretrain_peak_cuda_mib"] == ""
        assert row["device"] == "cpu"
        ckpt = Path(row["checkpoint"])
        assert ckpt.is_file() and ckpt.is_relative_to(out / row["method"] / "checkpoints" / row["method"])
        args = json.loads((ckpt.parent / "args.json").read_text())
        assert args["method"] == row["method"]
    assert (out / "compare.md").read_text() in proc.stdout
    assert sorted(p.name for p in checkout.iterdir()) == before  # nothing written into the checkout
