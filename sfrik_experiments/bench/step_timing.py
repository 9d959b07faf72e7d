"""The training-step suite's timing (bench/step.py): every method's step taken in turn, round by
round, so that a drift of the clock or of the machine's load falls on all alike; each step timed
from a synchronised start to a synchronised end; a method out of device memory stopped and said so;
and each method's overhead over the step without a loss ("none")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import common


@dataclass
class Record:
    """One method's timed steps (ms), its last loss, and why it stopped if it did."""

    times: list[float] = field(default_factory=list)
    loss: torch.Tensor | None = None
    failure: str | None = None


def run_rounds(
    steps: dict[str, Callable[[], torch.Tensor]],
    clear: Callable[[], None],
    device: torch.device,
    warmup: int,
    count: int,
    label: str,
) -> dict[str, Record]:
    """warmup + count rounds of one step of every method in turn; the last count rounds timed."""
    records = {name: Record() for name in steps}
    start, total = time.perf_counter(), warmup + count
    for round_index in range(total):
        for name, step in steps.items():
            record = records[name]
            if record.failure is None:
                ms = timed_step(step, clear, device, record, round_index)
                if ms is not None and round_index >= warmup:
                    record.times.append(ms)
        phase = "warm-up" if round_index < warmup else "timed"
        print(f"  {label}: round {round_index + 1}/{total} ({phase}), {time.perf_counter() - start:.1f} s", flush=True)
    return records


def timed_step(
    step: Callable[[], torch.Tensor], clear: Callable[[], None], device: torch.device, record: Record, round_index: int
) -> float | None:
    """ms of one step from a synchronised start to a synchronised end; None (and the record
    marked) where it ran out of device memory."""
    clear()
    common.synchronize(device)
    start = time.perf_counter()
    try:
        record.loss = step()
        common.synchronize(device)
    except torch.cuda.OutOfMemoryError:
        record.failure = f"out of memory (round {round_index + 1})"
        clear()
        torch.cuda.empty_cache()
        return None
    return (time.perf_counter() - start) * 1e3


def timing_fields(times: list[float]) -> dict[str, float]:
    q1, q3 = common.quartiles(times)
    return {
        "ms_median": common.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "ms_q1": q1,
        "ms_q3": q3,
        "steps": len(times),
    }


def add_overheads(rows: list[dict], records: dict[str, Record]) -> None:
    """Each method's overhead over "none" in time (median minus median, and the median of the
    per-round differences) and in peak memory."""
    floor = next((r for r in rows if r["method"] == "none" and r["status"] == "ok"), None)
    if floor is None:
        return
    floor_times = records["none"].times
    for row in rows:
        if row["status"] != "ok":
            continue
        row["overhead_ms"] = row["ms_median"] - floor["ms_median"]
        row["step_vs_none"] = row["ms_median"] / floor["ms_median"]
        times = records[row["method"]].times
        if len(times) == len(floor_times):
            row["overhead_paired_ms"] = common.median([t - f for t, f in zip(times, floor_times)])
        row["memory_overhead_mib"] = row["peak_extra_mib"] - floor["peak_extra_mib"]
