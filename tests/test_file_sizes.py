"""No source file of the repository is longer than MAX_LINES lines (issue 30): a module that grows
past it is split into modules with one job each, a test module into test modules by topic
(docs/architecture.md). Every .py, .cpp, .cu and .h file git tracks counts, tests, scripts and
examples included; `git ls-files` says which are tracked, so build outputs and virtual
environments do not."""

import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
SUFFIXES = (".py", ".cpp", ".cu", ".h")


def tracked_sources(root: Path = ROOT) -> list[Path]:
    """The tracked source files (SUFFIXES) that are in the checkout (a tracked file deleted and not
    yet committed is not)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *(f"*{suffix}" for suffix in SUFFIXES)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [root / name for name in listed.split("\0") if name and (root / name).is_file()]


def too_long(paths: Iterable[Path], limit: int = MAX_LINES) -> list[str]:
    """'path: N lines' of each file longer than limit lines, longest first."""
    counts = {path: len(path.read_bytes().splitlines()) for path in paths}
    over = sorted((n, path) for path, n in counts.items() if n > limit)
    return [f"{path}: {n} lines" for n, path in reversed(over)]


@pytest.mark.fresh_interpreter  # starts git
def test_no_tracked_source_file_is_longer_than_the_limit():
    sources = tracked_sources()
    assert {p.suffix for p in sources} == set(SUFFIXES), "git ls-files listed none of some kind: the listing is wrong"
    assert ROOT / "sfrik_plugin" / "losses.py" in sources and ROOT / "tests" / "test_architecture.py" in sources
    over = too_long(sources)
    listing = "\n".join(line.replace(f"{ROOT}/", "") for line in over)
    assert not over, f"longer than {MAX_LINES} lines (split them by job, docs/architecture.md):\n{listing}"


def test_the_limit_can_fail(tmp_path):
    at, over, much = tmp_path / "at.py", tmp_path / "over.cu", tmp_path / "much.h"
    at.write_text("x = 1\n" * MAX_LINES)
    over.write_text("// line\n" * (MAX_LINES + 1))
    much.write_text("// line\n" * 2 * MAX_LINES + "// no newline at the end")
    assert too_long([at, over, much]) == [f"{much}: {2 * MAX_LINES + 1} lines", f"{over}: {MAX_LINES + 1} lines"]
