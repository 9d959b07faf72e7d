"""Runs one solo-learn script (main_pretrain.py or main_linear.py) in this process, as
`python <script> <args>` would, and writes what sfrik-compare needs to a JSON report:

    python -m sfrik_experiments.compare.probe --report run.json main_pretrain.py --config-name sfrik_cpu ...

With wandb off, solo's scripts give the Trainer no logger, so nothing they log reaches the disk.
The probe reads the numbers where they live, in the process: it wraps lightning's Trainer.fit to
put a callback in front of solo's own callbacks, and after fit it reports

- ``epoch_seconds``: wall time of each training epoch, from on_train_epoch_start to
  on_train_epoch_end, less the validation passes inside it (the checkpoint written at the end
  of the epoch comes after the probe's hook, so it is not counted either);
- ``metrics``: trainer.callback_metrics, the last value of everything logged (``val_acc1`` is
  the top-1 in percent of solo's validation, the linear probe's result);
- ``peak_rss_mib``: the peak resident memory of this process (getrusage ru_maxrss), and of its
  largest finished child (data-loader workers);
- ``peak_cuda_mib``: torch.cuda.max_memory_allocated of this process's GPU, when it used one;
- ``checkpoint``: the last checkpoint of solo's Checkpointer callback, when it wrote one.

Only the process that runs the probe reports: with DDP, Lightning starts the other ranks as
plain `python <script>`, so the numbers are rank 0's.
"""

import argparse
import json
import os
import resource
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sfrik_plugin.utils.files import atomic_write
from sfrik_plugin.utils.interrupt import check_fit_completed, exits_on_interrupt


def _peak_rss_mib(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    # kibibytes on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _cuda_sync() -> None:
    # kernels run asynchronously: without a sync an epoch's end would be timed too early
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def make_callback():
    """The probe's Lightning callback (built here, so that importing this module needs no lightning)."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.epoch_seconds: list[float] = []
            self._epoch_start: float | None = None
            self._val_start: float | None = None
            self._val_seconds = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            _cuda_sync()
            self._epoch_start, self._val_seconds = time.perf_counter(), 0.0

        def on_validation_start(self, trainer, pl_module) -> None:
            _cuda_sync()
            self._val_start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            # the sanity check runs before the first epoch starts: nothing to subtract then
            if self._epoch_start is not None and not trainer.sanity_checking:
                _cuda_sync()
                self._val_seconds += time.perf_counter() - cast(float, self._val_start)  # set by on_validation_start

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            _cuda_sync()
            start = cast(float, self._epoch_start)  # set by on_train_epoch_start
            self.epoch_seconds.append(time.perf_counter() - start - self._val_seconds)

    return EpochTimer()


def trainer_report(trainer, timer) -> dict:
    """What sfrik-compare reads from one finished fit."""
    import torch

    metrics = {}
    for name, value in trainer.callback_metrics.items():
        try:
            metrics[name] = float(value)
        except (TypeError, ValueError):  # a non-scalar logged value: not a table entry
            continue
    device = trainer.strategy.root_device
    cuda = device.type == "cuda" and torch.cuda.is_initialized()
    checkpoints = [cb.last_ckpt for cb in trainer.callbacks if getattr(cb, "last_ckpt", None)]
    return {
        "epoch_seconds": timer.epoch_seconds,
        "max_epochs": trainer.max_epochs,
        "metrics": metrics,
        "peak_rss_mib": _peak_rss_mib(resource.RUSAGE_SELF),
        "peak_rss_children_mib": _peak_rss_mib(resource.RUSAGE_CHILDREN),
        "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else str(device),
        "checkpoint": str(checkpoints[-1]) if checkpoints else None,
    }


def install(report_path: Path) -> None:
    """Makes every Trainer.fit of this process time its epochs and write the report after fit."""
    from lightning.pytorch import Trainer

    original_fit = Trainer.fit

    def fit(trainer, *args, **kwargs):
        timer = make_callback()
        trainer.callbacks.insert(0, timer)  # first: solo's checkpoint save is not timed
        result = original_fit(trainer, *args, **kwargs)
        check_fit_completed(trainer, "the run")  # a run cut short writes no report (exit 130 / 143)
        if trainer.is_global_zero:
            with atomic_write(report_path) as f:
                f.write(json.dumps(trainer_report(trainer, timer), indent=1))
        return result

    cast(Any, Trainer).fit = fit  # a monkeypatch: mypy rejects assigning to a method


@exits_on_interrupt("sfrik-compare probe")
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sfrik_experiments.compare.probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--report", required=True, type=Path, help="JSON file written after the fit")
    parser.add_argument("script", help="the solo-learn script, e.g. main_pretrain.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    opts = parser.parse_args(argv)
    script = Path(opts.script).resolve()
    if not script.is_file():
        raise SystemExit(f"sfrik-compare probe: script {opts.script!r} not found (from {os.getcwd()})")

    install(opts.report.resolve())
    # as `python <script>`: its folder first on sys.path, its arguments in sys.argv
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *opts.args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
