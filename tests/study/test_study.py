"""sfrik-study: statistics against scipy-free closed forms, the plan (equal grids, choices made on
the validation split only), the results file (append, resume, interrupted lines), the label-free
measures against direct formulas, and (slow) the smoke preset end to end, killed and resumed."""

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from helpers.images import folder_dataset, make_folder
from helpers.processes import run_python
from helpers.records import rows_of
from helpers.study import fake_row, run_plan

from sfrik_experiments.engine import quality
from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.study import plan, presets, stats
from sfrik_experiments.utils.arguments import command_line

TIMEOUT_S = 900


def test_summary_matches_the_student_t_interval():
    s = stats.summarise([1.0, 2.0, 3.0])
    assert s.n == 3 and s.mean == 2.0 and s.std == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2}
    assert (s.low, s.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert math.isnan(stats.summarise([5.0]).std) and stats.summarise([]).n == 0
    d = stats.paired_difference([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert d.mean == pytest.approx(2.0) and d.std == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference([1.0], [1.0, 2.0])


def test_paired_t_p_value_matches_scipy_and_holm_adjusts_step_down():
    from scipy import stats as sp

    a, b = [81.0, 82.5, 80.9, 83.1, 82.0], [80.2, 82.6, 80.1, 82.0, 81.3]
    assert stats.paired_t_p_value(stats.paired_difference(a, b)) == pytest.approx(sp.ttest_rel(a, b).pvalue, rel=1e-10)
    assert math.isnan(stats.paired_t_p_value(stats.paired_difference([1.0], [0.0])))
    # Holm (1979): sorted p_(i) times (m - i + 1), made monotone, capped at 1; order kept; nan ignored
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.5, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_detectable_difference_has_the_stated_power_by_simulation():
    import numpy as np
    from scipy import stats as sp

    std, n, alpha = 0.8, 5, 0.05 / 6
    mdd = stats.detectable_difference(std, n, alpha)
    rng = np.random.default_rng(0)
    samples = rng.normal(mdd, std, size=(40000, n))
    p = sp.ttest_1samp(samples, 0.0, axis=1).pvalue
    assert (p < alpha).mean() == pytest.approx(0.8, abs=0.01)
    assert stats.detectable_difference(std, 10, alpha) < mdd  # more seeds, smaller detectable difference
    assert math.isnan(stats.detectable_difference(0.0, n, alpha))


def test_full_preset_tunes_every_method_alike_with_a_tuning_seed_no_final_run_uses():
    preset = presets.PRESETS["full"]
    assert set(preset.grids) == {"sfrik", "auh", *presets.RECORDED_BASELINES}
    assert {"sigreg", "mmcr"} <= set(preset.grids)
    searches = plan.Planner(preset).tune_searches()
    shapes = {(tuple(a.span for a in s.axes), tuple(a.max_rungs for a in s.axes)) for s in searches}
    assert len(shapes) == 1  # the same starting grid and cap for every method
    assert {a.ladder.factor for s in searches for a in s.axes} == {2.0}
    assert [a.name for a in searches[0].axes][0] == "lr"
    assert len(preset.final_seeds) == 5 and preset.tune_seed not in preset.final_seeds + preset.repeat_seeds
    assert {256, 1024, 4096} <= set(preset.table_qs)


def peak(spec, centre, lr_centre=5e-3):
    """A smooth score with its maximum at (lr_centre, centre) in log space."""
    grid = presets.PRESETS["full"].grids[spec.method]
    value = float(spec.params[grid.parameter])
    return 80.0 - math.log2(value / centre) ** 2 - math.log2(float(spec.params["lr"]) / lr_centre) ** 2


def test_a_grid_grows_along_its_ladder_until_the_best_is_interior():
    preset = presets.PRESETS["full"]
    # SFRIK's optimum 4 rungs above its ladder's centre and the lr 1 rung below: the grid must grow
    # up to the optimum's neighbour; vicreg's optimum is the centre: 3 x 3, nothing more.
    optimum = {"sfrik": 4000.0 * 8, "vicreg": 10.0}

    def score(spec):
        if spec.method == "random":
            return 70.0
        return peak(spec, optimum.get(spec.method, preset.grids[spec.method].ladder.centre), 2.5e-3)

    rows = run_plan(preset, score, ("tune",))
    state = {s.method: st for s, st in plan.choices(preset, rows).searches if s.q == preset.main_q}
    assert state["sfrik"].best["sim_loss_weight"] == 32000.0 and state["sfrik"].best["lr"] == 2.5e-3
    assert state["sfrik"].spans[0] == (-2, 1)  # lr: one rung down, then interior
    assert state["sfrik"].spans[1] == (-1, 3)  # sim weight: up to the cap of 5 rungs, optimum at 3 = the edge
    assert state["sfrik"].at_cap == ("sim_loss_weight",)  # ... so reported at the cap
    assert state["vicreg"].spans == ((-2, 1), (-1, 1)) and state["vicreg"].at_cap == ()
    assert all(s.split == "validation" and s.seed == preset.tune_seed for s in state["sfrik"].runs)


def test_choice_is_the_best_validation_score_and_later_phases_read_the_test_split_only():
    preset = presets.PRESETS["full"]
    rows = run_plan(
        preset, lambda s: peak(s, preset.grids[s.method].ladder.centre) if s.method in preset.grids else 70.0
    )
    chosen = plan.choices(preset, rows)
    for method, grid in preset.grids.items():
        assert chosen.main[method]["lr"] == 5e-3 and chosen.main[method][grid.parameter] == grid.ladder.centre
    runs = plan.study_runs(preset, rows)
    assert len(runs) == len(rows) >= plan.Planner(preset).count()
    assert {s.split for s in runs if s.phase == "tune"} == {"validation"}
    assert {s.split for s in runs if s.phase != "tune"} == {"test"}
    assert {s.seed for s in runs if s.phase == "tune"} == {preset.tune_seed}
    finals = [s for s in runs if s.phase == "final" and s.method == "vicreg" and s.q == 1024]
    assert [s.seed for s in finals] == list(preset.final_seeds) and len({s.setting for s in finals}) == 1
    at_256 = [s for s in runs if s.phase == "final" and s.method == "vicreg" and s.q == 256]
    assert [s.seed for s in at_256] == list(preset.repeat_seeds)
    # the q table re-tunes around the q = 1024 choice with the lr kept
    tune_256 = [s for s in runs if s.phase == "tune" and s.method == "sfrik" and s.q == 256]
    assert {s.params["lr"] for s in tune_256} == {5e-3}
    assert sorted(s.params["sim_loss_weight"] for s in tune_256) == [2000.0, 4000.0, 8000.0]


def test_a_diverged_run_ranks_last_ties_go_to_the_first_and_incomplete_tuning_chooses_nothing():
    preset = presets.PRESETS["full"]
    search = next(s for s in plan.Planner(preset).tune_searches() if s.method == "simclr")
    points = [spec for _, spec in search.runs([a.span for a in search.axes])]
    by_id = {s.run_id: fake_row(s, 70.0) for s in points}
    by_id[points[4].run_id] = fake_row(points[4], 99.0, "diverged: loss is nan")
    state = plan.search_state(search, by_id)
    # every ok run ties, so the first (lr and temperature at their lowest rungs) wins and the
    # grid grows down both axes; the diverged "99" does not count
    assert state.best is None and state.spans == ((-2, 1), (-2, 1))
    by_id.update({s.run_id: fake_row(s, 60.0) for s in state.runs if s.run_id not in by_id})
    assert plan.search_state(search, by_id).best == points[0].params  # now interior
    partial = {k: v for k, v in by_id.items() if k != points[-1].run_id}
    assert plan.search_state(search, partial).best is None


def test_the_accelerator_is_checked_before_any_work(capsys, monkeypatch):
    from sfrik_experiments.study import cli

    with pytest.raises(SystemExit):
        cli.parse_args(["--out", "x", "--accelerator", "tpu"])
    assert "--accelerator must be one of cpu, gpu, cuda, got 'tpu'" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.parse_args(["--out", "x", "--accelerator", "gpu"])
    assert "--accelerator gpu: torch sees no CUDA GPU here (use --accelerator cpu)" in capsys.readouterr().err


def test_results_file_appends_resumes_and_drops_a_cut_line(tmp_path):
    path = tmp_path / "results.csv"
    store = ResultsFile(path, "protocol A")
    spec = plan.RunSpec("tune", "sfrik", 8, 0, "validation", (("lr", 0.1),))
    row = {**fake_row(spec, 50.0), "protocol": "protocol A"}
    store.append(row)
    with open(path, "a") as f:
        f.write("tune,sfrik,8,1")  # an interrupted write
    with pytest.warns(UserWarning, match="1 incomplete line"):
        again = ResultsFile(path, "protocol A")
    assert again.done == {spec.run_id}
    assert len(list(csv.DictReader(open(path)))) == 1
    with pytest.raises(ValueError, match="another protocol"):
        ResultsFile(path, "protocol B")
    with pytest.raises(ValueError, match="lacks"):
        again.append({"phase": "tune"})


def test_label_free_measures_match_direct_formulas():
    x = torch.eye(6, dtype=torch.float64)
    assert quality.rankme(x) == pytest.approx(6.0, rel=1e-5)  # equal singular values: full rank
    assert quality.rankme(torch.ones(5, 4)) == pytest.approx(1.0, rel=1e-4)
    u = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=1)
    direct = math.log(
        sum(math.exp(-2 * (u[i] - u[j]).square().sum().item()) for i in range(7) for j in range(7) if i != j) / 42
    )
    assert quality.uniformity(u) == pytest.approx(direct, rel=1e-10)
    v = torch.nn.functional.normalize(u + 0.1, dim=1)
    assert quality.alignment(u, v) == pytest.approx((u - v).square().sum(1).mean().item())


@pytest.mark.fresh_interpreter
def test_tuning_runs_without_the_test_split(tmp_path):
    """The runner of a tuning run is given no test split at all: it cannot read it."""
    from sfrik_experiments.engine import data as datasets
    from sfrik_experiments.engine.runner import Runner

    g = torch.Generator().manual_seed(0)
    data = datasets.ImageData(
        "toy",
        torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.arange(96) % 3,
        torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(0, dtype=torch.long),
    )
    preset = presets.PRESETS["smoke"]
    runner = Runner(preset, data, library="lightly")
    del runner.splits["test"]
    spec = plan.study_runs(preset, [])[1]
    assert spec.method == "sfrik" and spec.phase == "tune"
    row = runner.run(spec)
    assert row["status"] == "ok" and 0 <= row["linear_top1"] <= 100 and row["split"] == "validation"


def test_the_runner_trains_in_one_process():
    # devices other than 1 would make Lightning start a process per device, each pretraining on
    # its own batch with the lr and loss of one process: refused before any data are read
    from sfrik_experiments.engine.runner import Runner

    for devices in ("2", 2, "0,1", "auto"):
        with pytest.raises(ValueError, match=r"devices must be 1 \(the engine trains in one process"):
            Runner(presets.PRESETS["smoke"], None, library="lightly", devices=devices)


def study_args(folder, out, *extra) -> list[str]:
    """`-m sfrik_experiments.study` on the smoke preset and a tiny image folder."""
    options = {"preset": "smoke", **folder_dataset(folder), "out": out, "library": "lightly"}
    return ["-m", "sfrik_experiments.study", *command_line(options), *extra]


@pytest.mark.slow
def test_smoke_study_end_to_end_killed_and_resumed(tmp_path):
    pytest.importorskip("lightly", reason="the CI study uses lightly's baselines")
    folder = make_folder(tmp_path / "images", per_class=40)
    out = tmp_path / "out"
    results = out / "results.csv"
    proc = subprocess.Popen(
        [sys.executable, *study_args(folder, out, "--phases", "tune", "final", "ablation", "table")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while len(rows_of(results)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-study, most likely mid-run
    proc.wait()
    before = rows_of(results)
    assert 4 <= len(before) < plan.Planner(presets.PRESETS["smoke"]).count()
    expected = len(run_plan(presets.PRESETS["smoke"], lambda s: 50.0))  # every search grows once
    done = run_python(*study_args(folder, out), timeout=TIMEOUT_S)
    assert f"{len(before)} already in" in done.stdout
    after = rows_of(results)
    ids = [r["run_id"] for r in after]
    assert len(ids) == len(set(ids)) == expected
    assert after[: len(before)] == before  # finished runs kept as they were
    assert all(r["status"] == "ok" for r in after)
    for name in ("summary.md", "timing.csv", "accuracy.png", "accuracy_vs_q.png", "ablation.png"):
        assert (out / name).exists(), name
    summary = (out / "summary.md").read_text()
    for heading in (
        "## Tuning",
        "## Final runs",
        "Paired differences in linear top-1",
        "Holm p",
        "## Linear top-1 against q",
        "## Ablations",
        "## Step time",
    ):
        assert heading in summary
    run_python(*study_args(folder, out, "--phases", "tune", "final"), timeout=TIMEOUT_S)
    assert len(rows_of(results)) == len(after)  # nothing left to do
    # --only runs one recorded run again: its row is replaced, every other row kept
    again = next(r["run_id"] for r in after if r["phase"] == "final")
    run_python(*study_args(folder, out, "--only", again), timeout=TIMEOUT_S)
    rerun = rows_of(results)
    assert sorted(r["run_id"] for r in rerun) == sorted(ids)
    assert [r for r in rerun if r["run_id"] != again] == [r for r in after if r["run_id"] != again]
    wrong = run_python(*study_args(folder, out, "--only", again + "x"), check=False, timeout=TIMEOUT_S)
    assert wrong.returncode != 0 and "--only: no recorded run" in wrong.stderr and "did you mean" in wrong.stderr


def test_the_report_reads_the_comparisons_in_plain_words():
    from sfrik_experiments.study import report_paired

    ahead = stats.paired_difference([80.0, 80.1, 79.9, 80.2, 80.0], [82.0, 82.2, 81.9, 82.1, 82.0])
    tie = stats.paired_difference([81.0, 82.5, 80.9, 83.1, 82.0], [82.0, 82.2, 81.9, 82.1, 82.0])
    items = [
        report_paired.Comparison("vicreg", ahead, p=0.0005, p_holm=0.001, mdd=0.3),  # verdict: SFRIK ahead
        report_paired.Comparison("simclr", tie, p=0.7, p_holm=0.9, mdd=1.7),  # verdict: no significant difference
    ]
    text = report_paired.plain_reading(items, "linear top-1")
    assert "SFRIK is ahead of vicreg (+2.00 for SFRIK, Holm p 0.0010)." in text
    assert "SFRIK is behind none." in text
    # one detectable size is one number, not a range "1.70-1.70"
    assert "No significant difference from simclr; this design finds a true difference of 1.70 points" in text
    items.append(report_paired.Comparison("mmcr", tie, p=0.6, p_holm=0.9, mdd=2.1))
    text = report_paired.plain_reading(items, "linear top-1")
    assert "No significant difference from simclr, mmcr; this design finds a true difference of 1.70-2.10 points" in (
        text
    )
