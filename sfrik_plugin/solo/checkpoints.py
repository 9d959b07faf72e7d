"""Backbone weights in and out of checkpoints: the official SFRIK formats, solo-learn's .ckpt,
architecture inference from state-dict keys, and strict loading (missing or unexpected keys are
an error that names them, never a silently random backbone).

Official formats (valeoai/sfrik, main_ssl_methods.py):
- the released backbone ``.pth``: ``model.module.backbone.state_dict()``, a plain state dict with
  torchvision's ResNet keys (VICReg's ResNet code, no ``fc``);
- the full ``last_ckp.pth``: ``{"model": DDP state dict, "optimizer": ..., "epoch": ...}`` whose
  model keys carry DDP's ``module.`` prefix: ``module.backbone.*`` and ``module.projector.*``.

solo-learn's .ckpt holds ``state_dict`` with ``backbone.*`` (and the method's ``projector.*``).
Needs torch; solo-learn only where a backbone is built (build_backbone).
"""

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

# (block type, blocks per stage) -> solo-learn backbone name (solo.methods.base.BaseMethod._BACKBONES)
RESNET_LAYOUTS: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
}
# torchvision layouts solo-learn has no backbone for: named in the refusal
OTHER_RESNETS: dict[tuple[str, tuple[int, ...]], str] = {
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
SOLO_FORMAT = "solo-learn / Lightning checkpoint"  # split_official's info["format"] of a .ckpt with state_dict
PROJECTOR_LINEAR_INDEXES = (0, 3, 6)  # sfrik_plugin.projector.build_projector: Linear at 0, 3, 6


class CheckpointFormatError(ValueError):
    """A checkpoint or state dict that is not what the caller needs (the message says why)."""


def _preview(keys, limit: int = 8) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def torch_load(path, what: str = "checkpoint"):
    """torch.load on the CPU with weights_only=True (tensors and plain containers only), with the
    file named in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointFormatError(
            f"cannot read {what} {str(path)!r} as a torch checkpoint of tensors (torch.load weights_only=True): {err}"
        ) from err


def _tensor_dict(obj, where: str) -> "OrderedDict[str, torch.Tensor]":
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointFormatError(
            f"{where}: expected a non-empty state dict (name -> tensor), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointFormatError(
            f"{where}: not a state dict: entries that are not name -> tensor: {_preview(map(str, bad))}"
        )
    return OrderedDict(obj)


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))


def split_official(obj, where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict | None, dict]:
    """(backbone state, projector state or None, info) from any of: the official backbone .pth,
    the official full checkpoint, a solo-learn .ckpt, or a torchvision ResNet state dict (its
    ``fc`` dropped). ``module.`` prefixes (DDP) are removed. info: {"format", "epoch"}."""
    info: dict[str, object] = {"format": "backbone state dict", "epoch": None}
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        info = {"format": "official full checkpoint (model/optimizer/epoch)", "epoch": obj.get("epoch")}
        state = _tensor_dict(obj["model"], f"{where} ['model']")
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        info = {"format": SOLO_FORMAT, "epoch": obj.get("epoch")}
        state = _tensor_dict(obj["state_dict"], f"{where} ['state_dict']")
    else:
        state = _tensor_dict(obj, where)
    if all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    projector = None
    if any(k.startswith("backbone.") for k in state):
        backbone = _strip(state, "backbone.")
        projector = _strip(state, "projector.") or None
    else:
        backbone = state
    dropped = [k for k in backbone if k.startswith("fc.")]
    for k in dropped:  # a torchvision classifier: not part of a backbone
        del backbone[k]
    if dropped:
        info["dropped"] = dropped
    return backbone, projector, info


def infer_resnet_arch(state: Mapping[str, torch.Tensor], where: str = "state dict") -> str:
    """solo-learn's backbone name for a torchvision-layout ResNet state dict; refuses anything
    else with the reason."""
    keys = list(state)
    if "conv1.weight" not in state or not any(k.startswith("layer1.") for k in keys):
        raise CheckpointFormatError(
            f"{where} is not a ResNet: no 'conv1.weight' and 'layer1.*' keys (torchvision's ResNet layout). "
            f"Its keys: {_preview(keys)}"
        )
    blocks = []
    for stage in (1, 2, 3, 4):
        found = {int(m.group(1)) for k in keys for m in [re.match(rf"layer{stage}\.(\d+)\.", k)] if m}
        if not found:
            raise CheckpointFormatError(f"{where} is not a 4-stage ResNet: no layer{stage}.* keys")
        blocks.append(max(found) + 1)
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    layout = (kind, tuple(blocks))
    arch = RESNET_LAYOUTS.get(layout)
    if arch is None:
        other = OTHER_RESNETS.get(layout, f"a {kind}-block ResNet with {blocks} blocks per stage")
        raise CheckpointFormatError(
            f"{where} is {other}, which solo-learn has no backbone for (it has "
            f"{', '.join(sorted(set(RESNET_LAYOUTS.values())))})"
        )
    width = state["conv1.weight"].shape[0]
    if width != 64 or state["layer1.0.conv1.weight"].shape[0] not in (64,):
        raise CheckpointFormatError(
            f"{where} is a widened {arch} (conv1 has {width} filters, layer1 "
            f"{state['layer1.0.conv1.weight'].shape[0]}): solo-learn's {arch} has 64"
        )
    return arch


def build_backbone(arch: str, dataset: str | None = None, **kwargs) -> torch.nn.Module:
    """solo-learn's backbone ``arch`` as its scripts build it: fc removed; the CIFAR stem for
    cifar10/100 (main_linear.py's rule)."""
    from solo.methods.base import BaseMethod

    if arch not in BaseMethod._BACKBONES:
        raise ValueError(f"arch: {arch!r} is not a solo-learn backbone (one of {sorted(BaseMethod._BACKBONES)})")
    backbone = BaseMethod._BACKBONES[arch](method=None, **kwargs)
    if arch.startswith("resnet"):
        backbone.fc = torch.nn.Identity()
        if dataset in ("cifar10", "cifar100"):
            backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = torch.nn.Identity()
    return backbone


def resnet_arch_or_none(state: Mapping[str, torch.Tensor]) -> str | None:
    """infer_resnet_arch's answer, or None where the state dict is not one of solo's ResNets."""
    try:
        return infer_resnet_arch(state)
    except CheckpointFormatError:
        return None


def architecture_mismatch(
    state: Mapping[str, torch.Tensor], model_arch: str | None, what: str, setting: str = "backbone.name"
) -> str | None:
    """One sentence naming the checkpoint's architecture and the setting to change, where the
    state dict is a ResNet of another depth than model_arch (None otherwise)."""
    found = resnet_arch_or_none(state)
    if found is None or model_arch is None or found == model_arch:
        return None
    return (
        f"{what} holds a {found} backbone (its keys and shapes), but the model is a {model_arch}: set {setting}={found}"
    )


def load_strict(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, setting: str | None = None
) -> None:
    """module.load_state_dict(state, strict=True) whose error names the missing, unexpected and
    mis-shaped keys (a wrongly prefixed state dict would otherwise leave a random backbone). Where
    the state dict is a ResNet of another depth than module, the error is one sentence that names
    both architectures and the fix (set `setting`, default backbone.name, to the checkpoint's)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        mismatch = architecture_mismatch(state, resnet_arch_or_none(own), what, setting or "backbone.name")
        if mismatch is not None:
            raise CheckpointFormatError(mismatch)
        parts = []
        if missing:
            parts.append(f"missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_preview(unexpected)}")
        if shapes:
            parts.append(f"wrong shapes: {_preview(shapes, 4)}")
        raise CheckpointFormatError(f"{what} does not fit the model: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True)


def load_backbone_weights(backbone: torch.nn.Module, checkpoint, what: str | None = None) -> dict:
    """Loads the backbone weights of ``checkpoint`` (a path in any format split_official reads)
    into ``backbone`` strictly. Returns split_official's info."""
    what = what or f"the backbone of {str(checkpoint)!r}"
    state, _, info = split_official(torch_load(checkpoint), str(checkpoint))
    load_strict(backbone, state, what)
    return info


def checkpoint_arch(checkpoint) -> str | None:
    """The solo-learn ResNet name of the backbone in ``checkpoint`` (a path in any format
    split_official reads), or None where it is not one of solo's ResNets."""
    state, _, _ = split_official(torch_load(checkpoint), str(checkpoint))
    return resnet_arch_or_none(state)


def projector_dims(projector: Mapping[str, torch.Tensor], where: str = "projector") -> tuple[int, int, int]:
    """(features_dim, proj_hidden_dim, proj_output_dim) of the shared projector's state dict
    (Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias); refuses another layout."""
    expected = {f"{i}.weight" for i in PROJECTOR_LINEAR_INDEXES} | {"0.bias", "3.bias"}
    if not expected <= set(projector) or "6.bias" in projector:
        raise CheckpointFormatError(
            f"{where} is not the shared projector (Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias; keys 0.*, "
            f"1.*, 3.*, 4.*, 6.weight). Its keys: {_preview(projector)}"
        )
    first, last = projector["0.weight"], projector["6.weight"]
    return first.shape[1], first.shape[0], last.shape[0]
