"""SFRIK as a method of lightly's ResNet-50 ImageNet benchmark (benchmarks/imagenet/resnet50 in
lightly's repository), in the shape of its method modules (vicreg.py there): a LightningModule
built from (batch_size_per_device, num_classes), an online linear classifier, LARS with a cosine
schedule after a warm-up, and a module-level `transform`.

To run it beside lightly's methods, add two lines to that harness's main.py:

    from sfrik_plugin.hosts import lightly_benchmark as sfrik
    METHODS["sfrik"] = {"model": sfrik.SFRIK, "transform": sfrik.transform}

then `python main.py --methods sfrik vicreg ...` (README, "lightly"). The defaults are the paper's
ImageNet-1k setting (sfrik-method.md section 6): projector 8192-8192-32768, sim_w 40000, mmd_w 1,
b = (1, 40, 40), base lr 0.4 x batch / 256, weight decay 1e-6, 10 warm-up epochs, VICReg's views.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import Identity
from torchvision.models import resnet50

from .. import defaults
from .requirements import require_host

require_host("lightly")  # before lightly's imports, so that a missing or untested lightly names the fix

from lightly.models.modules.heads import VICRegProjectionHead  # noqa: E402
from lightly.models.utils import get_weight_decay_parameters  # noqa: E402
from lightly.transforms.vicreg_transform import VICRegTransform  # noqa: E402
from lightly.utils.benchmarking import OnlineLinearClassifier  # noqa: E402
from lightly.utils.lars import LARS  # noqa: E402
from lightly.utils.scheduler import CosineWarmupScheduler  # noqa: E402
from pytorch_lightning import LightningModule  # noqa: E402

from .lightly import SFRIKLoss  # noqa: E402

__all__ = ["SFRIK", "transform"]

# The paper's ImageNet-1k setting (official README): base lr 0.4, sim_w 40000, q = 32768.
BASE_LR = 0.4
SIM_LOSS_WEIGHT = 40000.0
WARMUP_EPOCHS = 10
END_LR_FACTOR = 0.001  # the official code's cosine ends at base lr x 0.001


class SFRIK(LightningModule):
    """SFRIK pretraining of a ResNet-50 with lightly's benchmark conventions.

    Args:
        batch_size_per_device: The harness's per-device batch (the lr follows the global batch).
        num_classes: Classes of the online linear classifier.
        proj_hidden_dim, proj_output_dim: Projector widths (q = proj_output_dim).
        sim_loss_weight, mmd_loss_weight, kernel_weights: SFRIK's loss (paper IN-1k defaults).
        base_lr: lr = base_lr x global batch / 256.
    """

    def __init__(
        self,
        batch_size_per_device: int,
        num_classes: int,
        proj_hidden_dim: int = 8192,
        proj_output_dim: int = 32768,
        sim_loss_weight: float = SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = defaults.SFRIK_MMD_LOSS_WEIGHT,
        kernel_weights: tuple[float, ...] = tuple(defaults.KERNEL_WEIGHTS),
        base_lr: float = BASE_LR,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size_per_device, int) or batch_size_per_device < 2:
            raise ValueError(f"batch_size_per_device must be an int >= 2, got {batch_size_per_device!r}")
        self.save_hyperparameters()
        self.batch_size_per_device = batch_size_per_device
        self.base_lr = base_lr

        resnet = resnet50()
        resnet.fc = Identity()  # the classification head is not pretrained
        self.backbone = resnet
        self.projection_head = VICRegProjectionHead(
            input_dim=2048, hidden_dim=proj_hidden_dim, output_dim=proj_output_dim, num_layers=3
        )
        # The regulariser's batch is the global one, as in the paper (2048 over 8 GPUs).
        self.criterion = SFRIKLoss(sim_loss_weight, mmd_loss_weight, kernel_weights, gather_distributed=True)
        self.online_classifier = OnlineLinearClassifier(num_classes=num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def training_step(self, batch: tuple[list[Tensor], Tensor, list[str]], batch_idx: int) -> Tensor:
        views, targets = batch[0], batch[1]
        features = self.forward(torch.cat(views)).flatten(start_dim=1)
        z = self.projection_head(features)
        z_a, z_b = z.chunk(len(views))
        terms = self.criterion.terms(z_a, z_b)
        self.log("train_loss", terms.loss, prog_bar=True, sync_dist=True, batch_size=len(targets))
        self.log_dict(
            {"train_invariance": terms.invariance, "train_mmd": terms.regulariser},
            sync_dist=True,
            batch_size=len(targets),
        )
        cls_loss, cls_log = self.online_classifier.training_step(
            (features.detach(), targets.repeat(len(views))), batch_idx
        )
        self.log_dict(cls_log, sync_dist=True, batch_size=len(targets))
        return terms.loss + cls_loss

    def validation_step(self, batch: tuple[Tensor, Tensor, list[str]], batch_idx: int) -> Tensor:
        images, targets = batch[0], batch[1]
        features = self.forward(images).flatten(start_dim=1)
        cls_loss, cls_log = self.online_classifier.validation_step((features.detach(), targets), batch_idx)
        self.log_dict(cls_log, prog_bar=True, sync_dist=True, batch_size=len(targets))
        return cls_loss

    def configure_optimizers(self) -> Any:
        # No weight decay on batch-norm and bias parameters nor on the online classifier.
        params, params_no_weight_decay = get_weight_decay_parameters([self.backbone, self.projection_head])
        global_batch_size = self.batch_size_per_device * self.trainer.world_size
        optimizer = LARS(
            [
                {"name": "sfrik", "params": params},
                {"name": "sfrik_no_weight_decay", "params": params_no_weight_decay, "weight_decay": 0.0},
                {"name": "online_classifier", "params": self.online_classifier.parameters(), "weight_decay": 0.0},
            ],
            lr=self.base_lr * global_batch_size / 256,
            momentum=0.9,
            weight_decay=1e-6,
        )
        steps = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = {
            "scheduler": CosineWarmupScheduler(
                optimizer=optimizer,
                warmup_epochs=min(int(steps / epochs * WARMUP_EPOCHS), steps),
                max_epochs=steps,
                end_value=END_LR_FACTOR,
            ),
            "interval": "step",
        }
        return [optimizer], [scheduler]


# VICReg's views, which the paper uses for SFRIK.
transform = VICRegTransform()
