"""Helpers shared by the commands, benchmarks and tests that are not part of the method:
output tables, CSVs and plots (output), the machine a figure comes from (machine), CPU memory
measurement (memory), and worker processes (processes)."""
