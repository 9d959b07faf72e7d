"""The study's version-3 rule (study.plan, preset "v3") on synthetic rows, with the scores given by a
function instead of training: the cap rule's two more rungs (once), the confirmation of the three
best cells with seeds 11 and 12 and the choice on their mean (ties: the first in grid order, in
exact decimals), L = 1 and 2 re-tuned on SFRIK's sim weight, the whole plan rebuilt from its rows
alone; the recorded v2 study read under v3 (exactly which runs v3 adds to it); and (slow) the
smoke-v3 preset end to end."""

import csv
import math
import random
import time
from dataclasses import replace

import pytest

pytest.importorskip("lightning", reason="the study needs Lightning (the package's [demo] extra)")
pytest.importorskip("scipy", reason="the study's intervals need scipy")

from helpers.images import folder_dataset, make_folder
from helpers.processes import run_python
from helpers.records import RECORDS, STUDY_V2
from helpers.study import fake_row, run_plan

from sfrik_experiments.engine.results import ResultsFile
from sfrik_experiments.study import plan, presets
from sfrik_experiments.utils.arguments import command_line

V2, V3 = presets.PRESETS["full"], presets.PRESETS["v3"]


def search_of(preset, method, kind="tune", chosen=None, q=None):
    planner = plan.Planner(preset)
    if kind == "tune":
        searches = planner.tune_searches()
    elif kind == "ablation":
        searches = planner.ablation_searches(chosen)
    else:
        searches = planner.table_searches(chosen, q)
    return next(s for s in searches if s.key == method)


def record(search, by_id, score):
    """Records every missing run of the search's current state with score(spec); returns the state
    after, or None when nothing was missing."""
    state = plan.search_state(search, by_id)
    missing = [s for s in state.runs if s.run_id not in by_id]
    for spec in missing:
        by_id[spec.run_id] = fake_row(spec, score(spec))
    return state if missing else None


def finish(search, score, by_id=None):
    by_id = {} if by_id is None else by_id
    while record(search, by_id, score) is not None:
        pass
    return plan.search_state(search, by_id), by_id


def weight_peak(parameter, optimum, lr=5e-3):
    """A smooth score (no seed effect) with its maximum at (lr, optimum) in log space."""

    def score(spec):
        return round(
            80.0
            - math.log2(float(spec.params[parameter]) / optimum) ** 2
            - math.log2(float(spec.params["lr"]) / lr) ** 2,
            2,
        )

    return score


def test_v3_is_v2s_protocol_with_ten_final_seeds_and_the_rule_on_every_search():
    assert V3.protocol() == V2.protocol()  # v2's rows are v3's where v3 asks for the same run
    assert V3.final_seeds == tuple(range(10)) and V3.ablation_seeds == (0, 1, 2, 3, 4) and V3.repeat_seeds == (0, 1, 2)
    assert V3.tune_seed == 10 and V3.confirm_seeds == (11, 12) and V3.confirm_top == 3 and V3.cap_extension == 2
    assert not {V3.tune_seed, *V3.confirm_seeds} & {*V3.final_seeds, *V3.repeat_seeds, *V3.ablation_seeds}
    assert (V3.grids, V3.ablation_grids, V3.lr_ladder) == (V2.grids, V2.ablation_grids, V2.lr_ladder)
    planner = plan.Planner(V3)
    chosen = {m: {"lr": 0.01, **dict(g.fixed), g.parameter: g.ladder.centre} for m, g in V3.grids.items()}
    searches = [
        *planner.tune_searches(),
        *planner.ablation_searches(chosen),
        *(s for q in (256, 4096) for s in planner.table_searches(chosen, q)),
    ]
    assert len(searches) == 7 + 4 + 14
    for search in searches:  # the cap rule on every search; confirmation (seeds 11, 12, top 3) at q = main_q
        confirmed = (11, 12) if search.q == V3.main_q else ()
        assert (search.seed, search.confirm_seeds, search.confirm_top) == (10, confirmed, 3), search.key
        assert {a.extra_rungs for a in search.axes} == {2}, search.key
    assert V3.confirm_in == ("tune", "ablation")  # the q table's searches are not confirmed
    # v2's searches are v2's: no confirmation, no extra rungs
    for search in plan.Planner(V2).tune_searches():
        assert search.confirm_seeds == () and {a.extra_rungs for a in search.axes} == {0}
    with pytest.raises(ValueError, match="confirm_seeds \\[9\\] is a final run's seed"):
        replace(V3, confirm_seeds=(9, 11))
    with pytest.raises(ValueError, match="confirm_seeds repeat the tuning seed"):
        replace(V3, confirm_seeds=(10,))
    with pytest.raises(ValueError, match="confirm_in must name tune, ablation or table"):
        replace(V3, confirm_in=("final",))


@pytest.mark.parametrize(
    "optimum_rung, spans, at_cap",
    [
        (4, (-1, 5), ()),  # the two more rungs find the optimum inside: interior
        (9, (-1, 5), ("sim_loss_weight",)),  # still at the edge after them: at the cap, and no more rungs
        (-6, (-5, 1), ("sim_loss_weight",)),  # the same at the bottom edge
    ],
)
def test_the_cap_rule_gives_an_axis_two_more_rungs_once(optimum_rung, spans, at_cap):
    search = search_of(V3, "sfrik")
    ladder = search.axes[1].ladder
    score = weight_peak("sim_loss_weight", ladder.centre * 2.0**optimum_rung)
    state, by_id = finish(search, score)
    assert state.spans == ((-1, 1), spans) and state.extended == ("sim_loss_weight",) and state.at_cap == at_cap
    assert state.best["lr"] == 5e-3 and state.best["sim_loss_weight"] == ladder.value(
        min(max(optimum_rung, spans[0]), spans[1])
    )
    grid = [s for _, s in search.runs(state.spans)]
    assert state.grid == tuple(grid) and len(grid) == 3 * 7  # 5 rungs (the cap) + 2
    assert len(state.runs) == len(grid) + 3 * 2 and len(by_id) == len(state.runs)
    # v2's rule on the same scores stops at the cap of 5 rungs, confirms nothing, and says so
    v2_state, _ = finish(search_of(V2, "sfrik"), score)
    assert v2_state.spans[1] == ((-1, 3) if optimum_rung > 0 else (-3, 1)) and v2_state.at_cap == ("sim_loss_weight",)
    assert v2_state.extended == () and len(v2_state.runs) == 3 * 5


def test_the_cap_rule_only_extends_a_search_that_would_end_at_the_cap():
    search = search_of(V3, "sfrik")
    centre = search.axes[1].ladder.centre
    state, _ = finish(search, weight_peak("sim_loss_weight", centre * 4))  # optimum at rung 2: inside the cap
    assert state.spans == ((-1, 1), (-1, 3)) and state.extended == () and state.at_cap == ()
    # an axis held at one value (the smoke presets' learning rate) is never extended
    smoke = search_of(presets.PRESETS["smoke-v3"], "sfrik")
    state, _ = finish(smoke, lambda s: 50.0)
    assert state.spans == ((0, 0), (-2, 0)) and state.extended == ("sim_loss_weight",)


def grid_scores(search, values):
    """by_id with the search's 3 x 3 starting grid scored by values (grid order)."""
    points = [spec for _, spec in search.runs([a.span for a in search.axes])]
    return points, {spec.run_id: fake_row(spec, value) for spec, value in zip(points, values)}


def test_confirmation_reruns_the_three_best_cells_with_seeds_11_and_12_and_chooses_on_the_mean():
    search = search_of(V3, "simclr")
    # the centre is best at seed 10; cells 1 (an edge) and 5 (an edge) next: the grid does not grow
    points, by_id = grid_scores(search, [80.0, 83.8, 80.0, 80.0, 84.0, 83.9, 80.0, 80.0, 80.0])
    state = plan.search_state(search, by_id)
    assert state.best is None and state.confirmed == (points[1], points[4], points[5])  # grid order
    expected = [replace(points[k], seed=s) for k in (1, 4, 5) for s in (11, 12)]
    assert list(state.runs) == points + expected  # the grid, then exactly six confirmation runs
    assert [r.seed for r in expected] == [11, 12] * 3 and {r.run_id for r in expected}.isdisjoint(by_id)
    seeds = {(1, 11): 84.1, (1, 12): 84.2, (4, 11): 83.0, (4, 12): 83.0, (5, 11): 83.9, (5, 12): 83.9}
    for (k, s), value in list(seeds.items())[:-1]:
        by_id[replace(points[k], seed=s).run_id] = fake_row(replace(points[k], seed=s), value)
    assert plan.search_state(search, by_id).best is None  # one confirmation run missing: no choice yet
    by_id[replace(points[5], seed=12).run_id] = fake_row(replace(points[5], seed=12), 83.9)
    state = plan.search_state(search, by_id)
    # means: cell 1 (83.8 + 84.1 + 84.2) / 3 = 84.03, cell 4 83.33, cell 5 83.9: cell 1, not seed 10's best
    assert state.best_run == points[1] and state.best == points[1].params
    assert plan.mean_score(by_id, points[1], (10, 11, 12)) == pytest.approx(84.0333333)
    # cell 1 is at the bottom edge of the temperature axis, below its cap: said, and the grid does not grow
    assert state.at_edge == ("lr",) and state.at_cap == () and state.spans == ((-1, 1), (-1, 1))
    assert len(state.runs) == 9 + 6


def test_confirmation_ties_go_to_the_first_in_grid_order_in_exact_decimals():
    search = search_of(V3, "simclr")
    # four cells tie at seed 10 behind the centre: the first two of them in grid order are confirmed
    points, by_id = grid_scores(search, [80.0, 82.0, 80.0, 82.0, 84.0, 82.0, 80.0, 82.0, 80.0])
    assert plan.search_state(search, by_id).confirmed == (points[1], points[3], points[4])
    # cells 1 and 3: equal means in decimals (80.17 + 80.72 + 80.97 = 80.17 + 80.73 + 80.96), but the
    # second's float sum is the larger (241.86 against 241.85999999999999): the first in grid order wins
    points, by_id = grid_scores(search, [80.0, 80.17, 80.0, 80.17, 80.5, 80.0, 80.0, 80.0, 80.0])
    values = {1: (80.72, 80.97), 3: (80.73, 80.96), 4: (79.0, 79.0)}
    for k, pair in values.items():
        for s, value in zip((11, 12), pair):
            by_id[replace(points[k], seed=s).run_id] = fake_row(replace(points[k], seed=s), value)
    assert sum([80.17, 80.73, 80.96]) > sum([80.17, 80.72, 80.97])  # why exact decimals
    assert plan.search_state(search, by_id).best_run == points[1]


def test_a_diverged_cell_is_not_confirmed_and_a_diverged_confirmation_run_loses():
    search = search_of(V3, "simclr")
    points, by_id = grid_scores(search, [80.0, 83.0, 80.0, 80.0, 84.0, 80.0, 80.0, 82.0, 80.0])
    by_id[points[5].run_id] = fake_row(points[5], 99.0, "diverged: loss is nan")
    state = plan.search_state(search, by_id)
    assert state.confirmed == (points[1], points[4], points[7])  # the diverged "99" is not a candidate
    for k in (1, 4, 7):
        for s in (11, 12):
            by_id[replace(points[k], seed=s).run_id] = fake_row(replace(points[k], seed=s), 90.0)
    by_id[replace(points[1], seed=12).run_id] = fake_row(replace(points[1], seed=12), 99.0, "diverged: loss is nan")
    # cell 1 would win on its scores (83 + 90 + 99 counted as a number), but its diverged run counts -inf
    state = plan.search_state(search, by_id)
    assert state.best_run == points[4] and plan.mean_score(by_id, points[1], (10, 11, 12)) == -math.inf


def noisy(seed_effect=0.4):
    """A score with a peak at each search's ladder centre (lr 5e-3) and a seed effect, so that the
    confirmation can change a choice; deterministic per run id."""

    def score(spec):
        if spec.method == "random":
            return 77.0
        rng = random.Random(spec.run_id)
        value = 82.0 + rng.gauss(0.0, seed_effect)
        if spec.phase == "tune" and "lr" in spec.params:
            value -= 0.5 * math.log2(float(spec.params["lr"]) / 5e-3) ** 2
        return round(value, 2)

    return score


def test_the_whole_v3_plan_runs_and_rebuilds_from_its_rows_alone():
    rows = run_plan(V3, noisy())
    specs = plan.study_runs(V3, rows)
    # the rows alone give the same plan, run for run (in grid order: a grown grid's new rungs sort in)
    assert sorted(s.run_id for s in specs) == sorted(r["run_id"] for r in rows)
    assert len({r["run_id"] for r in rows}) == len(rows) >= plan.Planner(V3).count()
    by_id = {r["run_id"]: r for r in rows}
    chosen = plan.choices(V3, rows)
    assert len(chosen.searches) == 7 + 4 + 14 and all(state.best is not None for _, state in chosen.searches)
    for search, state in chosen.searches:
        if search.q != V3.main_q:  # the q table: not confirmed, the best cell at seed 10 (first in grid order)
            scores = [float(by_id[s.run_id]["linear_top1"]) for s in state.grid]
            assert state.confirmed == () and state.best_run == state.grid[scores.index(max(scores))], search.key
            continue
        # the choice, recomputed: the best mean over seeds 10-12 among the three best cells at seed 10
        cells = sorted(state.grid, key=lambda s: -float(by_id[s.run_id]["linear_top1"]))[:3]
        cells = [s for s in state.grid if s in cells]  # in grid order
        means = [sum(float(by_id[replace(c, seed=k).run_id]["linear_top1"]) for k in (10, 11, 12)) for c in cells]
        assert state.confirmed == tuple(cells) and state.best_run == cells[means.index(max(means))], search.key
    assert {s.seed for s in specs if s.phase == "tune"} == {10, 11, 12}
    assert {s.split for s in specs if s.phase == "tune"} == {"validation"}
    assert {s.split for s in specs if s.phase != "tune"} == {"test"}
    for method in ("random", *V3.methods):
        finals = [s for s in specs if s.phase == "final" and s.method == method and s.q == 1024]
        assert [s.seed for s in finals] == list(range(10)) and len({s.setting for s in finals}) == 1
    for q in (256, 4096):
        assert {s.seed for s in specs if s.phase == "final" and s.q == q} == {0, 1, 2}
    ablation = [s for s in specs if s.phase == "ablation"]
    variants = {(s.method, s.setting_text) for s in ablation}
    assert len(variants) == 4 and all(
        sorted(s.seed for s in ablation if (s.method, s.setting_text) == v) == [0, 1, 2, 3, 4] for v in variants
    )


def test_l1_and_l2_are_retuned_on_sfriks_sim_weight_at_sfriks_lr():
    sfrik = {"lr": 0.01, "kernel_weights": (1.0, 40.0, 40.0), "sim_loss_weight": 4000.0}
    for degree, weights in ((1, "(1)"), (2, "(1,40)")):
        search = search_of(V3, f"sfrik_L{degree}", "ablation", {"sfrik": sfrik})
        assert search.method == "sfrik" and [a.name for a in search.axes] == ["sim_loss_weight"]
        axis = search.axes[0]
        assert (axis.ladder, axis.span, axis.max_rungs, axis.extra_rungs) == (presets.Ladder(4000.0), (-1, 1), 5, 2)
        centre = [s for _, s in search.runs([(0, 0)])][0]
        # the centre cell is v2's ablation setting (SFRIK's choice, truncated): where the search keeps
        # SFRIK's weight, the final runs are v2's ablation runs
        assert centre.setting_text == f"lr=0.01 kernel_weights={weights} sim_loss_weight=4000"
    assert [s.key for s in plan.Planner(V2).ablation_searches({"sfrik": sfrik})] == ["mmd_gaussian", "mmd_distance"]
    # their own choices set their final runs
    chosen = {"sfrik": sfrik, "sfrik_L1": {**sfrik, "kernel_weights": (1.0,), "sim_loss_weight": 16000.0}}
    runs = plan.Planner(V3).ablation_runs(chosen)
    assert [s.setting_text for s in runs] == ["lr=0.01 kernel_weights=(1) sim_loss_weight=16000"] * 5


def v2_record():
    with open(RECORDS / STUDY_V2, newline="") as f:
        return list(csv.DictReader(f))


def kind(spec) -> str:
    if spec.method == "random":
        return "random"
    if spec.phase == "tune":
        return "confirm" if spec.seed != 10 else "grid"
    return spec.phase


def test_the_v2_record_read_under_v3_asks_exactly_for_these_runs():
    rows = v2_record()
    assert ResultsFile(RECORDS / STUDY_V2, V3.protocol()).rows  # the same protocol: readable
    done = {r["run_id"] for r in rows}
    todo = [s for s in plan.study_runs(V3, rows) if s.run_id not in done]
    # the next runs: seeds 11 and 12 on the three best cells at seed 10 of each q = 1024 search that
    # ended inside its cap (six methods), SIGReg's two more lambda rungs at each of its four learning
    # rates (its lambda ended at the bottom of the cap), and the random encoder's seeds 5-9
    scores = {r["run_id"]: float(r["linear_top1"]) for r in rows}
    expected = []
    for method in ("sfrik", "auh", "vicreg", "barlow_twins", "simclr", "mmcr"):
        search = search_of(V3, method)
        grid = plan.search_state(search, {r["run_id"]: r for r in rows}).grid
        best = sorted(grid, key=lambda s: -scores[s.run_id])[:3]
        expected += [replace(c, seed=s).run_id for c in grid if c in best for s in (11, 12)]
    sigreg = [
        f"lr={lr} lambda_param={lam}"
        for lr in ("0.00125", "0.0025", "0.005", "0.01")
        for lam in ("0.0015625", "0.003125")
    ]
    expected += [f"tune|sigreg|q=1024|seed=10|validation|{setting}" for setting in sigreg]
    expected += [f"final|random|q=1024|seed={s}|test|" for s in range(5, 10)]
    assert sorted(s.run_id for s in todo) == sorted(expected) and len(todo) == 36 + 8 + 5 == 49


def test_the_v2_record_under_v3_if_no_choice_changes_needs_136_more_runs():
    """What v3 adds to the v2 record if every confirmation keeps v2's choice and every cap rule's
    rung scores below the choice (the fewest runs; a choice that moves adds its final and q-table
    runs): 136 runs, 131 of them trained, about 4.8 h at 2.2 min each."""
    rows = v2_record()
    v2 = {r["run_id"]: float(r["linear_top1"]) for r in rows}

    def unchanged(spec):
        at_seed_10 = replace(spec, seed=10).run_id
        if spec.phase == "tune" and at_seed_10 in v2:
            return v2[at_seed_10]  # a confirmation run scores its cell's seed-10 value: the ranking holds
        if spec.phase == "tune" and spec.method == "sfrik":  # L = 1, 2: a peak at SFRIK's weight
            return round(82.0 - math.log2(float(spec.params["sim_loss_weight"]) / 4000.0) ** 2, 2)
        return 50.0  # a cap rule's rung: below every recorded cell

    new = run_plan(V3, unchanged, rows=rows)[len(rows) :]
    counts = {}
    for row in new:
        spec = plan.RunSpec(row["phase"], row["method"], int(row["q"]), int(row["seed"]), row["split"])
        key = (row["q"], kind(spec))
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        ("1024", "confirm"): 42 + 24,  # seven methods' searches, then the four ablation searches'
        ("1024", "grid"): 8 + 6,  # SIGReg's cap rule; L = 1 and 2's own 3-rung searches
        ("1024", "random"): 5,
        ("1024", "final"): 35,  # seeds 5-9 of seven methods
        ("1024", "ablation"): 8,  # seeds 3-4 of four variants (0-2 are v2's)
        ("256", "grid"): 2,  # AUH's cap rule (the q table is not confirmed)
        ("4096", "grid"): 6,  # AUH's, VICReg's and SimCLR's cap rule
    }
    trained = sum(1 for r in new if r["method"] != "random")
    assert (len(new), trained) == (136, 131)
    print(
        f"\nv3 on the v2 record, no choice changing: {len(new)} runs ({trained} trained, ~{trained * 2.2 / 60:.1f} h)"
    )


def study_args(folder, out, *extra) -> list[str]:
    options = {"preset": "smoke-v3", **folder_dataset(folder), "out": out, "library": "lightly"}
    return ["-m", "sfrik_experiments.study", *command_line(options), *extra]


@pytest.mark.slow
def test_smoke_v3_runs_end_to_end(tmp_path):
    pytest.importorskip("lightly", reason="the CI study uses lightly's baselines")
    preset = replace(presets.PRESETS["smoke-v3"], dataset="folder")  # as the command runs it on a folder
    folder = make_folder(tmp_path / "images", per_class=40)
    out = tmp_path / "out"
    start = time.monotonic()
    run_python(*study_args(folder, out, "--phases", *plan.PHASES), timeout=900)  # the timing pass has tests of its own
    elapsed = time.monotonic() - start
    rows = ResultsFile(out / "results.csv", preset.protocol()).rows
    assert sorted(s.run_id for s in plan.study_runs(preset, rows)) == sorted(r["run_id"] for r in rows)  # all done
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 35
    chosen = plan.choices(preset, rows)
    assert all(state.best is not None for _, state in chosen.searches)
    for search, state in chosen.tune + chosen.ablation:  # 2 rungs (the cap), then 1 more: the cap rule
        assert len(state.grid) == 3 and state.extended == (search.axes[-1].name,) and len(state.confirmed) == 2
        assert {r.seed for r in state.runs} == {5, 6}
    assert set(chosen.main) == {"sfrik", "simclr", "sfrik_L1", "mmd_gaussian"}
    summary = (out / "summary.md").read_text()
    for heading in (
        "The confirmation:",
        "## Accuracy and training time",
        "At q = 16, kNN top-1, baseline − SFRIK:",
        "variant − L = 3",
        "## Ablations (test split, q = 32, seeds [0] for every variant)",
    ):
        assert heading in summary, heading
    for name in ("accuracy.png", "accuracy_vs_q.png", "ablation.png", "paired_differences.png", "accuracy_vs_time.png"):
        assert (out / name).exists(), name
    print(f"\nsmoke-v3: {len(rows)} runs in {elapsed:.0f} s")
