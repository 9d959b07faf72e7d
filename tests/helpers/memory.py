"""What a call allocates: every CPU allocation seen by torch.profiler (profile_memory=True), and
the peak the CUDA caching allocator reaches above what was allocated before the call."""

import torch


def cpu_allocations(fn) -> list[int]:
    """Sizes in bytes of the CPU tensor allocations made while fn runs, in time order. Read from
    the profiler's raw event tree (its FunctionEvent view only nets memory per op)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation:
            fields = event.typed[1]
            if fields.device.type == "cpu" and fields.alloc_size > 0:
                events.append((event.start_time_ns, fields.alloc_size))
    return [size for _, size in sorted(events)]


def cuda_peak_bytes(fn, device="cuda") -> int:
    """Peak of torch.cuda.memory_allocated while fn runs, above its value before."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
