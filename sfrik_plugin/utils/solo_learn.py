"""Where the user's solo-learn checkout is (its scripts, main_*.py, are not part of the installed
package): shared by the solo-learn commands and sfrik-compare."""

from __future__ import annotations

import os
from pathlib import Path


def find_solo_learn_dir(explicit: str | None = None, script: str = "main_knn.py") -> Path:
    """The solo-learn checkout holding ``script`` (main_knn.py): ``explicit``, $SOLO_LEARN_DIR or the current
    directory, the first one given (not the first one that exists: a wrong path is an error)."""
    if explicit:
        where, source = explicit, "--solo-learn-dir"
    elif os.environ.get("SOLO_LEARN_DIR"):
        where, source = os.environ["SOLO_LEARN_DIR"], "$SOLO_LEARN_DIR"
    else:
        where, source = os.getcwd(), "the current directory"
    path = Path(where).expanduser().resolve()
    if not (path / script).is_file():
        raise FileNotFoundError(
            f"no {script} in {path} ({source}): pass the solo-learn checkout with --solo-learn-dir "
            f"or $SOLO_LEARN_DIR, or run from the checkout (see docs/solo-learn.md)"
        )
    return path
