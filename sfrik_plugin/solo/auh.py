"""AUH (alignment and uniformity on the hypersphere, as in the official SFRIK code) as a
solo-learn method (method: auh), written like solo.methods.vicreg."""

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from solo.utils.misc import omegaconf_select

from sfrik_plugin import defaults
from sfrik_plugin.losses import AUHLoss, auh_loss_terms
from sfrik_plugin.solo.projected import (
    ProjectedMethod,
    assert_projector_cfg,
    assert_stop_on_non_finite_cfg,
    check_loss_kwargs,
)


class AUH(ProjectedMethod):
    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements AUH (Wang and Isola, https://arxiv.org/abs/2005.10242) in the form the SFRIK
        paper compares: sim_loss_weight * mse of the L2-normalised views + unif_loss_weight * the
        mean over both views of log mean_{i != j} exp(-2 t (1 - u_i . u_j)).

        Extra cfg settings:
            method_kwargs:
                proj_output_dim (int): number of dimensions of the projected features.
                proj_hidden_dim (int): number of neurons in the hidden layers of the projector.
                sim_loss_weight (float): weight of the invariance (alignment) term.
                unif_loss_weight (float): weight of the uniformity term.
                t (float): scale of the Gaussian kernel, > 0.
                stop_on_non_finite (bool): stop training with an error naming the step and the
                    term when a loss term is NaN or Inf (default true; false: warn once, go on).
        """

        super().__init__(cfg)

        self.sim_loss_weight: float = cfg.method_kwargs.sim_loss_weight
        self.unif_loss_weight: float = cfg.method_kwargs.unif_loss_weight
        self.t: float = cfg.method_kwargs.t

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Adds method specific default values/checks for config (defaults: the paper's IN20%
        values).

        Args:
            cfg (omegaconf.DictConfig): DictConfig object.

        Returns:
            omegaconf.DictConfig: same as the argument, used to avoid errors.
        """

        cfg = super(AUH, AUH).add_and_assert_specific_cfg(cfg)

        assert_projector_cfg(cfg, "AUH")
        assert_stop_on_non_finite_cfg(cfg, "AUH")

        # the official code has no multi-crop AUH: fail before training rather than silently
        # dropping the small crops
        num_small_crops = omegaconf_select(cfg, "data.num_small_crops", 0)
        if num_small_crops:
            raise ValueError(f"AUH: two views only (num_small_crops must be 0, got {num_small_crops})")

        cfg.method_kwargs.sim_loss_weight = omegaconf_select(
            cfg, "method_kwargs.sim_loss_weight", defaults.AUH_SIM_LOSS_WEIGHT
        )
        cfg.method_kwargs.unif_loss_weight = omegaconf_select(
            cfg, "method_kwargs.unif_loss_weight", defaults.AUH_UNIF_LOSS_WEIGHT
        )
        cfg.method_kwargs.t = omegaconf_select(cfg, "method_kwargs.t", defaults.AUH_T)

        loss = check_loss_kwargs(
            "AUH",
            AUHLoss,
            sim_loss_weight=cfg.method_kwargs.sim_loss_weight,
            unif_loss_weight=cfg.method_kwargs.unif_loss_weight,
            t=cfg.method_kwargs.t,
        )
        cfg.method_kwargs.sim_loss_weight = loss.sim_loss_weight
        cfg.method_kwargs.unif_loss_weight = loss.unif_loss_weight
        cfg.method_kwargs.t = loss.t

        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """Training step for AUH reusing BaseMethod training step.

        Args:
            batch (Sequence[Any]): a batch of data in the format of [img_indexes, [X], Y], where
                [X] is a list of size num_crops containing batches of images.
            batch_idx (int): index of the batch.

        Returns:
            torch.Tensor: total loss composed of AUH loss and classification loss.
        """

        out = super().training_step(batch, batch_idx)
        class_loss = out["loss"]
        z1, z2 = out["z"]

        # ------- auh loss -------
        # uniformity on the global batch (all-gather with gradients), alignment on the local one
        terms = auh_loss_terms(
            z1,
            z2,
            sim_loss_weight=self.sim_loss_weight,
            unif_loss_weight=self.unif_loss_weight,
            t=self.t,
            gather_distributed=True,
        )

        metrics = {
            "train_auh_loss": terms.loss.detach(),
            "train_invariance": terms.invariance.detach(),
            "train_regulariser": terms.regulariser.detach(),
        }
        self.log_dict(metrics, on_epoch=True, sync_dist=True)
        self.check_finite(
            batch_idx,
            [
                ("invariance (sim)", terms.invariance),
                ("regulariser (unif)", terms.regulariser),
                ("weighted sum (auh loss)", terms.loss),
                ("online classifier loss", class_loss),
            ],
        )

        return terms.loss + class_loss
