"""sfrik-linear: the paper's linear evaluation with solo-learn's main_linear.py.

    sfrik-linear --final-val-path /data/imagenet/val --out runs/linear-sfrik -- \\
        --config-name linear_in20_tuning "pretrained_feature_extractor='<run>.ckpt'" \\
        data.train_path=/data/imagenet-in20/train data.val_path=/data/imagenet-in20/tuning

Runs the checkout's main_linear.py in this process (--solo-learn-dir, else $SOLO_LEARN_DIR, else
the current directory) with its arguments after ``--``: the head is trained on data.train_path
and validated every epoch on data.val_path, the tuning subset. On top of solo's script, as the
official evaluation (valeoai/sfrik evaluate.py) and the paper's protocol:

- the head is initialised N(0, 0.01) with zero bias (solo keeps nn.Linear's default);
- the backbone loaded by main_linear.py (strict=False there) is checked against the checkpoint:
  missing or unexpected keys are an error that names them;
- the head of the epoch with the best tuning top-1 is kept (the first such epoch on ties), and
  after training it is evaluated once on --final-val-path (an image folder with the training
  set's classes, through the validation transform of main_linear.py);
- ``<out>/linear_eval.csv`` gets one row: name, checkpoint, best_epoch (0-based, as solo's
  checkpoints count), tuning_top1, tuning_top5 (at that epoch), final_top1, final_top5 (percent),
  final_images, epochs; ``<out>/best_head.pt`` holds that head's weights. --out is checked
  before the training; results already there are replaced only with --overwrite; a training cut
  short (Ctrl-C, SIGTERM) writes nothing and exits with 130 / 143.

Only one process evaluates: run it on one device (the linear configs use one GPU, as the paper).
"""

import argparse
import csv
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sfrik_plugin.utils.files import atomic_path, atomic_write, refuse_existing, writable_dir
from sfrik_plugin.utils.interrupt import check_fit_completed, exits_on_interrupt
from sfrik_plugin.utils.solo_learn import find_solo_learn_dir

SCRIPT = "main_linear.py"
HEAD_STD = 0.01
CSV_FIELDS = (
    "name",
    "checkpoint",
    "best_epoch",
    "tuning_top1",
    "tuning_top5",
    "final_top1",
    "final_top5",
    "final_images",
    "epochs",
)


def init_head(linear) -> None:
    """N(0, 0.01) weights, zero bias (official evaluate.py)."""
    import torch

    with torch.no_grad():
        linear.weight.normal_(mean=0.0, std=HEAD_STD)
        linear.bias.zero_()


def evaluate(backbone, head, loader, device) -> dict:
    """Top-1 / top-5 (percent) of head(backbone(x)) over the loader, once."""
    import torch

    backbone.eval()
    head.eval()
    correct1 = correct5 = total = 0
    with torch.no_grad():
        for images, targets in loader:
            logits = head(backbone(images.to(device)))
            targets = targets.to(device)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == targets[:, None]
            correct1 += int(hits[:, 0].sum())
            correct5 += int(hits.any(dim=1).sum())
            total += targets.numel()
    if total == 0:
        raise ValueError("the final validation set has no images")
    return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total, "images": total}


def make_callback(state: dict):
    """The Lightning callback: head init, backbone check, best tuning epoch (state gets the cfg
    from the parse_cfg wrapper, and the best head)."""
    from lightning.pytorch.callbacks import Callback

    from sfrik_plugin.solo.checkpoints import load_backbone_weights

    class BestTuningHead(Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            cfg = state["cfg"]
            # the same weights again, strictly: a checkpoint whose keys do not fit fails here
            load_backbone_weights(pl_module.backbone, cfg.pretrained_feature_extractor)
            init_head(pl_module.classifier)

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            metrics = trainer.callback_metrics
            if "val_acc1" not in metrics:
                raise RuntimeError(
                    "sfrik-linear: main_linear.py logged no val_acc1: set data.val_path to the tuning subset"
                )
            acc1, acc5 = float(metrics["val_acc1"]), float(metrics.get("val_acc5", float("nan")))
            best = state.get("best")
            if best is None or acc1 > best["tuning_top1"]:
                head = {k: v.detach().cpu().clone() for k, v in pl_module.classifier.state_dict().items()}
                state["best"] = {"epoch": trainer.current_epoch, "tuning_top1": acc1, "tuning_top5": acc5, "head": head}

    return BestTuningHead()


def final_evaluation(trainer, model, val_loader, final_val_path: Path, state: dict) -> dict:
    """Loads the best head into the model and evaluates it once on final_val_path."""
    import torch
    from torchvision.datasets import ImageFolder

    best = state.get("best")
    if best is None:
        raise RuntimeError(
            "sfrik-linear: no validation epoch ran (limit_val_batches=0 or "
            "check_val_every_n_epoch > max_epochs?): no best epoch to keep"
        )
    tuning = val_loader.dataset
    final = ImageFolder(str(final_val_path), transform=getattr(tuning, "transform", None))
    classes = getattr(tuning, "classes", None)
    if classes is not None and final.classes != classes:
        raise ValueError(
            f"--final-val-path {str(final_val_path)!r}: its classes {final.classes[:5]}... differ "
            f"from the tuning set's {classes[:5]}..."
        )
    loader = torch.utils.data.DataLoader(
        final, batch_size=val_loader.batch_size, shuffle=False, num_workers=val_loader.num_workers
    )
    model.classifier.load_state_dict(best["head"])
    device = trainer.strategy.root_device
    return evaluate(model.backbone.to(device), model.classifier.to(device), loader, device)


def install(final_val_path: Path, out: Path) -> dict:
    """Patches this process's solo parse_cfg (to see the config) and Trainer.fit (callback, then
    the final evaluation and the CSV)."""
    import solo.args.linear as solo_linear
    from lightning.pytorch import Trainer

    state: dict = {}
    original_parse = solo_linear.parse_cfg

    def parse_cfg(cfg):
        state["cfg"] = cfg = original_parse(cfg)
        check_num_classes(cfg.data.num_classes, cfg.data.train_path)
        check_backbone_arch(cfg.pretrained_feature_extractor, cfg.backbone.name)
        return cfg

    solo_linear.parse_cfg = parse_cfg  # before main_linear.py's `from solo.args.linear import parse_cfg`
    original_fit = Trainer.fit

    def fit(trainer, model, train_dataloaders=None, val_dataloaders=None, *args, **kwargs):
        if trainer.world_size != 1:
            raise SystemExit("sfrik-linear: run the linear evaluation on one device (devices=[0])")
        trainer.callbacks.insert(0, make_callback(state))
        result = original_fit(trainer, model, train_dataloaders, val_dataloaders, *args, **kwargs)
        # a head trained for part of its epochs is not the evaluation: no row, no head, exit 130 / 143
        check_fit_completed(trainer, "the linear head's training")
        import torch

        scores = final_evaluation(trainer, model, val_dataloaders, final_val_path, state)
        best, cfg = state["best"], state["cfg"]
        with atomic_path(out / "best_head.pt") as tmp:
            torch.save({"head": best["head"], "epoch": best["epoch"]}, tmp)
        row = {
            "name": cfg.name,
            "checkpoint": cfg.pretrained_feature_extractor,
            "best_epoch": best["epoch"],
            "tuning_top1": best["tuning_top1"],
            "tuning_top5": best["tuning_top5"],
            "final_top1": scores["top1"],
            "final_top5": scores["top5"],
            "final_images": scores["images"],
            "epochs": trainer.current_epoch,
        }
        with atomic_write(out / "linear_eval.csv", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerow(row)
        print(
            f"sfrik-linear: best tuning epoch {best['epoch']} (top-1 {best['tuning_top1']:.2f}); final validation "
            f"top-1 {scores['top1']:.2f}, top-5 {scores['top5']:.2f} on {scores['images']} images -> "
            f"{out / 'linear_eval.csv'}"
        )
        return result

    cast(Any, Trainer).fit = fit  # a monkeypatch: mypy rejects assigning to a method
    return state


# solo's LinearModel computes top-5 accuracy with topk(5): fewer classes crash it mid-validation
# ("selected index k out of range"), after the first training epoch.
MIN_CLASSES = 5


def check_num_classes(num_classes: int, train_path: object) -> None:
    """Refuses, as soon as solo has parsed the config, a dataset main_linear.py cannot score."""
    if num_classes < MIN_CLASSES:
        raise SystemExit(
            f"sfrik-linear: data.train_path {str(train_path)!r} has {num_classes} class(es); solo-learn's linear "
            f"evaluation reports top-5 accuracy and needs at least {MIN_CLASSES} classes (one subfolder per class)"
        )


def check_feature_extractor(overrides: Sequence[str]) -> None:
    """Refuses, before solo-learn starts, a pretrained_feature_extractor that is not a solo-learn
    .ckpt (main_linear.py reads its "state_dict" and dies with a KeyError on anything else): an
    official SFRIK .pth is pointed to sfrik-convert."""
    from sfrik_plugin.solo.checkpoints import CheckpointFormatError, torch_load

    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]  # a quoted Hydra value
        if key != "pretrained_feature_extractor" or not value or value == "null" or "${" in value:
            continue
        try:
            ckpt = torch_load(value, "pretrained_feature_extractor")
        except (FileNotFoundError, CheckpointFormatError) as err:
            raise SystemExit(f"sfrik-linear: {err}") from None
        if not (isinstance(ckpt, dict) and "state_dict" in ckpt):
            raise SystemExit(
                f"sfrik-linear: pretrained_feature_extractor {value!r} is not a solo-learn checkpoint (no "
                "'state_dict'): for an official SFRIK checkpoint (the backbone .pth or last_ckp.pth) run "
                f"`sfrik-convert {value} --out DIR` first and pass DIR/<name>.ckpt"
            )


def check_backbone_arch(checkpoint: object, backbone_name: str) -> None:
    """Refuses, as soon as solo has parsed the config and before it builds the backbone, a
    checkpoint whose ResNet is not backbone.name (main_linear.py would print a size mismatch for
    every layer): one message naming both architectures and the setting."""
    from sfrik_plugin.solo.checkpoints import (
        CheckpointFormatError,
        architecture_mismatch,
        resnet_arch_or_none,
        split_official,
        torch_load,
    )

    try:
        state, _, _ = split_official(torch_load(checkpoint, "pretrained_feature_extractor"), str(checkpoint))
    except (FileNotFoundError, CheckpointFormatError) as err:
        raise SystemExit(f"sfrik-linear: {err}") from None
    mismatch = architecture_mismatch(state, backbone_name, f"pretrained_feature_extractor {str(checkpoint)!r}")
    if mismatch is not None:
        found = resnet_arch_or_none(state)
        config = {"resnet18": "linear_in20", "resnet50": "linear_in100"}.get(str(found))
        raise SystemExit(
            f"sfrik-linear: {mismatch} on the command line"
            + (f", or use the linear config of that architecture (--config-name {config})" if config else "")
        )


OUTPUTS = ("linear_eval.csv", "best_head.pt")


@exits_on_interrupt("sfrik-linear")
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sfrik-linear", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--solo-learn-dir", default=None, help="the solo-learn checkout (main_linear.py)")
    parser.add_argument(
        "--final-val-path",
        required=True,
        type=Path,
        help="image folder of the final evaluation (ImageNet's validation set)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for linear_eval.csv and best_head.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then main_linear.py's arguments")
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rest = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    if not opts.final_val_path.is_dir():
        raise SystemExit(f"sfrik-linear: --final-val-path {str(opts.final_val_path)!r} is not a folder")
    writable_dir(opts.out, "--out", "sfrik-linear")  # before the training, not after it
    if not opts.overwrite:
        refuse_existing([opts.out / name for name in OUTPUTS], "sfrik-linear")
    check_feature_extractor(rest)
    try:
        checkout = find_solo_learn_dir(opts.solo_learn_dir, SCRIPT)
    except FileNotFoundError as err:
        raise SystemExit(f"sfrik-linear: {err}") from None
    install(opts.final_val_path.resolve(), opts.out.resolve())
    script = checkout / SCRIPT
    sys.path.insert(0, str(checkout))
    sys.argv = [str(script), *rest]
    os.environ.setdefault("WANDB_MODE", "disabled")
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
