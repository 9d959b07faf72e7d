"""Timing, peak-memory and reporting helpers shared by the benchmark suites.

A *step* is a callable ``step(leaf) -> scalar loss``; the helpers run ``step(leaf).backward()``
with ``leaf.grad`` cleared first, so every measurement is one forward + backward.

Peak extra memory (bytes allocated beyond what existed before the step, the gradient included):

* CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated() - memory_allocated()``
  (the caching allocator's exact counters; cached-but-free blocks are not counted).
* CPU: ``torch.profiler.profile(profile_memory=True)`` records one event per allocation and free
  made through c10's CPU allocator, which every tensor storage goes through (ATen ops, the
  extension's ``at::empty_like``, Inductor's ``empty_strided_cpu``). The CPU allocator does not
  cache, so each event is a real ``malloc``/``free``; the peak of the running sum of the signed
  sizes, in time order, is the exact peak of live tensor bytes created during the step. Frees of
  blocks allocated before profiling started are not reported (the reporter does not know their
  size), which can only make the figure an upper bound; the steps here free none (the leaf's
  ``.grad`` is cleared *before* profiling). ``probe_self_check`` verifies the method on a
  workload whose peak is known. Memory that bypasses the tensor allocator (small C++ vectors,
  thread stacks) is not counted; it is O(degree), not O(n^2). Cross-checked against the
  kernel's own peak RSS (VmHWM reset through /proc/self/clear_refs, MALLOC_MMAP_THRESHOLD_=65536
  so that frees return pages): at n = 2048, L = 3 both give 1, 2, 6, 8, 1, 2 buffers for the six
  Legendre methods, to 0.01 buffer.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch

Step = Callable[[torch.Tensor], torch.Tensor]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_common_arguments(parser) -> None:
    """Options every suite takes: device, dtype, repeats, CSV output."""
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=default_device(), help="default: cuda if available, else cpu"
    )
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="timed runs per method after warm-up (median reported); default depends on the size",
    )
    parser.add_argument("--csv", metavar="PATH", default=None, help="write every row to this CSV file")
    parser.add_argument("--plot", metavar="PATH", default=None, help="write a PNG plot of the results (matplotlib)")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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


def peak_extra_bytes(step: Step, leaf: torch.Tensor) -> int:
    """Peak bytes allocated by one forward + backward beyond what was live before it.
    Leaves the step's gradient in leaf.grad."""
    leaf.grad = None
    if leaf.device.type == "cuda":
        return _cuda_peak_extra_bytes(step, leaf)
    return _cpu_peak_extra_bytes(step, leaf)


def _cuda_peak_extra_bytes(step: Step, leaf: torch.Tensor) -> int:
    synchronize(leaf.device)
    baseline = torch.cuda.memory_allocated(leaf.device)
    torch.cuda.reset_peak_memory_stats(leaf.device)
    step(leaf).backward()
    synchronize(leaf.device)
    return torch.cuda.max_memory_allocated(leaf.device) - baseline


def _cpu_peak_extra_bytes(step: Step, leaf: torch.Tensor) -> int:
    return profile_cpu_peak_bytes(lambda: step(leaf).backward())


def profile_cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the running sum of CPU tensor allocations and frees made while fn runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return profiled_cpu_peak_bytes(prof)


def profiled_cpu_peak_bytes(prof) -> int:
    """Peak of the running sum of CPU tensor allocations and frees recorded by a finished profile."""
    running = peak = 0
    for _, size in _cpu_allocation_events(prof):
        running += size
        peak = max(peak, running)
    return peak


def _cpu_allocation_events(prof) -> list:
    """(time ns, signed bytes) of every CPU allocation event, in time order. The profiler's
    FunctionEvent view only nets memory per op, so the raw event tree is read instead."""
    from torch._C._profiler import _EventType

    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            fields = event.typed[1]
            if fields.device.type == "cpu":
                events.append((event.start_time_ns, fields.alloc_size))
    events.sort(key=lambda e: e[0])
    return events


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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The processor that runs the benchmark: the GPU's name, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain-text table; the first column is left-aligned, the others right-aligned."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def write_outputs(args, fields: Sequence[str], rows: list, plot: Callable[[list, str, str], None], title: str) -> None:
    """The --csv and --plot outputs every suite offers, each announced."""
    if args.csv:
        write_csv(args.csv, fields, rows)
        print(f"rows written to {args.csv}")
    if getattr(args, "plot", None):
        plot(rows, args.plot, title)
        print(f"plot written to {args.plot}")


def free_port() -> int:
    """A free TCP port on localhost for a process group's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_without_teardown() -> None:
    """Ends a spawned worker whose work is done (process group destroyed) with status 0, skipping
    the interpreter's teardown: on this torch about one run in ten aborted there ("terminate called
    without an active exception", no Python frame left) after a clean destroy_process_group, a
    gloo/c10d shutdown race."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def write_csv(path: str, fields: Sequence[str], rows: Iterable[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k, "")) for k in fields})


def _csv_value(value):
    # NaN marks "does not apply" (e.g. compile time of an eager method): an empty cell says so.
    return "" if isinstance(value, float) and math.isnan(value) else value


def pyplot():
    """matplotlib.pyplot with a file-only backend; a clear error where matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib (or the package's [bench] extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
