# LeJEPA with SFRIK's MMD to the uniform distribution on the sphere in SIGReg's place, in the
# shape of lightly's examples/pytorch_lightning/lejepa.py. The only change from lightly's example
# is the criterion: SphereMMDLeJEPALoss is lightly's LeJEPALoss with `.sigreg` = SphereMMD (exact,
# deterministic, no random slices; sfrik_plugin.sphere_mmd).
#
# This example requires lightly, timm and the plugin:
#   pip install --no-build-isolation -e ".[lightly]" timm     (in the sfrik-plugin checkout)
# and an image folder, for example Fashion-MNIST written by
#   python -m sfrik_experiments.engine.image_folder --out fmnist
# Then:
#   python examples/lightly/lejepa_sphere_mmd.py --data fmnist/train
#
# Note: both terms are computed on the projections L2-normalised, and lambda_param defaults to
# SFRIK's paper weighting (sfrik_plugin.sphere_mmd.LEJEPA_WEIGHT), derived, not tuned: re-tune it.

# The adapter first: it checks the installed lightly and names the fix if needed.
from sfrik_plugin.hosts.lightly import SphereMMDLeJEPALoss  # isort: skip

import argparse

import pytorch_lightning as pl
import timm
import torch
from lightly.data import LightlyDataset
from lightly.models.modules import LeJEPAProjectionHead
from lightly.transforms.dino_transform import DINOTransform
from torch import Tensor
from torch.optim import AdamW


class LeJEPA(pl.LightningModule):
    def __init__(self, model_name: str = "vit_small_patch16_224", image_size: int = 224) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            model_name, pretrained=False, num_classes=0, dynamic_img_size=True, drop_path_rate=0.1
        )
        with torch.inference_mode():
            dim = self.backbone(torch.zeros(1, 3, image_size, image_size)).shape[1]
        self.projection_head = LeJEPAProjectionHead(input_dim=dim)
        self.criterion = SphereMMDLeJEPALoss()

    def forward(self, x: Tensor) -> Tensor:
        return self.projection_head(self.backbone(x))

    def training_step(self, batch, batch_idx: int) -> Tensor:
        views = batch[0]
        global_proj = torch.stack([self(view) for view in views[:2]])
        local_proj = torch.stack([self(view) for view in views[2:]])
        loss = self.criterion(local_proj=local_proj, global_proj=global_proj)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> AdamW:
        return AdamW(self.parameters(), lr=5e-4, weight_decay=5e-2)


def main():
    parser = argparse.ArgumentParser(description="LeJEPA with SphereMMD, with lightly")
    parser.add_argument("--data", required=True, help="image folder")
    parser.add_argument("--model", default="vit_small_patch16_224", help="a timm ViT")
    parser.add_argument("--global-size", type=int, default=224)
    parser.add_argument("--local-size", type=int, default=96)
    parser.add_argument("--local-views", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--num-workers", type=int, default=8)
    args = parser.parse_args()

    model = LeJEPA(args.model, args.global_size)
    transform = DINOTransform(
        global_crop_size=args.global_size,
        global_crop_scale=(0.3, 1),
        local_crop_size=args.local_size,
        local_crop_scale=(0.05, 0.3),
        gaussian_blur=(0.5, 0.5, 0.5),
        n_local_views=args.local_views,
    )
    dataset = LightlyDataset(args.data, transform=transform)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.num_workers,
    )
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    trainer = pl.Trainer(max_epochs=args.epochs, max_steps=args.max_steps, devices=1, accelerator=accelerator)
    trainer.fit(model=model, train_dataloaders=dataloader)


if __name__ == "__main__":
    main()
