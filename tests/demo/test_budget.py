"""The quick demo's budget sweep: the choice rule (on made-up rows) and, slow, a tiny sweep on an
image folder that is interrupted and resumed."""

import csv
import signal

import pytest

pytest.importorskip("lightning", reason="the sweep needs Lightning (the package's [demo] extra)")

from helpers.images import make_folder
from helpers.interrupts import start_paused
from helpers.processes import run_python

from sfrik_experiments.demo import budget
from sfrik_experiments.demo.cli import Setting


def row(method, seed, linear, wall, status="ok"):
    return {"method": method, "seed": str(seed), "linear_top1": str(linear), "wall_s": str(wall), "status": status}


def runs(margins, sfrik_wall, floor=70.0):
    """SFRIK's rows, one per seed, each its margin above a floor of 70 %."""
    return [row("sfrik", seed, floor + m, sfrik_wall) for seed, m in enumerate(margins)]


def floor_of(accuracies, wall=10.0):
    return budget.RandomFloor.from_rows([row("random", seed, a, wall) for seed, a in enumerate(accuracies)])


FLAT = floor_of([70.0] * 20)  # a floor known exactly: only SFRIK's spread matters


def test_the_choice_keeps_the_floor_for_new_seeds_inside_the_budget():
    from scipy import stats

    low, noisy, safe, safer_over = (budget.Candidate(e, n) for e, n in ((2, 1000), (3, 1000), (4, 1000), (9, 1000)))
    rows = {
        low: runs([6.0, 4.9, 7.0], sfrik_wall=50.0),  # one seed under the floor
        noisy: runs([5.2, 9.0, 5.1], sfrik_wall=60.0),  # every seed above, but a new one often is not
        safe: runs([7.9, 8.4, 8.1], sfrik_wall=70.0),  # chosen
        safer_over: runs([9.0, 9.1, 9.2], sfrik_wall=200.0),  # predicted 3 x 10 + 5 x 200 s: over budget
    }
    outcomes = budget.summarise([low, noisy, safe, safer_over], rows, 100, 540.0, floor=FLAT)
    assert [o.chosen for o in outcomes] == [False, False, True, False]
    assert [o.meets_floor for o in outcomes] == [False, False, True, True]
    assert [o.within_budget for o in outcomes] == [True, True, True, False]
    # a floor without spread: the predictive chance of a new seed under 5 is scipy's t with n - 1 dof
    m = [5.2, 9.0, 5.1]
    scale = stats.tstd(m) * (1 + 1 / 3) ** 0.5
    assert outcomes[1].below_floor_chance == pytest.approx(stats.t.cdf((5 - sum(m) / 3) / scale, 2))
    assert outcomes[1].below_floor_chance > budget.MAX_BELOW_FLOOR
    assert outcomes[0].predicted_demo_s == budget.DEMO_RANDOM_INITS * 10.0 + len(budget.STUDY_CHOICES) * 50.0
    assert outcomes[2].csv_row()["margins"] == "+7.90 +8.40 +8.10" and outcomes[2].min_margin == pytest.approx(7.9)
    text = budget.format_summary(outcomes, 540.0)
    assert "chosen" in text and "over budget" in text and "under the floor" in text
    assert budget.verdict(outcomes).startswith("Chosen: 4 x 1000")


def test_the_floor_is_the_random_encoders_mean_and_its_estimation_error_counts():
    # The random encoder of one seed is one draw (75-79 % on Fashion-MNIST): the margin is measured
    # against the mean of its inits; the paired margin of the old definition is still reported.
    from scipy import stats

    floor = floor_of([78.0, 75.0, 79.0, 78.0])
    c = budget.Candidate(2, 1000)
    sfrik = [83.0, 83.5, 82.5]
    (o,) = budget.summarise([c], {c: [row("sfrik", s, v, 50.0) for s, v in enumerate(sfrik)]}, 100, 540.0, floor=floor)
    assert floor.mean == 77.5 and o.margins == pytest.approx((5.5, 6.0, 5.0))
    assert o.paired_margins == pytest.approx((5.0, 8.5, 3.5))  # seed s against the random init s
    # the chance: a new SFRIK seed (s^2 (1 + 1/n)) against a floor known to s_r^2 / R, Welch-Satterthwaite dof
    a, b = stats.tvar(sfrik) * (1 + 1 / 3), stats.tvar(list(floor.accuracy.values())) / 4
    dof = (a + b) ** 2 / (a**2 / 2 + b**2 / 3)
    assert o.below_floor_chance == pytest.approx(stats.t.cdf((5 - 5.5) / (a + b) ** 0.5, dof))
    assert not o.meets_floor  # one seed at +5.0 exactly is kept, but a new seed falls under with ~30 %
    # more inits of the same spread: the floor's error shrinks towards the exact-floor case
    wide = floor_of([78.0, 75.0, 79.0, 78.0] * 250)
    (exact,) = budget.summarise(
        [c], {c: [row("sfrik", s, v, 50.0) for s, v in enumerate(sfrik)]}, 100, 540.0, floor=wide
    )
    assert exact.below_floor_chance == pytest.approx(stats.t.cdf((5 - 5.5) / a**0.5, 2), abs=0.01)
    # without a floor given, the random rows among the candidates' rows are the inits (the old records)
    old = {c: [row("sfrik", s, v, 50.0) for s, v in enumerate(sfrik)] + [row("random", 0, 76.0, 7.0)]}
    assert budget.summarise([c], old, 100, 540.0)[0].floor.accuracy == {0: 76.0}


def test_no_candidate_is_chosen_when_none_keeps_the_floor():
    a, b = budget.Candidate(2, 1000), budget.Candidate(3, 1000)
    rows = {a: runs([4.0, 6.0, 5.5], sfrik_wall=50.0), b: runs([7.0, 7.2, 7.1], sfrik_wall=900.0)}
    outcomes = budget.summarise([a, b], rows, 100, 540.0, floor=FLAT)
    assert not any(o.chosen for o in outcomes) and outcomes[1].meets_floor and not outcomes[1].within_budget
    assert budget.verdict(outcomes).startswith("No candidate keeps the floor within the budget")


def test_a_candidate_with_missing_or_diverged_runs_is_not_chosen():
    done, partial = budget.Candidate(2, 1000), budget.Candidate(3, 1000)
    rows = {done: runs([8.1, 8.2], sfrik_wall=50.0), partial: runs([9.0, 9.0], sfrik_wall=50.0)}
    rows[partial][-1] = row("sfrik", 1, 0.0, 50.0, status="diverged: nan")
    outcomes = budget.summarise([done, partial], rows, 100, 540.0, floor=FLAT)
    assert [o.chosen for o in outcomes] == [True, False]
    assert outcomes[1].seeds == (0,) and outcomes[1].margins == (9.0,)


def test_candidates_parse_and_bad_ones_name_the_format(capsys):
    args = budget.parse_args(["--out", "x", "--candidates", "3x15000", "2X100"])
    assert args.candidates == [budget.Candidate(3, 15000), budget.Candidate(2, 100)]
    for bad, says in (
        ("3-15000", "expected EPOCHSxIMAGES, e.g. 3x15000, got '3-15000'"),
        ("0x100", "must be positive"),
    ):
        with pytest.raises(SystemExit):
            budget.parse_args(["--out", "x", "--candidates", bad])
        assert says in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_sweep_reads_only_the_validation_split_and_resumes(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib")
    folder = make_folder(tmp_path / "images", classes=3, per_class=30)
    tiny = Setting(arch="resnet10", width=4, epochs=1, train_size=0, probe_size=0, batch_size=16, proj_dim=32, knn_k=5)
    monkeypatch.setitem(budget.SETTINGS, "quick", tiny)
    monkeypatch.setattr(budget, "MIN_MARGIN", -100.0)  # random toy images: the rule's floor is not what is tested here
    out = tmp_path / "out"
    argv = ["--out", str(out), "--dataset", "folder", "--data-dir", str(folder), "--image-size", "12"]
    argv += ["--candidates", "1x40", "2x40", "--seeds", "0", "1", "--floor-inits", "3"]
    assert budget.main(argv) == 0
    with open(out / "summary.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [(line["epochs"], line["train_size"]) for line in lines] == [("1", "40"), ("2", "40")]
    assert sum(line["chosen"] == "True" for line in lines) == 1
    for key in ("e1_n40", "e2_n40"):
        with open(out / key / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["split"] for r in rows} == {"validation"}
        assert sorted((r["method"], r["seed"]) for r in rows) == [("sfrik", "0"), ("sfrik", "1")]
    with open(out / "floor" / "results.csv", newline="") as f:
        floor = list(csv.DictReader(f))
    assert sorted((r["method"], r["seed"], r["split"]) for r in floor) == [
        ("random", str(s), "validation") for s in range(3)]  # fmt: skip
    assert [line["floor_inits"] for line in lines] == ["3", "3"]
    assert (out / "budget.png").stat().st_size > 1000
    # A rerun finds everything done and trains nothing; a lost run is redone, alone.
    before = (out / "e2_n40" / "results.csv").read_text()
    capsys.readouterr()
    assert budget.main(argv) == 0
    assert "7 runs, 0 to do" in capsys.readouterr().out
    assert (out / "e2_n40" / "results.csv").read_text() == before
    (out / "e2_n40" / "results.csv").write_text("".join(before.splitlines(keepends=True)[:-1]))
    assert budget.main(argv) == 0
    assert "7 runs, 1 to do" in capsys.readouterr().out
    with open(out / "e2_n40" / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_the_predicted_demo_time_scales_each_method_by_its_study_cost():
    study = [
        {"phase": "final", "q": "1024", "status": "ok", "method": m, "train_minutes": str(t)}
        for m, ts in (("sfrik", (1.0, 1.1, 0.9)), ("sigreg", (1.5, 1.4, 1.6)), ("vicreg", (1.0, 1.0, 1.0)))
        for t in ts
    ] + [{"phase": "tune", "q": "1024", "status": "ok", "method": "mmcr", "train_minutes": "9.0"}]  # not final: unused
    ratios = budget.cost_ratios(study, ["sfrik", "sigreg", "vicreg", "mmcr"], 1024)
    assert ratios == {"sfrik": 1.0, "sigreg": 1.5, "vicreg": 1.0, "mmcr": 1.0}
    c = budget.Candidate(2, 1000)
    (outcome,) = budget.summarise([c], {c: runs([8.0, 8.1, 8.2], sfrik_wall=60.0)}, 100, 540.0, ratios, FLAT)
    assert outcome.predicted_demo_s == pytest.approx(budget.DEMO_RANDOM_INITS * 10.0 + (1.0 + 1.5 + 1.0 + 1.0) * 60.0)


TINY_SWEEP = """
import sys
from sfrik_experiments.demo import budget
from sfrik_experiments.demo.cli import Setting

budget.SETTINGS["quick"] = Setting(
    arch="resnet10", width=4, epochs=2, train_size=0, probe_size=0, batch_size=16, proj_dim=32, knn_k=5
)
budget.MIN_MARGIN = -100.0
sys.exit(budget.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_sweep_run_cut_short_by_sigterm_is_not_recorded_and_is_redone(tmp_path):
    folder = make_folder(tmp_path / "images", classes=3, per_class=30)
    (tmp_path / "tiny_sweep.py").write_text(TINY_SWEEP)
    out = tmp_path / "out"
    argv = ["--out", out, "--dataset", "folder", "--data-dir", folder, "--image-size", "12"]
    argv += ["--candidates", "2x40", "--seeds", "0", "1", "--floor-inits", "1"]
    # the second SFRIK run pauses after its first step and gets SIGTERM
    child = start_paused("tiny_sweep", *argv, workdir=tmp_path / "child", at_step=1, in_fit=2, cwd=tmp_path)
    assert child.interrupt(signal.SIGTERM) == 143, child.output()
    assert "pretraining sfrik was interrupted by SIGTERM" in child.output()
    with open(out / "e2_n40" / "results.csv", newline="") as f:
        assert [(r["seed"], r["status"]) for r in csv.DictReader(f)] == [("0", "ok")]
    done = run_python("tiny_sweep.py", *argv, cwd=tmp_path)
    assert "3 runs, 1 to do" in done.stdout
    with open(out / "e2_n40" / "results.csv", newline="") as f:
        assert [(r["seed"], r["status"]) for r in csv.DictReader(f)] == [("0", "ok"), ("1", "ok")]
