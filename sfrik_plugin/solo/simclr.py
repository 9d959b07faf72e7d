"""SimCLR with the projector the official SFRIK code shares between every method it compares
(method: simclr_shared), as a solo-learn method.

solo-learn's own ``simclr`` has a Linear-ReLU-Linear projector without batch norm; the paper's
SimCLR values (IN20%: base lr 0.8, temperature 0.15, 46.1 % linear top-1) were tuned with the
shared Linear-BN-ReLU, Linear-BN-ReLU, Linear (no bias) projector. The loss is solo's
simclr_loss_func (NT-Xent over the gathered global batch), as solo's SimCLR computes it.

Needs solo-learn: import it only where solo is installed (registration.py does so lazily).
"""

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from solo.losses.simclr import simclr_loss_func

from sfrik_plugin.solo import registration
from sfrik_plugin.solo.projected import ProjectedMethod


class SimCLRShared(ProjectedMethod):
    METHOD_KWARGS = ("temperature",)

    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements SimCLR (https://arxiv.org/abs/2002.05709) with the shared projector.

        Extra cfg settings:
            method_kwargs:
                proj_output_dim (int): number of dimensions of the projected features.
                proj_hidden_dim (int): number of neurons in the hidden layers of the projector.
                temperature (float): temperature of the softmax in the contrastive loss, > 0.
                stop_on_non_finite (bool): stop training with an error naming the step and the
                    term when a loss term is NaN or Inf (default true; false: warn once, go on).
                    No update is made from a non-finite step.
                non_finite_check_interval (int): steps between two host reads of the device-side
                    non-finite record (default 50; also read at the end of each epoch).
        """

        super().__init__(cfg)

        self.temperature: float = cfg.method_kwargs.temperature

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """SimCLR's temperature check, after ProjectedMethod's."""

        cfg = super(SimCLRShared, SimCLRShared).add_and_assert_specific_cfg(cfg)

        temperature = omegaconf.OmegaConf.select(cfg, "method_kwargs.temperature", default=None)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"SimCLRShared: method_kwargs.temperature must be a number > 0, got {temperature!r}")
        cfg.method_kwargs.temperature = float(temperature)

        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """BaseMethod's training step (batch: [indexes, [X per crop], Y]) plus solo's SimCLR loss
        of every crop; returns it plus the online classifier's loss."""
        indexes = batch[0]

        out = super().training_step(batch, batch_idx)
        class_loss = out["loss"]
        z = torch.cat(out["z"])

        # every crop of an image shares its index: the positives of each row
        n_augs = self.num_large_crops + self.num_small_crops
        nce_loss = simclr_loss_func(z, indexes=indexes.repeat(n_augs), temperature=self.temperature)

        self.log("train_nce_loss", nce_loss, on_epoch=True, sync_dist=True)
        self.check_finite(batch_idx, [("nce loss", nce_loss), ("online classifier loss", class_loss)])

        return nce_loss + class_loss


registration.register_pending()  # the import hook may have run while this module was half-imported
