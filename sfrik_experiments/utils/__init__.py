"""Helpers of the experiments: output tables, CSVs and plots (output), the machine a figure comes
from (machine), CPU memory measurement (memory), worker processes (processes) and the commands'
argument types (arguments)."""
