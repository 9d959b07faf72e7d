"""A run cut short is never a result of the study: real SIGINT / SIGTERM sent to a real sfrik-study
mid-training (tests/helpers/interrupts.py), then the record and the resume checked; one --out per
process at a time; --only replaces a row only when its new run finishes and runs nothing else."""

from __future__ import annotations

import signal

import pytest
from helpers.images import folder_dataset, make_folder
from helpers.interrupts import start_paused
from helpers.processes import failure, run_python
from helpers.records import rows_of

from sfrik_experiments.utils.arguments import command_line

pytestmark = pytest.mark.fresh_interpreter  # every test here starts a process or compiles

pytest.importorskip("lightly", reason="the CI study uses lightly's baselines")
TIMEOUT_S = 900


def study_args(folder, out, *extra) -> list[str]:
    options = {"preset": "smoke", **folder_dataset(folder), "out": out, "library": "lightly"}
    return [*command_line(options), *extra]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_is_not_recorded_and_the_resumed_study_runs_it(tmp_path, folder, sig):
    out = tmp_path / "out"
    phases = ("--phases", "tune")
    # fit 2 is the second trained run; it pauses after its first of two steps
    child = start_paused(
        "sfrik_experiments.study", *study_args(folder, out, *phases), workdir=tmp_path / "child", at_step=1, in_fit=2
    )
    status = child.interrupt(sig)
    log = child.output()
    assert status == 128 + sig, log
    assert "was not recorded as a result" in log and signal.Signals(sig).name in log, log
    before = rows_of(out / "results.csv")
    trained_before = [r for r in before if r["method"] != "random"]
    assert len(trained_before) == 1 and all(r["status"] == "ok" for r in before), before  # fit 1 only
    assert not (out / ".lock").read_text().strip()  # the lock is released with its holder
    if sig == signal.SIGTERM:
        return  # the resume is the same after either signal: once is enough (SIGINT)
    # the resumed study runs the interrupted run (and the rest), keeping the finished rows as they were
    done = run_python("-m", "sfrik_experiments.study", *study_args(folder, out, *phases), timeout=TIMEOUT_S)
    assert f"{len(before)} already in" in done.stdout
    after = rows_of(out / "results.csv")
    assert after[: len(before)] == before
    assert len(after) > len(before) and all(r["status"] == "ok" for r in after)
    # the interrupted run is the first trained run after the finished ones: it now has its row,
    # trained for its whole budget (the smoke preset: 2 steps of one epoch)
    assert len({r["run_id"] for r in after}) == len(after)


@pytest.mark.slow
def test_a_second_study_on_the_same_out_is_refused_naming_the_holder(tmp_path, folder):
    out = tmp_path / "out"
    child = start_paused(
        "sfrik_experiments.study", *study_args(folder, out, "--phases", "tune"), workdir=tmp_path / "child", in_fit=1
    )
    try:
        child.wait_for_pause()
        before = rows_of(out / "results.csv")  # the holder's finished runs (a random encoder)
        second = run_python(
            "-m",
            "sfrik_experiments.study",
            *study_args(folder, out, "--phases", "tune"),
            check=False,
            timeout=TIMEOUT_S,
        )
        assert second.returncode != 0, failure(second)
        assert f"is in use by pid {child.proc.pid}" in second.stderr and "use another --out" in second.stderr
        assert rows_of(out / "results.csv") == before  # the second process ran nothing
        # --report-only only reads the rows: it runs beside the holder
        report = run_python(
            "-m", "sfrik_experiments.study", *study_args(folder, out, "--report-only"), timeout=TIMEOUT_S
        )
        assert (out / "summary.md").exists() and "## Tuning" in report.stdout
    finally:
        child.proc.kill()
        child.proc.wait()


@pytest.mark.slow
def test_only_keeps_the_old_row_until_the_new_run_ends_and_runs_nothing_else(tmp_path, folder):
    out = tmp_path / "out"
    run_python("-m", "sfrik_experiments.study", *study_args(folder, out, "--phases", "tune"), timeout=TIMEOUT_S)
    rows = rows_of(out / "results.csv")
    again = next(r["run_id"] for r in rows if r["method"] == "sfrik")
    child = start_paused(
        "sfrik_experiments.study", *study_args(folder, out, "--only", again), workdir=tmp_path / "child", in_fit=1
    )
    assert child.interrupt(signal.SIGINT) == 130, child.output()
    assert rows_of(out / "results.csv") == rows  # the recorded row is still there, untouched
    done = run_python("-m", "sfrik_experiments.study", *study_args(folder, out, "--only", again), timeout=TIMEOUT_S)
    assert "timing q=" not in done.stdout and not (out / "timing.csv").exists()  # no timing pass after --only
    rerun = rows_of(out / "results.csv")
    assert [r["run_id"] for r in rerun] == [r["run_id"] for r in rows]
    assert [r for r in rerun if r["run_id"] != again] == [r for r in rows if r["run_id"] != again]
    new = next(r for r in rerun if r["run_id"] == again)
    assert new["finished_at"] >= next(r for r in rows if r["run_id"] == again)["finished_at"]
