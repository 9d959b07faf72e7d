"""What a call allocates: every CPU allocation seen by torch.profiler (profile_memory=True), and
the peak the CUDA caching allocator reaches above what was allocated before the call."""

import torch


def cpu_allocations(fn) -> list[int]:
    """Sizes in bytes of the CPU tensor allocations made while fn runs, in time order (frees left
    out), from the package's reading of the profiler's raw event tree."""
    from torch.profiler import ProfilerActivity, profile

    from sfrik_experiments.utils.memory import cpu_allocation_events

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return [size for _, size in cpu_allocation_events(prof) if size > 0]


def cuda_peak_bytes(fn, device="cuda") -> int:
    """Peak of torch.cuda.memory_allocated while fn runs, above its value before."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
