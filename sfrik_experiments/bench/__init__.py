"""Benchmarks of sfrik_plugin: `python -m sfrik_experiments.bench SUITE [options]`.

Suites: legendre (the Legendre-series operators against eager and torch.compile baselines).
Shared timing and peak-memory helpers live in bench.common.
"""
