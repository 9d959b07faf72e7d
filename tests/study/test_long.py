"""The long-budget study (study/long.py, long_plan.py, long_report.py; engine/curve.py): the
learning-curve callback (points at the chosen epochs, the last one equal to the measurement after
training, the training's random streams and so its weights unchanged), the long tuning rule on
synthetic rows, the short-budget references against the v2 record, the report on partial results,
and (slow) the smoke preset end to end, interrupted after a curve point and resumed."""

from __future__ import annotations

import math
import signal
from dataclasses import replace

import pytest
import torch

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from helpers.images import folder_dataset, make_folder
from helpers.interrupts import start_paused
from helpers.processes import run_python
from helpers.records import STUDY_V2, recorded, rows_of

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.engine.curve import LearningCurve, random_states_kept
from sfrik_experiments.engine.experiment import evaluate, pretrain
from sfrik_experiments.engine.quality import encoder_quality
from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.engine.runner import Runner
from sfrik_experiments.engine.runs import CURVE_MEASURES, RunSpec, check_curve_epochs, curve_fields, format_setting
from sfrik_experiments.study import long_plan as long
from sfrik_experiments.study import long_report
from sfrik_experiments.utils.arguments import command_line

TIMEOUT_S = 900
MEASURES = ("linear_top1", "knn_top1", "rankme", "alignment", "uniformity", "mmd_l3")


# -- the callback --------------------------------------------------------------------------------------
def toy_data(n_train: int = 128, n_test: int = 64) -> datasets.ImageData:
    """Images whose mean brightness follows their class (3 classes), so that a probe learns something."""
    g = torch.Generator().manual_seed(0)

    def images(n):
        labels = torch.arange(n) % 3
        noise = torch.randn(n, 1, 12, 12, generator=g) * 30
        return (60 + 60 * labels.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8), labels

    return datasets.ImageData("toy", *images(n_train), *images(n_test))


def toy_preset(epochs: int = 3, curve: tuple[int, ...] = (1, 3)) -> long.LongPreset:
    smoke = long.LONG_PRESETS["long-smoke"]
    return replace(smoke, dataset="folder", train=replace(smoke.train, epochs=epochs), curve_epochs=curve)


def measure_of(data: datasets.ImageData, preset: long.LongPreset):
    """What the study measures of an encoder (linear, kNN, label-free), on the toy data."""
    from sfrik_experiments.engine.augment import BatchAugment

    mean, std = data.channel_stats

    def measure(backbone, projector):
        scores = evaluate(
            backbone, data.train_images, data.train_labels, data.test_images, data.test_labels, data.channel_stats,
            device="cpu", knn_k=preset.knn_k,
        )  # fmt: skip
        quality = encoder_quality(backbone, projector, BatchAugment(12, mean, std), data.test_images[:32], mean, std)
        return {**scores, **quality}

    return measure


def train(data, preset, callbacks=(), seed: int = 0):
    cfg = replace(preset.train, lr=0.01, proj_dim=preset.q, proj_hidden_dim=preset.proj_hidden_dim)
    return pretrain(
        "sfrik", data.train_images[:64], data.channel_stats, cfg, seed=seed,
        hyper_parameters={"sim_loss_weight": 4000.0}, progress_bar=False, callbacks=list(callbacks),
    )  # fmt: skip


def weights(trained) -> dict[str, torch.Tensor]:
    state = {f"backbone.{k}": v for k, v in trained.backbone.state_dict().items()}
    return state | {f"projector.{k}": v for k, v in trained.projector.state_dict().items()}


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_the_curve_measures_at_its_epochs_and_its_last_point_is_the_trained_encoders_measurement():
    data, preset = toy_data(), toy_preset(epochs=3, curve=(1, 3))
    measure = measure_of(data, preset)
    curve = LearningCurve(preset.curve_epochs, measure)
    trained = train(data, preset, [curve])
    assert [p["epoch"] for p in curve.points] == [1, 3]
    assert [p["step"] for p in curve.points] == [2, 6]  # 64 images at batch 32: 2 steps an epoch
    assert 0 < curve.points[0]["train_s"] <= curve.points[1]["train_s"]
    after = measure(trained.backbone, trained.projector)
    assert {k: curve.points[-1][k] for k in after} == after  # the same numbers, to the last digit
    assert curve.points[0]["linear_top1"] != after["linear_top1"] or curve.points[0]["rankme"] != after["rankme"]
    assert curve.row() == {f"ep{p['epoch']}_{k}": p[k] for p in curve.points for k in CURVE_MEASURES}


@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_the_curve_leaves_the_training_as_it_was():
    """The same seed gives the same trained weights (batch-norm statistics included) with and
    without the curve; a callback that seeds torch at an epoch's end, as the probe does, changes
    them, so the comparison would see it."""
    data, preset = toy_data(), toy_preset(epochs=3, curve=(1, 2, 3))
    plain = weights(train(data, preset))
    with_curve = weights(train(data, preset, [LearningCurve(preset.curve_epochs, measure_of(data, preset))]))
    assert plain.keys() == with_curve.keys()
    assert all(torch.equal(plain[k], with_curve[k]) for k in plain)

    import lightning as L

    class Reseeds(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            torch.manual_seed(0)

    disturbed = weights(train(data, preset, [Reseeds()]))
    assert not all(torch.equal(plain[k], disturbed[k]) for k in plain)


def test_random_states_are_kept_whatever_the_block_draws():
    import random

    import numpy as np

    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    with random_states_kept():
        torch.manual_seed(0)
        torch.rand(5)
        random.seed(1)
        np.random.seed(1)
    got = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


@pytest.mark.fresh_interpreter
def test_a_run_records_its_curve_in_its_row_and_the_random_encoders_curve_is_flat():
    data, preset = toy_data(), toy_preset(epochs=2, curve=(1, 2))
    runner = Runner(preset, data, library="lightly")
    setting = long.V2_CHOICES["sfrik"]
    points = []
    row = runner.run(RunSpec("final", "sfrik", preset.q, 0, "test", tuple(setting.items())), (1, 2), points.append)
    assert row["status"] == "ok" and [p["epoch"] for p in points] == [1, 2]
    assert set(curve_fields((1, 2))) <= set(row) and (row["ep1_step"], row["ep2_step"]) == (2, 4)
    assert all(row[f"ep2_{m}"] == row[m] for m in MEASURES)  # the last point is the row's own measurement
    random_row = runner.run(RunSpec("final", "random", preset.q, 0, "test"), (1, 2))
    assert all(random_row[f"ep{e}_{m}"] == random_row[m] for e in (1, 2) for m in MEASURES)
    assert random_row["ep1_step"] == random_row["ep2_step"] == 0
    with pytest.raises(ValueError, match="end at the last training epoch"):
        runner.run(RunSpec("final", "sfrik", preset.q, 0, "test", tuple(setting.items())), (1,))


def test_curve_epochs_are_checked():
    assert check_curve_epochs([1, 2, 5, 10], 10) == (1, 2, 5, 10)
    for bad in ([], [2, 1, 10], [0, 10], [1, 1, 10]):
        with pytest.raises(ValueError, match="increasing positive integers"):
            check_curve_epochs(bad, 10)
    with pytest.raises(ValueError, match="end at the last training epoch"):
        check_curve_epochs([1, 5], 10)
    with pytest.raises(ValueError, match="end at the last training epoch"):
        replace(long.LONG_PRESETS["long"], curve_epochs=(1, 2, 5))


# -- the plan ----------------------------------------------------------------------------------------
def fake_row(spec: RunSpec, curve: dict[int, float], epochs=(1, 2, 5, 10), status: str = "ok") -> dict[str, str]:
    """A results row of the long study with the given linear top-1 at each curve epoch (kNN 1 below)."""
    last = curve[epochs[-1]]
    row = {k: "" for k in long.LONG_PRESETS["long"].fields}
    row.update(
        phase=spec.phase, method=spec.method, q=str(spec.q), seed=str(spec.seed), split=spec.split,
        setting=spec.setting_text, status=status, run_id=spec.run_id, wall_s="700", library="lightly",
        versions="v", commit="c", linear_top1=str(last), knn_top1=str(last - 1),
    )  # fmt: skip
    for e in epochs:
        steps = 195 if spec.split == "validation" else 234
        row.update({f"ep{e}_step": str(steps * e), f"ep{e}_train_s": str(70.0 * e)})
        row.update({f"ep{e}_linear_top1": str(curve[e]), f"ep{e}_knn_top1": str(curve[e] - 1)})
    for m in ("rankme", "alignment", "uniformity", "mmd_l3"):
        row[m] = row[f"ep{epochs[-1]}_{m}"] = "1.0"
    return row


def run_plan(preset, score):
    """Every run the plan asks for, in order, each given the curve score(spec) -> {epoch: value}."""
    rows: list[dict[str, str]] = []
    while True:
        done = {r["run_id"] for r in rows}
        todo = [s for s in long.long_runs(preset, rows) if s.run_id not in done]
        if not todo:
            return rows
        rows.append(fake_row(todo[0], score(todo[0]), preset.curve_epochs))


def rung(spec: RunSpec) -> int:
    return round(math.log2(float(spec.params["lr"]) / float(long.V2_CHOICES[spec.method]["lr"])))


# Where each method's validation linear top-1 at the last epoch peaks, in rungs of its ladder
# around its v2 lr (the others peak at their v2 lr); simclr's early points peak elsewhere (+1).
OPTIMUM = {"sfrik": 3, "simclr": -1, "mmcr": 1}


def synthetic_curve(spec: RunSpec) -> dict[int, float]:
    if spec.method == "random":
        return dict.fromkeys((1, 2, 5, 10), 77.0)
    r = rung(spec)
    final = 85.0 - (r - OPTIMUM.get(spec.method, 0)) ** 2 + 0.1 * spec.seed
    early = 80.0 - (r - 1) ** 2  # every early point prefers rung +1: the choice must not read them
    return {1: early - 2, 2: early - 1, 5: early, 10: final}


def test_the_long_rule_retunes_the_lr_around_the_short_budget_choice_on_the_last_epoch():
    preset = long.LONG_PRESETS["long"]
    assert preset.methods == tuple(long.V2_CHOICES) and len(preset.methods) == 7
    assert (preset.train.epochs, preset.curve_epochs, preset.train.batch_size, preset.q) == (
        10,
        (1, 2, 5, 10),
        256,
        1024,
    )
    assert (preset.train.arch, preset.train.width, preset.train_size, preset.tune_seed) == ("resnet10", 16, 50000, 10)
    rows = run_plan(preset, synthetic_curve)
    tuned = long.tuning(preset, rows)
    chosen = long.chosen(tuned)
    for method, (_, state) in tuned.items():
        assert all(s.split == "validation" and s.seed == 10 and s.phase == "tune" for s in state.runs)
        # only the lr moves: every other key is the v2 choice, in the v2 order
        for s in state.runs:
            assert {k: v for k, v in s.params.items() if k != "lr"} == {
                k: v for k, v in long.V2_CHOICES[method].items() if k != "lr"
            }
            assert list(s.params) == list(long.V2_CHOICES[method])
        optimum = OPTIMUM.get(method, 0)
        expected_rungs = {0: [-1, 0, 1], -1: [-2, -1, 0, 1], 1: [-1, 0, 1, 2], 3: [-1, 0, 1, 2]}[optimum]
        assert sorted(rung(s) for s in state.runs) == expected_rungs, method
        assert rung(state.best_run) == min(optimum, 2)  # the last epoch's best, not the early points'
        assert state.at_cap == (("lr",) if method == "sfrik" else ()), method  # sfrik's peak is past the cap
        assert chosen[method]["lr"] == pytest.approx(float(long.V2_CHOICES[method]["lr"]) * 2.0 ** min(optimum, 2))
    finals = [r for r in rows if r["phase"] == "final"]
    assert {r["split"] for r in finals} == {"test"} and sorted({int(r["seed"]) for r in finals}) == [0, 1, 2]
    for method in preset.methods:
        settings = {r["setting"] for r in finals if r["method"] == method}
        assert settings == {format_setting(chosen[method])}
    at_least, at_most = long.count(preset)
    assert (at_least, at_most) == (1 + 7 * 3 + 3 * 8, 1 + 7 * 4 + 3 * 8) == (46, 53)
    assert len(rows) == at_least + 3  # three ladders grew by one rung


def test_the_long_runs_are_ordered_so_that_partial_results_are_useful_early():
    preset = long.LONG_PRESETS["long"]
    rows = run_plan(preset, synthetic_curve)
    order = [(r["phase"], r["method"], r["split"]) for r in rows]
    assert order[:4] == [("tune", "random", "validation")] + [("final", "random", "test")] * 3
    tune = [r for r in rows if r["phase"] == "tune" and r["method"] != "random"]
    first = [(r["method"], row_rung(r)) for r in tune[:21]]
    methods = list(preset.methods)
    assert first == [(m, 0) for m in methods] + [(m, -1) for m in methods] + [(m, 1) for m in methods]
    finals = [(int(r["seed"]), r["method"]) for r in rows if r["phase"] == "final" and r["method"] != "random"]
    assert finals == [(s, m) for s in (0, 1, 2) for m in methods]
    assert max(i for i, r in enumerate(rows) if r["phase"] == "tune") < min(
        i for i, r in enumerate(rows) if r["phase"] == "final" and r["method"] != "random"
    )


def row_rung(row) -> int:
    lr = float(row["setting"].split()[0].removeprefix("lr="))
    return round(math.log2(lr / float(long.V2_CHOICES[row["method"]]["lr"])))


def test_the_short_budget_references_are_the_v2_records():
    """V2_CHOICES is the setting of the v2 final runs at q = 1024 (and the demo's STUDY_CHOICES);
    V2_LINEAR_TOP1 their mean test linear top-1; V2_VERDICTS the paired tests with Holm's correction,
    recomputed here with scipy from the record's rows."""
    from scipy import stats as sp

    from sfrik_experiments.demo.cli import STUDY_CHOICES

    rows = [r for r in recorded(STUDY_V2) if r["phase"] == "final" and r["q"] == "1024"]
    values = {}
    for method, setting in long.V2_CHOICES.items():
        mine = [r for r in rows if r["method"] == method]
        assert {r["setting"] for r in mine} == {format_setting(setting)}, method
        values[method] = {int(r["seed"]): float(r["linear_top1"]) for r in mine}
        assert round(sum(values[method].values()) / len(mine), 2) == long.V2_LINEAR_TOP1[method]
        assert dict(STUDY_CHOICES[method]) == dict(setting)
    baselines = [m for m in long.V2_CHOICES if m != "sfrik"]
    seeds = sorted(values["sfrik"])
    p = [sp.ttest_rel([values[m][s] for s in seeds], [values["sfrik"][s] for s in seeds]).pvalue for m in baselines]
    order = sorted(range(len(p)), key=p.__getitem__)
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    for method, q in zip(baselines, adjusted):
        behind = sum(values[method].values()) < sum(values["sfrik"].values())
        expected = ("SFRIK ahead" if behind else "SFRIK behind") if q < 0.05 else "no significant difference"
        assert long.V2_VERDICTS[method] == expected, method


# -- the report ----------------------------------------------------------------------------------------
@pytest.mark.slow  # trains a model in-process: seconds (make test-fast leaves it out)
def test_the_report_reads_partial_results_and_says_whether_the_short_budget_ranking_holds(tmp_path):
    pytest.importorskip("matplotlib")
    preset = long.LONG_PRESETS["long"]
    full = run_plan(preset, synthetic_curve)
    first_finals = 4 + 21 + 3 + 7  # the randoms, the tuning (3 ladders grew), the finals of seed 0
    partial = full[:first_finals]
    text = long_report.write(tmp_path, preset, partial)
    assert (tmp_path / "summary.md").read_text() == text
    assert (tmp_path / "curves.png").exists() and (tmp_path / "tuning_curves.png").exists()
    assert "on partial results (7 of 7 methods, at most 1 of 3 seeds)" in text
    assert "The paired verdicts cannot be read yet" in text
    assert "Each method at its short-budget learning rate (7 of 7 methods so far" in text
    first_seven = long_report.write(tmp_path, preset, full[: 4 + 7])  # the randoms, then every v2 lr
    assert "Each method at its short-budget learning rate (7 of 7 methods so far" in first_seven
    # at their v2 lr, sfrik sits 3 rungs below its peak, simclr and mmcr 1 rung off theirs (seed 10: +1)
    expected = "auh (86.00) > vicreg (86.00) > barlow_twins (86.00) > sigreg (86.00) > simclr (85.00) > mmcr (85.00)"
    assert f"| 10 | {expected} > sfrik (77.00) |" in first_seven
    assert "**at an edge at the cap**" in text and "**chosen**" in text
    # every method ties at 85 + 0.1 seed at the last epoch: the order is the preset's, ...
    (tmp_path / "timing.csv").write_text(
        "method,q,step_ms,machine\n" + "".join(f"{m},1024,{100 + i},cpu\n" for i, m in enumerate(preset.methods))
    )
    text = long_report.write(tmp_path, preset, full)
    assert "| sigreg | 105.0 | 1.05 | 4.1 |" in text  # the timing pass read from the folder
    assert "over 7 methods and 3 seeds" in text
    assert "(step 2340)" in text and "(step 234)" in text
    assert "In 45 of the 45 finished trained runs the curve's last point equals the measurement after training." in text
    # SFRIK's ladder ends at the cap one rung short of its peak: exactly 1 point behind every
    # baseline at every seed, against "SFRIK ahead" of barlow_twins and sigreg at v2
    assert "the short-budget ranking does not hold" in text
    assert "barlow_twins (SFRIK ahead at the short budget, SFRIK behind here)" in text
    assert "auh (no significant difference at the short budget, SFRIK behind here)" in text
    # a tuning run that has not run yet, a final run without its seed, and no rows at all
    assert "Not known yet: no final run has measured epoch 10." in long_report.write(tmp_path, preset, full[:5])
    assert "not started" in long_report.write(tmp_path, preset, [])


def test_holds_means_the_same_order_and_the_same_verdicts():
    preset = long.LONG_PRESETS["long"]
    v2_order = sorted(long.V2_LINEAR_TOP1, key=lambda m: -long.V2_LINEAR_TOP1[m])

    def score(gaps):
        def curve(spec):
            if spec.method == "random":
                return dict.fromkeys((1, 2, 5, 10), 77.0)
            noise = (0.3, -0.2, 0.1)[spec.seed] if spec.phase == "final" else 0.0
            value = 85.0 - gaps[spec.method] + (noise if spec.method != "sfrik" else 0.0) - abs(rung(spec))
            return dict.fromkeys((1, 2, 5, 10), value)

        return curve

    # v2's order and verdicts: SFRIK clearly ahead of barlow_twins and sigreg, 0.1-0.4 points from the rest
    same = {"sfrik": 0.0, "auh": 0.1, "simclr": 0.15, "mmcr": 0.2, "vicreg": 0.25, "barlow_twins": 3.0, "sigreg": 3.5}
    tuned_rows = run_plan(preset, score(same))
    sentence = long_report.holds_sentence(preset, tuned_rows, long.tuning(preset, tuned_rows))
    assert "the short-budget ranking holds:" in sentence and " > ".join(v2_order) in sentence, sentence
    assert "Kendall's tau 1.00" in sentence
    # the same verdicts, two ties swapped
    swapped = {**same, "auh": 0.15, "simclr": 0.1}
    rows = run_plan(preset, score(swapped))
    sentence = long_report.holds_sentence(preset, rows, long.tuning(preset, rows))
    assert "holds in its verdicts but not in its order" in sentence, sentence
    # Barlow Twins no longer behind: the change gives the difference and what the design detects
    closer = {**same, "barlow_twins": 0.3}
    rows = run_plan(preset, score(closer))
    sentence = long_report.holds_sentence(preset, rows, long.tuning(preset, rows))
    assert "the short-budget ranking does not hold" in sentence, sentence
    # Δ = -0.3 + the seeds' mean noise 0.0667; its t interval over 3 seeds (sd 0.25)
    assert (
        "barlow_twins (SFRIK ahead at the short budget, no significant difference here: "
        "Δ -0.23 [-0.86, +0.39] over 3 seeds, detectable Δ 2.02)" in sentence
    ), sentence


def test_the_equal_wall_time_reading_uses_the_quiet_pass_step_times():
    preset = long.LONG_PRESETS["long"]
    level = {"sfrik": 86.0, "auh": 86.5, "vicreg": 87.0, "sigreg": 85.0}

    def curve(spec):
        if spec.method == "random":
            return dict.fromkeys((1, 2, 5, 10), 77.0)
        value = level.get(spec.method, 84.0) - abs(rung(spec)) + (0.1 * spec.seed if spec.phase == "final" else 0)
        return {1: value - 3, 2: value - 2, 5: value - 1, 10: value}

    rows = run_plan(preset, curve)
    tuned = long.tuning(preset, rows)
    assert "No timing pass in this folder" in "\n".join(long_report.time_section(preset, rows, tuned, []))
    # barlow_twins, simclr and mmcr have no step time: "not measured"; another q's row is not read
    timing = [
        {"method": m, "q": "1024", "step_ms": ms, "machine": "cpu x2"}
        for m, ms in (("sfrik", "100"), ("auh", "100"), ("sigreg", "130"), ("vicreg", "250"), ("mmcr", "nan"))
    ] + [{"method": "simclr", "q": "256", "step_ms": "90", "machine": "cpu x2"}]
    text = "\n".join(long_report.time_section(preset, rows, tuned, timing))
    assert "cpu x2" in text
    # 10 epochs of 234 steps: 2340 x 100 ms = 3.9 min; SIGReg reaches epoch 5 (not 7.7) in SFRIK's
    # time, VICReg epoch 2 (not 4); SFRIK is dominated by AUH (as fast, more accurate)
    assert "| sfrik | 100.0 | 1.00 | 3.9 | 86.10 ± 0.10 [85.85, 86.35] | epoch 10: 86.10 | auh |" in text
    assert "| sigreg | 130.0 | 1.30 | 5.1 | 85.10 ± 0.10 [84.85, 85.35] | epoch 5: 84.10 | sfrik, auh |" in text
    assert "| vicreg | 250.0 | 2.50 | 9.8 | 87.10 ± 0.10 [86.85, 87.35] | epoch 2: 85.10 | - |" in text
    for method in ("barlow_twins", "simclr", "mmcr"):
        assert f"| {method} | not measured | - | - | 84.10 ± 0.10" in text, method
    # before a final run of a method has finished
    tuning_only = [r for r in rows if r["phase"] == "tune" or r["method"] == "random"]
    assert "No final run has measured epoch 10 yet." in "\n".join(
        long_report.time_section(preset, tuning_only, long.tuning(preset, tuning_only), timing)
    )


# -- the command ---------------------------------------------------------------------------------------
def long_args(folder, out, *extra) -> list[str]:
    options = {"preset": "long-smoke", **folder_dataset(folder), "out": out, "library": "lightly"}
    return ["-m", "sfrik_experiments.study", *command_line(options), *extra]


def test_the_long_presets_refuse_the_other_phases_and_only(tmp_path, capsys):
    from sfrik_experiments.study import cli

    with pytest.raises(SystemExit, match="has the phases tune, final, not timing"):
        cli.main(["--preset", "long", "--out", str(tmp_path / "a"), "--phases", "tune", "timing"])
    with pytest.raises(SystemExit, match="--only is not available with the long presets"):
        cli.main(["--preset", "long", "--out", str(tmp_path / "b"), "--only", "x"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


@pytest.mark.slow
def test_long_smoke_end_to_end_and_resumed(tmp_path, folder):
    pytest.importorskip("lightly", reason="the CI study uses lightly's baselines")
    out = tmp_path / "out"
    done = run_python(*long_args(folder, out), timeout=TIMEOUT_S)
    preset = long.LONG_PRESETS["long-smoke"]
    rows = rows_of(out / "results.csv")
    at_least, at_most = long.count(preset)
    assert at_least == at_most == len(rows) == 1 + 7 + 2 * 8
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    assert list(rows[0]) == list(preset.fields)
    ResultsFile(out / "results.csv", replace(preset, dataset="folder").protocol(), preset.fields)  # readable
    for r in rows:
        assert all(r[f"ep2_{m}"] == r[m] for m in MEASURES), r["run_id"]
        steps = ("0", "0") if r["method"] == "random" else ("2", "4")  # 64 images at batch 32
        assert (r["ep1_step"], r["ep2_step"]) == steps
    assert "epoch   1 step     2: linear" in done.stderr + done.stdout
    for name in ("summary.md", "curves.png", "tuning_curves.png"):
        assert (out / name).exists(), name
    summary = (out / "summary.md").read_text()
    for heading in ("## Tuning at the long budget", "## Learning curves", "Holm p", "## Does the short-budget"):
        assert heading in summary
    assert "In 21 of the 21 finished trained runs the curve's last point equals" in summary
    again = run_python(*long_args(folder, out), timeout=TIMEOUT_S)
    assert f"{len(rows)} already in" in again.stdout and rows_of(out / "results.csv") == rows


@pytest.mark.slow
def test_a_long_run_interrupted_after_a_curve_point_is_not_recorded(tmp_path, folder):
    pytest.importorskip("lightly", reason="the CI study uses lightly's baselines")
    out = tmp_path / "out"
    # fit 1 is the first trained run (the random encoders come first and train nothing); it
    # pauses at the first step of its second epoch, after the curve's first point
    child = start_paused(
        "sfrik_experiments.study",
        *long_args(folder, out, "--phases", "tune")[2:],
        workdir=tmp_path / "child",
        at_epoch=1,
    )
    assert child.interrupt(signal.SIGINT) == 130, child.output()
    log = child.output()
    assert "epoch   1 step     2" in log and "was not recorded as a result" in log, log
    before = rows_of(out / "results.csv")
    assert [r["method"] for r in before] == ["random"]  # the tuning phase's random encoder only
    run_python(*long_args(folder, out, "--phases", "tune"), timeout=TIMEOUT_S)
    after = rows_of(out / "results.csv")
    assert after[:1] == before and len(after) == 1 + 7 and all(r["status"] == "ok" for r in after)
