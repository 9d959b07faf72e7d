# SFRIK with lightly, in the shape of lightly's examples/pytorch_lightning/vicreg.py.
#
# This example requires lightly and the plugin:
#   pip install --no-build-isolation -e ".[lightly]"     (in the sfrik-plugin checkout)
# and an image folder (one sub-folder per class), for example Fashion-MNIST, written offline by
#   python -m sfrik_experiments.engine.image_folder --out fmnist
# Then:
#   python examples/lightly/sfrik.py --data fmnist/train
#
# Note: the settings are the paper's IN20% loss weights with a small batch, chosen so that the
# example runs on one GPU (or, slowly, on a CPU); they are not tuned for this data.

# The adapter first: it checks the installed lightly and names the fix if needed.
from sfrik_plugin.hosts.lightly import SFRIKLoss  # isort: skip

import argparse

import pytorch_lightning as pl
import torch
import torchvision
from lightly.data import LightlyDataset
from lightly.models.modules.heads import VICRegProjectionHead
from lightly.transforms.vicreg_transform import VICRegTransform
from lightly.utils.lars import LARS
from torch import nn


class SFRIK(pl.LightningModule):
    def __init__(self, proj_dim: int = 2048, lr: float = 0.3):
        super().__init__()
        resnet = torchvision.models.resnet18()
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        # The paper's projector shape (VICReg's): three linear layers, BN + ReLU after the first two.
        self.projection_head = VICRegProjectionHead(
            input_dim=512, hidden_dim=proj_dim, output_dim=proj_dim, num_layers=3
        )
        self.criterion = SFRIKLoss()  # sim_loss_weight 4000, mmd_loss_weight 1, b = (1, 40, 40)
        self.lr = lr

    def forward(self, x):
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)

    def training_step(self, batch, batch_index):
        (x0, x1) = batch[0]
        z0 = self.forward(x0)
        z1 = self.forward(x1)
        terms = self.criterion.terms(z0, z1)  # loss, invariance, regulariser
        self.log("train_loss", terms.loss, prog_bar=True)
        self.log("train_mmd", terms.regulariser)
        return terms.loss

    def configure_optimizers(self):
        return LARS(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=1e-6)


def main():
    parser = argparse.ArgumentParser(description="SFRIK pretraining with lightly")
    parser.add_argument("--data", required=True, help="image folder (class sub-folders)")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--proj-dim", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--num-workers", type=int, default=8)
    args = parser.parse_args()

    model = SFRIK(proj_dim=args.proj_dim)
    transform = VICRegTransform(input_size=args.input_size)
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
