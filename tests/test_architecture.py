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
    "rows": {"fallback", "ops", "series"},
    "gram": {"_extension", "ops"},
    "sphere_autograd": {"gram", "rows"},
    "projector": set(),
    "precision": {"defaults", "gram", "sphere_autograd"},
    "validation": {"defaults"},
    "ops": {"_extension"},
    "fallback": set(),
    "series": {"_extension", "fallback", "ops", "validation"},
    "tiled": {"fallback", "ops", "series"},
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
    "sphere_mmd": {"defaults", "regulariser", "sphere_autograd", "validation"},
    "__init__": {"_extension", "kernels", "losses", "regulariser", "series", "sphere_mmd"},
    "baselines": set(),
    "solo_hook": {"solo"},
}
APPLICATIONS = {"bench", "demo", "study", "compare", "solo"}
# The other hosts' adapters (lightly, stable-pretraining): part of the library, on the core only;
# the applications may use them (the benchmarks time the LeJEPA drop-in as users call it).
HOSTS = "hosts"
# The training engine (data, augmentations, networks, pretraining, evaluation, one run) that the
# demo and the study share: it imports the core and utils, never an application.
ENGINE = "engine"
SOLO_LEARN_IMPORTERS = {"solo", "baselines.py"}  # sub-package / module names under sfrik_plugin
STABLE_PRETRAINING_IMPORTERS = {"hosts"}


def parse_imports(path: Path) -> tuple[list[tuple[list[str], list[str]]], set[str]]:
    """path's imports, parsed once for every rule: each import of the package as (the imported
    module's parts under sfrik_plugin, the names taken from it: none for a plain `import`), relative,
    absolute and lazy ones alike; and the other top-level packages it imports."""
    here = path.relative_to(PACKAGE).parts[:-1]  # sub-package of path
    ours: list[tuple[list[str], list[str]]] = []
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:
                parts = list(here[: len(here) - node.level + 1]) + module
            elif module[0] == "sfrik_plugin":
                parts = module[1:]
            else:
                others.add(module[0])
                continue
            ours.append((parts, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sfrik_plugin":
                    ours.append((parts[1:], []))
                else:
                    others.add(parts[0])
    return ours, others


def imported_modules(path: Path) -> tuple[set[str], set[str]]:
    """(sfrik_plugin modules, other top-level packages) that path imports, first component only:
    `from sfrik_plugin import x` (or `from .. import x` at the top) counts x when x is a module or
    sub-package, the package's __init__ otherwise."""
    imports, others = parse_imports(path)
    ours = set()
    for parts, names in imports:
        if parts:
            ours.add(parts[0])
        for name in names if not parts else ():
            is_module = (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()
            ours.add(name if is_module else "__init__")
        if not parts and not names:
            ours.add("__init__")  # import sfrik_plugin
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


def test_only_the_host_adapters_import_stable_pretraining():
    for path in sources():
        _, others = imported_modules(path)
        top = path.relative_to(PACKAGE).parts[0]
        if "stable_pretraining" in others:
            assert top in STABLE_PRETRAINING_IMPORTERS, f"{path.relative_to(PACKAGE)} imports stable-pretraining"


def test_the_host_adapters_import_only_the_core():
    for path in (PACKAGE / HOSTS).glob("*.py"):
        ours, _ = imported_modules(path)
        assert ours - {HOSTS} <= set(CORE), f"hosts/{path.name} imports {sorted(ours - set(CORE) - {HOSTS})}"


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
        for parts, imported in parse_imports(path)[0]:
            if not imported:  # import sfrik_plugin.a.b
                if ".".join(parts) in names:
                    targets.add(".".join(parts))
                continue
            for alias in imported:  # from (the package's) a.b import c: module a.b.c, else a.b
                for candidate in (".".join(parts + [alias]), ".".join(parts), ".".join(parts + ["__init__"])):
                    if candidate in names:
                        targets.add(candidate)
                        break
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
    (tmp_path / "sfrik_plugin" / "demo").mkdir()
    (tmp_path / "sfrik_plugin" / "demo" / "__init__.py").write_text("")
    f = tmp_path / "sfrik_plugin" / "x" / "m.py"
    f.write_text("from .. import demo\nfrom ..losses import a\ndef g():\n    import sfrik_plugin.study.cli\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "sfrik_plugin"
    try:
        assert imported_modules(f)[0] == {"demo", "losses", "study"}
    finally:
        PACKAGE = saved
