"""What SFRIK and AUH share as solo-learn methods: the official code's projector, its config
checks, and the forward passes that add the projected features z (as solo's methods do).

Needs solo-learn: imported only where solo is installed.
"""
from typing import Any, Dict, List

import omegaconf
import torch
import torch.nn as nn
from solo.methods.base import BaseMethod


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


class ProjectedMethod(BaseMethod):
    """A BaseMethod with the projector above on top of the backbone: z = projector(feats)."""

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self.projector = build_projector(
            self.features_dim, cfg.method_kwargs.proj_hidden_dim, cfg.method_kwargs.proj_output_dim
        )

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
