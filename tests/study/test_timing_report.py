"""The summary's step-time section says what its numbers are: a network share above 100 % and a
missing step time are flagged (not printed as if they were measurements), and so are trained runs
whose own step time was not measured (the smoke preset's runs are too short to time)."""

import pytest

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")

from sfrik_experiments.study import report_time
from sfrik_experiments.study.presets import PRESETS
from sfrik_experiments.study.timing import run_timing


def timing_row(method, q, step, network, loss, share):
    return {"method": method, "q": str(q), "step_ms": step, "network_ms": network, "loss_ms": loss,
            "network_share": share, "step_iqr_ms": "1.0", "rounds": "8", "machine": "cpu"}  # fmt: skip


def run_row(method, sec_per_step, status="ok"):
    return {"method": method, "status": status, "sec_per_step": sec_per_step}


def table_rows(lines):
    text = "\n".join(lines)
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]


def test_shares_above_100_and_missing_step_times_are_flagged():
    # what the smoke study printed on a loaded machine: 104-130 % shares, and a step time that is nan
    timing = [
        timing_row("sfrik", 16, "13.5", "12.4", "0.9", "92.0"),
        timing_row("auh", 16, "11.9", "12.4", "0.7", "104.2"),
        timing_row("vicreg", 16, "9.5", "12.4", "0.8", "130.5"),
        timing_row("simclr", 16, "nan", "12.4", "0.8", "nan"),
        timing_row("mmcr", 16, "", "12.4", "0.6", ""),
    ]
    lines = report_time.timing_section(timing)
    assert table_rows(lines) == [
        "| sfrik | 16 | 13.5 | 12.4 | 0.9 | 92.0 |",
        "| auh | 16 | 11.9 | 12.4 | 0.7 | 104.2 † |",
        "| vicreg | 16 | 9.5 | 12.4 | 0.8 | 130.5 † |",
        "| simclr | 16 | not measured | 12.4 | 0.8 | - |",
        "| mmcr | 16 | not measured | 12.4 | 0.6 | - |",
    ]
    text = "\n".join(lines)
    assert "nan" not in text
    assert "† A network share above 100 % (auh at q = 16, vicreg at q = 16) is not a measurement" in text
    assert "the loss alone on fixed embeddings (step ms is not network ms + loss ms)" in text
    assert "No step time was recorded for simclr at q = 16, mmcr at q = 16" in text


def test_valid_shares_print_as_before_without_notes():
    timing = [timing_row("sfrik", 256, "322.5", "320.7", "2.8", "99.4"), timing_row("x", 256, "9", "9", "0", "100.0")]
    lines = report_time.timing_section(timing, [run_row("random", ""), run_row("sfrik", "0.321")])
    assert table_rows(lines) == ["| sfrik | 256 | 322.5 | 320.7 | 2.8 | 99.4 |", "| x | 256 | 9 | 9 | 0 | 100.0 |"]
    assert lines[-1].splitlines()[-1].startswith("| x |")  # no note after the table


def test_trained_runs_without_a_step_time_are_named():
    # the smoke preset's runs take 2 steps, which StepCost does not time: results.csv has nan there
    rows = [run_row("random", ""), run_row("sfrik", "nan"), run_row("auh", "nan"), run_row("vicreg", "0.2")]
    rows.append(run_row("simclr", "", status="diverged: loss is nan"))  # not trained to its end: not counted
    for timing in ([], [timing_row("sfrik", 16, "13.5", "12.4", "0.9", "92.0")]):
        text = "\n".join(report_time.timing_section(timing, rows))
        assert "sec_per_step in results.csv) is not measured in 2 of the 3 trained runs" in text
        assert "too short to time any" in text


def test_the_timing_pass_needs_a_round():
    with pytest.raises(SystemExit, match=r"--timing-rounds 0: the timing pass needs at least 1 round"):
        run_timing(PRESETS["smoke"], None, [], "lightly", "unused.csv", rounds=0)
