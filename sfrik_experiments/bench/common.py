"""Timing, peak-memory and reporting helpers shared by the benchmark suites.

A *step* is a callable ``step(leaf) -> scalar loss``; the helpers run ``step(leaf).backward()``
with ``leaf.grad`` cleared first, so every measurement is one forward + backward.

Peak extra memory (bytes allocated beyond what existed before the step, the gradient included):

* CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated() - memory_allocated()``
  (the caching allocator's exact counters; cached-but-free blocks are not counted).
* CPU: the peak of the tensor allocator's live bytes, from torch.profiler (sfrik_experiments.utils.memory).
  ``probe_self_check`` verifies the method on a workload whose peak is known.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from sfrik_experiments.utils.arguments import positive_int
from sfrik_experiments.utils.machine import machine_info
from sfrik_experiments.utils.memory import profile_cpu_peak_bytes
from sfrik_experiments.utils.output import write_csv
from sfrik_plugin.baselines import describe

Step = Callable[[torch.Tensor], torch.Tensor]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def with_baselines(doc: str | None) -> str:
    """A suite's help text: its docstring, then the registered baselines, one line each."""
    return f"{doc}\nThe registered baselines (sfrik_plugin.baselines):\n{describe()}\n"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# What identifies a cell of the losses and tiled suites: the first columns of their CSVs.
CELL_FIELDS = ("suite", "n", "q", "dtype", "device")


def cell(suite: str, n: int, q: int, dtype: str, device: torch.device) -> dict[str, object]:
    """The CELL_FIELDS of one row."""
    return {"suite": suite, "n": n, "q": q, "dtype": dtype, "device": str(device)}


def bench_device(name: str) -> torch.device:
    """The --device a suite runs on; a clear exit where CUDA is asked for and absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA device is available")
    return device


def print_machine(device: torch.device) -> None:
    """The machine a suite's figures come from, first in its output."""
    for key, value in machine_info(device).items():
        print(f"{key:>10}: {value}")


def add_size_arguments(
    parser: argparse.ArgumentParser,
    batches: Sequence[int] | None,
    dims: Sequence[int],
    batches_help: str = "global batch sizes n",
) -> None:
    """--batches N.. (unless batches is None) and --dims Q.., the sizes a suite sweeps."""
    if batches is not None:
        parser.add_argument(
            "--batches", type=positive_int, nargs="+", default=list(batches), metavar="N", help=batches_help
        )
    parser.add_argument(
        "--dims", type=positive_int, nargs="+", default=list(dims), metavar="Q", help="embedding widths q"
    )


def add_memory_fraction_argument(parser: argparse.ArgumentParser, skipped: str) -> None:
    """--memory-fraction: what a suite skips where its predicted peak exceeds that fraction of the
    available memory (it would swap, or fail, rather than measure)."""
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.6,
        help=f"skip {skipped} whose predicted peak exceeds this fraction of the available memory",
    )


def add_common_arguments(parser) -> None:
    """Options every suite takes: device, dtype, repeats, CSV and plot output."""
    add_device_argument(parser)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="timed runs per method after warm-up (median reported); default depends on the size",
    )
    add_output_arguments(parser)


def add_device_argument(parser) -> None:
    """--device: cpu or cuda, cuda by default where it is available."""
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=default_device(), help="default: cuda if available, else cpu"
    )


def add_output_arguments(parser) -> None:
    """--csv and --plot, the outputs write_outputs writes."""
    parser.add_argument("--csv", metavar="PATH", default=None, help="write every row to this CSV file")
    parser.add_argument("--plot", metavar="PATH", default=None, help="write a PNG plot of the results (matplotlib)")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_step(step: Step, leaf: torch.Tensor) -> None:
    """One forward + backward from a cleared gradient."""
    leaf.grad = None
    step(leaf).backward()


def first_call_seconds(step: Step, leaf: torch.Tensor) -> float:
    """Wall time of one forward + backward: for a compiled step, its compile time."""
    synchronize(leaf.device)
    start = time.perf_counter()
    run_step(step, leaf)
    synchronize(leaf.device)
    return time.perf_counter() - start


def time_steps_round_robin(steps: dict, leaf: torch.Tensor, repeats: int, warmup: int = 1) -> dict:
    """name -> milliseconds of each of `repeats` forward + backward runs of every step, timed in
    turn (one run of each step per round), so that a change of load on a shared machine falls
    on all steps alike instead of on whichever step happened to be running."""

    def forward_backward(step):
        def call():
            step(leaf).backward()

        return call

    def clear():  # freed outside the timed region, so every run allocates the gradient afresh
        leaf.grad = None

    times = time_calls_round_robin(
        {name: forward_backward(step) for name, step in steps.items()}, leaf.device, repeats, warmup, before_each=clear
    )
    leaf.grad = None
    return times


def time_calls_round_robin(
    calls: dict, device: torch.device, repeats: int, warmup: int = 1, before_each: Callable[[], None] = lambda: None
) -> dict:
    """name -> milliseconds of each of `repeats` runs of every zero-argument call, in turn (see
    time_steps_round_robin); before_each runs untimed before every call."""
    for call in calls.values():
        for _ in range(warmup):
            before_each()
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            before_each()
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(first, third) quartile, interpolated within the range of the values (NaN when empty)."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def fill_measured(
    rows: list[dict], runnable: dict[str, Step], times: dict[str, list[float]], leaf: torch.Tensor
) -> None:
    """The rows of the methods that ran: their times (median, min, count) and peak extra memory,
    measured after the timing rounds (the peak run is not timed)."""
    for row in rows:
        if row["method"] in runnable:
            peak = peak_extra_bytes(runnable[row["method"]], leaf)
            leaf.grad = None
            t = times[row["method"]]
            row.update(ms_median=median(t), ms_min=min(t), repeats=len(t), peak_extra_mib=peak / 2**20)


def peak_extra_bytes(step: Step, leaf: torch.Tensor) -> int:
    """Peak bytes allocated by one forward + backward beyond what was live before it.
    Leaves the step's gradient in leaf.grad."""
    leaf.grad = None
    return call_peak_bytes(lambda: step(leaf).backward(), leaf.device)[1]


def call_peak_bytes(call: Callable[[], object], device: torch.device) -> tuple[float, int]:
    """(peak bytes allocated while call() ran, counting what was live before it; the peak beyond
    what was live before it). The first is the CUDA allocator's max_memory_allocated, NaN on the
    CPU, whose profiler sees only the allocations made while it runs (see the module docstring)."""
    if device.type != "cuda":
        return math.nan, profile_cpu_peak_bytes(call)
    synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return float(peak), peak - baseline


def probe_self_check(n: int, dtype: torch.dtype, device: torch.device) -> float:
    """Measured peak, in n x n buffers, of a workload whose true peak is exactly 3 buffers
    (a, b, c live together; d is allocated after a and b are freed)."""

    def workload(leaf):
        a = torch.empty(n, n, dtype=dtype, device=device)
        b = torch.empty(n, n, dtype=dtype, device=device)
        c = torch.empty(n, n, dtype=dtype, device=device)
        del a, b
        d = torch.empty(n, n, dtype=dtype, device=device)
        del c, d
        return leaf.sum()  # 0-dim: a step needs something to backward through

    leaf = torch.zeros((), dtype=dtype, device=device, requires_grad=True)
    return peak_extra_bytes(workload, leaf) / buffer_bytes(n, dtype)


def buffer_bytes(n: int, dtype: torch.dtype) -> int:
    """Bytes of one n x n tensor of dtype."""
    return n * n * torch.empty((), dtype=dtype).element_size()


def write_rows_so_far(args, fields: Sequence[str], rows: list) -> None:
    """--csv rewritten after each cell of a long suite, so that a run stopped at a time limit
    (the GPU check's) leaves the cells it finished."""
    if args.csv:
        write_csv(args.csv, fields, rows)


def write_outputs(args, fields: Sequence[str], rows: list, plot: Callable[[list, str, str], None], title: str) -> None:
    """The --csv and --plot outputs every suite offers, each announced."""
    if args.csv:
        write_csv(args.csv, fields, rows)
        print(f"rows written to {args.csv}")
    if getattr(args, "plot", None):
        plot(rows, args.plot, title)
        print(f"plot written to {args.plot}")
