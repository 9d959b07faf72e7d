"""SFRIK as a solo-learn method (method: sfrik), written like solo.methods.vicreg.

Needs solo-learn: import it only where solo is installed (registration.py does so lazily).
"""

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from solo.utils.misc import omegaconf_select

from sfrik_plugin import defaults
from sfrik_plugin.losses import SFRIKLoss
from sfrik_plugin.solo import registration
from sfrik_plugin.solo.projected import (
    ProjectedMethod,
    build_loss,
)

# method_kwargs that are SFRIKLoss options, under the same names
LOSS_OPTIONS = (
    "sim_loss_weight",
    "mmd_loss_weight",
    "kernel_weights",
    "mmd_impl",
    "mmd_tile_size",
    "shard_mmd",
    "gram_precision",
)


def build_sfrik_loss(cfg: omegaconf.DictConfig) -> SFRIKLoss:
    """The loss of cfg.method_kwargs; the regulariser on the global batch, like the official code
    (sharded: each process its own rows against the gathered batch, unless shard_mmd is false)."""
    return build_loss("SFRIK", SFRIKLoss, gather_distributed=True, **{k: cfg.method_kwargs[k] for k in LOSS_OPTIONS})


class SFRIK(ProjectedMethod):
    METHOD_KWARGS = (*LOSS_OPTIONS, "reg_small")

    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements SFRIK (https://arxiv.org/abs/2208.00789): invariance (mse between the
        L2-normalised views) plus the MMD to the uniform distribution on the sphere for the
        truncated Legendre kernel sum_l b_l P_l(q; u.v).

        Extra cfg settings:
            method_kwargs:
                proj_output_dim (int): number of dimensions q of the projected features.
                proj_hidden_dim (int): number of neurons in the hidden layers of the projector.
                sim_loss_weight (float): weight of the invariance term.
                mmd_loss_weight (float): weight of the MMD term.
                kernel_weights (List[float]): (b_1, ..., b_L), b_l >= 0; L = its length.
                reg_small (bool): with small crops, also regularise the small-crop embeddings.
                mmd_impl (str): how the MMD is computed: "dense" (n x n Gram matrix), "tiled"
                    (never the n x n matrix) or "auto" (the faster by size; default).
                mmd_tile_size (int | None): rows per tile (None: 512 on CPU, 4096 on CUDA).
                shard_mmd (bool): with several processes, each computes only its own rows of
                    the MMD against the gathered batch (default true; false: every process
                    computes the whole global MMD, the all-gather with gradients).
                gram_precision (str): precision of the MMD's Gram product: "float32" (default),
                    "tf32", "bf16" or "fp16" (rows rounded to it, products kept in float32; see
                    sfrik_plugin.precision and BENCHMARKS.md, "Gram precision").
                stop_on_non_finite (bool): stop training with an error naming the step and the
                    term when a loss term is NaN or Inf (default true; false: warn once, go on).
                    No update is made from a non-finite step.
                non_finite_check_interval (int): steps between two host reads of the device-side
                    non-finite record (default 50; also read at the end of each epoch).
        """

        super().__init__(cfg)

        self.reg_small: bool = cfg.method_kwargs.reg_small
        self.criterion = build_sfrik_loss(cfg)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """SFRIK's defaults (the paper's IN20% values) and checks, after ProjectedMethod's."""

        cfg = super(SFRIK, SFRIK).add_and_assert_specific_cfg(cfg)

        cfg.method_kwargs.sim_loss_weight = omegaconf_select(
            cfg, "method_kwargs.sim_loss_weight", defaults.SFRIK_SIM_LOSS_WEIGHT
        )
        cfg.method_kwargs.mmd_loss_weight = omegaconf_select(
            cfg, "method_kwargs.mmd_loss_weight", defaults.SFRIK_MMD_LOSS_WEIGHT
        )
        cfg.method_kwargs.kernel_weights = omegaconf_select(
            cfg, "method_kwargs.kernel_weights", list(defaults.KERNEL_WEIGHTS)
        )
        cfg.method_kwargs.reg_small = omegaconf_select(cfg, "method_kwargs.reg_small", False)
        cfg.method_kwargs.mmd_impl = omegaconf_select(cfg, "method_kwargs.mmd_impl", defaults.MMD_IMPL)
        cfg.method_kwargs.mmd_tile_size = omegaconf_select(cfg, "method_kwargs.mmd_tile_size", defaults.MMD_TILE_SIZE)
        cfg.method_kwargs.shard_mmd = omegaconf_select(cfg, "method_kwargs.shard_mmd", defaults.SHARD_MMD)
        cfg.method_kwargs.gram_precision = omegaconf_select(
            cfg, "method_kwargs.gram_precision", defaults.GRAM_PRECISION
        )
        reg_small = cfg.method_kwargs.reg_small
        if not isinstance(reg_small, bool):
            raise ValueError(f"SFRIK: method_kwargs.reg_small must be true or false, got {reg_small!r}")

        # The loss module's checks (finite, >= 0 weights; kernel weights >= 0 keep the kernel
        # positive definite): a bad config fails here, before any data is loaded.
        loss = build_sfrik_loss(cfg)
        cfg.method_kwargs.sim_loss_weight = loss.sim_loss_weight
        cfg.method_kwargs.mmd_loss_weight = loss.mmd_loss_weight
        cfg.method_kwargs.kernel_weights = list(loss.kernel_weights)

        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """BaseMethod's training step (batch: [indexes, [X per crop], Y]) plus the SFRIK loss;
        returns it plus the online classifier's loss (ProjectedMethod.log_and_check_terms)."""
        out = super().training_step(batch, batch_idx)
        class_loss = out["loss"]

        # ------- sfrik loss -------
        # the invariance on the local batch, the regulariser on the global batch
        if self.multicrop:
            terms = self.criterion.multicrop_terms(out["z"], self.num_large_crops, reg_small=self.reg_small)
        else:
            z1, z2 = out["z"]
            terms = self.criterion.terms(z1, z2)

        return self.log_and_check_terms(batch_idx, "sfrik", "mmd", terms, class_loss)


registration.register_pending()  # the import hook may have run while this module was half-imported
