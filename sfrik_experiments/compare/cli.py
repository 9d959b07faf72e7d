"""sfrik-compare: the methods of one protocol compared inside solo-learn, with its own scripts.

For each method: pretraining (main_pretrain.py, config ``<method>_<protocol>``), then the linear
probe of its checkpoint (main_linear.py, config ``linear_<protocol>``), each in its own process
run from the solo-learn checkout. Then one table: linear top-1, pretraining time per epoch and
peak memory. Linear top-1 is solo's val_acc1, measured on the linear probe's data.val_path: the
command asks for that folder before any run, and the table says which images the number was
measured on ("the training images" when data.val_path is data.train_path; a part of the folder
under limit_val_batches).

    sfrik-compare --protocol cpu --methods sfrik vicreg --out runs/cpu \\
        --linear-override data.val_path=/data/fmnist/val -- data.train_path=/data/fmnist/train
    python -m sfrik_experiments.compare --protocol in20 --methods sfrik vicreg simclr barlow_twins auh \\
        --out runs/in20 --pretrain-override data.val_path=/data/in20/tuning \\
        --linear-override data.val_path=/data/imagenet/val -- data.train_path=/data/in20/train

Each run goes through sfrik_experiments.compare.probe (see there for what is measured and how), which
writes a JSON report beside the run's log. Everything goes under --out:

    <out>/<method>/pretrain/run.log, report.json   (and Lightning's default logger output)
    <out>/<method>/linear/run.log, report.json
    <out>/<method>/checkpoints/                    (solo's checkpoint.dir for both runs)
    <out>/compare.csv, compare.md                  (rewritten after each method)
"""

import argparse
import csv
import importlib.resources
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

from sfrik_plugin.utils.files import atomic_write, refuse_existing, writable_dir
from sfrik_plugin.utils.interrupt import RunInterrupted, exits_on_interrupt
from sfrik_plugin.utils.solo_learn import find_solo_learn_dir

PROBE = "sfrik_experiments.compare.probe"  # module the runs go through (python -m)
PROTOCOL_ALIASES = {"cpu_smoke": "cpu"}  # protocol file name -> suffix of its configs
PRETRAIN, LINEAR = "main_pretrain.py", "main_linear.py"
LOG_TAIL_LINES = 25


class RunFailed(RuntimeError):
    """A pretraining or linear-probe run failed or reported nothing usable."""


# ---------------------------------------------------------------------------------------------
# Which configs


def packaged_configs() -> list[str]:
    """Names of the top-level configs in sfrik_plugin_configs (what --config-name accepts)."""
    root = importlib.resources.files("sfrik_plugin_configs")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def protocols(configs: Sequence[str]) -> list[str]:
    """The protocols with a linear probe: linear_<protocol> (linear_in20_tuning is a variant)."""
    return sorted(
        name[len("linear_") :] for name in configs if name.startswith("linear_") and "_" not in name[len("linear_") :]
    )


def methods_for(protocol: str, configs: Sequence[str]) -> dict[str, str]:
    """Method label -> pretraining config of ``protocol``: the config name without its protocol
    part, so sfrik_cpu -> sfrik, barlow_twins_in20 -> barlow_twins, sfrik_in100_q8192 -> sfrik_q8192."""
    found = {}
    for name in configs:
        parts = name.split("_")
        if parts[0] in ("linear", "semisup") or protocol not in parts[1:]:  # evaluations, not methods
            continue
        i = parts.index(protocol, 1)
        found["_".join(parts[:i] + parts[i + 1 :])] = name
    return found


def resolve(
    protocol: str, methods: Sequence[str], configs: Sequence[str] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """(linear config, [(method label, pretraining config)]) for the command-line arguments.
    A method is a label (sfrik) or a full config name of the protocol (sfrik_cpu)."""
    configs = packaged_configs() if configs is None else configs
    known = protocols(configs)
    protocol = PROTOCOL_ALIASES.get(protocol, protocol)
    if protocol not in known:
        aliases = ", ".join(f"{a} = {p}" for a, p in PROTOCOL_ALIASES.items())
        raise ValueError(
            f"--protocol {protocol!r}: no such protocol; the packaged configs have {', '.join(known)} ({aliases})"
        )
    available = methods_for(protocol, configs)
    if not methods:
        raise ValueError(f"--methods: give at least one of {', '.join(sorted(available))}")
    by_config = {config: label for label, config in available.items()}
    runs = []
    for method in methods:
        if method in available:
            runs.append((method, available[method]))
        elif method in by_config:
            runs.append((by_config[method], method))
        else:
            hint = " (a Hydra override? put overrides after `--`)" if "=" in method else ""
            raise ValueError(
                f"--methods: no config for {method!r} in protocol {protocol!r}{hint} "
                f"(looked for {method}_{protocol}.yaml in sfrik_plugin_configs); "
                f"methods of {protocol}: {', '.join(sorted(available))}"
            )
    labels = [label for label, _ in runs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"--methods: {', '.join(repeated)} given more than once")
    return f"linear_{protocol}", runs


# ---------------------------------------------------------------------------------------------
# Commands


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


# ---------------------------------------------------------------------------------------------
# Which images the linear top-1 is measured on


def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value the last of these Hydra overrides gives ``key`` (``key=``, ``+key=`` or ``++key=``;
    quotes removed), or None where none sets it; ``~key`` deletes it."""
    value = None
    for override in overrides:
        name, sep, text = override.partition("=")
        if name.lstrip("~") == key and name.startswith("~"):
            value = None
        elif sep and name.lstrip("+") == key:
            text = text.strip()
            if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
                # Hydra's quoted string: only backslashes before a quote or the end are escapes (hydra_path)
                quote = re.escape(text[0])
                text = re.sub(
                    rf"(\\+)({quote}|$)", lambda m: m.group(1)[: len(m.group(1)) // 2] + m.group(2), text[1:-1]
                )
            value = text
    return value


@dataclass(frozen=True)
class ProbeImages:
    """What the linear probe's val_acc1 (the table's linear top-1) is measured on: data.val_path,
    all of it unless limit_val_batches cuts it; paths as the scripts see them (from the checkout)."""

    train_path: str | None
    val_path: str
    val_batches: str | None  # limit_val_batches, when set
    checkout: Path

    def _resolved(self, path: str) -> Path:
        return (self.checkout / Path(path).expanduser()).resolve()

    @property
    def on_training_images(self) -> bool:
        return self.train_path is not None and self._resolved(self.train_path) == self._resolved(self.val_path)

    @property
    def text(self) -> str:
        """The table's "top-1 measured on" cell."""
        where = "the training images" if self.on_training_images else self.val_path
        return where if self.val_batches is None else f"{where} (limit_val_batches={self.val_batches})"

    def notes(self) -> list[str]:
        """Sentences printed under the table when the number is not a held-out accuracy of a folder."""
        notes = []
        if self.on_training_images:
            notes.append(
                "Linear top-1 was measured on the training images (data.val_path is data.train_path): "
                "it is a training accuracy, not a held-out one. Give a held-out folder with "
                "--linear-override data.val_path=<folder>."
            )
        if self.val_batches is not None:
            notes.append(
                f"limit_val_batches={self.val_batches}: linear top-1 was measured on the first batches of "
                "data.val_path only, and solo reads the folder in class order, so on its first classes "
                "only. Leave limit_val_batches off for a number."
            )
        return notes


def probe_images(linear_overrides: Sequence[str], checkout: Path) -> ProbeImages:
    """The linear probe's images from its overrides; a missing data.val_path is an error before any
    run (every linear config makes it mandatory: otherwise the probe would fail after pretraining)."""
    val = override_value(linear_overrides, "data.val_path")
    if not val or val == "null":
        raise ValueError(
            "the linear probe needs data.val_path, the held-out image folder its linear top-1 is measured "
            "on (same class folders as data.train_path): add --linear-override data.val_path=<folder>, or "
            "data.val_path=<folder> after `--`. `python -m sfrik_experiments.engine.image_folder --out <root>` "
            "makes <root>/train and <root>/val from Fashion-MNIST"
        )
    limit = override_value(linear_overrides, "limit_val_batches")
    return ProbeImages(override_value(linear_overrides, "data.train_path"), val, limit, checkout)


# ---------------------------------------------------------------------------------------------
# Running


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


COLUMNS = [
    "method",
    "config",
    "top1",
    "top1_measured_on",
    "top1_on_training_images",
    "top1_val_path",
    "pretrain_epochs",
    "pretrain_s_per_epoch",
    "pretrain_wall_s",
    "pretrain_peak_rss_mib",
    "pretrain_peak_cuda_mib",
    "device",
    "checkpoint",
]
# markdown: (header, column, format)
MARKDOWN = [
    ("method", "method", "{}"),
    ("config", "config", "{}"),
    ("linear top-1 (%)", "top1", "{:.2f}"),
    ("top-1 measured on", "top1_measured_on", "{}"),
    ("time / epoch (s)", "pretrain_s_per_epoch", "{:.2f}"),
    ("epochs", "pretrain_epochs", "{}"),
    ("peak RSS (MiB)", "pretrain_peak_rss_mib", "{:.0f}"),
    ("peak GPU memory (MiB)", "pretrain_peak_cuda_mib", "{:.0f}"),
    ("device", "device", "{}"),
]


def markdown_table(rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """The table, then the notes (what the linear top-1 is not), one paragraph each."""
    lines = ["| " + " | ".join(h for h, _, _ in MARKDOWN) + " |", "|" + "---|" * len(MARKDOWN)]
    for row in rows:
        cells = ["-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in MARKDOWN]
        lines.append("| " + " | ".join(cells) + " |")
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict], out: Path, notes: Sequence[str] = ()) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "compare.csv", out / "compare.md"
    with atomic_write(csv_path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows)
    with atomic_write(md_path) as f:
        f.write(markdown_table(rows, notes))
    return csv_path, md_path


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


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sfrik-compare",
        description="Pretrain and linear-probe several methods with solo-learn's scripts and the packaged "
        "configs, then tabulate linear top-1, time per epoch and peak memory.",
        epilog="Overrides after `--` go to both scripts (e.g. data.train_path=...). The scripts run from the "
        "solo-learn checkout: relative paths in overrides are relative to it.",
    )
    parser.add_argument(
        "--solo-learn-dir",
        default=None,
        help="solo-learn checkout (default: $SOLO_LEARN_DIR, else the current directory)",
    )
    parser.add_argument("--protocol", required=True, help="cpu (= cpu_smoke), in20 or in100")
    parser.add_argument(
        "--methods",
        nargs="+",
        required=True,
        help="methods with a <method>_<protocol> config, e.g. sfrik vicreg simclr barlow_twins auh",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for logs, checkpoints and the tables")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables and runs already in --out")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--pretrain-override",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for main_pretrain.py only",
    )
    parser.add_argument(
        "--linear-override",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides for main_linear.py only; data.val_path=<held-out folder> is needed (linear "
        "top-1 is measured there)",
    )
    parser.add_argument("overrides", nargs="*", metavar="-- KEY=VALUE", help="Hydra overrides for both scripts")
    return parser.parse_args(argv)


def checkout_dir(explicit: str | None) -> Path:
    checkout = find_solo_learn_dir(explicit)
    missing = [s for s in (PRETRAIN, LINEAR) if not (checkout / s).is_file()]
    if missing:
        raise FileNotFoundError(f"no {' or '.join(missing)} in the solo-learn checkout {checkout}")
    return checkout


@exits_on_interrupt("sfrik-compare")
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        linear_config, runs = resolve(args.protocol, args.methods)
        checkout = checkout_dir(args.solo_learn_dir)
        images = probe_images([*args.overrides, *args.linear_override], checkout)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"sfrik-compare: {err}") from None
    out = args.out.expanduser().resolve()  # the runs' working directory is the checkout
    if not args.dry_run:
        writable_dir(out, "--out", "sfrik-compare")  # before the first run, not after it
        if not args.overwrite:
            refuse_existing([out / "compare.csv", out / "compare.md"], "sfrik-compare")
    steps = plan(out, linear_config, runs)

    if args.dry_run:
        print(f"cd {shlex.quote(str(checkout))}")
        for pretrain, linear in steps:
            print(shlex.join(pretrain.command(sys.executable, [*args.overrides, *args.pretrain_override])))
            print(
                shlex.join(
                    linear.command(
                        sys.executable, [*args.overrides, *args.linear_override], f"<{pretrain.label} checkpoint>"
                    )
                )
            )
        return

    try:
        rows = compare(checkout, out, steps, args.overrides, args.pretrain_override, args.linear_override)
    except RunFailed as err:
        raise SystemExit(f"sfrik-compare: {err}") from None
    print()
    print(markdown_table(rows, images.notes()), end="")
    print(f"\nwritten: {out / 'compare.csv'}, {out / 'compare.md'}")
