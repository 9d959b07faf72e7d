"""``devices`` in a solo-learn pretraining config, as solo-learn and Lightning read it (no torch,
no solo-learn: the configs' resolvers use it in every Hydra app).

Lightning starts one process per device it parses from ``devices`` (per node); solo-learn's
parse_cfg scales the learning rate by ``len(devices)`` instead (optimizer.lr x batch_size x
len(devices) x num_nodes / 256). The two agree for a list of GPU ids and for the string "1" only:

==================  ==============================================  ======================
devices             Lightning's processes per node                  solo's len(devices)
==================  ==============================================  ======================
[0, 1]              2 on GPUs; refused on the CPU                   2
2                   2                                               TypeError (an int)
"2"                 2                                               1
"0,1"               2 on GPUs (ids 0 and 1); refused on the CPU     3
"auto"              every GPU; 1 on the CPU                         4
-1, "-1"            every GPU; refused on the CPU                   TypeError / 2
==================  ==============================================  ======================

So with several processes solo's lr is silently wrong for every spelling but the list, and on
the CPU, whose accelerator takes a count, no spelling makes both right. The plugin therefore:

- refuses, when solo's parse_cfg reads num_nodes (``${sfrik_plugin.num_nodes:1}``, just before it
  computes len(devices)), the spellings that solo or Lightning cannot take (an integer, a list or
  "0,1" on the CPU, 0, ...), with what to write instead (:func:`check_devices`);
- in its methods (sfrik_plugin.solo.processes), rescales the lr that solo scaled by len(devices)
  to the processes Lightning starts, and records that count in ``optimizer.lr_processes_per_node``;
- refuses in ``${sfrik_plugin.cosine_end:...}`` a config whose lr nobody rescaled (solo-learn's own
  methods) when the spelling does not give len(devices) processes.

The leading underscore keeps Hydra's plugin scan from executing this module a second time (it
re-runs every other module of hydra_plugins), which would make a second DevicesError class.
"""

from collections.abc import Sequence
from typing import Any

# where the docs say how to train with several processes
DOCS = 'docs/solo-learn.md, "Several processes"'
# set by the plugin's methods once optimizer.lr (and classifier_lr) follow the processes per node
LR_PROCESSES_KEY = "lr_processes_per_node"
# accelerators whose devices are GPU ids (Lightning's _parse_gpu_ids): CUDA and Apple's MPS
GPU_ACCELERATORS = ("gpu", "cuda", "mps")


class DevicesError(ValueError):
    """A ``devices`` value that solo-learn or Lightning cannot train with, or not with the right lr."""


def _is_id_list(devices: Any) -> bool:
    # a list, a tuple or an OmegaConf ListConfig (a MutableSequence), not a string
    return isinstance(devices, Sequence) and not isinstance(devices, (str, bytes))


def _shown(devices: Any) -> str:
    """devices as a Hydra override would spell it."""
    if _is_id_list(devices):
        return "[" + ",".join(str(d) for d in devices) + "]"
    if isinstance(devices, str):
        return f"'{devices}'"
    return repr(devices)


def what_to_write(count: int | None, accelerator: Any) -> str:
    """The override that starts ``count`` processes per node (None: some number) on
    ``accelerator`` with the right lr."""
    if str(accelerator).lower() == "cpu":
        if count == 1:
            return "\"devices='1'\" (a quoted string: solo-learn computes len(devices))"
        n = str(count) if count else "N"
        return (
            f"accelerator=cpu strategy=ddp sync_batchnorm=False \"devices='{n}'\" (the number of processes, quoted: "
            "Lightning's CPU accelerator takes a count, and the plugin's methods scale the lr by it)"
        )
    ids = ",".join(str(i) for i in range(count)) if count else "0,1,..."
    return f"devices=[{ids}] (the list of GPU ids: solo-learn scales the lr by len(devices))"


def _refuse(devices: Any, accelerator: Any, why: str, count: int | None = None) -> DevicesError:
    return DevicesError(
        f"devices={_shown(devices)} with accelerator={accelerator}: {why}; write {what_to_write(count, accelerator)}. "
        f"See {DOCS}"
    )


def _gpu_ids(devices: Any, accelerator: Any) -> int:
    """The number of GPU ids in a list or a comma-separated string, as Lightning's _parse_gpu_ids
    reads them (the ids are checked against the machine's GPUs only when Lightning starts)."""
    ids: list[int] = []
    if isinstance(devices, str):
        for item in devices.split(","):
            if len(item) == 0:
                continue
            try:
                ids.append(int(item.strip()))
            except ValueError:
                raise _refuse(devices, accelerator, "Lightning takes GPU ids (integers >= 0)") from None
    else:
        if not all(type(item) is int for item in devices):
            raise _refuse(devices, accelerator, "Lightning takes a list of GPU ids (integers >= 0)")
        ids = list(devices)
    if not ids or min(ids) < 0:
        raise _refuse(devices, accelerator, "Lightning takes GPU ids (integers >= 0), at least one")
    if len(set(ids)) != len(ids):
        raise _refuse(devices, accelerator, "a GPU id is repeated (Lightning refuses it)", len(set(ids)))
    return len(ids)


def processes_per_node(devices: Any, accelerator: Any) -> int | None:
    """How many processes per node Lightning (2.x) starts for ``devices`` on ``accelerator``:
    a count, or None where it depends on the machine (every visible GPU: "auto", -1 and "-1" off
    the CPU; any value with an accelerator other than cpu, gpu, cuda, mps and auto). Raises
    DevicesError, naming devices and what to write, for a value Lightning refuses (with the cpu
    accelerator: anything but a count > 0 or "auto"; anywhere: 0, "0", [], a bool, a float, None).

    With accelerator "auto" a list or "0,1" counts its GPU ids; Lightning refuses them where
    "auto" turns out to be the CPU (sfrik_plugin.solo.processes resolves "auto" first).
    """
    accelerator = str(accelerator).lower()
    cpu = accelerator == "cpu"
    readable = isinstance(devices, (int, str)) or _is_id_list(devices)
    if isinstance(devices, bool) or not readable:
        raise _refuse(devices, accelerator, "Lightning takes a count, a string or a list of GPU ids")
    if accelerator not in ("cpu", "auto", *GPU_ACCELERATORS):
        return None
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return 1 if cpu else None
        if text.isdigit():
            devices = int(text)
        elif cpu:
            raise _refuse(devices, accelerator, "Lightning's CPU accelerator takes a number of processes")
        elif devices == "-1":
            return None
        elif "," in devices:
            return _gpu_ids(devices, accelerator)
        else:
            try:
                devices = int(text)
            except ValueError:
                raise _refuse(devices, accelerator, "Lightning cannot read this value") from None
    if isinstance(devices, int):
        if devices > 0:
            return devices
        if devices == -1 and not cpu:
            return None
        raise _refuse(devices, accelerator, "Lightning needs at least one device")
    if cpu:
        count = len(devices) if len(devices) > 0 else None
        raise _refuse(
            devices, accelerator, "Lightning's CPU accelerator takes a number of processes, not a list", count
        )
    return _gpu_ids(devices, accelerator)


def solo_device_count(devices: Any, accelerator: Any) -> int:
    """len(devices): what solo-learn's parse_cfg multiplies the lr by. Raises DevicesError for a
    value without a length (an integer: solo would fail with "object of type 'int' has no len()")."""
    if isinstance(devices, str) or _is_id_list(devices):
        return len(devices)
    count = devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else None
    raise _refuse(
        devices, accelerator, "solo-learn scales the learning rate by len(devices), and an integer has no length", count
    )


def check_devices(devices: Any, accelerator: Any) -> None:
    """Refuses (DevicesError) what solo-learn's parse_cfg or Lightning cannot take: see
    processes_per_node and solo_device_count."""
    processes_per_node(devices, accelerator)
    solo_device_count(devices, accelerator)


def check_lr_follows_processes(root: Any, what: str) -> None:
    """After solo's parse_cfg: refuses a config whose optimizer.lr solo scaled by len(devices) while
    Lightning will start another number of processes, unless the plugin's method rescaled it (it
    then sets optimizer.lr_processes_per_node). solo-learn's own methods keep solo's lr."""
    devices, accelerator = root.get("devices"), root.get("accelerator", "auto")
    if root.optimizer.get(LR_PROCESSES_KEY) is not None or devices is None:
        return  # rescaled by the plugin's method, or no devices to check (a config made by hand)
    counted = solo_device_count(devices, accelerator)
    processes = processes_per_node(devices, accelerator)
    if processes == counted:
        return
    method = root.get("method", "this method")
    started = "starts every visible GPU" if processes is None else f"starts {processes} process(es) per node"
    if str(accelerator).lower() == "cpu":
        fix = (
            "on the CPU no spelling of devices gives solo-learn's own methods the right lr with several processes: "
            "write \"devices='1'\" (one process), or train one of the plugin's methods"
        )
    else:
        fix = f"write {what_to_write(processes, accelerator)}"
    raise DevicesError(
        f"{what}: devices={_shown(devices)} {started}, but solo-learn scaled optimizer.lr by len(devices) = "
        f"{counted}, and {method!r} is one of solo-learn's own methods, which keep that lr (the plugin's methods "
        f"sfrik, auh and simclr_shared rescale it): {fix}. See {DOCS}"
    )
