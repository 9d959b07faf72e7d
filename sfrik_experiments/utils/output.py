"""Results as people read them: plain-text and Markdown tables, CSV files, and matplotlib without a display."""

import csv
import math
from collections.abc import Iterable, Sequence
from typing import Any


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain-text table; the first column is left-aligned, the others right-aligned."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (the study's and sfrik-compare's reports), each cell as str() writes it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def format_value(value: object, spec: str) -> str:
    """format(value, spec), or "" for a missing value (None or NaN): a table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def write_csv(path: str, fields: Sequence[str], rows: Iterable[dict]) -> None:
    """Writes the CSV under a temporary name and renames it over `path` (never half a file)."""
    from sfrik_plugin.utils.files import atomic_write

    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k, "")) for k in fields})


def _csv_value(value: object) -> object:
    # NaN marks "does not apply" (e.g. compile time of an eager method): an empty cell says so.
    return "" if isinstance(value, float) and math.isnan(value) else value


def pyplot() -> Any:
    """matplotlib.pyplot with a file-only backend; a clear error where matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib (or the package's [bench] extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Any) -> None:
    """Lays the figure out, writes it as a PNG (120 dpi, the size every plot here uses) and frees it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ignore_lightning_import_warnings() -> None:
    """Lightning's import warns that setuptools' pkg_resources is deprecated: nothing a user of these
    commands can act on, so the commands that train do not show it."""
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
