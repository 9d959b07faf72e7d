"""summary.md and the plots of a study, from its results rows (and timing.csv when present).

A preset of version 3 (study.presets: "v3", "smoke-v3") gets the v3 report: the tuning tables with the
confirmation seeds and the cap rule, kNN paired tests at every q, each method's training time
beside its accuracy (the equal-wall-time reading), the ablation variants on the same seeds with
paired tests against L = 3, and plots with each seed's point and the paired differences with their
intervals. A version-2 preset ("full", the recorded study) gets the report it was recorded with.

The sections are study/report_tuning.py (tuning), report_results.py (the test split: final runs,
the q table, the ablations), report_time.py (training and step times) and report_plots.py, on
report_rows.py (what they read from the rows) and report_paired.py (the paired tests)."""

from __future__ import annotations

import csv
from pathlib import Path

from .plan import Planner, choices
from .presets import Preset
from .report_plots import plots, plots_v3
from .report_results import ablation_section, ablation_section_v3, final_section, table_section
from .report_rows import Rows
from .report_time import timing_section, wall_time_section
from .report_tuning import tuning_section, tuning_section_v3


def read_timing(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(out: Path, preset: Preset, rows: Rows) -> str:
    """Writes summary.md and the plots into out; returns the summary text."""
    chosen = choices(preset, rows)
    timing = read_timing(out / "timing.csv")
    parts = [
        f"# sfrik-study ({preset.name})",
        "",
        f"Protocol: {preset.protocol()}.",
        "",
        f"{len(rows)} runs done (the plan has at least {Planner(preset).count()}; a grid that grows adds runs).",
    ]
    if preset.version >= 3:
        parts += ["", *tuning_section_v3(preset, rows, chosen)]
        parts += ["", *final_section(preset, rows, chosen)]
        parts += ["", *wall_time_section(preset, rows, chosen, timing)]
        parts += ["", *table_section(preset, rows, chosen)]
        parts += ["", *ablation_section_v3(preset, rows, chosen)]
    else:
        parts += ["", *tuning_section(preset, rows, chosen)]
        parts += ["", *final_section(preset, rows, chosen)]
        parts += ["", *table_section(preset, rows, chosen)]
        parts += ["", *ablation_section(preset, rows, chosen)]
    parts += ["", *timing_section(timing, rows)]
    parts += ["", *provenance_section(rows)]
    text = "\n".join(parts) + "\n"
    (out / "summary.md").write_text(text)
    try:
        plots(out, preset, rows, chosen)
        if preset.version >= 3:
            plots_v3(out, preset, rows, chosen, timing)
    except ImportError:
        pass  # matplotlib missing: the tables are still written
    return text


def provenance_section(rows: Rows) -> list[str]:
    if not rows:
        return []
    hours = sum(float(r["wall_s"]) for r in rows) / 3600
    versions = sorted({r["versions"] for r in rows})
    commits = sorted({r["commit"] for r in rows})
    return [
        "## Provenance",
        "",
        f"Wall time of the runs: {hours:.2f} h. Baselines from "
        f"{', '.join(sorted({r['library'] for r in rows}))}. Versions: {'; '.join(versions)}. "
        f"Commit(s): {', '.join(commits)}.",
    ]
