"""sfrik-semisup: semi-supervised fine-tuning as in the paper (1 % / 10 % of ImageNet's labels).

    sfrik-semisup --config-name semisup_in100_1pct "pretrained_feature_extractor='<run>.ckpt'" \\
        split_file=/path/to/1percent.txt data.train_path=/data/imagenet/train data.val_path=/data/imagenet/val

The backbone of a solo-learn checkpoint (main_pretrain.py's, or sfrik-convert's for the official
weights; loaded strictly: missing or unexpected keys are an error naming them) and a linear head
(N(0, 0.01), zero bias) are trained together on the images a split file names, then evaluated on
data.val_path after every epoch, as the official evaluate.py (--weights finetune): SGD with
momentum 0.9, separate backbone and head learning rates, weight decay 0, cosine annealing per
epoch, batch 256, 20 epochs, random-resized-crop + flip for training and resize + centre crop for
validation.

The split file is SimCLR's format (the official repository's imagenet_subsets/1percent.txt and
10percent.txt): one image file name per line, e.g. ``n01440764_10026.JPEG``, looked up by name in
the class folders of data.train_path (the class is the folder it is found in). Names that are not
found are an error that lists a few of them.

Outputs, in solo-learn's style: Lightning progress bars with train_loss, val_acc1, val_acc5;
``<out_dir>/metrics.csv`` (Lightning's CSVLogger: every logged value per epoch) and
``<out_dir>/semisup.csv`` (one row: name, checkpoint, split_file, labelled_images, epochs,
val_top1, val_top5 of the last epoch, best_val_top1 and its epoch).
"""

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from sfrik_plugin.utils.files import atomic_write, refuse_existing, writable_dir
from sfrik_plugin.utils.interrupt import exits_on_interrupt, fit_to_end

SPLIT_ERROR_SHOWN = 5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_split_file(path) -> list[str]:
    """The image file names of a SimCLR-format split file (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split_file {str(path)!r} does not exist")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"split_file {str(path)!r} names no image")
    return names


def labelled_samples(train_path, names: Sequence[str], split_file: str = "split_file") -> tuple[list, list[str]]:
    """([(path, class index)] for each name, classes): each name is looked up in the class
    folders of train_path (sorted, as ImageFolder). Missing or ambiguous names raise."""
    root = Path(train_path)
    if not root.is_dir():
        raise FileNotFoundError(f"data.train_path {str(root)!r} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise ValueError(f"data.train_path {str(root)!r} has no class folders")
    where: dict[str, list[int]] = {}
    wanted = set(names)
    for index, cls in enumerate(classes):
        for entry in os.scandir(root / cls):
            if entry.name in wanted:
                where.setdefault(entry.name, []).append(index)
    missing = [n for n in names if n not in where]
    if missing:
        shown = ", ".join(missing[:SPLIT_ERROR_SHOWN])
        more = f" and {len(missing) - SPLIT_ERROR_SHOWN} more" if len(missing) > SPLIT_ERROR_SHOWN else ""
        raise FileNotFoundError(
            f"{split_file}: {len(missing)} of its {len(names)} images are not in the class "
            f"folders of data.train_path {str(root)!r}: {shown}{more}"
        )
    ambiguous = [n for n in names if len(where[n]) > 1]
    if ambiguous:
        raise ValueError(
            f"{split_file}: image names found in several classes of {str(root)!r}: "
            f"{', '.join(ambiguous[:SPLIT_ERROR_SHOWN])}"
        )
    samples = [(str(root / classes[where[n][0]] / n), where[n][0]) for n in names]
    return samples, classes


def build_transforms(crop_size: int, resize_size: int):
    from torchvision import transforms

    normalize = transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    train = transforms.Compose(
        [transforms.RandomResizedCrop(crop_size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    val = transforms.Compose(
        [transforms.Resize(resize_size), transforms.CenterCrop(crop_size), transforms.ToTensor(), normalize]
    )
    return train, val


class LabelledImages:
    """A map-style dataset of (path, label) samples, read as ImageFolder reads them."""

    def __init__(self, samples, transform):
        self.samples, self.transform = list(samples), transform
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        from torchvision.datasets.folder import default_loader

        path, label = self.samples[index]
        return self.transform(default_loader(path)), label


def build_datasets(cfg):
    from torchvision.datasets import ImageFolder

    names = read_split_file(cfg.split_file)
    samples, classes = labelled_samples(cfg.data.train_path, names, f"split_file {str(cfg.split_file)!r}")
    t_train, t_val = build_transforms(cfg.data.crop_size, cfg.data.resize_size)
    train = LabelledImages(samples, t_train)
    val = ImageFolder(str(cfg.data.val_path), transform=t_val)
    if val.classes != classes:
        raise ValueError(
            f"data.val_path {str(cfg.data.val_path)!r}: its classes differ from data.train_path's "
            f"({len(val.classes)} against {len(classes)})"
        )
    return train, val, classes


def make_module(cfg, num_classes: int):
    """The LightningModule: backbone (strictly loaded) + linear head, trained together."""
    import lightning.pytorch as pl
    import torch
    from torch import nn

    from sfrik_plugin.solo.checkpoints import build_backbone, load_backbone_weights
    from sfrik_plugin.solo.linear_eval import init_head

    class SemiSupervised(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = build_backbone(cfg.backbone.name, cfg.data.get("dataset"), **cfg.backbone.get("kwargs", {}))
            self.checkpoint_info = load_backbone_weights(self.backbone, cfg.pretrained_feature_extractor)
            features = cast(int, self.backbone.inplanes)  # the ResNet's feature width (typed as a Module)
            self.classifier = nn.Linear(features, num_classes)
            init_head(self.classifier)
            self.loss = nn.CrossEntropyLoss()
            self._val = []

        def forward(self, x):
            return self.classifier(self.backbone(x))

        def configure_optimizers(self):
            opt = cfg.optimizer
            groups = [
                dict(params=self.classifier.parameters(), lr=opt.head_lr, name="classifier"),
                dict(params=self.backbone.parameters(), lr=opt.backbone_lr, name="backbone"),
            ]
            optimizer = torch.optim.SGD(groups, lr=0.0, momentum=opt.momentum, weight_decay=opt.weight_decay)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.max_epochs)
            return [optimizer], [{"scheduler": scheduler, "interval": "epoch"}]

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss(self(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == y[:, None]
            self._val.append(
                torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(), torch.tensor(y.numel(), device=y.device)])
            )

        def on_validation_epoch_end(self):
            if not self._val:
                return
            c1, c5, n = torch.stack(self._val).sum(0).double()
            self._val.clear()
            self.log_dict({"val_acc1": 100.0 * c1 / n, "val_acc5": 100.0 * c5 / n}, prog_bar=True)

    return SemiSupervised()


def make_recorder():
    from lightning.pytorch.callbacks import Callback

    class Recorder(Callback):
        def __init__(self):
            self.epochs = []

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking or "val_acc1" not in trainer.callback_metrics:
                return
            m = trainer.callback_metrics
            self.epochs.append((trainer.current_epoch, float(m["val_acc1"]), float(m["val_acc5"])))

    return Recorder()


def run(cfg) -> dict:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger

    out = writable_dir(cfg.out_dir, "out_dir", "sfrik-semisup")  # before any work
    if not cfg.get("overwrite", False):
        refuse_existing([out / "semisup.csv"], "sfrik-semisup", where="out_dir", flag="overwrite=true")
    for log in ("metrics.csv", "hparams.yaml"):  # the logger's files of a run cut short, or replaced
        (out / log).unlink(missing_ok=True)
    pl.seed_everything(cfg.seed)
    train, val, classes = build_datasets(cfg)
    kwargs = dict(
        batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers, pin_memory=cfg.accelerator == "gpu"
    )
    train_loader = torch.utils.data.DataLoader(train, shuffle=True, drop_last=False, **kwargs)
    val_loader = torch.utils.data.DataLoader(val, shuffle=False, **kwargs)
    model = make_module(cfg, len(classes))
    recorder = make_recorder()
    extra = {k: cfg[k] for k in ("limit_train_batches", "limit_val_batches") if k in cfg}
    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        precision=cfg.precision,
        logger=CSVLogger(str(out), name="", version=""),
        callbacks=[recorder],
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=str(out),
        **extra,
    )
    fit_to_end(trainer, model, train_loader, val_loader, what="the semi-supervised fine-tuning")
    if not recorder.epochs:
        raise RuntimeError("sfrik-semisup: no validation epoch ran")
    last = recorder.epochs[-1]
    best = max(recorder.epochs, key=lambda e: e[1])
    row = {
        "name": cfg.name,
        "checkpoint": cfg.pretrained_feature_extractor,
        "split_file": cfg.split_file,
        "labelled_images": len(train),
        "epochs": trainer.current_epoch,
        "val_top1": last[1],
        "val_top5": last[2],
        "best_val_top1": best[1],
        "best_epoch": best[0],
    }
    if trainer.is_global_zero:
        with atomic_write(out / "semisup.csv", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        print(
            f"sfrik-semisup: {len(train)} labelled images, {row['epochs']} epochs: val top-1 {last[1]:.2f}, "
            f"top-5 {last[2]:.2f} -> {out / 'semisup.csv'}"
        )
    return row


def check_cfg(cfg) -> None:
    from omegaconf import OmegaConf

    for key in ("pretrained_feature_extractor", "split_file", "data.train_path", "data.val_path"):
        if OmegaConf.is_missing(cfg, key) or OmegaConf.select(cfg, key) in (None, ""):
            raise ValueError(f"sfrik-semisup: set {key}=... (see docs/solo-learn.md)")
    for key in ("optimizer.backbone_lr", "optimizer.head_lr", "optimizer.weight_decay"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"sfrik-semisup: {key} must be a number >= 0, got {value!r}")


@exits_on_interrupt("sfrik-semisup")
def main() -> None:
    import hydra
    from omegaconf import DictConfig

    from hydra_plugins.sfrik_plugin.resolvers import register_resolvers

    register_resolvers()

    @hydra.main(version_base="1.2", config_path=None, config_name="semisup_in100_10pct")
    def task(cfg: DictConfig) -> None:
        check_cfg(cfg)
        run(cfg)

    task()


if __name__ == "__main__":
    main()
