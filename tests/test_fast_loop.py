"""The contributor's loop (make test-fast, docs/testing.md "Two loops"): its target leaves out the
slow and fresh_interpreter tests and turns the guard on; the markers are registered (and no stale
one); the guard fails an unmarked test that starts a process or calls torch.compile, naming the
marker, and lets a marked one run."""

import re
from pathlib import Path

import pytest
from helpers.processes import run_python

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "Makefile").is_file(), reason="not run from a checkout")


def test_the_target_and_the_markers():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test-fast:.*\n\t(.*)$", makefile, re.M)
    assert recipe is not None
    assert "SFRIK_FAST_LOOP=1" in recipe.group(1) and '-m "not slow and not fresh_interpreter"' in recipe.group(1)
    block = re.search(r"^markers = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    assert block is not None
    names = set(re.findall(r'^\s*"(\w+):', block.group(1), re.M))  # (tomllib: Python 3.11 on)
    assert names == {"slow", "fresh_interpreter"}  # requires_cuda: registered in conftest.py


TESTS = """
import subprocess, sys
import pytest
import torch

def test_unmarked_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_unmarked_compile():
    torch.compile(lambda x: x + 1)

@pytest.mark.fresh_interpreter
def test_marked_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

def test_plain():
    assert torch.ones(2).sum() == 2
"""


@pytest.mark.fresh_interpreter
def test_the_guard_fails_an_unmarked_test_that_starts_a_process_or_compiles(tmp_path):
    (tmp_path / "test_sample.py").write_text(TESTS)
    path = {"PYTHONPATH": str(ROOT / "tests")}
    args = (
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "helpers.fast_loop",
        "-o",
        "markers=fresh_interpreter",
    )
    proc = run_python(
        *args, tmp_path / "test_sample.py", cwd=tmp_path, set_env={**path, "SFRIK_FAST_LOOP": "1"}, check=False
    )
    out = proc.stdout + proc.stderr
    assert "2 failed, 2 passed" in out, out[-3000:]
    assert "test_unmarked_process starts a process but is not marked fresh_interpreter" in out
    assert "test_unmarked_compile calls torch.compile but is not marked fresh_interpreter" in out
    # without the variable the guard is off: the same file passes
    proc = run_python(*args, tmp_path / "test_sample.py", cwd=tmp_path, set_env=path, unset_env=["SFRIK_FAST_LOOP"])
    assert "4 passed" in proc.stdout, proc.stdout[-2000:]
