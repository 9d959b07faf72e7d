"""Helpers shared by the test modules, importable as `helpers.<module>` from any test folder and
from processes the tests spawn (pyproject.toml puts tests/ on sys.path through pytest's
`pythonpath` option). Fixtures and hooks stay in tests/conftest.py; no test module imports
another test module or conftest.

    cuda        the compiled extension's state, requires_extension, the requires_cuda marker
    references  scipy / numpy oracles of the Legendre polynomials (independent of the package)
    tensors     test inputs: Gram matrices of unit rows, device-aware conversions
    images      tiny labelled image folders (demo, study, compare, solo-learn)
    solo        solo-learn: config names, composed configs, training steps, script runs
    dist        the worker of the two-process gloo test
    extension   the probe that loading-fault tests run in fresh interpreters
    fuzz        hypothesis settings, the watchdog and the float64 oracle of the fuzz tests
    memory      allocations seen by the profiler or the CUDA caching allocator
    processes   fresh Python processes: run_python, run_code and their failure message
    records     the recorded results in docs/records/ and the methods' printed names
"""
