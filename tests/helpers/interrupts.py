"""Real signals to real child processes in the middle of training.

`start_paused` runs a command (`python -m MODULE ARGS`) in a child whose every Lightning fit gets
one more callback: after optimiser step `at_step` (or the first batch of epoch `at_epoch`) of fit
number `in_fit` (1-based) it writes a marker file and sleeps. The test waits for the marker, so the
signal lands mid-training however loaded the machine is (no sleep-and-hope), and the command
itself is unchanged: its own main, its own handlers. The child starts with SIGINT and SIGTERM at
their defaults whatever the test run inherited (a CI run started in the background has SIGINT
ignored, and so would its children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

PAUSE_S = 300  # the paused child waits at most this long for its signal

CHILD = textwrap.dedent(
    """
    import pathlib, runpy, sys, time
    from lightning.pytorch import Callback, Trainer

    marker, at_step, at_epoch, in_fit = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    module = sys.argv[5]
    fits = [0]

    class PauseForSignal(Callback):
        def __init__(self, fit):
            self.fit = fit

        def on_train_batch_end(self, trainer, *args):
            here = trainer.current_epoch == at_epoch if at_epoch >= 0 else trainer.global_step == at_step
            if self.fit == in_fit and here and not marker.exists():
                marker.write_text(f"fit {self.fit} step {trainer.global_step} epoch {trainer.current_epoch}")
                time.sleep(PAUSE_S)

    original = Trainer.fit

    def fit(trainer, *args, **kwargs):
        fits[0] += 1
        trainer.callbacks.append(PauseForSignal(fits[0]))
        return original(trainer, *args, **kwargs)

    Trainer.fit = fit
    sys.argv = [module, *sys.argv[6:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    """
).replace("PAUSE_S", str(PAUSE_S))


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class PausedRun:
    def __init__(self, proc: subprocess.Popen, marker: Path, log: Path):
        self.proc, self.marker, self.log = proc, marker, log

    def wait_for_pause(self, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"the child ended ({self.proc.returncode}) before its pause:\n{self.output()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the child did not reach its pause in {timeout} s:\n{self.output()}")
            time.sleep(0.1)
        return self.marker.read_text()

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 120) -> int:
        """Sends `sig` once the child is paused; its exit status."""
        self.wait_for_pause()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the child did not end within {timeout} s of {sig!r}:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_paused(
    module: str,
    *args: object,
    workdir: Path,
    at_step: int = 1,
    at_epoch: int | None = None,
    in_fit: int = 1,
    cwd: object = None,
    set_env: Mapping[str, str] | None = None,
) -> PausedRun:
    """`python -m module args` in a child that pauses at step `at_step` of its fit `in_fit`."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker, log = workdir / "paused", workdir / "child.log"
    marker.unlink(missing_ok=True)
    env = {**os.environ, **(set_env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                *map(str, (marker, at_step, -1 if at_epoch is None else at_epoch, in_fit, module)),
                *map(str, args),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            preexec_fn=_default_signals,
        )
    return PausedRun(proc, marker, log)
