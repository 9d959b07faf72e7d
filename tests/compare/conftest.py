"""Fixtures of the sfrik-compare tests: a stand-in solo-learn checkout."""

from pathlib import Path

import pytest


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A stand-in solo-learn checkout: what find_solo_learn_dir and sfrik-compare look for."""
    root = tmp_path / "solo-learn"
    root.mkdir()
    for script in ("main_knn.py", "main_pretrain.py", "main_linear.py"):
        (root / script).write_text("raise SystemExit('a stand-in, never run')\n")
    return root
