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

from sfrik_plugin.study import plan, quality, stats
from sfrik_plugin.study.store import FIELDS, ResultsFile
from sfrik_plugin.utils.arguments import command_line

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


def test_full_preset_gives_every_method_a_grid_of_the_same_size():
    preset = plan.PRESETS["full"]
    sizes = {m: len(g.settings(preset.lrs)) for m, g in preset.grids.items()}
    assert set(sizes) == {"sfrik", "vicreg", "barlow_twins", "simclr", "auh"}
    assert len(set(sizes.values())) == 1 and min(sizes.values()) >= 6
    assert len(preset.final_seeds) >= 3 and {256, 1024, 4096} <= set(preset.table_qs)


def fake_row(spec, linear, status="ok"):
    return {
        **dict.fromkeys(FIELDS, ""),
        "phase": spec.phase,
        "method": spec.method,
        "q": str(spec.q),
        "seed": str(spec.seed),
        "split": spec.split,
        "setting": spec.setting_text,
        "status": status,
        "linear_top1": str(linear),
        "knn_top1": str(linear),
        "run_id": spec.run_id,
    }


def complete_tuning(preset, score):
    rows = [fake_row(s, score(s)) for s in plan.Planner(preset).tune_runs()]
    chosen = plan.chosen_settings(preset, rows)
    rows += [fake_row(s, score(s)) for s in plan.Planner(preset).ablation_tune_runs(chosen)]
    return rows


def test_choice_is_the_best_validation_score_and_tuning_never_reads_the_test_split():
    preset = plan.PRESETS["full"]

    # SFRIK's best is its 5th setting; a diverged setting with a "better" number must not win.
    def score(s):
        return 50.0 + (s.params.get("sim_loss_weight") == 4000.0) * 10 + (s.params.get("lr") == 1e-2) * 5

    rows = complete_tuning(preset, score)
    sfrik_best = next(r for r in rows if r["method"] == "sfrik" and r["linear_top1"] == "65.0")
    rows.append(fake_row(plan.RunSpec("tune", "sfrik", 1024, 0, "validation", (("lr", 99.0),)), 99.0, "diverged"))
    chosen = plan.chosen_settings(preset, rows)
    assert plan.format_setting(chosen["sfrik"]) == sfrik_best["setting"]
    assert all(s.split == "validation" for s in plan.Planner(preset).tune_runs())
    runs = plan.study_runs(preset, rows)
    assert len(runs) == plan.Planner(preset).count()
    assert {s.split for s in runs if s.phase == "tune"} == {"validation"}
    assert {s.split for s in runs if s.phase != "tune"} == {"test"}
    finals = [s for s in runs if s.phase == "final" and s.method == "vicreg" and s.q == 1024]
    assert [s.seed for s in finals] == list(preset.final_seeds)
    assert len({s.setting for s in finals}) == 1


def test_ties_go_to_the_first_setting_and_incomplete_tuning_chooses_nothing():
    preset = plan.PRESETS["full"]
    tune = plan.Planner(preset).tune_runs()
    rows = [fake_row(s, 70.0) for s in tune]
    chosen = plan.chosen_settings(preset, rows)
    first = next(s for s in tune if s.method == "simclr")
    assert chosen["simclr"] == first.params
    partial = [r for r in rows if not (r["method"] == "auh" and "12000" in r["setting"])]
    assert "auh" not in plan.chosen_settings(preset, partial)
    assert not [s for s in plan.study_runs(preset, partial) if s.method == "auh" and s.phase != "tune"]


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


def test_tuning_runs_without_the_test_split(tmp_path):
    """The runner of a tuning run is given no test split at all: it cannot read it."""
    from sfrik_plugin.demo import data as datasets
    from sfrik_plugin.study.runner import StudyRunner

    g = torch.Generator().manual_seed(0)
    data = datasets.ImageData(
        "toy",
        torch.randint(0, 256, (96, 1, 8, 8), dtype=torch.uint8, generator=g),
        torch.arange(96) % 3,
        torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(0, dtype=torch.long),
    )
    preset = plan.PRESETS["smoke"]
    runner = StudyRunner(preset, data, library="lightly")
    del runner.splits["test"]
    spec = next(s for s in plan.Planner(preset).tune_runs() if s.method == "sfrik")
    row = runner.run(spec)
    assert row["status"] == "ok" and 0 <= row["linear_top1"] <= 100 and row["split"] == "validation"


def study_args(folder, out, *extra) -> list[str]:
    """`-m sfrik_plugin.study` on the smoke preset and a tiny image folder."""
    options = {"preset": "smoke", **folder_dataset(folder), "out": out, "library": "lightly"}
    return ["-m", "sfrik_plugin.study", *command_line(options), *extra]


def rows_of(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    assert 4 <= len(before) < plan.Planner(plan.PRESETS["smoke"]).count()
    done = run_python(*study_args(folder, out), timeout=TIMEOUT_S)
    assert f"{len(before)} already in" in done.stdout
    after = rows_of(results)
    ids = [r["run_id"] for r in after]
    assert len(ids) == len(set(ids)) == plan.Planner(plan.PRESETS["smoke"]).count()
    assert after[: len(before)] == before  # finished runs kept as they were
    assert all(r["status"] == "ok" for r in after)
    for name in ("summary.md", "timing.csv", "accuracy.png", "accuracy_vs_q.png", "ablation.png"):
        assert (out / name).exists(), name
    summary = (out / "summary.md").read_text()
    for heading in (
        "## Tuning",
        "## Final runs",
        "Paired difference",
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
