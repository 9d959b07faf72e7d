"""CPU memory measured from torch.profiler's allocation events (CUDA has torch.cuda.max_memory_allocated).

``torch.profiler.profile(profile_memory=True)`` records one event per allocation and free made
through c10's CPU allocator, which every tensor storage goes through (ATen ops, the extension's
``at::empty_like``, Inductor's ``empty_strided_cpu``). The CPU allocator does not cache, so each
event is a real ``malloc``/``free``; the peak of the running sum of the signed sizes, in time
order, is the exact peak of live tensor bytes created while the profile runs. Frees of blocks
allocated before profiling started are not reported (the reporter does not know their size),
which can only make the figure an upper bound. Memory that bypasses the tensor allocator (small
C++ vectors, thread stacks) is not counted. sfrik_experiments.bench.common.probe_self_check checks the
method on a workload whose peak is known, and it agrees with the process's peak RSS (VmHWM reset
through /proc/self/clear_refs, MALLOC_MMAP_THRESHOLD_ low enough that frees return pages).
"""

from collections.abc import Callable
from typing import Any


def profile_cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the running sum of CPU tensor allocations and frees made while fn runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return profiled_cpu_peak_bytes(prof)


def profiled_cpu_peak_bytes(prof: Any) -> int:
    """Peak of the running sum of CPU tensor allocations and frees recorded by a finished profile."""
    running = peak = 0
    for _, size in cpu_allocation_events(prof):
        running += size
        peak = max(peak, running)
    return peak


def cpu_allocation_events(prof: Any) -> list[tuple[int, int]]:
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
