"""SFRIK (or AUH) pretraining of a ResNet-18 with stable-pretraining, in the shape of its
benchmarks/cifar10/vicreg-resnet18.py, on Fashion-MNIST image folders, offline and on the CPU:

    python -m sfrik_experiments.engine.image_folder --out ~/data/fmnist
    python examples/stable_pretraining/sfrik_resnet18.py --data ~/data/fmnist --max-steps 100

--data holds train/ and val/ in torchvision's ImageFolder layout (the command above writes them).
The online linear probe and kNN report on val/; stable-pretraining's Manager writes the run (CSV
logs, checkpoints) under --out. No wandb logger.
"""

# The adapter first: it checks the installed stable-pretraining and names the fix if needed.
from sfrik_plugin.hosts.stable_pretraining import AUHLoss, SFRIKLoss, auh, sfrik  # isort: skip

import argparse
from pathlib import Path

import lightning as pl
import stable_pretraining as spt
import torch
import torchmetrics
import torchvision
from stable_pretraining.data import transforms

from sfrik_plugin.projector import build_projector


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ image folders")
    parser.add_argument("--out", type=Path, default=Path("spt_runs"), help="stable-pretraining's cache_dir")
    parser.add_argument("--method", choices=("sfrik", "auh"), default="sfrik")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: --epochs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=28, help="crop size of the views")
    parser.add_argument("--proj-dim", type=int, default=2048, help="projector widths (the paper: 8192)")
    parser.add_argument("--num-workers", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    spt.set(cache_dir=str(args.out.resolve()))
    normalize = transforms.ToImage(**spt.data.static.FashionMNIST)
    view = transforms.Compose(
        transforms.RGB(),
        transforms.RandomResizedCrop((args.image_size, args.image_size), scale=(0.2, 1.0)),
        transforms.RandomHorizontalFlip(p=0.5),
        normalize,
    )
    val_view = transforms.Compose(transforms.RGB(), transforms.Resize((args.image_size, args.image_size)), normalize)

    def loader(split: str, transform, train: bool) -> torch.utils.data.DataLoader:
        folder = torchvision.datasets.ImageFolder(str(args.data / split))
        dataset = spt.data.FromTorchDataset(folder, names=["image", "label"], transform=transform)
        return torch.utils.data.DataLoader(
            dataset, batch_size=args.batch_size, num_workers=args.num_workers, shuffle=train, drop_last=train
        )

    data = spt.data.DataModule(
        train=loader("train", transforms.MultiViewTransform([view, view]), train=True),
        val=loader("val", val_view, train=False),
    )

    backbone = spt.backbone.from_torchvision("resnet18", low_resolution=True)
    backbone.fc = torch.nn.Identity()
    losses = {"sfrik": (sfrik, dict(sfrik_loss=SFRIKLoss())), "auh": (auh, dict(auh_loss=AUHLoss()))}
    forward, loss = losses[args.method]
    module = spt.Module(
        backbone=backbone,
        projector=build_projector(512, args.proj_dim, args.proj_dim),
        forward=forward,
        **loss,
        optim={
            # LARS at the paper's IN20% base lr 1.2 per 256 images
            "optimizer": {"type": "LARS", "lr": 1.2 * args.batch_size / 256, "weight_decay": 1e-6, "eta": 0.001},
            "scheduler": {"type": "LinearWarmupCosineAnnealing"},
            "interval": "step",
        },
    )

    linear_probe = spt.callbacks.OnlineProbe(
        module,
        name="linear_probe",
        input="embedding",
        target="label",
        probe=torch.nn.Linear(512, 10),
        loss=torch.nn.CrossEntropyLoss(),
        metrics={"top1": torchmetrics.classification.MulticlassAccuracy(10)},
    )
    knn_probe = spt.callbacks.OnlineKNN(
        name="knn_probe",
        input="embedding",
        target="label",
        queue_length=20000,
        metrics={"top1": torchmetrics.classification.MulticlassAccuracy(10)},
        input_dim=512,
        k=10,
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        num_sanity_val_steps=0,
        callbacks=[linear_probe, knn_probe],
        accelerator="auto",
        enable_checkpointing=False,
    )
    spt.Manager(trainer=trainer, module=module, data=data, seed=0)()


if __name__ == "__main__":
    main()
