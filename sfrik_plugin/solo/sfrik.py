"""SFRIK as a solo-learn method (method: sfrik), written like solo.methods.vicreg.

Needs solo-learn: import it only where solo is installed (registration.py does so lazily).
"""

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from solo.utils.misc import omegaconf_select

from sfrik_plugin import defaults
from sfrik_plugin.losses import SFRIKLoss, sfrik_loss_terms, sfrik_multicrop_loss_terms
from sfrik_plugin.solo.projected import (
    ProjectedMethod,
    assert_projector_cfg,
    assert_stop_on_non_finite_cfg,
    check_loss_kwargs,
)


class SFRIK(ProjectedMethod):
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
        """

        super().__init__(cfg)

        self.sim_loss_weight: float = cfg.method_kwargs.sim_loss_weight
        self.mmd_loss_weight: float = cfg.method_kwargs.mmd_loss_weight
        self.kernel_weights: list[float] = list(cfg.method_kwargs.kernel_weights)
        self.reg_small: bool = cfg.method_kwargs.reg_small
        self.mmd_impl: str = cfg.method_kwargs.mmd_impl
        self.mmd_tile_size = cfg.method_kwargs.mmd_tile_size
        self.shard_mmd: bool = cfg.method_kwargs.shard_mmd
        self.gram_precision: str = cfg.method_kwargs.gram_precision

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Adds method specific default values/checks for config (defaults: the paper's IN20%
        setting).

        Args:
            cfg (omegaconf.DictConfig): DictConfig object.

        Returns:
            omegaconf.DictConfig: same as the argument, used to avoid errors.
        """

        cfg = super(SFRIK, SFRIK).add_and_assert_specific_cfg(cfg)

        assert_projector_cfg(cfg, "SFRIK")
        assert_stop_on_non_finite_cfg(cfg, "SFRIK")

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
        cfg.method_kwargs.mmd_impl = omegaconf_select(cfg, "method_kwargs.mmd_impl", "auto")
        cfg.method_kwargs.mmd_tile_size = omegaconf_select(cfg, "method_kwargs.mmd_tile_size", None)
        cfg.method_kwargs.shard_mmd = omegaconf_select(cfg, "method_kwargs.shard_mmd", True)
        cfg.method_kwargs.gram_precision = omegaconf_select(cfg, "method_kwargs.gram_precision", "float32")
        reg_small = cfg.method_kwargs.reg_small
        if not isinstance(reg_small, bool):
            raise ValueError(f"SFRIK: method_kwargs.reg_small must be true or false, got {reg_small!r}")

        # The loss module's checks (finite, >= 0 weights; kernel weights >= 0 keep the kernel
        # positive definite): a bad config fails here, before any data is loaded.
        loss = check_loss_kwargs(
            "SFRIK",
            SFRIKLoss,
            sim_loss_weight=cfg.method_kwargs.sim_loss_weight,
            mmd_loss_weight=cfg.method_kwargs.mmd_loss_weight,
            kernel_weights=cfg.method_kwargs.kernel_weights,
            mmd_impl=cfg.method_kwargs.mmd_impl,
            tile_size=cfg.method_kwargs.mmd_tile_size,
            shard=cfg.method_kwargs.shard_mmd,
            gram_precision=cfg.method_kwargs.gram_precision,
        )
        cfg.method_kwargs.sim_loss_weight = loss.sim_loss_weight
        cfg.method_kwargs.mmd_loss_weight = loss.mmd_loss_weight
        cfg.method_kwargs.kernel_weights = list(loss.kernel_weights)

        return cfg

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """Training step for SFRIK reusing BaseMethod training step.

        Args:
            batch (Sequence[Any]): a batch of data in the format of [img_indexes, [X], Y], where
                [X] is a list of size num_crops containing batches of images.
            batch_idx (int): index of the batch.

        Returns:
            torch.Tensor: total loss composed of SFRIK loss and classification loss.
        """

        out = super().training_step(batch, batch_idx)
        class_loss = out["loss"]

        # ------- sfrik loss -------
        # the regulariser is computed on the global batch, like the official code (sharded:
        # each process its own rows against the gathered batch, unless shard_mmd is false); the
        # invariance on the local batch
        loss_kwargs = dict(
            sim_loss_weight=self.sim_loss_weight,
            mmd_loss_weight=self.mmd_loss_weight,
            kernel_weights=self.kernel_weights,
            gather_distributed=True,
            mmd_impl=self.mmd_impl,
            tile_size=self.mmd_tile_size,
            shard=self.shard_mmd,
            gram_precision=self.gram_precision,
        )
        if self.multicrop:
            terms = sfrik_multicrop_loss_terms(out["z"], self.num_large_crops, reg_small=self.reg_small, **loss_kwargs)
        else:
            z1, z2 = out["z"]
            terms = sfrik_loss_terms(z1, z2, **loss_kwargs)

        metrics = {
            "train_sfrik_loss": terms.loss.detach(),
            "train_invariance": terms.invariance.detach(),
            "train_regulariser": terms.regulariser.detach(),
        }
        self.log_dict(metrics, on_epoch=True, sync_dist=True)
        self.check_finite(
            batch_idx,
            [
                ("invariance (sim)", terms.invariance),
                ("regulariser (mmd)", terms.regulariser),
                ("weighted sum (sfrik loss)", terms.loss),
                ("online classifier loss", class_loss),
            ],
        )

        return terms.loss + class_loss
