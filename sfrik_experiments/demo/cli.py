"""sfrik-demo: SFRIK against the baselines on real images, end to end (pretraining with Lightning,
linear probe and weighted kNN on the test split), one shared protocol and seed for every method.

  sfrik-demo --seed 0              # --quick: Fashion-MNIST, ResNet-10 (width 16), < 10 min on 2 CPU cores
  sfrik-demo --long --out runs/    # the longer setting recorded in BENCHMARKS.md
  sfrik-demo --arch resnet18 --width 64 --epochs 100 --train-size 0 --accelerator gpu   # a GPU run

--quick is the recorded comparison study's protocol (sfrik-study --preset v3, v2's full protocol: fixed pretraining
and probe subsets, the whole test split) with each method at the setting the study chose on its
validation split (STUDY_CHOICES), for its 3 epochs of 15,000 images: the epochs and pretraining
images that `python -m sfrik_experiments.demo.budget` chose on the validation split within the time
budget (docs/records/budget/v3.md). The floor is the random encoder's mean over --random-inits inits
(3; seeds 0, 1, 2), and the demo prints SFRIK's margin over it. Other settings, or overriding lr or
the SFRIK sim weight, use one learning rate for every method and SFRIK's sim weight (lr and
sfrik_sim_weight).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from sfrik_experiments.engine import data as datasets
from sfrik_experiments.engine.experiment import TrainConfig
from sfrik_experiments.engine.objectives import METHODS
from sfrik_experiments.engine.study_choices import V2_CHOICES
from sfrik_experiments.utils.arguments import (
    check_accelerator,
    non_negative_int,
    one_device,
    positive_float,
    positive_int,
)
from sfrik_experiments.utils.output import ignore_lightning_import_warnings
from sfrik_plugin.utils.files import atomic_path, atomic_write, refuse_existing, writable_dir
from sfrik_plugin.utils.interrupt import exits_on_interrupt

from .floor import RandomFloor

RESULT_FIELDS = ("method", "seed", "status", "linear_top1", "knn_top1", "rankme", "sec_per_step", "peak_mem_mb")
# The random encoder is one draw per init (75-79 % linear top-1 on Fashion-MNIST over seeds): the
# demo's floor is the mean of a few inits, the same ones (seeds 0, 1, ...) whatever --seed, as the
# budget sweep's rule has it.
RANDOM_INITS = 3
STUDY_RECORD = "docs/records/study/fashion_mnist_v3.md"  # the full comparison, in the repository
STUDY_LIBRARY = "lightly"  # where the recorded study's baselines come from
# Each method's setting as the v2 study chose it (one table, engine.study_choices), in the order
# the demo runs and reports them. The demo's recorded runs and its budget sweep were made at these;
# the v3 record confirms five of them and moves Barlow Twins' lr and SIGReg's lambda one rung.
STUDY_CHOICES = V2_CHOICES


@dataclass(frozen=True)
class Setting:
    arch: str
    width: int
    epochs: int
    train_size: int  # images used for pretraining (a fixed random subset, data seed 0; 0 = all)
    probe_size: int  # training images the linear probe and the kNN bank use (fixed, data seed 1; 0 = all)
    batch_size: int = 256
    proj_dim: int = 1024  # projector hidden and output width (q), the same for every method
    lr: float = 5e-3  # every method's, where the study's choices are not used
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    sfrik_sim_weight: float = 4000.0
    knn_k: int = 20


SETTINGS = {
    # The study's protocol (study.presets.PRESETS["full"]), its 3 epochs of 15,000 images included:
    # the budget sweep's choice on the validation split (demo.budget; docs/records/budget/v3.csv), the
    # candidate least likely to put a new seed under the floor: the seven methods + 3 random-encoder
    # inits in under 10 minutes on 2 CPU cores.
    "quick": Setting(arch="resnet10", width=16, epochs=3, train_size=15000, probe_size=10000),
    # Sized for 2 CPU cores (~50 min for the seven methods); on a GPU use e.g. --arch resnet18 --width 64.
    "long": Setting(arch="resnet10", width=16, epochs=10, train_size=20000, probe_size=0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sfrik-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--quick", dest="setting", action="store_const", const="quick", help=f"the default: {SETTINGS['quick']}"
    )
    which.add_argument(
        "--long", dest="setting", action="store_const", const="long", help=f"the longer setting: {SETTINGS['long']}"
    )
    parser.set_defaults(setting="quick")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(STUDY_CHOICES),
        help="methods to pretrain (the random encoder is always evaluated; default: the methods the recorded "
        "study chose settings for; the others run at their library's defaults and --lr)",
    )
    datasets.add_dataset_arguments(parser, default="fashion-mnist")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="evaluate on a held-out sixth of the training split instead of the test split "
        "(to choose hyper-parameters)",
    )
    parser.add_argument(
        "--library",
        choices=("auto", "solo-learn", "lightly"),
        default=None,
        help=f"where the baselines come from (default: {STUDY_LIBRARY}, the study's, for --quick; "
        "else auto: solo-learn if installed, else lightly)",
    )
    parser.add_argument("--out", help="write results.csv, results.png and run.json into this folder")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--random-inits",
        type=positive_int,
        default=RANDOM_INITS,
        help=f"random-encoder inits (seeds 0, 1, ...) whose mean is the floor (default {RANDOM_INITS})",
    )
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument(
        "--devices", default="1", type=one_device, help="Lightning devices: 1 (the demo trains in one process)"
    )
    parser.add_argument(
        "--precision",
        default="32-true",
        type=precision_choice,
        choices=PRECISIONS,
        help="Lightning precision, e.g. bf16-mixed",
    )
    over = parser.add_argument_group("overrides of the setting's values")
    over.add_argument("--arch", choices=("resnet10", "resnet18"))
    over.add_argument("--width", type=positive_int, help="backbone base width (64 = the usual ResNet)")
    over.add_argument("--epochs", type=positive_int)
    over.add_argument("--train-size", type=non_negative_int, help="pretraining images (0 = all)")
    over.add_argument("--probe-size", type=non_negative_int, help="probe / kNN training images (0 = all)")
    over.add_argument("--batch-size", type=positive_int)
    over.add_argument("--proj-dim", type=positive_int)
    over.add_argument("--lr", type=positive_float)
    over.add_argument("--weight-decay", type=float)
    over.add_argument("--sfrik-sim-weight", type=positive_float)
    over.add_argument("--knn-k", type=positive_int)
    args = parser.parse_args(argv)
    check_accelerator(parser, args.accelerator)
    check_sizes(parser, args)
    return args


# The smallest sizes that train (checked before any data is loaded or any model built).
MIN_BATCH_SIZE = 2  # BatchNorm (backbone, projector) needs two images per batch
MIN_PROJ_DIM = 2  # the embeddings are normalised onto the sphere S^(q-1): q >= 2


def check_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses, with the flag and the fix, sizes that would fail only once training runs."""
    if args.batch_size is not None and args.batch_size < MIN_BATCH_SIZE:
        parser.error(
            f"--batch-size must be at least {MIN_BATCH_SIZE}, got {args.batch_size}: BatchNorm in the backbone "
            f"and the projector needs {MIN_BATCH_SIZE} or more images per batch to train (e.g. --batch-size 256, "
            "the default)"
        )
    if args.proj_dim is not None and args.proj_dim < MIN_PROJ_DIM:
        parser.error(
            f"--proj-dim must be at least {MIN_PROJ_DIM}, got {args.proj_dim}: it is the projector's output width "
            f"q, and the embeddings are normalised onto the sphere S^(q-1) (e.g. --proj-dim 1024, the default)"
        )


def precision_choice(value: str) -> str:
    if value in NOT_OFFERED:
        raise argparse.ArgumentTypeError(
            f"{value} is not supported by the demo's engine (it trains and evaluates in float32, with "
            f"autocast for the mixed precisions): use one of {', '.join(PRECISIONS)}"
        )
    return value


# The Lightning precisions the engine trains with (checked before any data is loaded or any model
# trained). The "true" half, bfloat16 and double ones are not offered: the engine augments uint8
# images into float32 and evaluates the frozen backbone in float32, so a backbone cast to another
# dtype fails in its first convolution (tests/demo: every offered value trains on the CPU).
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "32", "16", "bf16")
NOT_OFFERED = ("64-true", "64", "16-true", "bf16-true")


def resolve_setting(args: argparse.Namespace) -> Setting:
    setting = SETTINGS[args.setting]
    changes = {f: getattr(args, f) for f in Setting.__dataclass_fields__ if getattr(args, f, None) is not None}
    return replace(setting, **changes)


def train_config(setting: Setting) -> TrainConfig:
    return TrainConfig(
        arch=setting.arch,
        width=setting.width,
        epochs=setting.epochs,
        batch_size=setting.batch_size,
        proj_dim=setting.proj_dim,
        lr=setting.lr,
        weight_decay=setting.weight_decay,
        warmup_epochs=setting.warmup_epochs,
    )


def run_protocol(setting: Setting):
    """The setting as the engine's protocol: one for every run (fixed data subsets), the study's
    when the setting is the study's."""
    from sfrik_experiments.engine.runs import Protocol

    return Protocol(
        name="demo",
        train=train_config(setting),
        train_size=setting.train_size,
        probe_size=setting.probe_size,
        knn_k=setting.knn_k,
        proj_hidden_dim=setting.proj_dim,
    )


def uses_study_choices(args: argparse.Namespace) -> bool:
    return args.setting == "quick" and args.lr is None and args.sfrik_sim_weight is None


def baseline_library(args: argparse.Namespace, available: Callable[[], str | None]) -> str | None:
    """The study's library for its quick protocol (the same baselines as its rows), else auto
    (available() is only asked then: it imports solo-learn, whose import is noisy)."""
    requested = args.library or (STUDY_LIBRARY if uses_study_choices(args) else "auto")
    return available() if requested == "auto" else requested


def method_setting(method: str, setting: Setting, args: argparse.Namespace) -> dict[str, object]:
    """The learning rate and loss hyper-parameters of one method's run."""
    if uses_study_choices(args) and method in STUDY_CHOICES:
        return dict(STUDY_CHOICES[method])
    return {"lr": setting.lr, **({"sim_loss_weight": setting.sfrik_sim_weight} if method == "sfrik" else {})}


def format_results(rows: list[dict]) -> str:
    from sfrik_experiments.utils.output import format_table

    def cell(value, fmt):
        if value in (None, "") or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return format(float(value), fmt)

    return format_table(
        ["method", "linear top-1 %", "kNN top-1 %", "RankMe", "s / step", "peak step MiB"],
        [
            [
                label(r) + ("" if r["status"] == "ok" else f" ({r['status']})"),
                cell(r["linear_top1"], ".2f"),
                cell(r["knn_top1"], ".2f"),
                cell(r["rankme"], ".1f"),
                cell(r["sec_per_step"], ".3f"),
                cell(r["peak_mem_mb"], ".1f"),
            ]
            for r in rows
        ],
    )


def label(row: dict) -> str:
    return f"random (seed {row['seed']})" if row["method"] == "random" else row["method"]


def floor_line(rows: list[dict]) -> str:
    """SFRIK's margin over the floor: the mean of the random encoder's inits."""
    floor = RandomFloor.from_rows(rows)
    sfrik = [float(r["linear_top1"]) for r in rows if r["method"] == "sfrik" and r["status"] == "ok"]
    if not floor.inits:
        return "\nno random-encoder run finished: no floor"
    text = f"\nthe floor: the random encoder's mean linear top-1 over {floor.inits} inits, {floor.mean:.2f} %"
    if sfrik:
        text += f"; SFRIK - the floor = {sfrik[0] - floor.mean:+.2f} points"
    return text


def plot_results(rows: list[dict], path: Path, title: str) -> None:
    from sfrik_experiments.utils.output import pyplot, save_figure

    plt = pyplot()
    names = [label(r) for r in rows]
    fig, (acc, cost) = plt.subplots(1, 2, figsize=(11, 4))
    x = torch.arange(len(rows)).tolist()
    linear = [float(r["linear_top1"] or "nan") for r in rows]
    knn = [float(r["knn_top1"] or "nan") for r in rows]
    acc.bar([i - 0.2 for i in x], linear, width=0.4, label="linear probe")
    acc.bar([i + 0.2 for i in x], knn, width=0.4, label="weighted kNN")
    low = min(v for v in linear + knn if not math.isnan(v))
    acc.set_ylim(max(0, low - 5), 100)
    acc.set_xticks(x, names, rotation=20, fontsize=8)
    acc.set_ylabel("test top-1 (%)")
    acc.legend()
    trained = [r for r in rows if r["sec_per_step"] not in ("", None)]
    cost.bar([r["method"] for r in trained], [float(r["sec_per_step"]) for r in trained], color="tab:gray")
    cost.set_ylabel("seconds per training step")
    fig.suptitle(title)
    save_figure(fig, path)


OUTPUTS = ("results.csv", "results.png", "run.json")


@exits_on_interrupt("sfrik-demo")
def main(argv: list[str] | None = None) -> int:
    ignore_lightning_import_warnings()
    args = parse_args(argv)
    setting = resolve_setting(args)
    if args.out:  # before any work: a folder that cannot take the results, or already holds some
        writable_dir(args.out, "--out", "sfrik-demo")
        if not args.overwrite:
            refuse_existing([Path(args.out) / name for name in OUTPUTS], "sfrik-demo")
    from sfrik_experiments.engine.runner import Runner
    from sfrik_experiments.engine.runs import RunSpec
    from sfrik_experiments.utils.machine import device_name
    from sfrik_plugin.baselines import BASELINES, available_library, require_library

    library = baseline_library(args, available_library)
    if library is not None and any(m in BASELINES for m in args.methods):
        try:
            require_library(library, args.methods)  # before any data is loaded or any method trained
        except RuntimeError as error:
            raise SystemExit(f"sfrik-demo: {error}") from None
    data = datasets.load(args.dataset, args.data_dir, download=args.download, image_size=args.image_size)
    device = torch.device(
        "cuda" if torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda") else "cpu"
    )
    if device.type == "cpu" and args.precision in ("16-mixed", "16"):
        # Lightning would train in bfloat16 instead, with a warning, and the run would say 16-mixed
        raise SystemExit(
            f"sfrik-demo: --precision {args.precision}: float16 autocast runs on a GPU only; on the CPU use bf16-mixed"
        )
    split = "validation" if args.validation else "test"
    title = (
        f"{data.name}: {setting.arch} (width {setting.width}), {setting.epochs} epochs of "
        f"{setting.train_size or len(data.train_images)} images, batch {setting.batch_size}, q = {setting.proj_dim}"
    )
    print(f"sfrik-demo ({args.setting}, seed {args.seed}, {split} split) on {device_name(device)}\n{title}", flush=True)
    if uses_study_choices(args):
        print("each method at the setting the v2 study chose on its validation split", flush=True)

    runner = Runner(
        run_protocol(setting),
        data,
        library=library,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=args.devices,
        precision=args.precision,
        progress_bar=True,
    )
    runs = [("random", k) for k in range(args.random_inits)] + [(m, args.seed) for m in args.methods]
    rows = []
    for i, (method, seed) in enumerate(runs, start=1):
        params = {} if method == "random" else method_setting(method, setting, args)
        spec = RunSpec("final", method, setting.proj_dim, seed, split, tuple(params.items()))
        what = f"random encoder (untrained, seed {seed})" if method == "random" else f"{method} ({spec.setting_text})"
        print(f"[{i}/{len(runs)}] {what}", flush=True)
        row = runner.run(spec)
        rows.append(row)
        if row["status"] == "ok":
            print(
                f"    linear {row['linear_top1']:.2f} %, kNN {row['knn_top1']:.2f} % ({row['wall_s']:.0f} s)",
                flush=True,
            )
        else:
            print(f"    {row['status']}", flush=True)

    print("\n" + format_results(rows))
    print(floor_line(rows))
    print(
        f"\nThe full comparison (every method tuned alike on a validation split, ten seeds, paired tests "
        f"with Holm's correction, the q sweep re-tuned at each q, ablations) is {STUDY_RECORD} in the "
        "sfrik-plugin repository; `make study` reruns it."
    )
    if args.out:
        from sfrik_experiments.utils.machine import machine_info
        from sfrik_experiments.utils.output import write_csv

        out = Path(args.out)
        write_csv(str(out / "results.csv"), RESULT_FIELDS, rows)
        with atomic_path(out / "results.png") as png:
            plot_results(rows, png, title)
        with atomic_write(out / "run.json") as f:
            f.write(
                json.dumps(
                    {
                        "setting": args.setting,
                        **asdict(setting),
                        "method_settings": {r["method"]: r["setting"] for r in rows},
                        "dataset": data.name,
                        "seed": args.seed,
                        "evaluated_on": f"{split} split",
                        "precision": args.precision,
                        "baseline_library": library,
                        "machine": machine_info(device),
                        "device_name": device_name(device),
                    },
                    indent=2,
                )
            )
        print(f"wrote {out / 'results.csv'}, {out / 'results.png'}, {out / 'run.json'}")
    return 0
