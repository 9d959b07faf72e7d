"""Synthetic study rows: a results row for a run specification with a given score, and a whole
plan run to its end with a score function instead of training (the study's tuning rule on rows it
can be checked on)."""

from collections.abc import Callable, Sequence

from sfrik_experiments.engine.results import FIELDS
from sfrik_experiments.study import plan


def fake_row(spec, linear, status="ok", **fields) -> dict[str, str]:
    """A results row of the run spec with linear top-1 (and kNN top-1) = linear; fields: other
    columns."""
    return {
        **dict.fromkeys(FIELDS, ""),
        "phase": spec.phase,
        "method": spec.method,
        "q": str(spec.q),
        "seed": str(spec.seed),
        "split": spec.split,
        "setting": spec.setting_text,
        "status": status,
        "linear_top1": str(linear),
        "knn_top1": str(linear),
        "run_id": spec.run_id,
        **{k: str(v) for k, v in fields.items()},
    }


def run_plan(
    preset, score: Callable, phases: Sequence[str] = plan.PHASES, rows: Sequence[dict] = (), row: Callable = fake_row
) -> list[dict[str, str]]:
    """Every run the plan asks for, in order, each given score(spec) (after the rows given), until
    none is left; row(spec, score) makes each row."""
    rows = list(rows)
    while True:
        done = {r["run_id"] for r in rows}
        todo = [s for s in plan.study_runs(preset, rows, phases) if s.run_id not in done]
        if not todo:
            return rows
        rows.append(row(todo[0], score(todo[0])))
