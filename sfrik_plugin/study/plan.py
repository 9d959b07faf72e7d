"""What a study runs: its presets (data, shared training protocol, tuning ladders, seeds) and the
runs of each phase, as plain specifications. Tuning follows one rule, fixed here and applied to
every method alike (Search): a grid of learning rate x the method's main hyper-parameter on
geometric ladders, grown along a ladder while the best validation linear top-1 sits at an edge of
it, up to a cap of rungs per axis; a choice still at an edge at the cap is reported as such. Which
setting a later run uses is read from the tuning rows already in the results, so a plan can be
rebuilt at any time from the results file alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sfrik_plugin.baselines import BASELINES_REGISTRY
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.engine.experiment import TrainConfig
from sfrik_plugin.engine.runs import Protocol, RunSpec

PHASES = ("tune", "final", "ablation", "table")
SFRIK_KERNEL_WEIGHTS = {L: KERNEL_WEIGHTS[:L] for L in (1, 2, 3)}  # the paper's b_l, truncated at L


@dataclass(frozen=True)
class Ladder:
    """The values centre * factor**rung, rung = ..., -1, 0, 1, ... (6 significant digits, so that
    a value's text in a run id is the same on every machine)."""

    centre: float
    factor: float = 2.0

    def value(self, rung: int) -> float:
        return float(f"{self.centre * self.factor**rung:.6g}")


@dataclass(frozen=True)
class Grid:
    """A method's tuned loss hyper-parameter and its ladder, with the loss's other hyper-parameters
    fixed."""

    parameter: str
    ladder: Ladder
    fixed: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Preset(Protocol):
    """A study: its protocol, the q it compares at, its tuning ladders and caps, and its seeds."""

    main_q: int = 1024
    table_qs: tuple[int, ...] = (256, 1024, 4096)
    lr_ladder: Ladder = Ladder(5e-3)
    lr_span: tuple[int, int] = (-1, 1)  # the learning-rate rungs a search starts with
    lr_max_rungs: int = 5  # the cap: rungs an axis may grow to
    param_span: tuple[int, int] = (-1, 1)
    param_max_rungs: int = 5
    table_span: tuple[int, int] = (-1, 1)  # at the other q: rungs around the q = main_q choice, lr fixed
    table_max_rungs: int = 4
    grids: Mapping[str, Grid] = field(default_factory=dict)
    ablation_degrees: tuple[int, ...] = (1, 2)  # L = 3 is SFRIK's final run
    ablation_grids: Mapping[str, Grid] = field(default_factory=dict)  # other kernels: mmd weight tuned
    tune_seed: int = 10  # no final run uses it
    final_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    repeat_seeds: tuple[int, ...] = (0, 1, 2)  # the q table's and the ablations' final runs

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)


def method_grids(sfrik: Ladder, auh: Ladder) -> dict[str, Grid]:
    """SFRIK's and AUH's grids (the plugin's methods), then every registered baseline's, on the
    ladder its registry entry gives."""
    grids = {
        "sfrik": Grid("sim_loss_weight", sfrik, (("kernel_weights", SFRIK_KERNEL_WEIGHTS[3]),)),
        "auh": Grid("sim_loss_weight", auh),
    }
    for name, baseline in BASELINES_REGISTRY.items():
        grids[name] = Grid(baseline.tuned, Ladder(*baseline.ladder))
    return grids


PRESETS = {
    # Fashion-MNIST on 2 CPU cores: about 200 runs of ~2 min (the recorded study).
    "full": Preset(
        name="full",
        train=TrainConfig(arch="resnet10", width=16, epochs=3, batch_size=256),
        grids=method_grids(sfrik=Ladder(4000.0), auh=Ladder(750.0)),
        ablation_grids={
            "mmd_gaussian": Grid("mmd_loss_weight", Ladder(100.0), (("s", 2.5),)),
            "mmd_distance": Grid("mmd_loss_weight", Ladder(3.0), (("p", 1.0),)),
        },
    ),
    # Every phase at toy sizes (CI, or a first look at one's own image folder): a few minutes.
    # One learning rate; each search starts with one rung and may grow to two, so the rule runs.
    "smoke": Preset(
        name="smoke",
        train=TrainConfig(arch="resnet10", width=4, epochs=1, batch_size=32, warmup_epochs=0.0),
        train_size=64,
        probe_size=64,
        eval_size=256,  # evaluation images: a smoke run checks the chain, not the accuracy
        quality_size=64,
        knn_k=5,
        main_q=32,
        table_qs=(16, 32),
        proj_hidden_dim=32,
        lr_ladder=Ladder(1e-2),
        lr_span=(0, 0),
        lr_max_rungs=1,
        param_span=(0, 0),
        param_max_rungs=2,
        table_span=(0, 0),
        table_max_rungs=1,
        tune_seed=5,
        final_seeds=(0, 1),
        repeat_seeds=(0,),
        grids=method_grids(sfrik=Ladder(4000.0), auh=Ladder(750.0)),
        ablation_degrees=(1,),
        ablation_grids={
            "mmd_gaussian": Grid("mmd_loss_weight", Ladder(30.0), (("s", 2.5),)),
            "mmd_distance": Grid("mmd_loss_weight", Ladder(1.0), (("p", 1.0),)),
        },
    ),
}


@dataclass(frozen=True)
class Axis:
    name: str
    ladder: Ladder
    span: tuple[int, int]  # the rungs the search starts with
    max_rungs: int  # the cap


@dataclass(frozen=True)
class Search:
    """One tuning search on the validation split: the settings base with each axis's key set from
    its ladder, over the grid of the axes' rungs (the first axis outermost)."""

    phase: str
    method: str
    q: int
    seed: int
    base: tuple[tuple[str, object], ...]  # every key of the setting, in order; the axes' values are replaced
    axes: tuple[Axis, ...]

    def runs(self, spans: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, ...], RunSpec]]:
        """(rungs, spec) of every point of the grid with these spans, in grid order."""
        ranges = [range(lo, hi + 1) for lo, hi in spans]
        out = []
        for rungs in itertools.product(*ranges):
            values = {axis.name: axis.ladder.value(r) for axis, r in zip(self.axes, rungs)}
            params = {k: values.get(k, v) for k, v in self.base}
            out.append((rungs, _spec(self.phase, self.method, self.q, self.seed, "validation", params)))
        return out


@dataclass(frozen=True)
class SearchState:
    runs: tuple[RunSpec, ...]  # the grid as far as it has grown, in grid order
    best_run: RunSpec | None  # the chosen run, once every run of the final grid is recorded
    at_cap: tuple[str, ...]  # axes whose chosen value is at an edge of the grid at the cap
    spans: tuple[tuple[int, int], ...]

    @property
    def best(self) -> dict[str, object] | None:
        """The chosen setting (None while the search runs)."""
        return None if self.best_run is None else self.best_run.params


def search_state(search: Search, rows_by_id: Mapping[str, Mapping[str, str]]) -> SearchState:
    """Grows the grid by the rule as far as the recorded rows allow: when every run of the grid is
    recorded and the best (ties: the first in grid order) sits at an edge of an axis that is
    below its cap, that axis gains the next rung beyond that edge; otherwise the search ends."""
    spans = [axis.span for axis in search.axes]
    while True:
        points = search.runs(spans)
        if not all(spec.run_id in rows_by_id for _, spec in points):
            return SearchState(tuple(s for _, s in points), None, (), tuple(spans))
        rungs, best = max(points, key=lambda p: _score(rows_by_id[p[1].run_id]))  # the first maximum wins
        grown, at_cap = False, []
        for i, axis in enumerate(search.axes):
            lo, hi = spans[i]
            edge = -1 if rungs[i] == lo else (1 if rungs[i] == hi else 0)
            if edge == 0 or (lo == hi == rungs[i] and axis.max_rungs == 1):
                continue  # interior, or an axis that is not tuned
            if hi - lo + 1 < axis.max_rungs:
                spans[i] = (lo - 1, hi) if edge < 0 else (lo, hi + 1)
                grown = True
            else:
                at_cap.append(axis.name)
        if not grown:
            return SearchState(tuple(s for _, s in points), best, tuple(at_cap), tuple(spans))


def _score(row: Mapping[str, str]) -> float:
    """Validation linear top-1 of a tuning row; a diverged run ranks last."""
    return float(row["linear_top1"]) if row["status"] == "ok" else float("-inf")


def _spec(phase, method, q, seed, split, params: Mapping[str, object] | None = None) -> RunSpec:
    return RunSpec(phase, method, q, seed, split, tuple((params or {}).items()))


class Planner:
    """The searches and runs of every phase of a preset. Tuning comes first; each later phase
    reads its settings from the tuning results given to it."""

    def __init__(self, preset: Preset):
        self.preset = preset

    # -- searches ------------------------------------------------------------------------------
    def _search(self, method: str, q: int, base: tuple, axes: tuple[Axis, ...]) -> Search:
        """A tuning search of the preset (validation split, the tuning seed)."""
        return Search("tune", method, q, self.preset.tune_seed, base, axes)

    def _param_axis(self, grid: Grid) -> Axis:
        p = self.preset
        return Axis(grid.parameter, grid.ladder, p.param_span, p.param_max_rungs)

    def tune_searches(self) -> list[Search]:
        p = self.preset
        lr = Axis("lr", p.lr_ladder, p.lr_span, p.lr_max_rungs)
        return [
            self._search(
                method, p.main_q, (("lr", None), *grid.fixed, (grid.parameter, None)), (lr, self._param_axis(grid))
            )
            for method, grid in p.grids.items()
        ]

    def ablation_searches(self, chosen: Mapping[str, dict[str, object]]) -> list[Search]:
        """The other kernels' MMD weight, at SFRIK's chosen lr and sim weight."""
        p, sfrik = self.preset, chosen.get("sfrik")
        if sfrik is None:
            return []
        fixed = (("lr", sfrik["lr"]), ("sim_loss_weight", sfrik["sim_loss_weight"]))
        return [
            self._search(method, p.main_q, (*fixed, *grid.fixed, (grid.parameter, None)), (self._param_axis(grid),))
            for method, grid in p.ablation_grids.items()
        ]

    def table_searches(self, chosen: Mapping[str, dict[str, object]], q: int) -> list[Search]:
        """At another q: each method's main hyper-parameter re-tuned on a small ladder around its
        q = main_q choice (same factor), with the rest of that choice (lr included) kept."""
        p, searches = self.preset, []
        for method, grid in p.grids.items():
            if method in chosen:
                centre = float(chosen[method][grid.parameter])  # type: ignore[arg-type]
                ladder = Ladder(centre, grid.ladder.factor)
                base = tuple((k, None if k == grid.parameter else v) for k, v in chosen[method].items())
                axis = Axis(grid.parameter, ladder, p.table_span, p.table_max_rungs)
                searches.append(self._search(method, q, base, (axis,)))
        return searches

    # -- runs ------------------------------------------------------------------------------------
    def random_tune_run(self) -> RunSpec:
        p = self.preset
        return _spec("tune", "random", p.main_q, p.tune_seed, "validation")

    def final_runs(self, chosen: Mapping[str, dict[str, object]], q: int) -> list[RunSpec]:
        p = self.preset
        seeds = p.final_seeds if q == p.main_q else p.repeat_seeds
        runs = [_spec("final", "random", q, s, "test") for s in seeds] if q == p.main_q else []
        for method in p.methods:
            if method in chosen:
                runs += [_spec("final", method, q, s, "test", chosen[method]) for s in seeds]
        return runs

    def ablation_runs(self, chosen: Mapping[str, dict[str, object]]) -> list[RunSpec]:
        p, runs = self.preset, []
        sfrik = chosen.get("sfrik")
        if sfrik is not None:
            for degree in p.ablation_degrees:
                params = {**sfrik, "kernel_weights": SFRIK_KERNEL_WEIGHTS[degree]}
                runs += [_spec("ablation", "sfrik", p.main_q, s, "test", params) for s in p.repeat_seeds]
        for method in p.ablation_grids:
            if method in chosen:
                runs += [_spec("ablation", method, p.main_q, s, "test", chosen[method]) for s in p.repeat_seeds]
        return runs

    def count(self, phases: Sequence[str] = PHASES) -> int:
        """The number of runs of the given phases if no search grows (a lower bound)."""
        p = self.preset

        def size(*spans: tuple[int, int]) -> int:
            n = 1
            for lo, hi in spans:
                n *= hi - lo + 1
            return n

        methods, other_qs = len(p.methods), len([q for q in p.table_qs if q != p.main_q])
        counts = {
            "tune": 1 + methods * size(p.lr_span, p.param_span),
            "final": len(p.final_seeds) * (1 + methods),
            "ablation": len(p.ablation_grids) * size(p.param_span)
            + len(p.repeat_seeds) * (len(p.ablation_degrees) + len(p.ablation_grids)),
            "table": other_qs * methods * (size(p.table_span) + len(p.repeat_seeds)),
        }
        return sum(counts[phase] for phase in phases)


Searched = list[tuple[Search, SearchState]]


@dataclass(frozen=True)
class Choices:
    """What tuning chose so far: the setting of each method (and ablation kernel) at the main q,
    each method's setting at every other q of the table, and every search with its state, by kind
    (the methods' at the main q, the ablation kernels', and each other q's)."""

    main: dict[str, dict[str, object]]
    by_q: dict[int, dict[str, dict[str, object]]]
    tune: Searched
    ablation: Searched
    table: dict[int, Searched]

    @property
    def searches(self) -> Searched:
        """Every search, in the study's order."""
        return self.tune + self.ablation + [entry for q in self.table for entry in self.table[q]]


def choices(preset: Preset, rows: Iterable[Mapping[str, str]]) -> Choices:
    planner = Planner(preset)
    by_id = {r["run_id"]: r for r in rows}
    main: dict[str, dict[str, object]] = {}

    def run(searches: list[Search], into: dict[str, dict[str, object]]) -> Searched:
        states = [(search, search_state(search, by_id)) for search in searches]
        into.update({search.method: state.best for search, state in states if state.best is not None})
        return states

    tune = run(planner.tune_searches(), main)
    ablation = run(planner.ablation_searches(main), main)
    by_q: dict[int, dict[str, dict[str, object]]] = {preset.main_q: main}
    table: dict[int, Searched] = {}
    for q in preset.table_qs:
        if q != preset.main_q:
            by_q[q] = {}
            table[q] = run(planner.table_searches(main, q), by_q[q])
    return Choices(main, by_q, tune, ablation, table)


def chosen_settings(preset: Preset, rows: Iterable[Mapping[str, str]]) -> dict[str, dict[str, object]]:
    """method -> its chosen setting at the main q, for every method (and ablation kernel) whose
    search has ended in `rows`."""
    return choices(preset, rows).main


def study_runs(preset: Preset, rows: Iterable[Mapping[str, str]], phases: Sequence[str] = PHASES) -> list[RunSpec]:
    """Every run that can be specified from the results so far, in the study's order: tuning,
    final runs at the main q, the ablation tuning and runs, then, per other q of the table, its
    tuning and its final runs."""
    planner, chosen = Planner(preset), choices(preset, rows)

    def grid_runs(searched: Searched) -> list[RunSpec]:
        return [run for _, state in searched for run in state.runs]

    runs: list[RunSpec] = []
    if "tune" in phases:
        runs += [planner.random_tune_run(), *grid_runs(chosen.tune)]
    if "final" in phases:
        runs += planner.final_runs(chosen.main, preset.main_q)
    if "ablation" in phases:
        runs += grid_runs(chosen.ablation) + planner.ablation_runs(chosen.main)
    if "table" in phases:
        for q, searched in chosen.table.items():
            runs += grid_runs(searched) + planner.final_runs(chosen.by_q[q], q)
    return runs
