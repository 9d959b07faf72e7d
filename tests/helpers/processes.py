"""Fresh Python processes of the tests: one way to start them (output captured, a timeout) and one
failure message (the command and the tails of both streams)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping

TIMEOUT_S = 600


def run_python(
    *args: object,
    cwd: object = None,
    set_env: Mapping[str, str] | None = None,
    unset_env: Iterable[str] = (),
    timeout: float = TIMEOUT_S,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """`python ARGS` (a script, `-m module` or `-c code`) in cwd, with this process's environment
    less unset_env plus set_env; with check, asserts that it exited with 0."""
    drop = set(unset_env)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(set_env or {})
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, failure(proc)
    return proc


def run_code(code: str, **options) -> subprocess.CompletedProcess:
    """`python -c CODE` (dedented); the options of run_python."""
    return run_python("-c", textwrap.dedent(code), **options)


def failure(proc: subprocess.CompletedProcess) -> str:
    """What a test says of a process that did not do what it should."""
    shown = " ".join(str(a) for a in proc.args[1:6]) + (" ..." if len(proc.args) > 6 else "")
    return (
        f"`python {shown}` exited with {proc.returncode}\n"
        f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-8000:]}"
    )
