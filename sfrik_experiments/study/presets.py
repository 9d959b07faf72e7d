"""The studies sfrik-study runs (PRESETS): each one's data and shared training protocol
(engine.runs.Protocol), the q it compares at, its tuning ladders (Ladder, Grid) and their caps, its
seeds, and which version of the tuning rule it follows (study.plan applies the rule). The recorded
study's presets name their baselines and kernels (RECORDED_BASELINES, RECORDED_KERNELS), so that a
registry's later entries do not change the runs its record was made of."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from sfrik_experiments.engine.experiment import TrainConfig
from sfrik_experiments.engine.runs import Protocol
from sfrik_plugin.baselines import BASELINES_REGISTRY
from sfrik_plugin.defaults import KERNEL_WEIGHTS
from sfrik_plugin.kernels import KERNELS

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
    repeat_seeds: tuple[int, ...] = (0, 1, 2)  # the q table's final runs
    ablation_seeds: tuple[int, ...] = (0, 1, 2)  # the ablations' final runs
    # Version 3 of the rule (see study.plan's docstring); the defaults are v2's, which has none of it.
    version: int = 2  # 3: the rule below, and the report's v3 sections (study.report)
    cap_extension: int = 0  # rungs an axis gains, once, beyond an edge at its cap
    confirm_seeds: tuple[int, ...] = ()  # seeds the best cells of an ended search run again with
    confirm_top: int = 3  # how many cells are confirmed
    confirm_in: tuple[str, ...] = ("tune", "ablation", "table")  # the searches confirmed (Choices' kinds)
    retune_degrees: bool = False  # L < 3 gets its own search of the sim weight (else SFRIK's setting)

    def __post_init__(self):
        finals = {*self.final_seeds, *self.repeat_seeds, *self.ablation_seeds}
        for name, seeds in (("tune_seed", {self.tune_seed}), ("confirm_seeds", set(self.confirm_seeds))):
            if seeds & finals:
                raise ValueError(f"preset {self.name!r}: {name} {sorted(seeds & finals)} is a final run's seed")
        if self.tune_seed in self.confirm_seeds:
            raise ValueError(f"preset {self.name!r}: confirm_seeds repeat the tuning seed {self.tune_seed}")
        if self.confirm_seeds and self.confirm_top < 1:
            raise ValueError(f"preset {self.name!r}: confirm_top must be >= 1, got {self.confirm_top}")
        unknown = set(self.confirm_in) - {"tune", "ablation", "table"}
        if unknown:
            raise ValueError(
                f"preset {self.name!r}: confirm_in must name tune, ablation or table, got {sorted(unknown)}"
            )
        if self.cap_extension < 0:
            raise ValueError(f"preset {self.name!r}: cap_extension must be >= 0, got {self.cap_extension}")

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)


# The baselines and kernels of the recorded studies (docs/records/study/fashion_mnist_v3.md, v2 and v3): its
# presets keep them, so that an entry added to a registry later does not change the runs the record
# was made of; the smoke preset takes every registered one (tests/test_registries.py).
RECORDED_BASELINES = ("vicreg", "barlow_twins", "simclr", "sigreg", "mmcr")
RECORDED_KERNELS = ("gaussian", "distance")


def method_grids(sfrik: Ladder, auh: Ladder, baselines: Sequence[str] | None = None) -> dict[str, Grid]:
    """SFRIK's and AUH's grids (the plugin's methods), then the baselines' (default: every
    registered one), each on the ladder its registry entry gives."""
    grids = {
        "sfrik": Grid("sim_loss_weight", sfrik, (("kernel_weights", SFRIK_KERNEL_WEIGHTS[3]),)),
        "auh": Grid("sim_loss_weight", auh),
    }
    for name in BASELINES_REGISTRY if baselines is None else baselines:
        baseline = BASELINES_REGISTRY[name]
        grids[name] = Grid(baseline.tuned, Ladder(*baseline.ladder))
    return grids


def kernel_grids(kernels: Sequence[str] | None = None) -> dict[str, Grid]:
    """The kernel ablation: each kernel's (default: every registered one) MMD weight on its entry's
    ladder, its parameter at its default."""
    return {
        f"mmd_{name}": Grid("mmd_loss_weight", Ladder(*entry.ladder), ((entry.parameter, entry.default),))
        for name, entry in ((name, KERNELS[name]) for name in (KERNELS if kernels is None else kernels))
    }


PRESETS = {
    # Fashion-MNIST on 2 CPU cores: about 200 runs of ~2 min (the recorded study).
    "full": Preset(
        name="full",
        train=TrainConfig(arch="resnet10", width=16, epochs=3, batch_size=256),
        grids=method_grids(sfrik=Ladder(4000.0), auh=Ladder(750.0), baselines=RECORDED_BASELINES),
        ablation_grids=kernel_grids(RECORDED_KERNELS),
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
        ablation_seeds=(0,),
        grids=method_grids(sfrik=Ladder(4000.0), auh=Ladder(750.0)),
        ablation_degrees=(1,),
        ablation_grids=kernel_grids(),
    ),
}

# Version 3 (issue 29, items 2-4): v2's protocol and ladders (so that v2's rows are reused where the
# v3 plan asks for the same run), the cap rule and the confirmation seeds on every search, L = 1
# and 2 re-tuned, ten final seeds at q = main_q and every ablation variant on seeds 0-4.
PRESETS["v3"] = replace(
    PRESETS["full"],
    name="v3",
    final_seeds=tuple(range(10)),
    ablation_seeds=(0, 1, 2, 3, 4),
    version=3,
    cap_extension=2,
    confirm_seeds=(11, 12),
    confirm_top=3,
    retune_degrees=True,
    confirm_in=("tune", "ablation"),
)
# The v3 rule at toy sizes, small enough to run end to end in a test: two methods; each main search
# grows from one rung to its cap of two, gains one more rung by the cap rule, and confirms its best
# two cells with one more seed.
PRESETS["smoke-v3"] = replace(
    PRESETS["smoke"],
    name="smoke-v3",
    grids={m: g for m, g in PRESETS["smoke"].grids.items() if m in ("sfrik", "simclr")},
    ablation_grids={"mmd_gaussian": PRESETS["smoke"].ablation_grids["mmd_gaussian"]},
    version=3,
    cap_extension=1,
    confirm_seeds=(6,),
    confirm_top=2,
    retune_degrees=True,
)
