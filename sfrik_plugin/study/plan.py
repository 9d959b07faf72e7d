"""What a study runs: its presets (data, shared training protocol, grids, seeds) and the runs of
each phase, as plain specifications. Which setting a final run uses is chosen from the tuning
rows already in the results (best validation linear top-1), so a plan can be rebuilt at any time
from the results file alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.demo.experiment import TrainConfig

PHASES = ("tune", "final", "ablation", "table")
SFRIK_KERNEL_WEIGHTS = {L: KERNEL_WEIGHTS[:L] for L in (1, 2, 3)}  # the paper's b_l, truncated at L


@dataclass(frozen=True)
class Grid:
    """A method's tuning grid: learning rates x values of one loss hyper-parameter, with the
    loss's other hyper-parameters fixed."""

    parameter: str
    values: tuple[float, ...]
    fixed: tuple[tuple[str, object], ...] = ()

    def settings(self, lrs: Sequence[float]) -> list[dict[str, object]]:
        return [{"lr": lr, **dict(self.fixed), self.parameter: v} for lr, v in itertools.product(lrs, self.values)]


@dataclass(frozen=True)
class Preset:
    name: str
    train: TrainConfig  # lr and proj_dim are set per run
    dataset: str = "fashion-mnist"
    train_size: int = 15000  # pretraining images (a fixed subset, the same for every run)
    probe_size: int = 10000  # linear probe / kNN bank images (a fixed subset)
    eval_size: int = 0  # evaluation images (0 = the whole validation or test split)
    quality_size: int = 2048  # evaluation images the label-free measures use
    knn_k: int = 20
    main_q: int = 1024
    table_qs: tuple[int, ...] = (256, 1024, 4096)
    proj_hidden_dim: int = 1024  # projector hidden width, the same at every q
    lrs: tuple[float, ...] = (3e-3, 1e-2)
    grids: Mapping[str, Grid] = field(default_factory=dict)
    ablation_degrees: tuple[int, ...] = (1, 2)  # L = 3 is SFRIK's final run
    ablation_grids: Mapping[str, Grid] = field(default_factory=dict)  # other kernels: mmd weight tuned
    tune_seed: int = 0
    final_seeds: tuple[int, ...] = (0, 1, 2)
    data_seed: int = 0  # fixes the validation split and the subsets

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)

    def protocol(self) -> str:
        """The fixed part of every run (a results file holds one protocol)."""
        t = self.train
        return (
            f"{self.dataset} {t.arch} w{t.width} {t.epochs} epochs batch {t.batch_size} wd {t.weight_decay} "
            f"warm-up {t.warmup_epochs} train {self.train_size} probe {self.probe_size} eval {self.eval_size} "
            f"hidden {self.proj_hidden_dim} k {self.knn_k}"
        )


def _grids(sfrik_values, auh_values, vicreg_values, simclr_values, barlow_values) -> dict[str, Grid]:
    return {
        "sfrik": Grid("sim_loss_weight", sfrik_values, (("kernel_weights", SFRIK_KERNEL_WEIGHTS[3]),)),
        "vicreg": Grid("sim_loss_weight", vicreg_values),
        "barlow_twins": Grid("lamb", barlow_values),
        "simclr": Grid("temperature", simclr_values),
        "auh": Grid("sim_loss_weight", auh_values),
    }


PRESETS = {
    # Fashion-MNIST on 2 CPU cores: about 100 runs of ~1.5 min (the recorded study).
    "full": Preset(
        name="full",
        train=TrainConfig(arch="resnet10", width=16, epochs=3, batch_size=256),
        grids=_grids(
            (1000.0, 4000.0, 16000.0), (750.0, 3000.0, 12000.0), (10.0, 25.0, 50.0), (0.1, 0.2, 0.5), (1e-3, 5e-3, 2e-2)
        ),
        ablation_grids={
            "mmd_gaussian": Grid("mmd_loss_weight", (10.0, 30.0, 100.0), (("s", 2.5),)),
            "mmd_distance": Grid("mmd_loss_weight", (0.3, 1.0, 3.0), (("p", 1.0),)),
        },
    ),
    # Every phase at toy sizes (CI, or a first look at one's own image folder): a few minutes.
    "smoke": Preset(
        name="smoke",
        train=TrainConfig(arch="resnet10", width=4, epochs=1, batch_size=32, warmup_epochs=0.0),
        train_size=64,
        probe_size=64,
        eval_size=0,
        quality_size=64,
        knn_k=5,
        main_q=32,
        table_qs=(16, 32),
        proj_hidden_dim=32,
        lrs=(1e-2,),
        final_seeds=(0, 1),
        grids=_grids((1000.0, 4000.0), (750.0, 3000.0), (10.0, 25.0), (0.1, 0.2), (1e-3, 5e-3)),
        ablation_degrees=(1,),
        ablation_grids={
            "mmd_gaussian": Grid("mmd_loss_weight", (30.0,), (("s", 2.5),)),
            "mmd_distance": Grid("mmd_loss_weight", (1.0,), (("p", 1.0),)),
        },
    ),
}


@dataclass(frozen=True)
class RunSpec:
    phase: str  # tune, final, ablation
    method: str  # a method name, or "random" (the untrained encoder)
    q: int
    seed: int
    split: str  # validation or test
    setting: tuple[tuple[str, object], ...] = ()  # lr and the loss's hyper-parameters, in order

    @property
    def params(self) -> dict[str, object]:
        return dict(self.setting)

    @property
    def setting_text(self) -> str:
        return format_setting(self.params)

    @property
    def run_id(self) -> str:
        return f"{self.phase}|{self.method}|q={self.q}|seed={self.seed}|{self.split}|{self.setting_text}"


def format_setting(params: Mapping[str, object]) -> str:
    def value(v):
        if isinstance(v, (tuple, list)):
            return "(" + ",".join(value(x) for x in v) + ")"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={value(v)}" for k, v in params.items())


def _spec(phase, method, q, seed, split, params: Mapping[str, object] | None = None) -> RunSpec:
    return RunSpec(phase, method, q, seed, split, tuple((params or {}).items()))


class Planner:
    """The runs of every phase of a preset, in order. Tuning comes first; each later phase
    reads its settings from the tuning results given to it."""

    def __init__(self, preset: Preset):
        self.preset = preset

    # -- tuning --------------------------------------------------------------------------------
    def tune_runs(self) -> list[RunSpec]:
        p = self.preset
        runs = [_spec("tune", "random", p.main_q, p.tune_seed, "validation")]
        for method, grid in p.grids.items():
            runs += [_spec("tune", method, p.main_q, p.tune_seed, "validation", s) for s in grid.settings(p.lrs)]
        return runs

    def ablation_tune_runs(self, chosen: Mapping[str, dict[str, object]]) -> list[RunSpec]:
        """The other kernels' MMD weight, at SFRIK's chosen lr and sim weight, on the validation split."""
        p, sfrik = self.preset, chosen.get("sfrik")
        if sfrik is None:
            return []
        runs = []
        for method, grid in p.ablation_grids.items():
            base = {"lr": sfrik["lr"], "sim_loss_weight": sfrik["sim_loss_weight"], **dict(grid.fixed)}
            runs += [
                _spec("tune", method, p.main_q, p.tune_seed, "validation", {**base, grid.parameter: v})
                for v in grid.values
            ]
        return runs

    # -- final runs ------------------------------------------------------------------------------
    def final_runs(self, chosen: Mapping[str, dict[str, object]], q: int) -> list[RunSpec]:
        p = self.preset
        runs = [_spec("final", "random", q, s, "test") for s in p.final_seeds] if q == p.main_q else []
        for method in p.methods:
            if method in chosen:
                runs += [_spec("final", method, q, s, "test", chosen[method]) for s in p.final_seeds]
        return runs

    def ablation_runs(self, chosen: Mapping[str, dict[str, object]]) -> list[RunSpec]:
        p, runs = self.preset, []
        sfrik = chosen.get("sfrik")
        if sfrik is not None:
            for degree in p.ablation_degrees:
                params = {**sfrik, "kernel_weights": SFRIK_KERNEL_WEIGHTS[degree]}
                runs += [_spec("ablation", "sfrik", p.main_q, s, "test", params) for s in p.final_seeds]
        for method in p.ablation_grids:
            if method in chosen:
                runs += [_spec("ablation", method, p.main_q, s, "test", chosen[method]) for s in p.final_seeds]
        return runs

    def count(self, phases: Sequence[str] = PHASES) -> int:
        """Number of runs of the given phases (it does not depend on what tuning chooses)."""
        p, seeds = self.preset, len(self.preset.final_seeds)
        counts = {
            "tune": 1 + sum(len(g.settings(p.lrs)) for g in p.grids.values()),
            "final": seeds * (1 + len(p.methods)),
            "ablation": sum(len(g.values) for g in p.ablation_grids.values())
            + seeds * (len(p.ablation_degrees) + len(p.ablation_grids)),
            "table": seeds * len(p.methods) * len([q for q in p.table_qs if q != p.main_q]),
        }
        return sum(counts[phase] for phase in phases)


def _score(row: Mapping[str, str]) -> float:
    """Validation linear top-1 of a tuning row; a diverged run ranks last."""
    return float(row["linear_top1"]) if row["status"] == "ok" else float("-inf")


def chosen_settings(preset: Preset, rows: Iterable[Mapping[str, str]]) -> dict[str, dict[str, object]]:
    """method -> its chosen setting (best validation linear top-1, ties to the first in grid
    order), for every method (and ablation kernel) whose tuning runs are all in `rows`."""
    planner = Planner(preset)
    by_id = {r["run_id"]: r for r in rows}
    chosen: dict[str, dict[str, object]] = {}

    def pick(specs: list[RunSpec]):
        for method in dict.fromkeys(s.method for s in specs if s.method != "random"):
            candidates = [s for s in specs if s.method == method]
            if all(s.run_id in by_id for s in candidates):
                best = max(candidates, key=lambda s: _score(by_id[s.run_id]))  # the first maximum wins
                chosen[method] = best.params

    pick(planner.tune_runs())
    pick(planner.ablation_tune_runs(chosen))
    return chosen


def study_runs(preset: Preset, rows: Iterable[Mapping[str, str]], phases: Sequence[str] = PHASES) -> list[RunSpec]:
    """Every run that can be specified from the results so far, in the study's order: tuning,
    final runs at the main q, the ablation tuning and runs, then the other q of the table."""
    rows = list(rows)
    planner, chosen = Planner(preset), chosen_settings(preset, rows)
    runs: list[RunSpec] = []
    if "tune" in phases:
        runs += planner.tune_runs()
    if "final" in phases:
        runs += planner.final_runs(chosen, preset.main_q)
    if "ablation" in phases:
        runs += planner.ablation_tune_runs(chosen) + planner.ablation_runs(chosen)
    if "table" in phases:
        for q in preset.table_qs:
            if q != preset.main_q:
                runs += planner.final_runs(chosen, q)
    return runs
