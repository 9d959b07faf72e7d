"""sfrik-compare: config mapping, argument errors, --dry-run, tables, the run loop (with a stand-in
probe, no solo-learn needed), the probe itself (needs lightning) and, slow, the real comparison of
two methods on the CPU protocol with solo-learn's scripts ($SOLO_LEARN_DIR)."""

import csv
import json
import shlex
import signal
import sys
from pathlib import Path

import pytest
from helpers.images import make_image_folder
from helpers.interrupts import start_paused
from helpers.processes import run_python
from helpers.solo import require_solo_learn, solo_learn_checkout

import sfrik_experiments.compare.cli as cmp
from sfrik_experiments.compare.cli import RunFailed, Step

CPU_METHODS = {
    "sfrik": "sfrik_cpu",
    "vicreg": "vicreg_cpu",
    "simclr": "simclr_cpu",
    "barlow_twins": "barlow_twins_cpu",
    "auh": "auh_cpu",
}


# ---------------------------------------------------------------------------------------------
# Which configs


def test_protocols_and_methods_of_the_packaged_configs():
    configs = cmp.packaged_configs()
    assert cmp.protocols(configs) == ["cpu", "in100", "in20"]
    assert cmp.methods_for("cpu", configs) == CPU_METHODS
    assert cmp.methods_for("in20", configs) == {
        **{m: c.replace("_cpu", "_in20") for m, c in CPU_METHODS.items()},
        "sfrik_multicrop": "sfrik_in20_multicrop",
    }
    assert cmp.methods_for("in100", configs) == {
        "sfrik": "sfrik_in100",
        "sfrik_q8192": "sfrik_in100_q8192",
        "vicreg": "vicreg_in100",
    }


def test_resolve_labels_config_names_and_alias():
    assert cmp.resolve("cpu_smoke", ["sfrik", "vicreg_cpu", "barlow_twins"]) == (
        "linear_cpu",
        [("sfrik", "sfrik_cpu"), ("vicreg", "vicreg_cpu"), ("barlow_twins", "barlow_twins_cpu")],
    )
    assert cmp.resolve("in100", ["sfrik_q8192"]) == ("linear_in100", [("sfrik_q8192", "sfrik_in100_q8192")])


@pytest.mark.parametrize(
    "protocol, methods, match",
    [
        (
            "in10",
            ["sfrik"],
            r"--protocol 'in10': no such protocol; the packaged configs have cpu, in100, in20 "
            r"\(cpu_smoke = cpu\)",
        ),
        (
            "cpu",
            ["byol"],
            r"--methods: no config for 'byol' in protocol 'cpu' \(looked for byol_cpu.yaml in "
            r"sfrik_plugin_configs\); methods of cpu: auh, barlow_twins, sfrik, simclr, vicreg",
        ),
        (
            "in100",
            ["simclr"],
            r"no config for 'simclr' in protocol 'in100'.*methods of in100: sfrik, sfrik_q8192, vicreg",
        ),
        ("cpu", ["sfrik_in20"], r"no config for 'sfrik_in20' in protocol 'cpu'"),
        ("cpu", ["data.train_path=/x"], r"a Hydra override\? put overrides after `--`"),
        ("cpu", ["sfrik", "vicreg", "sfrik_cpu"], r"--methods: sfrik given more than once"),
        ("cpu", [], r"--methods: give at least one of auh, barlow_twins, sfrik, simclr, vicreg"),
    ],
)
def test_resolve_errors_name_the_argument(protocol, methods, match):
    with pytest.raises(ValueError, match=match):
        cmp.resolve(protocol, methods)


def test_hydra_path_round_trips_through_hydras_parser():
    parser_module = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parser = parser_module.OverridesParser.create()
    for path in ["/plain/run-1.ckpt", "/ckpt/sfrik/0/sfrik-cpu-0-ep=0.ckpt", "/with space/it's", 'a"b\\', "C:\\x\\"]:
        value = cmp.hydra_path(path)
        assert parser.parse_override(f"pretrained_feature_extractor={value}").value() == path, value
    assert cmp.hydra_path("/plain/run-1.ckpt") == "/plain/run-1.ckpt"  # printed commands stay readable


def test_override_value_reads_what_hydra_reads():
    parser_module = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parser = parser_module.OverridesParser.create()
    for path in ["/plain/val", "/ckpt/x-ep=0.ckpt", "/with space/it's", 'a"b\\', "C:\\x\\", "'single'"]:
        for prefix in ("", "+", "++"):
            override = f"{prefix}data.val_path={cmp.hydra_path(path)}"
            assert parser.parse_override(override).value() == path
            assert cmp.override_value([override], "data.val_path") == path, override
    assert cmp.override_value(["data.val_path='/a b'"], "data.val_path") == "/a b"
    # the last one wins, as in Hydra; other keys and deletions
    overrides = ["data.val_path=/a", "data.train_path=/t", "++data.val_path=/b"]
    assert cmp.override_value(overrides, "data.val_path") == "/b"
    assert cmp.override_value([*overrides, "~data.val_path"], "data.val_path") is None
    assert cmp.override_value(["data.val_path_x=/a", "xdata.val_path=/b"], "data.val_path") is None


# ---------------------------------------------------------------------------------------------
# Command line without running anything


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A stand-in solo-learn checkout: what find_solo_learn_dir and sfrik-compare look for."""
    root = tmp_path / "solo-learn"
    root.mkdir()
    for script in ("main_knn.py", "main_pretrain.py", "main_linear.py"):
        (root / script).write_text("raise SystemExit('a stand-in, never run')\n")
    return root


def compare(checkout, out, methods, *options, overrides=()):
    """sfrik-compare on the cpu protocol in the stand-in checkout; overrides go after `--`."""
    argv = ["--solo-learn-dir", str(checkout), "--protocol", "cpu", "--methods", *methods, "--out", str(out)]
    cmp.main([*argv, *options, *(["--", *overrides] if overrides else [])])


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
        cmp.main(["--solo-learn-dir", str(checkout), "--protocol", "gpu", "--methods", "sfrik", "--out", "o"])
    with pytest.raises(SystemExit, match=r"^sfrik-compare: --methods: no config for 'data.train_path=/x'"):
        compare(checkout, "o", ["sfrik", "data.train_path=/x"])  # no `--` before an override: --methods takes it
    monkeypatch.delenv("SOLO_LEARN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"sfrik-compare: no main_knn.py in .*the current directory"):
        cmp.main(base)
    (checkout / "main_linear.py").unlink()
    monkeypatch.setenv("SOLO_LEARN_DIR", str(checkout))
    with pytest.raises(SystemExit, match=r"sfrik-compare: no main_linear.py in the solo-learn checkout"):
        cmp.main(base)


# ---------------------------------------------------------------------------------------------
# Reports and tables


HELD_OUT = cmp.ProbeImages("/data/train", "/data/val", None, Path("/solo"))


def fake_reports(tmp_path, val_acc1=61.25, epochs=(2.0, 4.0), images=HELD_OUT):
    pretrain = Step("sfrik", "pretrain", "sfrik_cpu", tmp_path / "sfrik" / "pretrain")
    linear = Step("sfrik", "linear", "linear_cpu", tmp_path / "sfrik" / "linear")
    pre = {
        "epoch_seconds": list(epochs),
        "metrics": {"train_sfrik_loss": 3.0},
        "peak_rss_mib": 1234.5,
        "peak_cuda_mib": None,
        "device": "cpu",
        "checkpoint": "/c/sfrik-cpu-0-ep=1.ckpt",
        "wall_seconds": 9.5,
    }
    lin = {"epoch_seconds": [1.0], "metrics": {"val_acc5": 99.0, **({"val_acc1": val_acc1} if val_acc1 else {})}}
    return pretrain, linear, pre, lin, images


def test_result_row_from_reports(tmp_path):
    row = cmp.result_row(*fake_reports(tmp_path))
    assert row == {
        "method": "sfrik",
        "config": "sfrik_cpu",
        "top1": 61.25,
        "top1_measured_on": "/data/val",
        "top1_on_training_images": False,
        "top1_val_path": "/data/val",
        "pretrain_epochs": 2,
        "pretrain_s_per_epoch": 3.0,
        "pretrain_wall_s": 9.5,
        "pretrain_peak_rss_mib": 1234.5,
        "pretrain_peak_cuda_mib": None,
        "device": "cpu",
        "checkpoint": "/c/sfrik-cpu-0-ep=1.ckpt",
    }
    assert cmp.result_row(*fake_reports(tmp_path, epochs=()))["pretrain_s_per_epoch"] is None  # resumed, no epoch run
    with pytest.raises(
        RunFailed, match=r"sfrik: the linear probe \(linear_cpu\) logged no val_acc1 .* see .*linear/run.log"
    ):
        cmp.result_row(*fake_reports(tmp_path, val_acc1=None))


def test_tables(tmp_path):
    rows = [
        cmp.result_row(*fake_reports(tmp_path)),
        {
            **cmp.result_row(*fake_reports(tmp_path, val_acc1=7.0)),
            "method": "vicreg",
            "config": "vicreg_cpu",
            "pretrain_peak_cuda_mib": 2048.4,
            "device": "NVIDIA H100 80GB HBM3",
        },
    ]
    csv_path, md_path = cmp.write_tables(rows, tmp_path / "out")
    with open(csv_path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["method"] for r in read] == ["sfrik", "vicreg"]
    assert float(read[0]["top1"]) == 61.25 and float(read[0]["pretrain_s_per_epoch"]) == 3.0
    assert read[0]["pretrain_peak_cuda_mib"] == "" and float(read[1]["pretrain_peak_cuda_mib"]) == 2048.4
    assert list(read[0]) == cmp.COLUMNS
    assert md_path.read_text().splitlines() == [
        "| method | config | linear top-1 (%) | top-1 measured on | time / epoch (s) | epochs | peak RSS (MiB) "
        "| peak GPU memory (MiB) | device |",
        "|---|---|---|---|---|---|---|---|---|",
        "| sfrik | sfrik_cpu | 61.25 | /data/val | 3.00 | 2 | 1234 | - | cpu |",
        "| vicreg | vicreg_cpu | 7.00 | /data/val | 3.00 | 2 | 1234 | 2048 | NVIDIA H100 80GB HBM3 |",
    ]


@pytest.mark.parametrize(
    "train, val, limit, measured_on, on_training, notes",
    [
        ("/data/train", "/data/val", None, "/data/val", False, []),
        # the same folder, however it is spelt (relative paths are relative to the checkout)
        ("/data/train", "/data/train", None, "the training images", True, ["measured on the training images"]),
        ("/solo/images", "images/", None, "the training images", True, ["measured on the training images"]),
        ("/data/train", "/data/val", "2", "/data/val (limit_val_batches=2)", False, ["first batches of data.val_path"]),
        (
            "/data/train",
            "/data/train/",
            "1",
            "the training images (limit_val_batches=1)",
            True,
            ["measured on the training images", "in class order"],
        ),
    ],
)
def test_the_table_says_what_linear_top1_is_measured_on(tmp_path, train, val, limit, measured_on, on_training, notes):
    images = cmp.ProbeImages(train, val, limit, Path("/solo"))
    row = cmp.result_row(*fake_reports(tmp_path, images=images))
    assert (row["top1_measured_on"], row["top1_on_training_images"], row["top1_val_path"]) == (
        measured_on,
        on_training,
        val,
    )
    _, md_path = cmp.write_tables([row], tmp_path / "out", images.notes())
    text = md_path.read_text()
    assert text.splitlines()[2].startswith(f"| sfrik | sfrik_cpu | 61.25 | {measured_on} |")
    assert len(images.notes()) == len(notes) and all(n in text for n in notes), text
    if on_training:
        assert "a training accuracy, not a held-out one" in text and "data.val_path=<folder>" in text
    with open(tmp_path / "out" / "compare.csv", newline="") as f:
        (read,) = list(csv.DictReader(f))
    assert (read["top1_measured_on"], read["top1_on_training_images"]) == (measured_on, str(on_training))


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
    assert cmp.probe_images(overrides, checkout) == cmp.ProbeImages("/t", "/v", "2", checkout)


# ---------------------------------------------------------------------------------------------
# Running, with a stand-in for the probe


@pytest.mark.fresh_interpreter
def test_run_step_failures_name_the_method_and_log(tmp_path):
    step = Step("vicreg", "pretrain", "vicreg_cpu", tmp_path / "vicreg" / "pretrain")
    failing = [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"]
    with pytest.raises(
        RunFailed,
        match=r"(?s)vicreg: pretrain \(vicreg_cpu\) failed with exit status 3; "
        rf"log: {step.log}\n.*boom: bad config",
    ):
        cmp.run_step(step, failing, tmp_path)
    log = step.log.read_text()
    assert log.startswith(f"$ cd {tmp_path} && ") and "boom: bad config" in log

    step.report.write_text("{}")  # left by an earlier run: must not count
    with pytest.raises(RunFailed, match=r"vicreg: pretrain \(vicreg_cpu\) exited without writing .*report.json"):
        cmp.run_step(step, [sys.executable, "-c", "pass"], tmp_path)


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
    monkeypatch.setattr(cmp, "PROBE", "fake_probe")


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
# The probe (needs lightning)

PROBED_SCRIPT = """
import sys, time
import torch
from lightning.pytorch import LightningModule, Trainer

class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, i):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, i):
        time.sleep(VAL_SLEEP_S)         # validation inside an epoch: not part of its time
        self.log("val_acc1", 37.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

if __name__ == "__main__":
    print("argv", sys.argv[1:])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
    Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            num_sanity_val_steps=0, enable_model_summary=False).fit(Tiny(), data, data)
"""


@pytest.mark.slow  # importing lightning in a fresh process: ~10 s
def test_probe_reports_epoch_times_without_validation_and_the_metrics(tmp_path):
    pytest.importorskip("lightning", reason="lightning is not installed (it comes with solo-learn)")
    val_sleep_s = 0.5
    (tmp_path / "script.py").write_text(PROBED_SCRIPT.replace("VAL_SLEEP_S", str(val_sleep_s)))
    probe = ["-m", "sfrik_experiments.compare.probe", "--report", "r.json"]
    proc = run_python(*probe, "script.py", "a=1", "--flag", cwd=tmp_path)
    assert "argv ['a=1', '--flag']" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["epoch_seconds"]) == report["max_epochs"] == 2
    # each epoch validates twice (2 batches x val_sleep_s): subtracted, what is left is tiny
    assert all(0 < s < val_sleep_s for s in report["epoch_seconds"]), report["epoch_seconds"]
    assert report["metrics"]["val_acc1"] == 37.5
    assert report["device"] == "cpu" and report["peak_cuda_mib"] is None and report["checkpoint"] is None
    assert report["peak_rss_mib"] > 50


@pytest.mark.slow
def test_a_probed_run_cut_short_writes_no_report_and_exits_with_the_signal(tmp_path):
    pytest.importorskip("lightning", reason="lightning is not installed (it comes with solo-learn)")
    (tmp_path / "script.py").write_text(PROBED_SCRIPT.replace("VAL_SLEEP_S", "0"))
    child = start_paused(
        "sfrik_experiments.compare.probe", "--report", "r.json", "script.py", workdir=tmp_path / "child", cwd=tmp_path
    )
    assert child.interrupt(signal.SIGINT) == 130, child.output()
    assert "the run was interrupted by SIGINT" in child.output()
    assert not (tmp_path / "r.json").exists()


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
