"""Training-step suite: the end-to-end cost of each method, one optimiser step of a backbone, a
projector and the method's loss, the methods taking turns step by step.

One step: the gradients set to None (untimed), both views forward through the backbone and the
projector (Linear-BN-ReLU, Linear-BN-ReLU, Linear: sfrik_plugin.projector.build_projector) under
bfloat16 autocast where asked, the method's loss, backward, and an SGD step (momentum 0.9).

  none          (z1 * 0).sum() + (z2 * 0).sum(): backward still runs through the whole network (with
                zero gradients), so this is the step without a loss: the floor of the others
  sfrik         sfrik_plugin.SFRIKLoss(gather_distributed=False)
  <baseline>    the registered baselines of `sfrik-bench losses` (listed at the end of this help;
                solo-learn's loss functions where solo-learn is installed, otherwise lightly's);
                one that neither library provides is skipped and said so

The GPU setting (the defaults on CUDA): ResNet-50 (torchvision, weights=None, fc replaced by
Identity), projector 2048-8192-8192-q, 2 views x 256 random 224-px images, bf16 autocast, q in
{8192, 16384, 32768}. The CPU defaults: ResNet-18, projector 512-1024-1024-q, 2 x 16 images of
64 px, q in {256, 1024}, float32. --backbone tiny (two conv-BN-ReLU blocks) is for smoke tests.

For each q, one network and one optimiser are built and every method steps them in turn: every
method's step does the same work but for its loss (the values of the weights do not change what a
step costs; a small learning rate keeps them finite). After --warmup rounds, --steps rounds are
timed; in each round every method runs one step, so a drift of the clock or of the machine's load
falls on all methods alike. A step is timed from a synchronised start to a synchronised end
(time.perf_counter; torch.cuda.synchronize on CUDA).

Reported per method: the median step time with its min, max and quartiles; the loss overhead (the
median step time minus that of "none", and beside it the median of the per-round differences, which
pairs the steps run back to back); peak memory of one further, untimed step: on CUDA
torch.cuda.max_memory_allocated (the model, its gradients and the optimiser state included) and the
peak beyond what was allocated before the step; on the CPU only the latter (torch.profiler's
allocation events, see sfrik_experiments.utils.memory), the absolute peak column left empty.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn

import sfrik_plugin
from sfrik_experiments.utils import machine, output
from sfrik_experiments.utils.arguments import non_negative_int, positive_float, positive_int
from sfrik_plugin.baselines import BASELINES
from sfrik_plugin.projector import build_projector

from . import common
from .loss_methods import build_methods
from .step_timing import add_overheads, run_rounds, timing_fields

HELP = "end-to-end training step (backbone + projector + loss + optimiser step) per method"


def description() -> str:
    """The help text: this module's docstring and the registered baselines."""
    return common.with_baselines(__doc__)


METHODS = ("none", "sfrik", *BASELINES)
BACKBONES = ("resnet50", "resnet18", "tiny")
TINY_FEATURES = 32
MOMENTUM = 0.9
# Issue 19's target: SFRIK adds at most this to a step of the GPU setting.
OVERHEAD_TARGET_MS = 2.0
CSV_FIELDS = (
    *common.CELL_FIELDS,
    "method",
    "source",
    "status",
    "backbone",
    "image_size",
    "hidden",
    "autocast",
    "steps",
    "ms_median",
    "ms_min",
    "ms_max",
    "ms_q1",
    "ms_q3",
    "overhead_ms",
    "overhead_paired_ms",
    "step_vs_none",
    "peak_mib",
    "peak_extra_mib",
    "memory_overhead_mib",
    "loss",
)


@dataclass(frozen=True)
class Setting:
    """What one run measures; any option left unset takes its device's default."""

    backbone: str
    hidden: int
    batch: int
    image_size: int
    dims: tuple[int, ...]
    autocast: str
    steps: int
    warmup: int


DEFAULTS = {
    "cuda": Setting("resnet50", 8192, 256, 224, (8192, 16384, 32768), "bf16", 15, 3),
    "cpu": Setting("resnet18", 1024, 16, 64, (256, 1024), "none", 5, 1),
}


def batch_size(text: str) -> int:
    """argparse type of --batch: BatchNorm in training mode needs two rows or more."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 (BatchNorm needs two images a view), got {text}")
    return value


def add_arguments(parser) -> None:
    gpu, cpu = DEFAULTS["cuda"], DEFAULTS["cpu"]

    def default(name: str) -> str:
        return f"default: {getattr(gpu, name)} on CUDA, {getattr(cpu, name)} on the CPU"

    parser.add_argument("--batch", type=batch_size, help=f"images per view ({default('batch')})")
    parser.add_argument(
        "--dims", type=positive_int, nargs="+", metavar="Q", help=f"projector output widths q ({default('dims')})"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="'none' is always run: the floor"
    )
    parser.add_argument("--steps", type=positive_int, help=f"timed rounds ({default('steps')})")
    parser.add_argument("--warmup", type=non_negative_int, help=f"untimed rounds first ({default('warmup')})")
    parser.add_argument("--image-size", type=positive_int, help=f"pixels a side ({default('image_size')})")
    parser.add_argument("--backbone", choices=BACKBONES, help=f"{default('backbone')}; tiny: for smoke tests")
    parser.add_argument("--hidden", type=positive_int, help=f"projector hidden width ({default('hidden')})")
    parser.add_argument(
        "--autocast", choices=("none", "bf16"), help=f"forward under bfloat16 autocast ({default('autocast')})"
    )
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="SGD learning rate (default 1e-4)")
    common.add_device_argument(parser)
    common.add_output_arguments(parser)


def resolve_setting(args, device: torch.device) -> Setting:
    """The options given, the device's defaults for the rest."""
    base = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    given = {f.name: getattr(args, f.name) for f in fields(Setting) if getattr(args, f.name) is not None}
    if "dims" in given:
        given["dims"] = tuple(given["dims"])
    return Setting(**{**base.__dict__, **given})


# ---------------------------------------------------------------------------------------------
# The network, the losses, one step


def tiny_convnet() -> nn.Module:
    """Two strided conv-BN-ReLU blocks and global average pooling: a ResNet's shape, in miniature."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, TINY_FEATURES, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(TINY_FEATURES),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """(backbone without its classifier, its feature width)."""
    if name == "tiny":
        return tiny_convnet(), TINY_FEATURES
    try:
        import torchvision
    except ImportError:
        raise SystemExit(f"--backbone {name} needs torchvision (pip install torchvision); or --backbone tiny") from None
    backbone = getattr(torchvision.models, name)(weights=None)
    features = backbone.fc.in_features
    backbone.fc = nn.Identity()
    return backbone, features


def none_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """No loss: a zero that depends on both views, so backward runs through the whole network."""
    return (z1 * 0).sum() + (z2 * 0).sum()


def build_losses(names: list[str]) -> dict[str, tuple[str, Callable]]:
    """name -> (source, loss(z1, z2)); a baseline no installed library provides is missing."""
    table: dict[str, tuple[str, Callable]] = {
        "none": ("-", none_loss),
        "sfrik": ("sfrik_plugin", sfrik_plugin.SFRIKLoss(gather_distributed=False)),
    }
    if any(name in BASELINES for name in names):  # importing solo-learn takes seconds: only when asked
        table.update({k: v for k, v in build_methods().items() if k in BASELINES})
    return table


def make_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, views: tuple, autocast: str
) -> Callable[[], torch.Tensor]:
    """One training step (gradients already cleared): forward, loss, backward, optimiser step."""
    x1, x2 = views

    def step() -> torch.Tensor:
        with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=autocast == "bf16"):
            loss = loss_fn(model(x1), model(x2))
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def random_views(setting: Setting, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of random images: what a step costs does not depend on the pixels."""
    generator = torch.Generator(device).manual_seed(seed)
    shape = (setting.batch, 3, setting.image_size, setting.image_size)
    return tuple(torch.randn(shape, generator=generator, device=device) for _ in range(2))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# A cell (one q)


def run_cell(q: int, setting: Setting, names: list[str], table: dict, args, device: torch.device) -> list[dict]:
    """Every method at one projector width q: rows in `names` order."""
    torch.manual_seed(0)
    backbone, features = build_backbone(setting.backbone)
    model = nn.Sequential(backbone, build_projector(features, setting.hidden, q)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=MOMENTUM)
    views = random_views(setting, device, seed=q)
    steps = {
        name: make_step(model, optimizer, table[name][1], views, setting.autocast) for name in names if name in table
    }

    def clear() -> None:
        optimizer.zero_grad(set_to_none=True)

    print(
        f"\nq = {q}: {setting.backbone} ({features} features), projector {features}-{setting.hidden}-"
        f"{setting.hidden}-{q}, 2 views x {setting.batch} images of {setting.image_size} px",
        flush=True,
    )
    records = run_rounds(steps, clear, device, setting.warmup, setting.steps, f"q = {q}")
    rows = [method_row(name, q, setting, table, records, steps, clear, device) for name in names]
    add_overheads(rows, records)
    return rows  # the network, its optimiser and the views are freed with this frame


def method_row(name, q, setting, table, records, steps, clear, device) -> dict:
    """One method's row: its status, timings and (from one more, untimed step) peak memory."""
    row: dict = {
        **common.cell("step", setting.batch, q, "float32", device),
        "method": name,
        "backbone": setting.backbone,
        "image_size": setting.image_size,
        "hidden": setting.hidden,
        "autocast": setting.autocast,
    }
    if name not in table:
        return {**row, "status": "skipped: neither solo-learn nor lightly is installed"}
    record = records[name]
    row["source"] = table[name][0]
    if record.failure is None and not record.times:
        record.failure = "no timed step"
    if record.failure is not None:
        return {**row, "status": record.failure}
    clear()
    peak, extra = common.call_peak_bytes(steps[name], device)
    clear()
    loss = record.loss.float().item() if record.loss is not None else math.nan
    return {
        **row,
        "status": "ok",
        **timing_fields(record.times),
        "peak_mib": peak / 2**20,
        "peak_extra_mib": extra / 2**20,
        "loss": loss,
    }


# ---------------------------------------------------------------------------------------------
# Output


def cell_table(rows: list[dict]) -> str:
    header = (
        "method",
        "source",
        "ms/step",
        "min-max",
        "IQR",
        "overhead ms",
        "paired",
        "x none",
        "peak MiB",
        "step extra MiB",
        "overhead MiB",
        "loss",
    )
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append((r["method"], r.get("source", ""), r["status"], *[""] * 9))
            continue
        body.append(
            (
                r["method"],
                r["source"],
                output.format_value(r["ms_median"], ".1f"),
                f"{r['ms_min']:.1f}-{r['ms_max']:.1f}",
                f"{r['ms_q1']:.1f}-{r['ms_q3']:.1f}",
                output.format_value(r.get("overhead_ms"), "+.2f"),
                output.format_value(r.get("overhead_paired_ms"), "+.2f"),
                output.format_value(r.get("step_vs_none"), ".3f"),
                output.format_value(r["peak_mib"], ".0f"),
                output.format_value(r["peak_extra_mib"], ".1f"),
                output.format_value(r.get("memory_overhead_mib"), "+.1f"),
                output.format_value(r["loss"], ".4g"),
            )
        )
    return output.format_table(header, body)


def summary(rows: list[dict], setting: Setting, device: torch.device) -> list[str]:
    """One line per method: its overhead at every q; then issue 19's target where it applies."""
    dims = sorted({r["q"] for r in rows})
    lines = [f"loss overhead, ms a step over 'none' (q = {' / '.join(map(str, dims))}):"]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = {r["q"]: r for r in rows if r["method"] == method}
        lines.append(
            f"  {method:<13} "
            + " / ".join(
                output.format_value(cells[q].get("overhead_ms"), "+.2f") or cells[q]["status"] if q in cells else "-"
                for q in dims
            )
        )
    sfrik = [r.get("overhead_ms", math.nan) for r in rows if r["method"] == "sfrik" and r["status"] == "ok"]
    gpu = DEFAULTS["cuda"]
    at_gpu_setting = device.type == "cuda" and (
        setting.backbone,
        setting.hidden,
        setting.batch,
        setting.image_size,
        setting.autocast,
    ) == (gpu.backbone, gpu.hidden, gpu.batch, gpu.image_size, gpu.autocast)
    if sfrik and at_gpu_setting:
        worst = max(sfrik)
        verdict = "PASS" if worst <= OVERHEAD_TARGET_MS else "FAIL"
        lines.append(f"SFRIK's largest overhead {worst:.2f} ms a step (need <= {OVERHEAD_TARGET_MS:g}): {verdict}")
    elif sfrik:
        lines.append(f"(the <= {OVERHEAD_TARGET_MS:g} ms target for SFRIK applies to the GPU setting only)")
    return lines


def plot(rows: list[dict], path: str, title: str) -> None:
    """Step time (median, min-max bars) and loss overhead against q, one line per method."""
    plt = output.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    data = [r for r in rows if r["status"] == "ok"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in data)):
        own = sorted((r for r in data if r["method"] == method), key=lambda r: r["q"])
        qs = [r["q"] for r in own]
        medians = [r["ms_median"] for r in own]
        spread = [[m - r["ms_min"] for m, r in zip(medians, own)], [r["ms_max"] - m for m, r in zip(medians, own)]]
        axes[0].errorbar(qs, medians, yerr=spread, marker="o", capsize=3, color=f"C{i}", label=method)
        if method != "none":
            axes[1].plot(qs, [r.get("overhead_ms", math.nan) for r in own], marker="o", color=f"C{i}", label=method)
    for ax, label in ((axes[0], "ms a training step (median, min-max)"), (axes[1], "ms a step over 'none'")):
        ax.set(xscale="log", xlabel="q (projector output width)", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].axhline(0, color="black", linewidth=0.5)
    fig.suptitle(title)
    output.save_figure(fig, path)


def run(args) -> int:
    device = common.bench_device(args.device)
    setting = resolve_setting(args, device)
    names = list(dict.fromkeys(["none", *args.methods]))
    if "none" not in args.methods:
        print("'none' added: it is the floor the overheads are measured from")
    common.print_machine(device)
    table = build_losses(names)
    missing = [m for m in names if m not in table]
    if missing:
        print(f"baselines without an implementation here (install solo-learn or lightly): {missing}")
    print(
        f"setting: {setting.backbone}, projector hidden {setting.hidden}, 2 views x {setting.batch} images of "
        f"{setting.image_size} px, autocast {setting.autocast}, SGD (momentum {MOMENTUM}, lr {args.lr:g}); "
        f"{setting.warmup} warm-up and {setting.steps} timed rounds, methods in turn: {', '.join(names)}",
        flush=True,
    )
    rows = []
    for q in setting.dims:
        cell = run_cell(q, setting, names, table, args, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the cell's cached blocks back to the device before the next, wider one
        print(cell_table(cell), flush=True)
        rows.extend(cell)
        common.write_rows_so_far(args, CSV_FIELDS, rows)
    print()
    print("\n".join(summary(rows, setting, device)))
    common.write_outputs(
        args,
        CSV_FIELDS,
        rows,
        plot,
        f"training step, {setting.backbone}, 2 x {setting.batch} images, {machine.device_name(device)}",
    )
    return 0
