"""sfrik-demo's results are what they say: a run cut short by SIGINT / SIGTERM (real signals to a
real child, mid-training) is not a result and the command exits 130 / 143; --out is checked before
any work and never replaced without --overwrite; a run that diverges at the step whose memory is
profiled ends cleanly; every --precision offered trains on the CPU."""

from __future__ import annotations

import math
import os
import signal

import lightning as L
import pytest
import torch
from helpers.images import folder_dataset, make_folder
from helpers.interrupts import start_paused
from helpers.processes import failure, run_python

from sfrik_experiments.demo import cli as demo
from sfrik_experiments.engine.augment import BatchAugment
from sfrik_experiments.engine.model import build_backbone
from sfrik_experiments.engine.pretrain import SelfSupervised, StepCost
from sfrik_experiments.utils.arguments import command_line
from sfrik_plugin.projector import build_projector

TIMEOUT_S = 600
TINY = {"epochs": 3, "train_size": 0, "probe_size": 0, "batch_size": 32, "width": 4, "proj_dim": 16, "knn_k": 5}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), classes=3, per_class=40)


def demo_args(folder, out, **extra) -> list[str]:
    options = {
        **folder_dataset(folder),
        "methods": ["sfrik"],
        **TINY,
        "accelerator": "cpu",
        "random_inits": 1,
        "out": out,
        **extra,
    }
    return command_line(options)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_demo_records_nothing_and_exits_with_the_signal(tmp_path, folder, sig):
    out = tmp_path / "out"
    child = start_paused("sfrik_experiments.demo", *demo_args(folder, out), workdir=tmp_path / "child", at_step=2)
    status = child.interrupt(sig)
    log = child.output()
    assert status == 128 + sig, log
    assert f"pretraining sfrik was interrupted by {signal.Signals(sig).name}" in log
    assert "was not recorded as a result" in log and "linear top-1 %" not in log  # no table of a cut-short run
    assert not any(out.iterdir())  # the checked --out holds nothing


@pytest.mark.slow
def test_the_demo_never_replaces_results_without_overwrite(tmp_path, folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("earlier results\n")
    refused = run_python("-m", "sfrik_experiments.demo", *demo_args(folder, out), check=False, timeout=TIMEOUT_S)
    assert refused.returncode != 0 and "already hold(s) results; pass --overwrite" in refused.stderr, failure(refused)
    assert "Epoch" not in refused.stderr  # refused before any training
    assert (out / "results.csv").read_text() == "earlier results\n"
    run_python("-m", "sfrik_experiments.demo", *demo_args(folder, out, epochs=1), "--overwrite", timeout=TIMEOUT_S)
    assert (out / "results.csv").read_text().startswith(",".join(demo.RESULT_FIELDS))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_is_refused_at_start(tmp_path, folder):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = run_python(
        "-m", "sfrik_experiments.demo", *demo_args(folder, locked / "out"), check=False, timeout=TIMEOUT_S
    )
    assert proc.returncode != 0 and "--out" in proc.stderr and "not a folder this process can write to" in proc.stderr


@pytest.mark.fresh_interpreter
def test_an_out_that_is_a_file_is_refused_at_start(tmp_path, folder):
    # (root can write anywhere: a path under a file is unwritable for everyone)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_python(
        "-m", "sfrik_experiments.demo", *demo_args(folder, blocker / "out"), check=False, timeout=TIMEOUT_S
    )
    assert proc.returncode != 0, failure(proc)
    assert "--out" in proc.stderr and "not a folder this process can write to" in proc.stderr
    assert "Epoch" not in proc.stderr and "random encoder" not in proc.stdout  # before any work


def test_precisions_that_cannot_train_are_refused_and_the_offered_ones_are_the_engines(capsys):
    for value in demo.NOT_OFFERED:
        with pytest.raises(SystemExit):
            demo.parse_args(["--precision", value])
        assert f"argument --precision: {value} is not supported" in capsys.readouterr().err
    assert set(demo.PRECISIONS).isdisjoint(demo.NOT_OFFERED)


def tiny_module(objective) -> SelfSupervised:
    return SelfSupervised(
        build_backbone("resnet10", 2, 1),
        build_projector(16, 8, 8),
        objective,
        BatchAugment(8, [0.5], [0.5]),
        lr=1e-3,
        weight_decay=0.0,
        warmup_epochs=0,
    )


def tiny_loader():
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=4)


def tiny_trainer(tmp_path, callbacks=(), precision="32-true"):
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        default_root_dir=str(tmp_path),
    )


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_a_loss_that_diverges_at_the_profiled_step_leaves_no_profiler_running(tmp_path):
    calls = []

    def nan_at_step_1(z1, z2):
        calls.append(1)
        loss = (z1 - z2).pow(2).sum()
        return loss * math.nan if len(calls) == 2 else loss

    cost = StepCost(measure_at=1)
    with pytest.raises(FloatingPointError, match="at step 1"):
        tiny_trainer(tmp_path, [cost]).fit(tiny_module(nan_at_step_1), tiny_loader())
    assert cost._profiler is None
    assert not torch.autograd.profiler._is_profiler_enabled  # a profiler left on crashes the interpreter at exit


@pytest.mark.fresh_interpreter
def test_a_process_whose_run_diverges_at_the_profiled_step_exits_cleanly():
    code = """
        import math
        import lightning as L, torch
        from sfrik_experiments.engine.augment import BatchAugment
        from sfrik_experiments.engine.model import build_backbone
        from sfrik_experiments.engine.pretrain import SelfSupervised, StepCost
        from sfrik_plugin.projector import build_projector
        calls = []
        def nan_at_step_1(z1, z2):
            calls.append(1)
            loss = (z1 - z2).pow(2).sum()
            return loss * math.nan if len(calls) == 2 else loss
        module = SelfSupervised(build_backbone("resnet10", 2, 1), build_projector(16, 8, 8), nan_at_step_1,
                                BatchAugment(8, [0.5], [0.5]), lr=1e-3, weight_decay=0.0, warmup_epochs=0)
        images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=4)
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[StepCost(measure_at=1)])
        try:
            trainer.fit(module, loader)
        except FloatingPointError as error:
            print("diverged:", error)
    """
    from helpers.processes import run_code

    proc = run_code(code, check=False, timeout=TIMEOUT_S)
    assert proc.returncode == 0, failure(proc)  # was -11 (a segmentation fault at exit)
    assert "diverged: the loss is nan at step 1" in proc.stdout


@pytest.mark.fresh_interpreter
def test_float16_autocast_is_refused_on_the_cpu_before_any_work(tmp_path, folder):
    for value in ("16-mixed", "16"):
        proc = run_python(
            "-m", "sfrik_experiments.demo", *demo_args(folder, tmp_path / value, precision=value), check=False
        )
        assert proc.returncode != 0 and f"--precision {value}: float16 autocast runs on a GPU only" in proc.stderr
        assert "Epoch" not in proc.stderr


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16"])
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_every_precision_offered_on_the_cpu_trains_there(tmp_path, precision):
    module = tiny_module(lambda z1, z2: (z1 - z2).pow(2).sum())
    trainer = tiny_trainer(tmp_path, precision=precision)
    trainer.fit(module, tiny_loader())
    assert trainer.global_step == 4 and not trainer.interrupted
