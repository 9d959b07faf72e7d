"""The learning rate of the plugin's solo-learn methods follows the global batch, however
``devices`` is spelled.

solo-learn's parse_cfg scales optimizer.lr (and classifier_lr, when there is a validation set) by
batch_size x len(devices) x num_nodes / 256, while Lightning starts one process per device it
parses from ``devices``: with "2" (the only spelling that starts two processes on the CPU) solo
counts one device, with "0,1" three, with "auto" four (hydra_plugins/sfrik_plugin/_devices.py has
the table). :func:`scale_lr_to_processes`, called by every plugin method before solo's BaseMethod
reads the config, multiplies what solo scaled by processes / len(devices), so that the lr is
base lr x batch_size x processes x num_nodes / 256; the end of the cosine
(``${sfrik_plugin.cosine_end:...}``, read right after) follows. It records the count in
``optimizer.lr_processes_per_node`` (a config written to args.json is not scaled twice), and
:func:`check_trainer_processes` checks at fit time that the Trainer runs that many.

Needs solo-learn's Lightning: imported only where solo is installed.
"""

from typing import Any

import omegaconf

from hydra_plugins.sfrik_plugin._devices import (
    DOCS,
    LR_PROCESSES_KEY,
    DevicesError,
    processes_per_node,
    solo_device_count,
    what_to_write,
)

__all__ = ["DevicesError", "check_trainer_processes", "lightning_processes_per_node", "scale_lr_to_processes"]


def lightning_accelerator(accelerator: Any) -> str:
    """The accelerator Lightning (2.x) picks for "auto" and "gpu" on this machine (CUDA, Apple's
    MPS, else the CPU); any other name as it is."""
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

    name = str(accelerator).lower()
    if name in ("auto", "gpu"):
        if MPSAccelerator.is_available():
            return "mps"
        if CUDAAccelerator.is_available() or name == "gpu":
            return "cuda"
        return "cpu"
    return name


def lightning_processes_per_node(devices: Any, accelerator: Any) -> int:
    """The processes per node Lightning starts for devices and accelerator on this machine
    (devices.processes_per_node, and where that depends on the machine, Lightning's accelerator
    parses devices). Raises DevicesError, naming devices and what to write."""
    name = lightning_accelerator(accelerator)
    count = processes_per_node(devices, name)
    if count is not None:
        return count
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import AcceleratorRegistry

    try:
        accelerator_cls = AcceleratorRegistry[name]["accelerator"]
        if devices == "auto":
            count = int(accelerator_cls.auto_device_count())
        else:
            count = len(accelerator_cls.get_parallel_devices(accelerator_cls.parse_devices(devices)))
    except (MisconfigurationException, KeyError, TypeError, ValueError) as err:  # Lightning's refusal (no GPU, ...)
        raise DevicesError(
            f"devices={devices!r} with accelerator={accelerator}: Lightning cannot start it here ({err}); "
            f"write {what_to_write(None, accelerator)}. See {DOCS}"
        ) from None
    if count < 1:
        raise DevicesError(
            f"devices={devices!r} with accelerator={accelerator}: no device here; "
            f"write {what_to_write(None, accelerator)}. See {DOCS}"
        )
    return count


def scale_lr_to_processes(cfg: omegaconf.DictConfig, method: str) -> int:
    """Makes cfg.optimizer.lr (and classifier_lr, which solo scales when data.val_path is set)
    follow the processes Lightning starts, after solo's parse_cfg scaled them by len(devices), and
    returns the processes per node. Idempotent: a config that has optimizer.lr_processes_per_node
    (args.json of a run) is left as it is. Refuses (DevicesError) a devices that cannot train, and
    synchronised batch norm with several CPU processes (torch's runs on GPUs only)."""
    done = omegaconf.OmegaConf.select(cfg, f"optimizer.{LR_PROCESSES_KEY}", default=None)
    if done is not None:
        return int(done)
    devices, accelerator = cfg.devices, omegaconf.OmegaConf.select(cfg, "accelerator", default="auto")
    counted = solo_device_count(devices, accelerator)
    processes = lightning_processes_per_node(devices, accelerator)
    num_nodes = int(omegaconf.OmegaConf.select(cfg, "num_nodes", default=1) or 1)
    sync = bool(omegaconf.OmegaConf.select(cfg, "sync_batchnorm", default=False))
    if sync and processes * num_nodes > 1 and lightning_accelerator(accelerator) == "cpu":
        raise DevicesError(
            f"{method}: sync_batchnorm=True with {processes * num_nodes} CPU processes: torch's SyncBatchNorm runs on "
            f"GPUs only (it would fail at the first step); write sync_batchnorm=False. See {DOCS}"
        )
    if processes != counted:
        factor = processes / counted
        cfg.optimizer.lr = cfg.optimizer.lr * factor
        if omegaconf.OmegaConf.select(cfg, "data.val_path", default=None) is not None:
            cfg.optimizer.classifier_lr = cfg.optimizer.classifier_lr * factor
        batch = cfg.optimizer.batch_size
        _say(
            f"{method}: devices={devices!r} starts {processes} process(es) per node, and solo-learn scaled the lr by "
            f"len(devices) = {counted}: optimizer.lr is now {cfg.optimizer.lr:.6g}, for the global batch "
            f"{batch} x {processes} x {num_nodes} node(s) = {batch * processes * num_nodes}"
        )
    with omegaconf.open_dict(cfg):
        cfg.optimizer[LR_PROCESSES_KEY] = processes
    return processes


def _say(line: str) -> None:
    """Prints a line in the first process only (solo's scripts turn Lightning's info logging off)."""
    from lightning.pytorch.utilities import rank_zero_only

    rank_zero_only(print)(line, flush=True)


def check_trainer_processes(trainer: Any, processes: int, num_nodes: int, method: str) -> None:
    """At fit time: the Trainer runs the processes per node and the nodes the lr was scaled for
    (a Trainer built by hand with other devices would train at another global batch)."""
    running = (int(trainer.num_devices), int(trainer.num_nodes))
    if running != (processes, num_nodes):
        raise DevicesError(
            f"{method}: the learning rate was scaled for {processes} process(es) per node on {num_nodes} node(s) "
            f"(the config's devices and num_nodes), but the Trainer runs {running[0]} on {running[1]}: give the "
            f"Trainer the config's devices, accelerator and num_nodes, or set them in the config. See {DOCS}"
        )
