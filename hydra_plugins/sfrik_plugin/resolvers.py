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

The peak lr is the one training uses, which follows the global batch: batch_size x the processes
Lightning starts per node x num_nodes (hydra_plugins/sfrik_plugin/_devices.py). solo-learn scales
by len(devices), which is that count only for a list of GPU ids; the plugin's methods rescale
what solo scaled, and after parse_cfg a config whose lr nobody rescaled is refused here when the
two counts differ (solo-learn's own methods, e.g. vicreg_cpu with devices='2').

``${sfrik_plugin.num_nodes:1}``: the protocols' num_nodes. It returns its argument, and first
refuses a ``devices`` that solo-learn or Lightning cannot take (_devices.check_devices), with what
to write instead: solo's parse_cfg reads num_nodes just before it computes len(devices), so an
integer devices (a TypeError inside solo-learn) or a list on the CPU (refused by Lightning once
the data are loaded) are refused there, at start.
"""

from typing import Any

from hydra_plugins.sfrik_plugin._devices import check_devices, check_lr_follows_processes, processes_per_node

COSINE_END = "sfrik_plugin.cosine_end"
NUM_NODES = "sfrik_plugin.num_nodes"


def _scale(root: Any) -> float:
    """The lr scaling of a config before solo's parse_cfg: batch_size (per process) x the processes
    per node Lightning starts x num_nodes / 256."""
    devices, accelerator = root.devices, root.get("accelerator", "auto")
    num_nodes = root.get("num_nodes", 1) or 1
    check_devices(devices, accelerator)  # what solo-learn (len) or Lightning cannot take
    processes = processes_per_node(devices, accelerator)
    if processes is None:
        raise ValueError(
            f"{COSINE_END}: devices={devices!r} starts every visible GPU, a number known only when training starts; "
            "the value is computed then (after solo's parse_cfg)"
        )
    return root.optimizer.batch_size * processes * num_nodes / 256


def peak_lr(root: Any) -> float:
    """The effective peak lr of a pretraining config, before or after solo's parse_cfg."""
    lr = root.optimizer.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"{COSINE_END}: optimizer.lr must be a number, got {lr!r}")
    data = root.get("data")
    already_scaled = data is not None and "num_large_crops" in data  # set by solo's parse_cfg
    if not already_scaled:
        return float(lr) * _scale(root)
    check_lr_follows_processes(root, COSINE_END)
    return float(lr)


def cosine_end(ratio: Any, *, _root_: Any) -> float:
    """ratio x the effective peak lr (see the module docstring)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(f"{COSINE_END}: the ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio) * peak_lr(_root_)


def num_nodes(count: Any, *, _root_: Any) -> int:
    """count, once devices is checked (see the module docstring)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{NUM_NODES}: num_nodes must be an integer >= 1, got {count!r}")
    check_devices(_root_.devices, _root_.get("accelerator", "auto"))
    return count


def register_resolvers() -> None:
    """Registers the resolvers with OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(COSINE_END):
        OmegaConf.register_new_resolver(COSINE_END, cosine_end)
    if not OmegaConf.has_resolver(NUM_NODES):
        OmegaConf.register_new_resolver(NUM_NODES, num_nodes)
