"""The records' index (docs/records/README.md) matches the records, and the docs' paths exist.

The index names every file under docs/records and nothing else; each row's status is current,
superseded by a record the index lists as current, or in progress; a superseded record lives in
its suite's superseded/ folder and a current one does not. Every docs/... path and every relative
link (with its #anchor) in README.md, BENCHMARKS.md, CONTRIBUTING.md, docs/*.md and the index
exists, and so do the docs/records/... paths the Makefile and the code name."""

import glob
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "records"
INDEX = RECORDS / "README.md"
STATUSES = ("current", "in progress", "superseded by ")

pytestmark = pytest.mark.skipif(not INDEX.is_file(), reason="not run from a checkout")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./{},*-]*")
AT_COMMIT = re.compile(r"\s+at commit [0-9a-f]{7,40}\b")  # a path of the past, in git only


@dataclass(frozen=True)
class Row:
    line: int
    files: tuple[Path, ...]  # resolved
    status: str
    successors: tuple[Path, ...]  # resolved


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def index_rows(text: str) -> list[Row]:
    """The rows of every table of the index whose header has a file and a status column."""
    rows, header = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        if header is None:
            header = cells(line)
            continue
        if line.startswith("|---") or "file" not in header or "status" not in header:
            continue
        row = cells(line)
        assert len(row) == len(header), f"index line {number}: {len(row)} cells under {len(header)} columns"
        file_cell, status = row[header.index("file")], row[header.index("status")]
        files = tuple((RECORDS / target).resolve() for target in LINK.findall(file_cell))
        successors = tuple((RECORDS / target).resolve() for target in LINK.findall(status))
        rows.append(Row(number, files, status, successors))
    return rows


ROWS = index_rows(INDEX.read_text()) if INDEX.is_file() else []


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def test_the_index_has_a_row_for_each_suite():
    assert len(ROWS) > 10
    suites = {f.relative_to(RECORDS).parts[0] for r in ROWS for f in r.files if f.is_relative_to(RECORDS)}
    assert suites == {"bench", "budget", "demo", "gpu", "study"}
    assert all(r.files for r in ROWS), [r.line for r in ROWS if not r.files]


def test_every_record_is_in_the_index_and_every_file_it_names_exists():
    on_disk = {p.resolve() for p in RECORDS.rglob("*") if p.is_file() and p != INDEX}
    named = [f for r in ROWS for f in r.files]
    assert not [shown(f) for f in on_disk - set(named)], "records missing from docs/records/README.md"
    assert not [shown(f) for f in named if not f.exists()], "the index names files that do not exist"
    duplicates = {shown(f) for f in named if named.count(f) > 1}
    assert not duplicates, f"files in more than one row of the index: {duplicates}"


def test_every_status_is_current_superseded_or_in_progress():
    wrong = [(r.line, r.status) for r in ROWS if not r.status.startswith(STATUSES) or r.status == "superseded by "]
    assert not wrong, f"a status must be current, superseded by <record>, or in progress: {wrong}"


def test_a_superseded_record_lives_under_superseded_and_names_a_current_successor():
    current = {f for r in ROWS if r.status == "current" for f in r.files}
    for r in ROWS:
        where = [shown(f) for f in r.files]
        if r.status.startswith("superseded by "):
            assert all("superseded" in f.relative_to(RECORDS).parts[:-1] for f in r.files), where
            assert r.successors, f"index line {r.line}: superseded by what? ({r.status})"
            for successor in r.successors:
                assert successor.exists(), f"index line {r.line}: the successor {shown(successor)} does not exist"
                assert successor in current, f"index line {r.line}: the successor {shown(successor)} is not current"
        else:
            assert not r.successors, f"index line {r.line}: only a superseded record names a successor"
            inside = [f for f in r.files if f.is_relative_to(RECORDS)]
            assert not any("superseded" in f.relative_to(RECORDS).parts for f in inside), where
            if r.status == "current":
                assert inside == list(r.files), f"index line {r.line}: a current record lives under docs/records"


def expand(pattern: str) -> list[str]:
    """Brace alternatives ({csv,md}) expanded, as a shell would."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def exists(path: str, base: Path = ROOT) -> bool:
    """The path (braces and globs allowed) names at least one file or folder, or is the stem of one
    (the Makefile's docs/records/study/fashion_mnist_v3)."""
    return all(glob.glob(str(base / p)) or glob.glob(str(base / p) + ".*") for p in expand(path))


def docs_paths(text: str) -> list[str]:
    """Every docs/... path the text names, trailing punctuation dropped, except a path of the past
    (one followed by "at commit <hash>": it is in git, not in the tree)."""
    found = []
    for m in DOCS_PATH.finditer(text):
        path = m.group().rstrip(".,")
        if not AT_COMMIT.match(text, m.end()):
            found.append(path)
    return found


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(re.sub(r"```.*?```", "", page.read_text(), flags=re.S)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    return broken


PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES + [INDEX], ids=lambda p: shown(p))
def test_every_relative_link_resolves(page):
    assert not broken_links(page), f"{shown(page)}: links to nothing"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: shown(p))
def test_every_docs_path_the_page_names_exists(page):
    missing = [p for p in docs_paths(page.read_text()) if not exists(p)]
    assert not missing, f"{shown(page)} names paths that do not exist"


def test_the_records_paths_in_the_makefile_and_the_code_exist():
    sources = [ROOT / "Makefile", *sorted((ROOT / "sfrik_experiments").rglob("*.py"))]
    sources += [p for p in sorted((ROOT / "tests").rglob("*.py")) if p != Path(__file__)]  # not this test's own
    missing = {
        (shown(source), path)
        for source in sources
        for path in docs_paths(source.read_text())
        if path.startswith("docs/records/") and not exists(path)
    }
    assert not missing


def test_the_checks_catch_what_they_should(tmp_path):
    """The helpers flag a missing path, a missing anchor and a path of the past correctly."""
    assert docs_paths("see docs/records/x.csv, and docs/old.csv at commit 33ab3a5.") == ["docs/records/x.csv"]
    assert expand("a_{0,1}.{csv,md}") == ["a_0.csv", "a_0.md", "a_1.csv", "a_1.md"]
    assert exists("docs/records/budget/v3.*") and not exists("docs/records/budget/v9.csv")
    page = tmp_path / "page.md"
    page.write_text("# A title: `x`\n[ok](#a-title-x) [no](#nowhere) [gone](gone.md) [web](https://example.org)\n")
    assert broken_links(page) == ["#nowhere", "gone.md"]
    (row,) = index_rows("| file | status |\n|---|---|\n| [a](bench/a.csv) | superseded by [b](bench/b.csv) |\n")
    assert (row.line, row.files, row.successors) == (
        3,
        ((RECORDS / "bench/a.csv").resolve(),),
        ((RECORDS / "bench/b.csv").resolve(),),
    )
