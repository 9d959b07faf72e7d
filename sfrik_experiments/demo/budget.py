"""sfrik-demo's budget sweep: the quick demo's epochs and pretraining subset size, chosen on the
validation split.

The quick demo must finish in under 10 minutes on 2 CPU cores with SFRIK's linear probe at least 5
points above the random encoder's for every seed, including seeds nobody tried. "The random
encoder's" accuracy is its expected accuracy: the mean over FLOOR_INITS initialisations. (Until
2026-12-04 it was one draw, the random encoder of the same seed; that draw alone spans 75-79 % on
Fashion-MNIST, so the old margin measured the untrained network's luck as much as SFRIK's learning.
The per-seed paired margins are still reported.) The demo's cost grows with the pretraining volume
(epochs x images). For each candidate (epochs, images) and each seed, this sweep pretrains SFRIK at
its study setting (STUDY_CHOICES) and evaluates it on the validation split (a held-out sixth of the
training split; the test split is never read); the random encoder is evaluated once per init. The
demo's wall time is predicted from the same runs: its DEMO_RANDOM_INITS random-encoder runs plus one
SFRIK run per method, each scaled by that method's pretraining cost relative to SFRIK's in a study
at the same protocol (--study-results; without it every method costs as SFRIK). The rule: a
candidate keeps the floor when every seed's margin is at least 5 points and the predicted chance
that a new seed's margin falls below 5 is at most 10 % (Student-t prediction of one more SFRIK seed,
with the floor's own estimation error; Welch-Satterthwaite degrees of freedom). The choice is the
candidate inside the budget that keeps the floor with the smallest such chance (ties: the larger
mean margin); when none does, nothing is chosen and the sweep says so (exit status 1): the demo
must then change.

  python -m sfrik_experiments.demo.budget --out budget_out        # resumable: reruns skip finished runs
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.utils.arguments import positive_float, positive_int
from sfrik_experiments.utils.output import ignore_lightning_import_warnings
from sfrik_plugin.utils.files import FolderLock, atomic_path, atomic_write, writable_dir
from sfrik_plugin.utils.interrupt import exits_on_interrupt

from .cli import RANDOM_INITS as DEMO_RANDOM_INITS
from .cli import SETTINGS, STUDY_CHOICES, Setting, run_protocol
from .floor import RandomFloor

# (epochs, pretraining images): the study's 3 x 15,000, smaller volumes, the study's volume traded
# between epochs and images, and one larger volume to show what the budget gives up.
CANDIDATES: tuple[tuple[int, int], ...] = ((3, 15000), (2, 15000), (3, 10000), (2, 22500), (5, 9000), (4, 15000))
SEEDS = (0, 1, 2, 3, 4)
FLOOR_INITS = 20  # random-encoder initialisations whose mean is the floor (7 s each on 2 cores)
BUDGET_S = 540.0  # 9 minutes predicted: the 10-minute promise, less the spread seen between runs
MIN_MARGIN = 5.0  # linear top-1 points of SFRIK over the random encoder's mean, for every seed
MAX_BELOW_FLOOR = 0.10  # the largest accepted chance that a new seed's margin is under MIN_MARGIN
SUMMARY_FIELDS = (
    "epochs",
    "train_size",
    "steps_per_epoch",
    "seeds",
    "margins",
    "paired_margins",
    "floor",
    "floor_inits",
    "min_margin",
    "mean_margin",
    "sfrik_linear_mean",
    "below_floor_chance",
    "meets_floor",
    "predicted_demo_s",
    "within_budget",
    "chosen",
)


@dataclass(frozen=True)
class Candidate:
    epochs: int
    train_size: int

    @property
    def key(self) -> str:
        return f"e{self.epochs}_n{self.train_size}"

    def setting(self, base: Setting) -> Setting:
        return replace(base, epochs=self.epochs, train_size=self.train_size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sfrik_experiments.demo.budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="results.csv per candidate, summary.csv, summary.md and plot")
    parser.add_argument(
        "--candidates",
        nargs="+",
        metavar="EPOCHSxIMAGES",
        type=_candidate,
        default=[Candidate(*c) for c in CANDIDATES],
        help="default: " + " ".join(f"{e}x{n}" for e, n in CANDIDATES),
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="SFRIK's seeds")
    parser.add_argument(
        "--floor-inits",
        type=positive_int,
        default=FLOOR_INITS,
        help="random-encoder inits (seeds 0..N-1) whose mean validation accuracy is the floor",
    )
    parser.add_argument("--budget-s", type=positive_float, default=BUDGET_S, help="predicted demo wall-time limit")
    parser.add_argument(
        "--sfrik-lr", type=positive_float, help=f"SFRIK's learning rate (default: {STUDY_CHOICES['sfrik']['lr']})"
    )
    parser.add_argument(
        "--sfrik-sim-weight",
        type=positive_float,
        help=f"SFRIK's sim_loss_weight (default: {STUDY_CHOICES['sfrik']['sim_loss_weight']}, the study's choice)",
    )
    parser.add_argument(
        "--study-results",
        type=Path,
        help="a study's results.csv at the demo's protocol: each method's pretraining cost relative to SFRIK "
        "(default: every method costs as SFRIK)",
    )
    datasets.add_dataset_arguments(parser, default="fashion-mnist")
    return parser.parse_args(argv)


def _candidate(text: str) -> Candidate:
    try:
        epochs, images = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected EPOCHSxIMAGES, e.g. 3x15000, got {text!r}") from None
    if epochs < 1 or images < 1:
        raise argparse.ArgumentTypeError(f"epochs and images must be positive, got {text!r}")
    return Candidate(epochs, images)


@dataclass
class Outcome:
    """One candidate's measured outcome over the seeds whose SFRIK run finished."""

    epochs: int
    train_size: int
    steps_per_epoch: int
    seeds: tuple[int, ...]
    sfrik_linear: tuple[float, ...]  # validation linear top-1, per seed
    floor: RandomFloor
    predicted_demo_s: float
    within_budget: bool
    chosen: bool = False

    @property
    def margins(self) -> tuple[float, ...]:
        """SFRIK - the floor (the random encoder's mean), per seed."""
        return tuple(v - self.floor.mean for v in self.sfrik_linear)

    @property
    def paired_margins(self) -> tuple[float, ...]:
        """SFRIK - the random encoder of the same seed (the definition before 2026-12-04), per seed
        that has one."""
        return tuple(
            v - self.floor.accuracy[s] for v, s in zip(self.sfrik_linear, self.seeds) if s in self.floor.accuracy
        )

    @property
    def min_margin(self) -> float:
        return min(self.margins, default=float("nan"))

    @property
    def mean_margin(self) -> float:
        return statistics.mean(self.margins) if self.margins else float("nan")

    @property
    def margins_text(self) -> str:
        return " ".join(f"{m:+.2f}" for m in self.margins)

    @property
    def paired_margins_text(self) -> str:
        return " ".join(f"{m:+.2f}" for m in self.paired_margins)

    @property
    def sfrik_linear_mean(self) -> float:
        return statistics.mean(self.sfrik_linear) if self.sfrik_linear else float("nan")

    @property
    def below_floor_chance(self) -> float:
        """P(a new seed's margin < MIN_MARGIN): one more SFRIK seed (variance s^2 (1 + 1/n) about
        the seeds' mean) against the floor, whose mean over R inits is itself an estimate (variance
        s_r^2 / R); Student-t with Welch-Satterthwaite degrees of freedom. nan below 2 seeds."""
        from scipy import stats

        n, r = len(self.sfrik_linear), self.floor.inits
        if n < 2:
            return float("nan")
        new_seed = statistics.variance(self.sfrik_linear) * (1 + 1 / n)
        floor = self.floor.sd**2 / r if r > 1 else 0.0
        spread = (new_seed + floor) ** 0.5
        if spread == 0:
            return 0.0 if self.mean_margin >= MIN_MARGIN else 1.0
        dof = (new_seed + floor) ** 2 / (new_seed**2 / (n - 1) + (floor**2 / (r - 1) if r > 1 else 0.0))
        return float(stats.t.cdf((MIN_MARGIN - self.mean_margin) / spread, dof))

    @property
    def meets_floor(self) -> bool:
        chance = self.below_floor_chance
        return bool(self.margins) and self.min_margin >= MIN_MARGIN and chance <= MAX_BELOW_FLOOR

    def csv_row(self) -> dict[str, object]:
        return {
            "epochs": self.epochs,
            "train_size": self.train_size,
            "steps_per_epoch": self.steps_per_epoch,
            "seeds": " ".join(map(str, self.seeds)),
            "margins": self.margins_text,
            "paired_margins": self.paired_margins_text,
            "floor": round(self.floor.mean, 2),
            "floor_inits": self.floor.inits,
            "min_margin": round(self.min_margin, 2),
            "mean_margin": round(self.mean_margin, 2),
            "sfrik_linear_mean": round(self.sfrik_linear_mean, 2),
            "below_floor_chance": round(self.below_floor_chance, 3),
            "meets_floor": self.meets_floor,
            "predicted_demo_s": round(self.predicted_demo_s, 1),
            "within_budget": self.within_budget,
            "chosen": self.chosen,
        }


def cost_ratios(study_rows: Iterable[Mapping[str, str]], methods: Sequence[str], q: int) -> dict[str, float]:
    """method -> its pretraining time over SFRIK's (median train_minutes of the study's final runs at
    q, the same protocol as the demo's but for the volume); 1.0 for a method the study lacks."""
    by: dict[str, list[float]] = {}
    for r in study_rows:
        if r["phase"] == "final" and r["q"] == str(q) and r["status"] == "ok" and r["train_minutes"]:
            by.setdefault(r["method"], []).append(float(r["train_minutes"]))
    if "sfrik" not in by:
        return dict.fromkeys(methods, 1.0)
    sfrik = statistics.median(by["sfrik"])
    return {m: statistics.median(by[m]) / sfrik if m in by else 1.0 for m in methods}


def summarise(
    candidates: Sequence[Candidate],
    rows: Mapping[Candidate, Iterable[Mapping[str, str]]],
    batch_size: int,
    budget_s: float,
    ratios: Mapping[str, float] | None = None,
    floor: RandomFloor | None = None,
) -> list[Outcome]:
    """Each candidate's outcome from its SFRIK runs' rows, the choice marked (none when no candidate
    keeps the floor within the budget). Only a candidate with every seed's run finished (none
    diverged or missing) can be chosen. floor: the random encoder's inits (default: the random rows
    among the candidates' rows, one per seed, as the sweep recorded them before 2026-12-04). The
    demo's predicted time is DEMO_RANDOM_INITS random-encoder runs plus, for each of the demo's
    methods, SFRIK's run times that method's cost ratio (ratios; 1.0 each when not given)."""
    ratios = ratios if ratios is not None else dict.fromkeys(STUDY_CHOICES, 1.0)
    if floor is None:
        floor = RandomFloor.from_rows(
            {
                r["seed"]: r
                for c in candidates
                for r in rows.get(c, ())
                if r["method"] == "random" and r["status"] == "ok"
            }.values()
        )
    outcomes = []
    for c in candidates:
        by = {int(r["seed"]): r for r in rows.get(c, ()) if r["method"] == "sfrik" and r["status"] == "ok"}
        seeds = tuple(sorted(by))
        scale = sum(ratios.values())
        walls = [DEMO_RANDOM_INITS * floor.wall_s + scale * float(by[s]["wall_s"]) for s in seeds]
        predicted = statistics.mean(walls) if walls else float("nan")
        outcomes.append(
            Outcome(
                epochs=c.epochs,
                train_size=c.train_size,
                steps_per_epoch=c.train_size // batch_size,
                seeds=seeds,
                sfrik_linear=tuple(float(by[s]["linear_top1"]) for s in seeds),
                floor=floor,
                predicted_demo_s=predicted,
                within_budget=bool(walls) and predicted <= budget_s,
            )
        )
    complete = max((len(o.seeds) for o in outcomes), default=0)
    eligible = [o for o in outcomes if o.within_budget and len(o.seeds) == complete and o.meets_floor]
    if eligible:
        min(eligible, key=lambda o: (o.below_floor_chance, -o.mean_margin)).chosen = True
    return outcomes


def verdict(outcomes: Sequence[Outcome]) -> str:
    chosen = [o for o in outcomes if o.chosen]
    if chosen:
        o = chosen[0]
        return (
            f"Chosen: {o.epochs} x {o.train_size} (margins {o.margins_text}; chance of a new seed under "
            f"{MIN_MARGIN:g}: {o.below_floor_chance:.1%}; predicted {o.predicted_demo_s / 60:.1f} min)."
        )
    return (
        f"No candidate keeps the floor within the budget: none has every seed {MIN_MARGIN:g} points above the "
        f"random encoder's mean with at most a {MAX_BELOW_FLOOR:.0%} chance for a new seed to fall below it. The quick "
        "demo's setting must change (a longer one, fewer default methods, or a cheaper evaluation)."
    )


def format_summary(outcomes: list[Outcome], budget_s: float) -> str:
    from sfrik_experiments.utils.output import format_table

    table = format_table(
        [
            "epochs x images",
            "steps",
            "SFRIK - floor (per seed)",
            "paired (old)",
            "min",
            "mean",
            "P(new < floor)",
            "SFRIK %",
            "demo s",
            "",
        ],
        [
            [
                f"{o.epochs} x {o.train_size}",
                str(o.epochs * o.steps_per_epoch),
                o.margins_text or "-",
                o.paired_margins_text or "-",
                f"{o.min_margin:+.2f}",
                f"{o.mean_margin:+.2f}",
                f"{o.below_floor_chance:.1%}",
                f"{o.sfrik_linear_mean:.2f}",
                f"{o.predicted_demo_s:.0f}",
                "chosen"
                if o.chosen
                else ("over budget" if not o.within_budget else ("" if o.meets_floor else "under the floor")),
            ]
            for o in outcomes
        ],
    )
    floor = outcomes[0].floor if outcomes else RandomFloor({}, float("nan"))
    return (
        f"Validation linear top-1. The floor: the random encoder's mean over {floor.inits} inits, "
        f"{floor.mean:.2f} % (sd {floor.sd:.2f}); SFRIK (its study setting) minus the floor per seed, and "
        "minus the random encoder of its own seed (paired, the definition before 2026-12-04); demo s = the "
        f"predicted wall time of the whole quick demo (budget {budget_s:.0f} s).\n\n{table}"
    )


def plot(outcomes: list[Outcome], path: Path) -> None:
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for o in outcomes:
        x = o.predicted_demo_s / 60
        colour = "tab:green" if o.chosen else ("tab:blue" if o.within_budget else "tab:gray")
        ax.scatter([x] * len(o.margins), o.margins, color=colour, s=18)
        ax.annotate(f"{o.epochs}x{o.train_size}", (x, o.min_margin), fontsize=8)
    ax.axhline(MIN_MARGIN, color="tab:red", lw=0.8, ls="--", label=f"{MIN_MARGIN:g}-point margin")
    ax.set_xlabel("predicted quick-demo wall time (min, 2 CPU cores)")
    ax.set_ylabel("SFRIK - random encoder's mean, validation linear top-1 (points)")
    ax.legend()
    save_figure(fig, path)


@exits_on_interrupt("budget sweep")
def main(argv: list[str] | None = None) -> int:
    ignore_lightning_import_warnings()
    args = parse_args(argv)
    base = SETTINGS["quick"]
    out = writable_dir(args.out, "--out", "budget sweep")
    with FolderLock(out, "budget sweep"):  # one process appends to its stores at a time
        return sweep(args, base, out)


def sweep(args: argparse.Namespace, base, out: Path) -> int:
    from tqdm.auto import tqdm

    from sfrik_experiments.engine.results import ResultsFile
    from sfrik_experiments.engine.runner import Runner
    from sfrik_experiments.engine.runs import RunSpec
    from sfrik_experiments.utils.output import write_csv

    data = datasets.load(args.dataset, args.data_dir, download=args.download, image_size=args.image_size)
    sfrik = dict(STUDY_CHOICES["sfrik"])
    if args.sfrik_lr is not None:
        sfrik["lr"] = args.sfrik_lr
    if args.sfrik_sim_weight is not None:
        sfrik["sim_loss_weight"] = args.sfrik_sim_weight
    sfrik_setting = tuple(sfrik.items())
    specs = [RunSpec("budget", "sfrik", base.proj_dim, seed, "validation", sfrik_setting) for seed in args.seeds]
    # The random encoder does not train: its accuracy depends on its init alone, so its runs are one
    # store, at the base protocol, whatever the candidate.
    floor_specs = [RunSpec("budget", "random", base.proj_dim, seed, "validation") for seed in range(args.floor_inits)]
    presets = {c: run_protocol(c.setting(base)) for c in args.candidates}
    stores = {c: ResultsFile(out / c.key / "results.csv", presets[c].protocol()) for c in args.candidates}
    base_protocol = run_protocol(base)  # the floor's runs' (the random encoder does not train)
    floor_store = ResultsFile(out / "floor" / "results.csv", base_protocol.protocol())
    todo = [(None, s) for s in floor_specs if s.run_id not in floor_store.done]
    todo += [(c, s) for c in args.candidates for s in specs if s.run_id not in stores[c].done]
    total = len(floor_specs) + len(args.candidates) * len(specs)
    print(
        f"budget sweep: {args.floor_inits} random-encoder inits + {len(args.candidates)} candidates x "
        f"{len(args.seeds)} SFRIK seeds: {total} runs, {len(todo)} to do",
        flush=True,
    )
    bar = tqdm(total=len(todo), desc="budget runs", unit="run", dynamic_ncols=True)
    try:
        # todo is in candidate order: one runner (its data views) per candidate, one at a time
        for c, runs in itertools.groupby(todo, key=lambda run: run[0]):
            runner = Runner(base_protocol if c is None else presets[c], data, library=None)
            store, label = (floor_store, "floor") if c is None else (stores[c], f"{c.epochs}x{c.train_size}")
            for _, spec in runs:
                bar.set_postfix_str(f"{label} {spec.method} seed={spec.seed}")
                row = runner.run(spec)
                store.append(row)
                bar.update(1)
                bar.write(
                    f"{label:<9s} {spec.method:6s} seed={spec.seed} {row['status']} "
                    f"linear {row['linear_top1']} ({row['wall_s']:.0f} s)"
                )
    finally:
        bar.close()
    ratios = dict.fromkeys(STUDY_CHOICES, 1.0)  # every method costs as SFRIK, unless a study says
    if args.study_results is not None:
        with open(args.study_results, newline="") as f:
            ratios = cost_ratios(csv.DictReader(f), list(STUDY_CHOICES), base.proj_dim)
        print("pretraining cost relative to SFRIK: " + ", ".join(f"{m} {r:.2f}" for m, r in ratios.items()))
    floor = RandomFloor.from_rows(floor_store.rows)
    outcomes = summarise(
        args.candidates, {c: stores[c].rows for c in args.candidates}, base.batch_size, args.budget_s, ratios, floor
    )
    write_csv(str(out / "summary.csv"), SUMMARY_FIELDS, [o.csv_row() for o in outcomes])
    text = format_summary(outcomes, args.budget_s)
    rule = (
        f"Rule: within the budget, every seed of {args.seeds} at least {MIN_MARGIN:g} points above the random "
        f"encoder's mean over {floor.inits} inits and at most a {MAX_BELOW_FLOOR:.0%} predicted chance for a new "
        "seed to fall below; of those, "
        f"the smallest chance (ties: the larger mean). The test split is not read. {verdict(outcomes)}"
    )
    with atomic_write(out / "summary.md") as f:
        f.write(
            f"# The quick demo's budget sweep\n\nProtocol of every run: {base_protocol.protocol()} (epochs and "
            f"train images as the candidate says), on the validation split. SFRIK's setting: "
            f"{' '.join(f'{k}={v}' for k, v in sfrik.items())}. Cost ratios to SFRIK: "
            f"{', '.join(f'{m} {r:.2f}' for m, r in ratios.items())}.\n\n"
            f"{rule}\n\n```\n{text}\n```\n"
        )
    with atomic_path(out / "budget.png") as png:
        plot(outcomes, png)
    print(text)
    print(verdict(outcomes))
    return 0 if any(o.chosen for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
