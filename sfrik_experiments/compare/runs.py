"""sfrik-compare's runs: for each method, pretraining then the linear probe of its checkpoint, each
solo-learn script run in a process of its own through sfrik_experiments.compare.probe (the command
lines, with our overrides before the user's), its log kept and its report read; a failed or silent
run stops the comparison (RunFailed), an interrupted one interrupts it. Each method's row goes into
the tables as soon as it is measured."""

import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sfrik_plugin.utils.interrupt import RunInterrupted

from .tables import write_tables
from .val_images import ProbeImages, probe_images

PROBE = "sfrik_experiments.compare.probe"  # module the runs go through (python -m)
PRETRAIN, LINEAR = "main_pretrain.py", "main_linear.py"
LOG_TAIL_LINES = 25


class RunFailed(RuntimeError):
    """A pretraining or linear-probe run failed or reported nothing usable."""


def hydra_path(path) -> str:
    """A path as a Hydra override value: double-quoted unless plain, since solo's checkpoint names
    contain '=', which an unquoted value may not (double quotes keep the printed commands readable)."""
    text = str(path)
    if re.fullmatch(r"[\w\-+./@%~]+", text):
        return text
    # Hydra's quoted strings: only backslashes before a quote (or the closing quote) are escapes
    escaped = re.sub(r'(\\*)("|$)', lambda m: m.group(1) * 2 + ("\\" + m.group(2) if m.group(2) else ""), text)
    return f'"{escaped}"'


@dataclass
class Step:
    label: str  # method label
    stage: str  # "pretrain" or "linear"
    config: str
    run_dir: Path

    @property
    def log(self) -> Path:
        return self.run_dir / "run.log"

    @property
    def report(self) -> Path:
        return self.run_dir / "report.json"

    def command(self, python: str, overrides: Sequence[str], checkpoint: str | None = None) -> list[str]:
        """The probe running solo's script. Overrides come last, so they win over ours."""
        script = PRETRAIN if self.stage == "pretrain" else LINEAR
        ours = [
            f"checkpoint.dir={hydra_path(self.run_dir.parent / 'checkpoints')}",
            # Lightning's default logger (used when wandb is off) writes here, not in the checkout
            f"++default_root_dir={hydra_path(self.run_dir)}",
        ]
        if self.stage == "linear":
            ours.insert(0, f"pretrained_feature_extractor={hydra_path(checkpoint)}")
        return [
            python,
            "-m",
            PROBE,
            "--report",
            str(self.report),
            script,
            "--config-name",
            self.config,
            *ours,
            *overrides,
        ]


def plan(out: Path, linear_config: str, runs: Sequence[tuple[str, str]]) -> list[tuple[Step, Step]]:
    return [
        (
            Step(label, "pretrain", config, out / label / "pretrain"),
            Step(label, "linear", linear_config, out / label / "linear"),
        )
        for label, config in runs
    ]


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    # progress bars redraw with carriage returns: keep the last state of each line
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])


def run_step(step: Step, argv: Sequence[str], cwd: Path, env: dict | None = None) -> dict:
    """Runs one command with its output in step.log; returns its report plus the process's wall time."""
    step.run_dir.mkdir(parents=True, exist_ok=True)
    step.report.unlink(missing_ok=True)  # a report left by an earlier run must not pass for this one's
    with open(step.log, "w") as log:
        log.write(f"$ cd {shlex.quote(str(cwd))} && {shlex.join(argv)}\n")
        log.flush()
        start = time.perf_counter()
        proc = subprocess.run(list(argv), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - start
    what = f"{step.label}: {step.stage} ({step.config})"
    signum = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
    if signum in (signal.SIGINT, signal.SIGTERM):  # the run was interrupted: so is the comparison
        raise RunInterrupted(f"{what} was interrupted by {signal.Signals(signum).name}", signum)
    if proc.returncode != 0:
        raise RunFailed(
            f"{what} failed with exit status {proc.returncode}; log: {step.log}\n"
            f"--- last lines ---\n{log_tail(step.log)}"
        )
    if not step.report.is_file():
        raise RunFailed(f"{what} exited without writing {step.report} (did Trainer.fit run?); log: {step.log}")
    report = json.loads(step.report.read_text())
    report["wall_seconds"] = wall
    return report


def result_row(pretrain: Step, linear: Step, pre: dict, lin: dict, images: ProbeImages) -> dict:
    """One row of the table from the two reports and what the linear top-1 is measured on."""
    top1 = lin.get("metrics", {}).get("val_acc1")
    if top1 is None:
        raise RunFailed(
            f"{linear.label}: the linear probe ({linear.config}) logged no val_acc1 (no validation "
            f"data? main_linear.py validates on data.val_path); see {linear.log}"
        )
    epochs = pre.get("epoch_seconds") or []
    return {
        "method": pretrain.label,
        "config": pretrain.config,
        "top1": top1,
        "top1_measured_on": images.text,
        "top1_on_training_images": images.on_training_images,
        "top1_val_path": images.val_path,
        "pretrain_epochs": len(epochs),
        "pretrain_s_per_epoch": statistics.fmean(epochs) if epochs else None,
        "pretrain_wall_s": pre.get("wall_seconds"),
        "pretrain_peak_rss_mib": pre.get("peak_rss_mib"),
        "pretrain_peak_cuda_mib": pre.get("peak_cuda_mib"),
        "device": pre.get("device"),
        "checkpoint": pre.get("checkpoint"),
    }


def compare(
    checkout: Path,
    out: Path,
    steps: Sequence[tuple[Step, Step]],
    overrides: Sequence[str],
    pretrain_overrides: Sequence[str] = (),
    linear_overrides: Sequence[str] = (),
    python: str = sys.executable,
) -> list[dict]:
    """Runs every method's pretraining then linear probe, one process each, from the checkout.
    Raises ValueError before any run when the linear probe has no data.val_path."""
    images = probe_images([*overrides, *linear_overrides], checkout)
    env = dict(os.environ, HYDRA_FULL_ERROR="1")  # full tracebacks in the logs
    rows, total = [], 2 * len(steps)

    def run(n: int, step: Step, argv: list[str]) -> dict:
        print(f"[{n}/{total}] {step.label}: {step.stage} ({step.config}), log {step.log}", flush=True)
        report = run_step(step, argv, checkout, env)
        print(f"        done in {report['wall_seconds']:.1f} s", flush=True)
        return report

    for i, (pretrain, linear) in enumerate(steps):
        pre = run(2 * i + 1, pretrain, pretrain.command(python, [*overrides, *pretrain_overrides]))
        if not pre.get("checkpoint"):
            raise RunFailed(
                f"{pretrain.label}: pretraining ({pretrain.config}) wrote no checkpoint "
                f"(checkpoint.enabled=False?); see {pretrain.log}"
            )
        lin = run(2 * i + 2, linear, linear.command(python, [*overrides, *linear_overrides], pre["checkpoint"]))
        rows.append(result_row(pretrain, linear, pre, lin, images))
        write_tables(rows, out, images.notes())  # after each method: a later failure keeps what was measured
    return rows
