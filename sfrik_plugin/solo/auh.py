"""AUH (alignment and uniformity on the hypersphere, as in the official SFRIK code) as a
solo-learn method (method: auh), written like solo.methods.vicreg."""

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from solo.utils.misc import omegaconf_select

from sfrik_plugin import defaults
from sfrik_plugin.losses import AUHLoss
from sfrik_plugin.solo import registration
from sfrik_plugin.solo.projected import (
    ProjectedMethod,
    build_loss,
)


def build_auh_loss(cfg: omegaconf.DictConfig) -> AUHLoss:
    """The loss of cfg.method_kwargs, the uniformity on the global batch (the official code)."""
    kwargs = cfg.method_kwargs
    return build_loss(
        "AUH",
        AUHLoss,
        sim_loss_weight=kwargs.sim_loss_weight,
        unif_loss_weight=kwargs.unif_loss_weight,
        t=kwargs.t,
        gather_distributed=True,
    )


class AUH(ProjectedMethod):
    METHOD_KWARGS = ("sim_loss_weight", "unif_loss_weight", "t")

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
                    No update is made from a non-finite step.
                non_finite_check_interval (int): steps between two host reads of the device-side
                    non-finite record (default 50; also read at the end of each epoch).
        """

        super().__init__(cfg)

        self.criterion = build_auh_loss(cfg)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """AUH's defaults (the official code's values) and checks, after ProjectedMethod's."""

        cfg = super(AUH, AUH).add_and_assert_specific_cfg(cfg)

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

        loss = build_auh_loss(cfg)  # the loss module's checks: a bad config fails before any data loads
        cfg.method_kwargs.sim_loss_weight = loss.sim_loss_weight
        cfg.method_kwargs.unif_loss_weight = loss.unif_loss_weight
        cfg.method_kwargs.t = loss.t

        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """BaseMethod's training step (batch: [indexes, [X per crop], Y]) plus the AUH loss;
        returns it plus the online classifier's loss (ProjectedMethod.log_and_check_terms)."""
        out = super().training_step(batch, batch_idx)
        class_loss = out["loss"]
        z1, z2 = out["z"]

        # ------- auh loss -------
        # uniformity on the global batch (all-gather with gradients), alignment on the local one
        terms = self.criterion.terms(z1, z2)

        return self.log_and_check_terms(batch_idx, "auh", "unif", terms, class_loss)


registration.register_pending()  # the import hook may have run while this module was half-imported
