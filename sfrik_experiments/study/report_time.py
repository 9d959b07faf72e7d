"""The report's time: each method's training time beside its accuracy (the equal-wall-time
reading: time x SFRIK, points above the random encoder per minute, which methods dominate), and
the interleaved pass's step-time table (timing.csv), where a share above 100 % and a missing step
time are flagged rather than printed as measurements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sfrik_experiments.utils.output import markdown_table

from .plan import Choices
from .presets import Preset
from .report_rows import Rows, final_match, finite_number, measured_value, summary_of
from .stats import Summary, summarise

OVER_100 = "†"  # marks a network share above 100 % in the timing table
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class TrainingTime:
    """A method's accuracy and training time at one q, from its final runs (and the timing pass)."""

    method: str
    linear: Summary
    minutes: Summary  # its final runs' own pretraining minutes (train_minutes), over seeds
    step_ms: float | None  # the interleaved pass's median step, where measured

    @property
    def cost(self) -> float | None:
        """What the methods' times are compared on: the interleaved step time where measured, else
        the runs' own minutes (every run takes the same steps)."""
        return self.step_ms if self.step_ms is not None else (self.minutes.mean if self.minutes.n else None)


def dominated_by(method: str, cost: Mapping[str, float], mean: Mapping[str, float]) -> list[str]:
    """The methods at most as costly as `method` with a higher mean accuracy (a reading of means,
    not a test), in the order of `cost`; only methods with both a cost and a mean take part."""
    if method not in cost or method not in mean:
        return []
    return [o for o in cost if o != method and o in mean and cost[o] <= cost[method] and mean[o] > mean[method]]


def training_times(
    preset: Preset, rows: Rows, chosen: Choices, timing: Sequence[Mapping[str, str]], q: int
) -> list[TrainingTime]:
    steps = {r["method"]: measured_value(r.get("step_ms")) for r in timing if r["q"] == str(q)}
    out = []
    for method in preset.methods:
        if method in chosen.by_q.get(q, {}):
            m = final_match(preset, chosen, method, q)
            minutes = [
                float(r["train_minutes"])
                for r in rows
                if all(str(r[k]) == str(v) for k, v in m.items()) and measured_value(r["train_minutes"]) is not None
            ]
            out.append(
                TrainingTime(method, summary_of(rows, "linear_top1", **m), summarise(minutes), steps.get(method))
            )
    return out


def wall_time_section(
    preset: Preset, rows: Rows, chosen: Choices, timing: Sequence[Mapping[str, str]] = ()
) -> list[str]:
    """Each method's training time beside its accuracy at q = main_q: the equal-wall-time reading of
    a study whose runs take equal steps."""
    q = preset.main_q
    times = training_times(preset, rows, chosen, timing, q)
    lines = [
        f"## Accuracy and training time (q = {q}: the equal-wall-time reading)",
        "",
        "Every run takes the same number of steps (equal steps), so a slower loss gets more compute. Here each "
        "method's time stands beside its accuracy: pretraining minutes per run (the final runs' own "
        "train_minutes, mean ± std over seeds, measured on a machine others may have shared) and the median "
        "step time of the interleaved pass (quiet cores, every method on the same batches; `--phases timing`). "
        "Time × SFRIK and the dominance column compare the interleaved step times (the runs' own minutes where "
        "the pass is missing, marked *). Dominated by: the methods at most as slow and with a higher mean "
        "linear top-1. Points per minute: mean linear top-1 above the random encoder's, per pretraining minute "
        "(the interleaved step time x the run's steps; the runs' own minutes, marked *, where the pass is missing). "
        "One budget per method: what a faster method would reach in a slower one's time is not measured here. "
        "The plot accuracy_vs_time.png shows each final run's linear top-1 against its own pretraining minutes.",
        "",
    ]
    if not times:
        return lines + ["No final runs yet."]
    floor = summary_of(rows, "linear_top1", **final_match(preset, chosen, "random", q))
    steps = (preset.train_size // preset.train.batch_size) * preset.train.epochs  # per run (drop_last)
    sfrik = next((t for t in times if t.method == "sfrik"), None)
    table, front = [], []
    for t in times:
        relative = "-"
        if sfrik is not None and t.cost is not None and sfrik.cost and (t.step_ms is None) == (sfrik.step_ms is None):
            relative = f"{t.cost / sfrik.cost:.2f}" + (" *" if t.step_ms is None else "")
        same_clock = {  # step times and the runs' own minutes are not compared with each other
            o.method: o.cost for o in times if o.cost is not None and (o.step_ms is None) == (t.step_ms is None)
        }
        dominated = dominated_by(t.method, same_clock, {o.method: o.linear.mean for o in times if o.linear.n})
        if t.linear.n and not dominated:
            front.append(t.method)
        # minutes per run from the quiet interleaved pass where it measured the method (the runs'
        # own minutes, marked *, only where it did not: they include whatever shared the cores)
        quiet_minutes = t.step_ms * steps / 60000 if t.step_ms is not None else None
        minutes = quiet_minutes if quiet_minutes is not None else (t.minutes.mean if t.minutes.n else None)
        per_minute = (
            f"{(t.linear.mean - floor.mean) / minutes:.2f}" + ("" if quiet_minutes is not None else " *")
            if t.linear.n and floor.n and minutes
            else "-"
        )
        table.append(
            [
                t.method,
                t.linear.text(),
                t.minutes.text(),
                f"{t.step_ms:.1f}" if t.step_ms is not None else NOT_MEASURED,
                relative,
                per_minute,
                ", ".join(dominated) or "-",
            ]
        )
    lines.append(
        markdown_table(
            [
                "method",
                "linear top-1 %",
                "pretraining min per run",
                "step ms (interleaved pass)",
                "time × SFRIK",
                "points above random per min",
                "dominated by",
            ],
            table,
        )
    )
    if front:
        lines += [
            "",
            f"Not dominated: {', '.join(front)}; every other method has one at most as slow and more accurate "
            "(a reading of means, not a test).",
        ]
    return lines


def timing_section(timing: list[dict[str, str]], rows: Rows = ()) -> list[str]:
    """The interleaved pass's table; a share above 100 % and a missing step time are flagged, not
    printed as if they were measurements, and so are trained runs without a step time of their own."""
    lines = ["## Step time (interleaved pass)", ""]
    if not timing:
        return lines + ["Not measured yet (`--phases timing`).", *_untimed_runs(rows)]
    lines += [
        "Every method steps in turn on the same batches (the order rotates every round), so a change of "
        "load falls on all alike. Median over rounds; network = backbone + projector forward and backward "
        "with a negligible loss; loss = the loss alone, forward and backward on fixed embeddings.",
        "",
    ]
    table, over, missing = [], [], []
    for r in timing:
        step, share = measured_value(r.get("step_ms")), measured_value(r.get("network_share"))
        if step is None:
            missing.append(f"{r['method']} at q = {r['q']}")
            step_cell, share_cell = NOT_MEASURED, "-"
        elif share is None:
            step_cell, share_cell = r["step_ms"], "-"
        else:
            step_cell, share_cell = r["step_ms"], r["network_share"]
            if share > 100:
                over.append(f"{r['method']} at q = {r['q']}")
                share_cell += f" {OVER_100}"
        network, loss = (r[k] if finite_number(r.get(k)) is not None else "-" for k in ("network_ms", "loss_ms"))
        table.append([r["method"], r["q"], step_cell, network, loss, share_cell])
    lines.append(markdown_table(["method", "q", "step ms", "network ms", "loss ms", "network share %"], table))
    if over:
        lines += [
            "",
            f"{OVER_100} A network share above 100 % ({', '.join(over)}) is not a measurement: that method's "
            "step took less time than the network alone. The network is timed in a step of its own, and the "
            "loss alone on fixed embeddings (step ms is not network ms + loss ms), so a share carries the noise "
            "of two medians; where the loss costs a few percent of a step, as at toy sizes, that noise is "
            "larger than the loss. Read it as: the loss costs next to nothing here.",
        ]
    if missing:
        lines += [
            "",
            f"No step time was recorded for {', '.join(missing)} (timing.csv holds no number there): "
            "their network share is not computed. Run `--phases timing` again.",
        ]
    return lines + _untimed_runs(rows)


def _untimed_runs(rows: Rows) -> list[str]:
    """A note on the trained runs whose own step time (results.csv's sec_per_step) is missing."""
    trained = [r for r in rows if r["status"] == "ok" and r["method"] != "random"]
    untimed = [r for r in trained if measured_value(r["sec_per_step"]) is None]
    if not untimed:
        return []
    return [
        "",
        f"The runs' own step time (sec_per_step in results.csv) is not measured in {len(untimed)} of the "
        f"{len(trained)} trained runs (nan or empty there): a run's first steps (warm-up, the memory "
        "measurement) are not timed, and these runs were too short to time any. The interleaved pass is "
        "this study's step time.",
    ]
