"""SFRIK and AUH in stable-pretraining's conventions (galilai-group/stable-pretraining, METHODS.md):

- forward functions ``sfrik(self, batch, stage)`` and ``auh(...)`` for ``spt.Module``, as
  ``stable_pretraining.forward.vicreg`` (the Module holds backbone, projector and sfrik_loss or
  auh_loss);
- method classes ``SFRIK`` and ``AUH`` (``spt.Module`` subclasses, as ``spt.methods.VICReg``:
  ``forward(view1, view2=None)`` returns an ``SFRIKOutput``), trained through
  ``spt.Module(model=..., forward=method_forward)``;
- the losses: the library's ``SFRIKLoss`` and ``AUHLoss`` themselves (two views ``(z_i, z_j)``, the
  regulariser on the global batch under torch.distributed, as stable-pretraining's losses gather);
- LeJEPA with SFRIK's MMD in SIGReg's place: ``lejepa_with_sphere_mmd(...)``.

    module = spt.Module(forward=sfrik, backbone=backbone, projector=build_projector(512, 2048, 2048),
                        sfrik_loss=SFRIKLoss(), optim={"optimizer": {"type": "LARS", "lr": 0.3}})

Importing this module checks the installed stable-pretraining and lightning (hosts.requirements)
and stops with a HostError naming the fix when one is missing or untested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import defaults
from ..losses import AUHLoss, LossTerms, SFRIKLoss
from ..projector import build_projector
from ..sphere_autograd import to_sphere
from ..sphere_mmd import LEJEPA_WEIGHT, SphereMMD
from ..validation import Coeffs, check_bool, check_int, check_weight
from .requirements import require_host

require_host("stable-pretraining")  # before its imports, so that a missing or untested one names the fix

from stable_pretraining import Module  # noqa: E402
from stable_pretraining.backbone import from_timm  # noqa: E402
from stable_pretraining.methods.lejepa import LeJEPA  # noqa: E402
from transformers.utils import ModelOutput  # noqa: E402  (stable-pretraining's outputs)

__all__ = [
    "sfrik",
    "auh",
    "method_forward",
    "SFRIK",
    "AUH",
    "SFRIKOutput",
    "SFRIKLoss",
    "AUHLoss",
    "SphereMMD",
    "lejepa_with_sphere_mmd",
    "LEJEPA_SPHERE_LAMB",
]

PAPER_PROJECTOR_DIMS = (8192, 8192, 8192)  # the paper's IN20% projector (IN100: output 32768)

# ---------------------------------------------------------------------------------------------
# The batch as stable-pretraining's data pipeline gives it


def _views(batch: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The two views of a MultiViewTransform batch, or None for a single-view batch (evaluation)."""
    if not isinstance(batch, dict):
        raise TypeError(f"batch must be a dict (stable-pretraining's samples), got {type(batch).__name__}")
    if "views" in batch:
        views = list(batch["views"])
    elif "image" in batch:
        return None
    else:  # named views (a dict MultiViewTransform); the Module adds batch_idx beside them
        views = [v for v in batch.values() if isinstance(v, dict)]
    if len(views) != 2 or not all(isinstance(v, dict) and "image" in v for v in views):
        raise ValueError(
            f"SFRIK and AUH take exactly 2 views (dicts with 'image'), got {len(views)}: use a MultiViewTransform "
            "of two transforms for training, or a batch with 'image' for evaluation"
        )
    return views


def _labels(out: dict[str, Any], views: list[dict[str, Any]]) -> None:
    if "label" in views[0]:  # one per embedding row, for OnlineProbe and OnlineKNN
        out["label"] = torch.cat([view["label"] for view in views], dim=0)


def _log_terms(module: Module, stage: str, views: list[dict[str, Any]], output: Any) -> None:
    batch_size = len(views[0]["image"])  # stated: Lightning cannot infer it from a batch of view dicts
    for key, value in (("loss", output.loss), ("invariance", output.invariance), ("regulariser", output.regulariser)):
        module.log(f"{stage}/{key}", value.detach(), on_step=True, on_epoch=True, sync_dist=True, batch_size=batch_size)


def _part(module: nn.Module, name: str, kind: type | tuple[type, ...], usage: str) -> Any:
    part = getattr(module, name, None)
    if not isinstance(part, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise AttributeError(f"the Module's {name} must be a {expected} (got {type(part).__name__}): {usage}")
    return part


def _two_view_forward(module: Module, batch: dict[str, Any], stage: str, forward: str, loss_class: type) -> dict:
    loss_name = f"{forward}_loss"
    usage = f"spt.Module(forward={forward}, backbone=..., projector=..., {loss_name}={loss_class.__name__}())"
    backbone = _part(module, "backbone", nn.Module, usage)
    views = _views(batch)
    if views is None:  # single-view evaluation: the embedding only
        out = {"embedding": backbone(batch["image"])}
        if "label" in batch:
            out["label"] = batch["label"]
        return out
    loss_fn = _part(module, loss_name, loss_class, usage)
    projector = _part(module, "projector", nn.Module, usage)
    embeddings = [backbone(view["image"]) for view in views]
    out = {"embedding": torch.cat(embeddings, dim=0)}
    _labels(out, views)
    if module.training:
        terms: LossTerms = loss_fn.terms(projector(embeddings[0]), projector(embeddings[1]))
        out["loss"] = terms.loss
        _log_terms(module, stage, views, terms)
    return out


def sfrik(self: Module, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
    """Forward function for SFRIK (invariance + MMD to the uniform distribution on the sphere).

    Args:
        self: The spt.Module (bound), built with backbone, projector and sfrik_loss (an SFRIKLoss).
        batch: Two views from a MultiViewTransform (training), or a batch with "image" (evaluation).
        stage: The stage name, used in the logged keys.

    Returns:
        "embedding" (the backbone features of both views concatenated, [2B, D]), "label" when the
        batch has labels, and in training "loss"; logs f"{stage}/loss", f"{stage}/invariance" and
        f"{stage}/regulariser".
    """
    return _two_view_forward(self, batch, stage, "sfrik", SFRIKLoss)


def auh(self: Module, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
    """Forward function for AUH (invariance + Wang and Isola's uniformity on the sphere); as sfrik,
    with auh_loss (an AUHLoss) in the Module."""
    return _two_view_forward(self, batch, stage, "auh", AUHLoss)


# ---------------------------------------------------------------------------------------------
# Method classes


@dataclass
class SFRIKOutput(ModelOutput):
    """Output of SFRIK's (and AUH's) forward.

    :ivar loss: the loss (0 in evaluation)
    :ivar embedding: backbone features [B, D] (evaluation) or [2B, D] (training)
    :ivar projection: projector outputs [2B, P] (None in evaluation)
    :ivar invariance: the unweighted invariance mse(u1, u2) (None in evaluation)
    :ivar regulariser: the unweighted regulariser: SFRIK's MMD, AUH's uniformity (None in evaluation)
    """

    loss: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    projection: torch.Tensor | None = None
    invariance: torch.Tensor | None = None
    regulariser: torch.Tensor | None = None


def _feature_dim(backbone: nn.Module, image_size: int) -> int:
    """The backbone's feature size from one zero image, in eval mode (BatchNorm's running
    statistics untouched)."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, image_size, image_size))
    finally:
        backbone.train(was_training)
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError(
            "the backbone must return features (batch, D) (e.g. its classifier replaced by nn.Identity), got "
            + (f"shape {tuple(features.shape)}" if isinstance(features, torch.Tensor) else type(features).__name__)
        )
    return features.shape[1]


class _TwoViewMethod(Module):
    """What SFRIK and AUH share: a backbone, the official projector, a two-view loss."""

    def __init__(
        self,
        encoder_name: str | nn.Module,
        projector_dims: Sequence[int],
        low_resolution: bool,
        pretrained: bool,
        embed_dim: int | None,
    ) -> None:
        super().__init__()
        check_bool(low_resolution, "low_resolution")
        check_bool(pretrained, "pretrained")
        if isinstance(encoder_name, str):
            self.backbone = from_timm(
                encoder_name,
                num_classes=0,
                low_resolution=low_resolution,
                pretrained=pretrained,
            )
        elif isinstance(encoder_name, nn.Module):
            if pretrained:  # the weights are the given module's
                raise ValueError("pretrained=True loads timm weights: give encoder_name as a timm model name")
            self.backbone = encoder_name
        else:
            raise TypeError(
                f"encoder_name must be a timm model name or an nn.Module, got {type(encoder_name).__name__}"
            )
        dims = tuple(projector_dims)
        if len(dims) != 3 or dims[0] != dims[1]:
            raise ValueError(
                "projector_dims must be (hidden, hidden, output), the official projector's Linear-BN-ReLU x 2 + "
                f"Linear, got {dims}"
            )
        for i, dim in enumerate(dims):
            check_int(dim, f"projector_dims[{i}]", 1)
        if embed_dim is None:
            embed_dim = _feature_dim(self.backbone, 32 if low_resolution else 224)
        self.embed_dim = check_int(embed_dim, "embed_dim", 1)
        self.projector = build_projector(self.embed_dim, dims[0], dims[2])

    def _loss(self) -> SFRIKLoss | AUHLoss:
        raise NotImplementedError

    def forward(self, view1: torch.Tensor, view2: torch.Tensor | None = None) -> SFRIKOutput:
        if view2 is None:
            embedding = self.backbone(view1)
            return SFRIKOutput(
                loss=torch.zeros((), device=embedding.device, dtype=embedding.dtype), embedding=embedding
            )
        h1, h2 = self.backbone(view1), self.backbone(view2)
        z1, z2 = self.projector(h1), self.projector(h2)
        terms = self._loss().terms(z1, z2)
        return SFRIKOutput(
            loss=terms.loss,
            embedding=torch.cat([h1, h2], dim=0),
            projection=torch.cat([z1, z2], dim=0),
            invariance=terms.invariance,
            regulariser=terms.regulariser,
        )


class SFRIK(_TwoViewMethod):
    """SFRIK: invariance + the MMD to the uniform distribution on the sphere under a truncated
    Legendre kernel (Zheng et al., "Self-supervised learning with rotation-invariant kernels", ICLR 2023).

    :param encoder_name: timm model name or a built ``nn.Module`` returning features (B, D).
    :param projector_dims: (hidden, hidden, output) of the official projector (Linear-BN-ReLU x 2,
        Linear without bias); default the paper's (8192, 8192, 8192).
    :param sim_loss_weight, mmd_loss_weight, kernel_weights: SFRIK's loss (the paper's IN20% values).
    :param gather_distributed: the MMD on the global batch under torch.distributed (default True,
        as stable-pretraining's losses gather).
    :param low_resolution: adapt a ResNet's first conv for 32x32 inputs (CIFAR-style).
    :param pretrained: load pretrained timm weights.
    :param embed_dim: the backbone's feature size (default: probed with a 3-channel zero image of
        32 px with low_resolution, else 224 px).
    :param mmd_options: mmd_impl, mmd_tile_size, shard_mmd, gram_precision (sfrik_plugin.SFRIKLoss).
    """

    def __init__(
        self,
        encoder_name: str | nn.Module = "resnet50",
        projector_dims: Sequence[int] = PAPER_PROJECTOR_DIMS,
        sim_loss_weight: float = defaults.SFRIK_SIM_LOSS_WEIGHT,
        mmd_loss_weight: float = defaults.SFRIK_MMD_LOSS_WEIGHT,
        kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
        gather_distributed: bool = True,
        low_resolution: bool = False,
        pretrained: bool = False,
        embed_dim: int | None = None,
        **mmd_options: Any,
    ) -> None:
        # the loss first: its checks are cheap and refuse bad options before the backbone is built
        loss = SFRIKLoss(sim_loss_weight, mmd_loss_weight, kernel_weights, gather_distributed, **mmd_options)
        super().__init__(encoder_name, projector_dims, low_resolution, pretrained, embed_dim)
        self.sfrik_loss = loss

    def _loss(self) -> SFRIKLoss:
        return self.sfrik_loss


class AUH(_TwoViewMethod):
    """AUH: invariance + Wang and Isola's uniformity on the sphere, as in the official SFRIK code.

    Parameters as SFRIK's, with the loss's sim_loss_weight, unif_loss_weight and t (the official
    code's defaults) in place of SFRIK's.
    """

    def __init__(
        self,
        encoder_name: str | nn.Module = "resnet50",
        projector_dims: Sequence[int] = PAPER_PROJECTOR_DIMS,
        sim_loss_weight: float = defaults.AUH_SIM_LOSS_WEIGHT,
        unif_loss_weight: float = defaults.AUH_UNIF_LOSS_WEIGHT,
        t: float = defaults.AUH_T,
        gather_distributed: bool = True,
        low_resolution: bool = False,
        pretrained: bool = False,
        embed_dim: int | None = None,
    ) -> None:
        loss = AUHLoss(sim_loss_weight, unif_loss_weight, t, gather_distributed)
        super().__init__(encoder_name, projector_dims, low_resolution, pretrained, embed_dim)
        self.auh_loss = loss

    def _loss(self) -> AUHLoss:
        return self.auh_loss


def method_forward(self: Module, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
    """Forward function of an spt.Module whose ``model`` is an SFRIK or AUH method class:

        module = spt.Module(model=SFRIK("resnet18", low_resolution=True), forward=method_forward, optim=...)

    Returns and logs what sfrik does.
    """
    model = _part(self, "model", (SFRIK, AUH), "spt.Module(model=SFRIK(...), forward=method_forward, optim=...)")
    views = _views(batch)
    if views is None:
        out = {"embedding": model(batch["image"]).embedding}
        if "label" in batch:
            out["label"] = batch["label"]
        return out
    output = model(views[0]["image"], views[1]["image"])
    out = {"embedding": output.embedding}
    _labels(out, views)
    if self.training:
        out["loss"] = output.loss
        _log_terms(self, stage, views, output)
    return out


# ---------------------------------------------------------------------------------------------
# LeJEPA with SFRIK's MMD in SIGReg's place

# LeJEPA's lamb for SphereMMD on sphere projections (sphere_mmd.LEJEPA_WEIGHT: derived, not tuned).
LEJEPA_SPHERE_LAMB = LEJEPA_WEIGHT


class _ToSphere(nn.Module):
    """Rows L2-normalised (the library's normalisation)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_sphere(z)


def lejepa_with_sphere_mmd(
    encoder_name: str = "vit_base_patch16_224",
    *,
    lamb: float = LEJEPA_SPHERE_LAMB,
    kernel_weights: Coeffs = defaults.KERNEL_WEIGHTS,
    gather_distributed: bool = True,
    sphere_projections: bool = True,
    mmd_options: dict[str, Any] | None = None,
    **lejepa_kwargs: Any,
) -> LeJEPA:
    """stable-pretraining's LeJEPA with ``model.sigreg = SphereMMD(...)``: LeJEPA._compute_loss
    unchanged calls it on all views' projections (V*N, K) and adds lamb times it to the invariance.

    Args:
        encoder_name, lejepa_kwargs: LeJEPA's (a timm ViT name; projector, drop_path_rate, ...).
        lamb: The regulariser's weight (SphereMMD's scale is not SIGReg's: LeJEPA's 0.02 does not
            carry over); default LEJEPA_SPHERE_LAMB.
        kernel_weights, mmd_options: SphereMMD's.
        gather_distributed: The MMD of the global batch under torch.distributed (default True: what
            SlicedEppsPulley does, all-reducing its statistics when torch.distributed is initialised).
        sphere_projections: End the projector with an L2 normalisation, so that the invariance is
            measured on the sphere too. SphereMMD sees only directions; on raw projections the
            invariance could be made as small as wished by shrinking them, which SIGReg's Gaussian
            target forbids and SphereMMD does not.
    """
    sigreg_only = sorted({"n_slices", "t_max", "n_points"} & lejepa_kwargs.keys())
    if sigreg_only:  # they would configure the SIGReg that SphereMMD replaces
        raise TypeError(f"lejepa_with_sphere_mmd has no slices nor Epps-Pulley quadrature: remove {sigreg_only}")
    lamb = check_weight(lamb, "lamb")
    sigreg = SphereMMD(kernel_weights, check_bool(gather_distributed, "gather_distributed"), **(mmd_options or {}))
    model = LeJEPA(encoder_name, lamb=lamb, **lejepa_kwargs)
    model.sigreg = sigreg
    if check_bool(sphere_projections, "sphere_projections"):
        model.projector = nn.Sequential(model.projector, _ToSphere())
    return model
