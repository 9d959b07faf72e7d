"""LeJEPA with SFRIK's MMD to the uniform distribution on the sphere in SIGReg's place, with
stable-pretraining's LeJEPA (in the shape of its benchmarks/imagenet10/lejepa-vit-small.py), on
Fashion-MNIST image folders, offline and on the CPU:

    python -m sfrik_experiments.engine.image_folder --out ~/data/fmnist
    python examples/stable_pretraining/lejepa_sphere_mmd.py --data ~/data/fmnist --max-steps 100

LeJEPA's own loss code runs unchanged: model.sigreg is a SphereMMD, which takes SIGReg's call on
all views' projections. --regulariser sigreg trains stock LeJEPA for comparison. A ViT-Tiny on
32 px global and 16 px local views (2 + 2) keeps it small; the paper's setting is in the benchmark.
"""

# The adapter first: it checks the installed stable-pretraining and names the fix if needed.
from sfrik_plugin.hosts.stable_pretraining import LEJEPA_SPHERE_LAMB, lejepa_with_sphere_mmd  # isort: skip

import argparse
from pathlib import Path

import lightning as pl
import stable_pretraining as spt
import torch
import torchmetrics
import torchvision
from stable_pretraining.data import transforms
from stable_pretraining.methods.lejepa import LeJEPA


def lejepa_forward(self, batch: dict, stage: str) -> dict:
    """spt.Module's forward for a LeJEPA `model`: named views global_* and local_* in training,
    one "image" in evaluation."""
    if "image" in batch:
        return {"embedding": self.model(images=batch["image"]).embedding, "label": batch["label"]}
    views = {name: view for name, view in batch.items() if isinstance(view, dict)}  # not batch_idx
    global_views = [view["image"] for name, view in views.items() if name.startswith("global")]
    local_views = [view["image"] for name, view in views.items() if name.startswith("local")]
    output = self.model(global_views=global_views, local_views=local_views)
    for key, value in (("loss", output.loss), ("inv", output.inv_loss), ("sigreg", output.sigreg_loss)):
        self.log(f"{stage}/{key}", value, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(local_views[0]))
    labels = views["global_0"]["label"].repeat(len(global_views))  # the embedding is the global views'
    return {"loss": output.loss, "embedding": output.embedding, "label": labels}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/ image folders")
    parser.add_argument("--out", type=Path, default=Path("spt_runs"), help="stable-pretraining's cache_dir")
    parser.add_argument("--regulariser", choices=("sphere-mmd", "sigreg"), default="sphere-mmd")
    parser.add_argument("--lamb", type=float, help=f"its weight (default {LEJEPA_SPHERE_LAMB:g}; sigreg: 0.02)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: --epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    spt.set(cache_dir=str(args.out.resolve()))
    normalize = transforms.ToImage(**spt.data.static.FashionMNIST)

    def view(size: int, scale: tuple[float, float]) -> transforms.Compose:
        return transforms.Compose(
            transforms.RGB(),
            transforms.RandomResizedCrop((size, size), scale=scale),
            transforms.RandomHorizontalFlip(p=0.5),
            normalize,
        )

    train_transform = transforms.MultiViewTransform(
        {
            **{f"global_{i}": view(32, (0.3, 1.0)) for i in range(2)},
            **{f"local_{i}": view(16, (0.05, 0.3)) for i in range(2)},
        }
    )
    val_transform = transforms.Compose(transforms.RGB(), transforms.Resize((32, 32)), normalize)

    def loader(split: str, transform, train: bool) -> torch.utils.data.DataLoader:
        folder = torchvision.datasets.ImageFolder(str(args.data / split))
        dataset = spt.data.FromTorchDataset(folder, names=["image", "label"], transform=transform)
        return torch.utils.data.DataLoader(
            dataset, batch_size=args.batch_size, num_workers=args.num_workers, shuffle=train, drop_last=train
        )

    data = spt.data.DataModule(train=loader("train", train_transform, True), val=loader("val", val_transform, False))

    if args.regulariser == "sphere-mmd":
        lamb = LEJEPA_SPHERE_LAMB if args.lamb is None else args.lamb
        model = lejepa_with_sphere_mmd("vit_tiny_patch16_224", lamb=lamb, drop_path_rate=0.0)
    else:
        model = LeJEPA("vit_tiny_patch16_224", lamb=0.02 if args.lamb is None else args.lamb, drop_path_rate=0.0)
    module = spt.Module(
        model=model,
        forward=lejepa_forward,
        optim={
            "optimizer": {"type": "AdamW", "lr": 5e-4, "weight_decay": 0.05},
            "scheduler": {"type": "LinearWarmupCosineAnnealing"},
            "interval": "step",
        },
    )
    callbacks = [
        spt.callbacks.OnlineProbe(
            module,
            name="linear_probe",
            input="embedding",
            target="label",
            probe=torch.nn.Linear(model.embed_dim, 10),
            loss=torch.nn.CrossEntropyLoss(),
            metrics={"top1": torchmetrics.classification.MulticlassAccuracy(10)},
        ),
        spt.callbacks.OnlineKNN(
            name="knn_probe",
            input="embedding",
            target="label",
            queue_length=20000,
            metrics={"top1": torchmetrics.classification.MulticlassAccuracy(10)},
            input_dim=model.embed_dim,
            k=10,
        ),
    ]
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        accelerator="auto",
        enable_checkpointing=False,
    )
    spt.Manager(trainer=trainer, module=module, data=data, seed=0)()


if __name__ == "__main__":
    main()
