"""SFRIK as a solo-learn method (method: sfrik), written like solo.methods.vicreg.

Needs solo-learn: import it only where solo is installed (registration.py does so lazily).
"""
from typing import Any, Dict, List, Sequence

import omegaconf
import torch
import torch.nn as nn
from solo.methods.base import BaseMethod
from solo.utils.misc import omegaconf_select

from sfrik_plugin.losses import SFRIKLoss, sfrik_loss_terms, sfrik_multicrop_loss_terms


def build_projector(features_dim: int, proj_hidden_dim: int, proj_output_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias: the projector of the official SFRIK
    code (valeoai/sfrik, ``Projector``), shared by every method it compares."""
    return nn.Sequential(
        nn.Linear(features_dim, proj_hidden_dim),
        nn.BatchNorm1d(proj_hidden_dim),
        nn.ReLU(),
        nn.Linear(proj_hidden_dim, proj_hidden_dim),
        nn.BatchNorm1d(proj_hidden_dim),
        nn.ReLU(),
        nn.Linear(proj_hidden_dim, proj_output_dim, bias=False),
    )


def assert_projector_cfg(cfg: omegaconf.DictConfig, method: str) -> None:
    """method_kwargs.proj_hidden_dim >= 1 and proj_output_dim >= 2 (the sphere S^(q-1) needs q >= 2)."""
    for key, minimum in (("proj_hidden_dim", 1), ("proj_output_dim", 2)):
        path = f"method_kwargs.{key}"
        value = omegaconf.OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if value is None:
            raise ValueError(f"{method}: {path} must be set (an integer >= {minimum})")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{method}: {path} must be an integer >= {minimum}, got {value!r}")


def check_loss_kwargs(method: str, loss_class, **kwargs):
    """Builds loss_class(**kwargs) only for its argument checks, naming the config block in errors."""
    try:
        return loss_class(**kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{method} method_kwargs: {err}") from err


class SFRIK(BaseMethod):
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
        """

        super().__init__(cfg)

        self.sim_loss_weight: float = cfg.method_kwargs.sim_loss_weight
        self.mmd_loss_weight: float = cfg.method_kwargs.mmd_loss_weight
        self.kernel_weights: List[float] = list(cfg.method_kwargs.kernel_weights)
        self.reg_small: bool = cfg.method_kwargs.reg_small

        self.projector = build_projector(
            self.features_dim, cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim
        )

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

        cfg.method_kwargs.sim_loss_weight = omegaconf_select(cfg, "method_kwargs.sim_loss_weight", 4000.0)
        cfg.method_kwargs.mmd_loss_weight = omegaconf_select(cfg, "method_kwargs.mmd_loss_weight", 1.0)
        cfg.method_kwargs.kernel_weights = omegaconf_select(
            cfg, "method_kwargs.kernel_weights", [1.0, 40.0, 40.0]
        )
        cfg.method_kwargs.reg_small = omegaconf_select(cfg, "method_kwargs.reg_small", False)
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
        )
        cfg.method_kwargs.sim_loss_weight = loss.sim_loss_weight
        cfg.method_kwargs.mmd_loss_weight = loss.mmd_loss_weight
        cfg.method_kwargs.kernel_weights = list(loss.kernel_weights)

        return cfg

    @property
    def learnable_params(self) -> List[dict]:
        """Adds projector parameters to the parent's learnable parameters.

        Returns:
            List[dict]: list of learnable parameters.
        """

        extra_learnable_params = [{"name": "projector", "params": self.projector.parameters()}]
        return super().learnable_params + extra_learnable_params

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        """Performs the forward pass of the backbone and the projector.

        Args:
            X (torch.Tensor): a batch of images in the tensor format.

        Returns:
            Dict[str, Any]: a dict containing the outputs of the parent and the projected features.
        """

        out = super().forward(X)
        z = self.projector(out["feats"])
        out.update({"z": z})
        return out

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        """Performs the forward pass of the backbone and the projector for the small crops.

        Args:
            X (torch.Tensor): a batch of images in the tensor format.

        Returns:
            Dict[str, Any]: a dict containing the outputs of the parent and the projected features.
        """

        out = super().multicrop_forward(X)
        z = self.projector(out["feats"])
        out.update({"z": z})
        return out

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
        # the regulariser is computed on the global batch (all-gather with gradients), like
        # the official code; the invariance on the local batch
        loss_kwargs = dict(
            sim_loss_weight=self.sim_loss_weight,
            mmd_loss_weight=self.mmd_loss_weight,
            kernel_weights=self.kernel_weights,
            gather_distributed=True,
        )
        if self.multicrop:
            terms = sfrik_multicrop_loss_terms(
                out["z"], self.num_large_crops, reg_small=self.reg_small, **loss_kwargs
            )
        else:
            z1, z2 = out["z"]
            terms = sfrik_loss_terms(z1, z2, **loss_kwargs)

        metrics = {
            "train_sfrik_loss": terms.loss.detach(),
            "train_invariance": terms.invariance.detach(),
            "train_regulariser": terms.regulariser.detach(),
        }
        self.log_dict(metrics, on_epoch=True, sync_dist=True)

        return terms.loss + class_loss
