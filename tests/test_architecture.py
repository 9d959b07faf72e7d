"""The import rules of docs/architecture.md, checked on the source: which module of the
package may import which, that the core never imports the applications, that the neutral helpers
(utils) import nothing of the package, and that only the solo-learn integration imports solo-learn.
A new import that breaks a rule fails here; a rule that changes is changed here and in docs/architecture.md."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sfrik_plugin"

# core module -> the package modules it may import (anywhere in the file, lazily included)
CORE = {
    "_extension": set(),
    "defaults": set(),
    "reference": set(),
    "rows": {"series"},
    "sphere_autograd": {"rows"},
    "projector": set(),
    "precision": {"defaults", "sphere_autograd"},
    "validation": {"defaults"},
    "ops": {"_extension"},
    "series": {"_extension", "ops", "reference", "validation"},
    "tiled": {"reference", "series"},
    "distributed": {"tiled"},
    "kernels": {"defaults", "validation"},
    "regulariser": {
        "defaults",
        "distributed",
        "kernels",
        "precision",
        "series",
        "sphere_autograd",
        "tiled",
        "validation",
    },
    "losses": {"defaults", "distributed", "kernels", "regulariser", "sphere_autograd", "validation"},
    "__init__": {"_extension", "kernels", "losses", "regulariser", "series"},
    "baselines": set(),
    "solo_hook": {"solo"},
}
APPLICATIONS = {"bench", "demo", "study", "compare", "solo"}
# The training engine (data, augmentations, networks, pretraining, evaluation, one run) that the
# demo and the study share: it imports the core and utils, never an application.
ENGINE = "engine"
SOLO_LEARN_IMPORTERS = {"solo", "baselines.py"}  # sub-package / module names under sfrik_plugin


def imported_modules(path: Path) -> tuple[set[str], set[str]]:
    """(sfrik_plugin modules, other top-level packages) that path imports, first component only."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts[:-1]  # sub-package of path
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts] if node.module else [base + [a.name] for a in node.names]
                for p in names:
                    ours.add(p[0] if p else "__init__")
            elif node.module and node.module.split(".")[0] == "sfrik_plugin":
                parts = node.module.split(".")
                ours.add(parts[1] if len(parts) > 1 else "__init__")
            elif node.module:
                others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sfrik_plugin":
                    ours.add(parts[1] if len(parts) > 1 else "__init__")
                else:
                    others.add(parts[0])
    return ours, others


def sources():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_module_imports_only_what_the_architecture_allows(module):
    ours, _ = imported_modules(PACKAGE / f"{module}.py")
    assert ours - {module} <= CORE[module], f"{module} imports {sorted(ours - CORE[module] - {module})}"


def test_every_core_module_has_a_rule():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == set(CORE), f"modules without a rule: {sorted(top - set(CORE))}; rules without a module: " + str(
        sorted(set(CORE) - top)
    )


def test_utils_import_nothing_of_the_package():
    for path in (PACKAGE / "utils").glob("*.py"):
        ours, _ = imported_modules(path)
        assert ours <= {"utils"}, f"{path.name} imports {sorted(ours)}"


def test_only_the_solo_integration_imports_solo_learn():
    for path in sources():
        _, others = imported_modules(path)
        top = path.relative_to(PACKAGE).parts[0]
        if "solo" in others:
            assert top in SOLO_LEARN_IMPORTERS, f"{path.relative_to(PACKAGE)} imports solo-learn"


def test_the_engine_imports_no_application():
    for path in (PACKAGE / ENGINE).glob("*.py"):
        ours, _ = imported_modules(path)
        assert not ours & APPLICATIONS, f"engine/{path.name} imports {sorted(ours & APPLICATIONS)}"


@pytest.mark.parametrize("app", sorted(APPLICATIONS))
def test_applications_never_import_each_other(app):
    for path in (PACKAGE / app).rglob("*.py"):
        ours, _ = imported_modules(path)
        others = ours & (APPLICATIONS - {app})
        assert not others, f"{app}/{path.name} imports the application(s) {sorted(others)}"


def module_graph() -> dict[str, set[str]]:
    """module (dotted, under sfrik_plugin) -> the package modules it imports, resolved to modules."""
    names = {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in sources()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        here = path.relative_to(PACKAGE).parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("sfrik_plugin")):
                if node.level:
                    base = list(here[: len(here) - node.level + 1])
                else:
                    base = []
                mod = (node.module or "").split(".") if node.module else []
                if mod and mod[0] == "sfrik_plugin":
                    mod = mod[1:]
                parts = base + mod
                for alias in node.names:
                    for candidate in (".".join(parts + [alias.name]), ".".join(parts), ".".join(parts + ["__init__"])):
                        if candidate in names:
                            targets.add(candidate)
                            break
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "sfrik_plugin" and ".".join(parts[1:]) in names:
                        targets.add(".".join(parts[1:]))
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    cycle = find_cycle(module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds one


def test_the_rules_can_fail(tmp_path):
    # the parser sees relative, absolute and lazy imports alike
    (tmp_path / "sfrik_plugin" / "x").mkdir(parents=True)
    f = tmp_path / "sfrik_plugin" / "x" / "m.py"
    f.write_text("from .. import demo\nfrom ..losses import a\ndef g():\n    import sfrik_plugin.study.cli\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "sfrik_plugin"
    try:
        assert imported_modules(f)[0] == {"demo", "losses", "study"}
    finally:
        PACKAGE = saved
