"""The long-budget study's plan (issue 29, item 1): its presets, the short-budget references it is
read against, the tuning rule and the order of its runs, as plain specifications rebuilt at any time
from the results rows (study/long.py runs them, study/long_report.py reports them).

The protocol (LongPreset "long"): 50,000 training images (the validation split's whole training
part when tuning; a fixed subset of the 60,000 for the final runs, so that a final run trains for
the budget its learning rate was chosen at), 10 epochs at batch 256 (1,950 steps), q = 1024, resnet10 of width 16, the
v2 study's optimiser, schedule, augmentations and evaluation (linear probe and kNN on a fixed 10,000
training images, scored on the whole validation or test split; the label-free measures on 2,048 of
them). Each run measures its frozen encoder at the end of epochs 1, 2, 5 and 10 on its own split
(engine.curve.LearningCurve): one row per run, the curve in columns ep<E>_<measure>
(engine.runs.curve_fields: the step, the training seconds so far, linear and kNN top-1, RankMe,
alignment, uniformity, MMD), after the columns every study row has; the row's own linear_top1 ...
are the measures of the trained encoder after training, which the curve's last point repeats.

The tuning rule (fixed before the runs, the same for every method): the learning rate on a factor-2
ladder centred on the method's v2 choice (V2_CHOICES: the record
docs/records/study/superseded/fashion_mnist_v2.csv), starting with the rungs -1, 0, +1; while the
best validation linear top-1 at the end of training (epoch 10) sits at an edge, the ladder gains
the next rung beyond it, up to 4 rungs (the cap; a choice still at an edge then is reported "at
the cap"). The tuning seed is 10, which no final run
uses; the main hyper-parameter (and SFRIK's kernel weights) stay at their v2 choice. Then each
method's chosen setting runs with seeds 0, 1 and 2 on the test split, and the random encoder with
the same seeds (the curves' floor: every method starts from the same network at a seed).

Runs are ordered so that partial results are useful early: the random encoders; the tuning runs at
every method's v2 learning rate, then at the rungs below and above it (a single-seed long-budget
ranking on validation after the first seven); then the rungs the rule adds; then the final runs seed
by seed (a full test ranking after each seven). Each finished run is appended whole to
<out>/results.csv; a run cut short is not recorded, and the same command resumes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sfrik_experiments.engine.experiment import TrainConfig
from sfrik_experiments.engine.results import FIELDS
from sfrik_experiments.engine.runs import Protocol, RunSpec, check_curve_epochs, curve_fields
from sfrik_experiments.engine.study_choices import V2_CHOICES as RECORDED_CHOICES

from .plan import Axis, Search, SearchState, search_state
from .presets import RECORDED_BASELINES, Ladder

LONG_PHASES = ("tune", "final")

# The short-budget choices of the v2 study at q = 1024 (engine.study_choices: the setting of its
# final runs, checked against the record by tests/study/test_long.py), the centre of each method's
# learning-rate ladder; the other keys are kept. In the study's order: SFRIK, AUH, the baselines.
V2_CHOICES = {m: RECORDED_CHOICES[m] for m in ("sfrik", "auh", *RECORDED_BASELINES)}
# The v2 study's final runs at q = 1024 (5 seeds): mean test linear top-1, and each baseline's
# paired comparison with SFRIK after Holm's correction (docs/records/study/superseded/fashion_mnist_v2.md;
# checked against the record's rows by tests/study/test_long.py). The short-budget ranking the long
# budget is read against.
V2_LINEAR_TOP1 = {
    "sfrik": 83.78,
    "auh": 83.44,
    "simclr": 83.18,
    "mmcr": 82.70,
    "vicreg": 82.00,
    "barlow_twins": 81.74,
    "sigreg": 81.73,
}
V2_VERDICTS = {
    "auh": "no significant difference",
    "vicreg": "no significant difference",
    "barlow_twins": "SFRIK ahead",
    "simclr": "no significant difference",
    "sigreg": "SFRIK ahead",
    "mmcr": "no significant difference",
}


@dataclass(frozen=True)
class LongPreset(Protocol):
    """A long-budget study: its protocol (train.epochs is the budget), the epochs its curves
    measure (the last one the budget), the short-budget choices its ladders start from, the
    learning-rate ladder's span and cap, and its seeds."""

    q: int = 1024
    curve_epochs: tuple[int, ...] = (1, 2, 5, 10)
    start: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # method -> short-budget choice
    lr_factor: float = 2.0
    lr_span: tuple[int, int] = (-1, 1)  # the rungs a search starts with, around the short-budget lr
    lr_max_rungs: int = 4  # the cap
    tune_seed: int = 10  # no final run uses it
    final_seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self):
        check_curve_epochs(self.curve_epochs, self.train.epochs)
        for method, setting in self.start.items():
            if "lr" not in setting:
                raise ValueError(f"the long study's start setting of {method} has no lr: {dict(setting)}")
        if self.tune_seed in self.final_seeds:
            raise ValueError(f"the tuning seed {self.tune_seed} is one of the final seeds {self.final_seeds}")

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.start)

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns of this study's results file: every study row's, then the curve's."""
        return (*FIELDS, *curve_fields(self.curve_epochs))

    def protocol(self) -> str:
        return f"{super().protocol()} q {self.q} curve at epochs {','.join(map(str, self.curve_epochs))}"


LONG_PRESETS = {
    # Fashion-MNIST on 2 CPU cores: about 10 times the v2 budget; 46-53 runs of 12-15 minutes.
    "long": LongPreset(
        name="long",
        train=TrainConfig(arch="resnet10", width=16, epochs=10, batch_size=256),
        train_size=50000,  # the validation split's training part when tuning; the same count when final
        start=V2_CHOICES,
    ),
    # The same chain at toy sizes (tests, a first look at an image folder): two epochs, a curve
    # point after each, the short-budget learning rate only (the rule's growth is tested on
    # synthetic rows), two final seeds.
    "long-smoke": LongPreset(
        name="long-smoke",
        train=TrainConfig(arch="resnet10", width=4, epochs=2, batch_size=32, warmup_epochs=0.0),
        train_size=64,
        probe_size=64,
        eval_size=256,
        quality_size=64,
        knn_k=5,
        proj_hidden_dim=32,
        q=32,
        curve_epochs=(1, 2),
        start=V2_CHOICES,
        lr_span=(0, 0),
        lr_max_rungs=1,
        tune_seed=5,
        final_seeds=(0, 1),
    ),
}


# -- the plan ----------------------------------------------------------------------------------------
def searches(preset: LongPreset) -> list[Search]:
    """Each method's learning-rate search on the validation split (tuning seed), every other key
    of its short-budget choice kept."""
    out = []
    for method, setting in preset.start.items():
        axis = Axis("lr", Ladder(float(setting["lr"]), preset.lr_factor), preset.lr_span, preset.lr_max_rungs)  # type: ignore[arg-type]
        out.append(Search("tune", method, preset.q, preset.tune_seed, tuple(setting.items()), (axis,)))
    return out


Tuned = dict[str, tuple[Search, SearchState]]


def tuning(preset: LongPreset, rows: Iterable[Mapping[str, str]]) -> Tuned:
    """method -> (its search, the search's state as far as the rows go). The rule is
    study.plan.search_state's: the score is a row's linear_top1, the trained encoder's validation
    linear top-1 at the end of training (the curve's last point)."""
    by_id = {r["run_id"]: r for r in rows}
    return {search.method: (search, search_state(search, by_id)) for search in searches(preset)}


def chosen(tuned: Tuned) -> dict[str, dict[str, object]]:
    """method -> its chosen setting, for the methods whose search has ended."""
    return {m: state.best for m, (_, state) in tuned.items() if state.best is not None}


def _rung(search: Search, spec: RunSpec) -> int:
    lr = float(spec.params["lr"])  # type: ignore[arg-type]
    return round(math.log(lr / search.axes[0].ladder.centre, search.axes[0].ladder.factor))


def random_runs(preset: LongPreset, phases: Sequence[str] = LONG_PHASES) -> list[RunSpec]:
    """The random encoder at the tuning seed (validation) and at the final seeds (test)."""
    runs = []
    if "tune" in phases:
        runs.append(RunSpec("tune", "random", preset.q, preset.tune_seed, "validation"))
    if "final" in phases:
        runs += [RunSpec("final", "random", preset.q, s, "test") for s in preset.final_seeds]
    return runs


def long_runs(
    preset: LongPreset, rows: Iterable[Mapping[str, str]], phases: Sequence[str] = LONG_PHASES
) -> list[RunSpec]:
    """Every run that the results so far specify, in the order they run: the random encoders, the
    tuning runs by rung (every method's short-budget lr, then the rung below, the rung above, then
    the rungs the rule adds), then the final runs seed by seed."""
    rows = list(rows)
    tuned = tuning(preset, rows)
    order = {m: i for i, m in enumerate(preset.methods)}
    runs = random_runs(preset, phases)
    if "tune" in phases:
        keyed = []
        for method, (search, state) in tuned.items():
            for spec in state.runs:
                rung = _rung(search, spec)
                keyed.append(((abs(rung), rung, order[method]), spec))
        runs += [spec for _, spec in sorted(keyed, key=lambda item: item[0])]
    if "final" in phases:
        settings = chosen(tuned)
        runs += [
            RunSpec("final", m, preset.q, seed, "test", tuple(settings[m].items()))
            for seed in preset.final_seeds
            for m in preset.methods
            if m in settings
        ]
    return runs


def count(preset: LongPreset, phases: Sequence[str] = LONG_PHASES) -> tuple[int, int]:
    """(at least, at most) runs of the given phases: no search grows, or every one to the cap."""
    lo, hi = preset.lr_span
    methods, seeds = len(preset.methods), len(preset.final_seeds)
    at_least = at_most = 0
    if "tune" in phases:
        at_least += 1 + methods * (hi - lo + 1)
        at_most += 1 + methods * max(hi - lo + 1, preset.lr_max_rungs)
    if "final" in phases:
        at_least += seeds * (1 + methods)
        at_most += seeds * (1 + methods)
    return at_least, at_most
