"""What a study runs: the runs of each phase of its preset (study.presets), as plain
specifications. Tuning follows one rule, fixed here and applied to every method alike (Search): a
grid of learning rate x the method's main hyper-parameter on geometric ladders, grown along a
ladder while the best validation linear top-1 sits at an edge of it, up to a cap of rungs per axis;
a choice still at an edge at the cap is reported as such. Which setting a later run uses is read
from the tuning rows already in the results, so a plan can be rebuilt at any time from the results
file alone.

Version 3 of the rule (the preset "v3", fixed before any of its runs; "full" is the recorded v2
study and keeps the rule above) adds two steps, applied to every search of the study alike (each
method's at q = main_q, each method's at the other q of the table, the ablation kernels' and the
ablation degrees'):

- The cap rule (Preset.cap_extension = 2): when a search would end with its choice at an edge of an
  axis at its cap, that axis gains two more rungs beyond that edge at once, and the rule goes on
  with that axis's cap raised by two (so at most once per axis); a choice at an edge after that is
  reported at the cap. The grid grows on the tuning seed alone.
- Confirmation (Preset.confirm_seeds = (11, 12), confirm_top = 3): once the grid has ended, its
  three best cells at the tuning seed (validation linear top-1, ties: first in grid order; a
  diverged cell is not confirmed) run again with seeds 11 and 12 (no final run uses them), and the
  choice is the cell with the best mean over the three seeds (exact decimal means; ties: first in
  grid order; a diverged confirmation run makes its cell's mean -inf). The grid does not grow
  after the confirmation: a choice that it moves to an edge is reported as such. Which searches
  are confirmed is Preset.confirm_in (v3: the methods' searches at q = main_q, as issue 29 asks,
  and the ablation's, so that every kernel of the ablation is chosen alike; not the q table's,
  which re-tune one hyper-parameter around the q = main_q choice on three seeds and would cost
  another 84 runs, ~3.1 h: the q table stays the weaker evidence, as its report says).

The ablation degrees (Preset.retune_degrees, v3): SFRIK truncated at L = 1 and L = 2 is re-tuned
like the other kernels, each with a search of its own at SFRIK's chosen learning rate: the sim
weight, on a factor-2 ladder centred on SFRIK's chosen sim weight (span and cap of the other
searches), with the truncated kernel weights (1) and (1, 40). Why the sim weight: it is the
hyper-parameter SFRIK's own search tuned, so L = 1, 2 and 3 are tuned on the same axis at the same
learning rate; under AdamW (invariant to a constant factor on the loss) the balance between the
invariance and the MMD, which is what the Gaussian and distance kernels' MMD weight sets, is the
same one degree of freedom (sim weight x 2 is MMD weight / 2); and where the search keeps SFRIK's
weight, the variant's setting (and run ids) are v2's. Every ablation variant then runs on the same
seeds (Preset.ablation_seeds, 0-4), L = 3 being SFRIK's final runs of those seeds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from sfrik_experiments.engine.runs import RunSpec

from .presets import SFRIK_KERNEL_WEIGHTS, Grid, Ladder, Preset

PHASES = ("tune", "final", "ablation", "table")


@dataclass(frozen=True)
class Axis:
    name: str
    ladder: Ladder
    span: tuple[int, int]  # the rungs the search starts with
    max_rungs: int  # the cap
    extra_rungs: int = 0  # the cap rule: rungs gained, once, beyond an edge at the cap

    @property
    def tuned(self) -> bool:
        """False for an axis held at one value (one rung, capped at one)."""
        return not (self.span[0] == self.span[1] and self.max_rungs == 1)


@dataclass(frozen=True)
class Search:
    """One tuning search on the validation split: the settings base with each axis's key set from
    its ladder, over the grid of the axes' rungs (the first axis outermost). confirm_seeds: the
    seeds the confirm_top best cells of the ended grid run again with (none: the best cell at the
    tuning seed is the choice). name: the key of its choice where it is not the method's (the
    ablation degrees: "sfrik_L1", "sfrik_L2")."""

    phase: str
    method: str
    q: int
    seed: int
    base: tuple[tuple[str, object], ...]  # every key of the setting, in order; the axes' values are replaced
    axes: tuple[Axis, ...]
    confirm_seeds: tuple[int, ...] = ()
    confirm_top: int = 3
    name: str = ""

    @property
    def key(self) -> str:
        """What its choice is filed under (Choices.main, Choices.by_q)."""
        return self.name or self.method

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
    runs: tuple[RunSpec, ...]  # the grid as far as it has grown, in grid order, then the confirmation runs
    best_run: RunSpec | None  # the chosen cell (at the tuning seed), once every run is recorded
    at_cap: tuple[str, ...]  # axes whose chosen value is at an edge of the grid at the cap
    spans: tuple[tuple[int, int], ...]
    extended: tuple[str, ...] = ()  # axes that gained the cap rule's rungs
    confirmed: tuple[RunSpec, ...] = ()  # the cells run again with the confirmation seeds (tuning seed), in grid order
    at_edge: tuple[str, ...] = ()  # axes whose chosen value is at an edge below the cap (a confirmation's choice)

    @property
    def best(self) -> dict[str, object] | None:
        """The chosen setting (None while the search runs)."""
        return None if self.best_run is None else self.best_run.params

    @property
    def grid(self) -> tuple[RunSpec, ...]:
        """The grid's runs (at the tuning seed), without the confirmation runs."""
        seed = self.runs[0].seed if self.runs else None
        return tuple(r for r in self.runs if r.seed == seed)


def search_state(search: Search, rows_by_id: Mapping[str, Mapping[str, str]]) -> SearchState:
    """Grows the grid by the rule as far as the recorded rows allow: when every run of the grid is
    recorded and the best (ties: the first in grid order) sits at an edge of an axis that is
    below its cap, that axis gains the next rung beyond that edge; otherwise the search ends. Where
    the axes have extra_rungs (v3's cap rule), an ended search whose best is at an edge of an axis
    at its cap gives that axis extra_rungs more rungs beyond the edge, once, and goes on. Where
    the search has confirm_seeds (v3), the ended grid's confirm_top best cells run again with them
    and the choice is the best mean over the tuning seed and those seeds (see confirm)."""
    spans = [axis.span for axis in search.axes]
    extended = [False] * len(search.axes)
    while True:
        points = search.runs(spans)
        if not all(spec.run_id in rows_by_id for _, spec in points):
            return SearchState(tuple(s for _, s in points), None, (), tuple(spans), _names(search, extended))
        rungs, best = max(points, key=lambda p: _score(rows_by_id[p[1].run_id]))  # the first maximum wins
        grown, capped = False, []
        for i, axis in enumerate(search.axes):
            lo, hi = spans[i]
            edge = -1 if rungs[i] == lo else (1 if rungs[i] == hi else 0)
            if edge == 0 or not axis.tuned:
                continue  # interior, or an axis that is not tuned
            cap = axis.max_rungs + (axis.extra_rungs if extended[i] else 0)
            if hi - lo + 1 < cap:
                spans[i] = (lo - 1, hi) if edge < 0 else (lo, hi + 1)
                grown = True
            else:
                capped.append((i, edge))
        if grown:
            continue
        extend = [(i, edge) for i, edge in capped if search.axes[i].extra_rungs and not extended[i]]
        if not extend:
            break
        for i, edge in extend:  # the cap rule: this axis's extra rungs beyond the edge, once
            lo, hi, extra = *spans[i], search.axes[i].extra_rungs
            spans[i] = (lo - extra, hi) if edge < 0 else (lo, hi + extra)
            extended[i] = True
    grid = [spec for _, spec in points]
    confirmed, confirm_runs, chosen = confirm(search, points, rows_by_id)
    runs = (*grid, *confirm_runs)
    state = SearchState(runs, None, (), tuple(spans), _names(search, extended), confirmed)
    if chosen is None:
        return state
    rungs = next(r for r, spec in points if spec == chosen)
    at_cap: list[str] = []
    at_edge: list[str] = []
    for i, axis in enumerate(search.axes):
        lo, hi = spans[i]
        if axis.tuned and rungs[i] in (lo, hi):
            cap = axis.max_rungs + (axis.extra_rungs if extended[i] else 0)
            (at_cap if hi - lo + 1 >= cap else at_edge).append(axis.name)
    return replace(state, best_run=chosen, at_cap=tuple(at_cap), at_edge=tuple(at_edge))


def confirm(
    search: Search, points: Sequence[tuple[tuple[int, ...], RunSpec]], rows_by_id: Mapping[str, Mapping[str, str]]
) -> tuple[tuple[RunSpec, ...], tuple[RunSpec, ...], RunSpec | None]:
    """The confirmation of an ended grid (points, every one recorded): (the cells confirmed, in
    grid order; their runs at the confirmation seeds, cell by cell; the chosen cell, or None while a
    confirmation run is missing). The cells: the confirm_top best at the tuning seed (ties: first in
    grid order), diverged cells left out. The choice: the best mean over the tuning seed and the
    confirmation seeds, in exact decimals (ties: first in grid order); a diverged run counts -inf.
    Without confirm_seeds (v2): no cells, and the choice is the best cell at the tuning seed."""
    by_score = sorted(range(len(points)), key=lambda k: -_score(rows_by_id[points[k][1].run_id]))  # stable
    if not search.confirm_seeds:
        return (), (), points[by_score[0]][1]
    ok = [k for k in by_score if rows_by_id[points[k][1].run_id]["status"] == "ok"]
    cells = [points[k][1] for k in sorted(ok[: search.confirm_top])]
    if not cells:
        return (), (), points[0][1]  # every cell diverged: the first, as without confirmation
    runs = [replace(cell, seed=s) for cell in cells for s in search.confirm_seeds]
    if not all(r.run_id in rows_by_id for r in runs):
        return tuple(cells), tuple(runs), None
    totals = [
        sum(_exact(rows_by_id[replace(c, seed=s).run_id]) for s in (c.seed, *search.confirm_seeds)) for c in cells
    ]
    return tuple(cells), tuple(runs), cells[totals.index(max(totals))]  # index: the first maximum


def _names(search: Search, flags: Sequence[bool]) -> tuple[str, ...]:
    return tuple(axis.name for axis, flag in zip(search.axes, flags) if flag)


def _score(row: Mapping[str, str]) -> float:
    """Validation linear top-1 of a tuning row; a diverged run ranks last."""
    return float(row["linear_top1"]) if row["status"] == "ok" else float("-inf")


def _exact(row: Mapping[str, str]) -> Decimal:
    """_score in exact decimals (the recorded digits), so that equal means tie exactly."""
    return Decimal(row["linear_top1"]) if row["status"] == "ok" else Decimal("-Infinity")


def mean_score(rows_by_id: Mapping[str, Mapping[str, str]], cell: RunSpec, seeds: Sequence[int]) -> float:
    """The mean validation linear top-1 of a cell over the seeds (-inf if one diverged; nan if one is
    missing)."""
    rows = [rows_by_id.get(replace(cell, seed=s).run_id) for s in seeds]
    if any(r is None for r in rows):
        return float("nan")
    return float(sum(_exact(r) for r in rows if r is not None) / len(rows))


def _spec(phase, method, q, seed, split, params: Mapping[str, object] | None = None) -> RunSpec:
    return RunSpec(phase, method, q, seed, split, tuple((params or {}).items()))


class Planner:
    """The searches and runs of every phase of a preset. Tuning comes first; each later phase
    reads its settings from the tuning results given to it."""

    def __init__(self, preset: Preset):
        self.preset = preset

    # -- searches ------------------------------------------------------------------------------
    def _search(self, kind: str, method: str, q: int, base: tuple, axes: tuple[Axis, ...], name: str = "") -> Search:
        """A tuning search of the preset (validation split, the tuning seed, its confirmation seeds
        where the preset confirms this kind of search: tune, ablation or table)."""
        p = self.preset
        seeds = p.confirm_seeds if kind in p.confirm_in else ()
        return Search("tune", method, q, p.tune_seed, base, axes, seeds, p.confirm_top, name)

    def _axis(self, name: str, ladder: Ladder, span: tuple[int, int], max_rungs: int) -> Axis:
        return Axis(name, ladder, span, max_rungs, self.preset.cap_extension)

    def _param_axis(self, grid: Grid) -> Axis:
        p = self.preset
        return self._axis(grid.parameter, grid.ladder, p.param_span, p.param_max_rungs)

    def tune_searches(self) -> list[Search]:
        p = self.preset
        lr = self._axis("lr", p.lr_ladder, p.lr_span, p.lr_max_rungs)
        return [
            self._search(
                "tune",
                method,
                p.main_q,
                (("lr", None), *grid.fixed, (grid.parameter, None)),
                (lr, self._param_axis(grid)),
            )
            for method, grid in p.grids.items()
        ]

    def ablation_searches(self, chosen: Mapping[str, dict[str, object]]) -> list[Search]:
        """The other kernels' MMD weight, at SFRIK's chosen lr and sim weight; with retune_degrees,
        first SFRIK truncated at each ablation degree L, its sim weight on a ladder around SFRIK's
        choice at SFRIK's lr (named "sfrik_L<L>")."""
        p, sfrik = self.preset, chosen.get("sfrik")
        if sfrik is None:
            return []
        searches = []
        if p.retune_degrees:
            weight = float(sfrik["sim_loss_weight"])  # type: ignore[arg-type]
            ladder = Ladder(weight, p.grids["sfrik"].ladder.factor)
            for degree in p.ablation_degrees:
                replaced = {"kernel_weights": SFRIK_KERNEL_WEIGHTS[degree], "sim_loss_weight": None}
                base = tuple((k, replaced.get(k, v)) for k, v in sfrik.items())  # SFRIK's order of keys
                axis = self._axis("sim_loss_weight", ladder, p.param_span, p.param_max_rungs)
                searches.append(self._search("ablation", "sfrik", p.main_q, base, (axis,), degree_key(degree)))
        fixed = (("lr", sfrik["lr"]), ("sim_loss_weight", sfrik["sim_loss_weight"]))
        return searches + [
            self._search(
                "ablation", method, p.main_q, (*fixed, *grid.fixed, (grid.parameter, None)), (self._param_axis(grid),)
            )
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
                axis = self._axis(grid.parameter, ladder, p.table_span, p.table_max_rungs)
                searches.append(self._search("table", method, q, base, (axis,)))
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

    def degree_setting(self, chosen: Mapping[str, dict[str, object]], degree: int) -> dict[str, object] | None:
        """SFRIK truncated at L = degree: its own search's choice (retune_degrees), else SFRIK's
        choice with the kernel weights truncated; None before it is known."""
        if self.preset.retune_degrees:
            return chosen.get(degree_key(degree))
        sfrik = chosen.get("sfrik")
        return None if sfrik is None else {**sfrik, "kernel_weights": SFRIK_KERNEL_WEIGHTS[degree]}

    def ablation_runs(self, chosen: Mapping[str, dict[str, object]]) -> list[RunSpec]:
        p, runs = self.preset, []
        for degree in p.ablation_degrees:
            params = self.degree_setting(chosen, degree)
            if params is not None:
                runs += [_spec("ablation", "sfrik", p.main_q, s, "test", params) for s in p.ablation_seeds]
        for method in p.ablation_grids:
            if method in chosen:
                runs += [_spec("ablation", method, p.main_q, s, "test", chosen[method]) for s in p.ablation_seeds]
        return runs

    def count(self, phases: Sequence[str] = PHASES) -> int:
        """The number of runs of the given phases if no search grows (a lower bound)."""
        p = self.preset

        def size(*spans: tuple[int, int]) -> int:
            n = 1
            for lo, hi in spans:
                n *= hi - lo + 1
            return n

        def search(kind: str, *spans: tuple[int, int]) -> int:  # its grid, and the confirmation of its best cells
            confirmed = len(p.confirm_seeds) if kind in p.confirm_in else 0
            return size(*spans) + min(p.confirm_top, size(*spans)) * confirmed

        methods, other_qs = len(p.methods), len([q for q in p.table_qs if q != p.main_q])
        searched_degrees = len(p.ablation_degrees) if p.retune_degrees else 0
        counts = {
            "tune": 1 + methods * search("tune", p.lr_span, p.param_span),
            "final": len(p.final_seeds) * (1 + methods),
            "ablation": (len(p.ablation_grids) + searched_degrees) * search("ablation", p.param_span)
            + len(p.ablation_seeds) * (len(p.ablation_degrees) + len(p.ablation_grids)),
            "table": other_qs * methods * (search("table", p.table_span) + len(p.repeat_seeds)),
        }
        return sum(counts[phase] for phase in phases)


def degree_key(degree: int) -> str:
    """The key of SFRIK truncated at L = degree in Choices.main (its own search, v3)."""
    return f"sfrik_L{degree}"


Searched = list[tuple[Search, SearchState]]


@dataclass(frozen=True)
class Choices:
    """What tuning chose so far: the setting of each method (and ablation kernel, and ablation
    degree with a search of its own: degree_key) at the main q, each method's setting at every
    other q of the table, and every search with its state, by kind (the methods' at the main q, the
    ablation's, and each other q's)."""

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
        into.update({search.key: state.best for search, state in states if state.best is not None})
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
