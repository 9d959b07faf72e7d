"""OmegaConf resolvers of the plugin's configs (no torch, no solo-learn: the Hydra plugin
registers them in every Hydra app).

``${sfrik_plugin.cosine_end:0.001}``: the end of the official cosine schedule, 0.001 x the
effective peak lr, where solo-learn's effective peak lr is optimizer.lr x batch_size x
len(devices) x num_nodes / 256 (solo.args.pretrain.parse_cfg scales optimizer.lr in place; its
scheduler.min_lr is absolute and is not scaled). The official schedule (valeoai/sfrik,
src/vicreg/optim.py adjust_learning_rate) ends at base_lr x batch / 256 x 0.001.

The value follows the config's batch and devices: it is computed when read. Before solo's
parse_cfg, optimizer.lr is the base lr per 256 images and is scaled here; after it, optimizer.lr
is already the peak lr. parse_cfg sets data.num_large_crops just before it scales the lr, which
tells the two apart; solo reads scheduler.min_lr only after parse_cfg (BaseMethod), and stores
the resolved number back into the config.
"""

from typing import Any

COSINE_END = "sfrik_plugin.cosine_end"


def _scale(root: Any) -> float:
    """solo-learn's lr scaling: batch_size (per device) x len(devices) x num_nodes / 256."""
    devices = root.devices
    if isinstance(devices, int) and not isinstance(devices, bool):
        raise ValueError(
            f"{COSINE_END}: devices must be a list or a string, as solo-learn computes len(devices), "
            f"got the integer {devices!r}"
        )
    num_nodes = root.get("num_nodes", 1) or 1
    return root.optimizer.batch_size * len(devices) * num_nodes / 256


def peak_lr(root: Any) -> float:
    """The effective peak lr of a pretraining config, before or after solo's parse_cfg."""
    lr = root.optimizer.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"{COSINE_END}: optimizer.lr must be a number, got {lr!r}")
    data = root.get("data")
    already_scaled = data is not None and "num_large_crops" in data  # set by solo's parse_cfg
    return float(lr) if already_scaled else float(lr) * _scale(root)


def cosine_end(ratio: Any, *, _root_: Any) -> float:
    """ratio x the effective peak lr (see the module docstring)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(f"{COSINE_END}: the ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio) * peak_lr(_root_)


def register_resolvers() -> None:
    """Registers the resolvers with OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(COSINE_END):
        OmegaConf.register_new_resolver(COSINE_END, cosine_end)
