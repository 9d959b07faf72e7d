"""sfrik-demo: SFRIK against the baselines on real images, end to end (pretraining with Lightning,
linear probe and weighted kNN on the test split), one shared protocol and seed for every method.

  sfrik-demo                       # --quick: Fashion-MNIST, ResNet-10 (width 16), < 10 min on 2 CPU cores
  sfrik-demo --long --out runs/    # the longer setting recorded in BENCHMARKS.md
  sfrik-demo --arch resnet18 --width 64 --epochs 100 --train-size 0 --accelerator gpu   # a GPU run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import data as datasets
from . import experiment
from .experiment import Pretrained, TrainConfig, subset
from .objectives import METHODS

RESULT_FIELDS = ("method", "linear_top1", "knn_top1", "sec_per_step", "peak_mem_mb")


@dataclass(frozen=True)
class Setting:
    arch: str
    width: int
    epochs: int
    train_size: int  # images used for pretraining (a fixed random subset; 0 = all)
    probe_size: int  # training images the linear probe and the kNN bank use (0 = all)
    batch_size: int = 256
    proj_dim: int = 1024  # projector hidden and output width (q), the same for every method
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    sfrik_sim_weight: float = 4000.0
    knn_k: int = 20


SETTINGS = {
    "quick": Setting(arch="resnet10", width=16, epochs=3, train_size=15000, probe_size=10000),
    # Sized for 2 CPU cores (~35 min for the five methods); on a GPU use e.g. --arch resnet18 --width 64.
    "long": Setting(arch="resnet10", width=16, epochs=10, train_size=20000, probe_size=0),
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


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
        default=list(METHODS),
        help="methods to pretrain (the random encoder is always evaluated)",
    )
    parser.add_argument("--dataset", choices=datasets.DATASETS, default="fashion-mnist")
    parser.add_argument(
        "--data-dir",
        help=f"dataset root (default {datasets.DEFAULT_DATA_DIR}); "
        "for --dataset folder: class subfolders, or train/ and test/",
    )
    parser.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="never let torchvision download a dataset that is not there",
    )
    parser.add_argument("--image-size", type=positive_int, default=32, help="image size for --dataset folder")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="evaluate on a held-out sixth of the training split instead of the test split "
        "(to choose hyper-parameters)",
    )
    parser.add_argument("--out", help="write results.csv, results.png and run.json into this folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument("--devices", default="1", help="Lightning devices (default 1)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
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
    return parser.parse_args(argv)


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


def pretrain(method: str, data: datasets.ImageData, setting: Setting, args) -> Pretrained:
    """Pretrains one method on the setting's fixed subset of the training images."""
    images = data.train_images[subset(len(data.train_images), setting.train_size, args.seed)]
    hyper_parameters = {"sim_loss_weight": setting.sfrik_sim_weight} if method == "sfrik" else {}
    return experiment.pretrain(
        method,
        images,
        data.channel_stats,
        train_config(setting),
        seed=args.seed,
        hyper_parameters=hyper_parameters,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
    )


def evaluate(backbone, data: datasets.ImageData, setting: Setting, args, device) -> dict[str, float]:
    probe = subset(len(data.train_images), setting.probe_size, args.seed + 1)
    return experiment.evaluate(
        backbone,
        data.train_images[probe],
        data.train_labels[probe],
        data.test_images,
        data.test_labels,
        data.channel_stats,
        device=device,
        knn_k=setting.knn_k,
    )


def format_results(rows: list[dict]) -> str:
    from sfrik_plugin.bench.common import format_table

    def cell(value, fmt):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)

    return format_table(
        ["method", "linear top-1 %", "kNN top-1 %", "s / step", "peak step MiB"],
        [
            [
                r["method"],
                cell(r["linear_top1"], ".2f"),
                cell(r["knn_top1"], ".2f"),
                cell(r["sec_per_step"], ".3f"),
                cell(r["peak_mem_mb"], ".1f"),
            ]
            for r in rows
        ],
    )


def plot_results(rows: list[dict], path: Path, title: str) -> None:
    from sfrik_plugin.bench.common import pyplot

    plt = pyplot()
    names = [r["method"] for r in rows]
    fig, (acc, cost) = plt.subplots(1, 2, figsize=(11, 4))
    x = torch.arange(len(rows)).tolist()
    acc.bar([i - 0.2 for i in x], [r["linear_top1"] for r in rows], width=0.4, label="linear probe")
    acc.bar([i + 0.2 for i in x], [r["knn_top1"] for r in rows], width=0.4, label="weighted kNN")
    low = min(min(r["linear_top1"], r["knn_top1"]) for r in rows)
    acc.set_ylim(max(0, low - 5), 100)
    acc.set_xticks(x, names)
    acc.set_ylabel("test top-1 (%)")
    acc.legend()
    trained = [r for r in rows if r["method"] != "random"]
    cost.bar([r["method"] for r in trained], [r["sec_per_step"] for r in trained], color="tab:gray")
    cost.set_ylabel("seconds per training step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setting = resolve_setting(args)
    from sfrik_plugin.bench.common import device_name
    from sfrik_plugin.demo.model import build_backbone

    data = datasets.load(args.dataset, args.data_dir, download=args.download, image_size=args.image_size)
    if args.validation:
        data = data.validation_split(seed=args.seed)
    device = torch.device(
        "cuda" if torch.cuda.is_available() and args.accelerator in ("auto", "gpu", "cuda") else "cpu"
    )
    title = (
        f"{data.name}: {setting.arch} (width {setting.width}), {setting.epochs} epochs of "
        f"{setting.train_size or len(data.train_images)} images, batch {setting.batch_size}, q = {setting.proj_dim}"
    )
    print(f"sfrik-demo ({args.setting}) on {device_name(device)}\n{title}", flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)

    rows = []
    torch.manual_seed(args.seed)
    random_encoder = build_backbone(setting.arch, setting.width, data.channels).to(memory_format=torch.channels_last)
    rows.append(
        {
            "method": "random",
            **evaluate(random_encoder, data, setting, args, device),
            "sec_per_step": math.nan,
            "peak_mem_mb": math.nan,
        }
    )
    print(
        f"[1/{len(args.methods) + 1}] random encoder: linear {rows[-1]['linear_top1']:.2f} %, "
        f"kNN {rows[-1]['knn_top1']:.2f} %",
        flush=True,
    )
    sources = {}
    for i, method in enumerate(args.methods, start=2):
        print(f"[{i}/{len(args.methods) + 1}] pretraining {method}", flush=True)
        trained = pretrain(method, data, setting, args)
        sources[method] = trained.source
        rows.append(
            {
                "method": method,
                **evaluate(trained.backbone, data, setting, args, device),
                "sec_per_step": trained.sec_per_step,
                "peak_mem_mb": trained.peak_mem_mb,
            }
        )
        print(
            f"    {method} ({trained.source}, {trained.minutes:.1f} min): linear {rows[-1]['linear_top1']:.2f} %,"
            f" kNN {rows[-1]['knn_top1']:.2f} %",
            flush=True,
        )

    print("\n" + format_results(rows))
    if args.out:
        from sfrik_plugin.bench.common import machine_info, write_csv

        out = Path(args.out)
        write_csv(str(out / "results.csv"), RESULT_FIELDS, rows)
        plot_results(rows, out / "results.png", title)
        (out / "run.json").write_text(
            json.dumps(
                {
                    "setting": args.setting,
                    **asdict(setting),
                    "dataset": data.name,
                    "seed": args.seed,
                    "evaluated_on": "validation split" if args.validation else "test split",
                    "precision": args.precision,
                    "sources": sources,
                    "machine": machine_info(device),
                    "device_name": device_name(device),
                },
                indent=2,
            )
        )
        print(f"wrote {out / 'results.csv'}, {out / 'results.png'}, {out / 'run.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
