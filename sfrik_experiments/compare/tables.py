"""sfrik-compare's tables: compare.csv (every column) and compare.md (the columns a reader
compares, then the notes on what the linear top-1 is not), rewritten after each method."""

import csv
from collections.abc import Sequence
from pathlib import Path

from sfrik_experiments.utils.output import markdown_table as table
from sfrik_plugin.utils.files import atomic_write

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
    cells = [["-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in MARKDOWN] for row in rows]
    lines = [table([h for h, _, _ in MARKDOWN], cells)]
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
