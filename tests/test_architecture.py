"""The import rules of docs/architecture.md, checked on the source: which module of the
library (sfrik_plugin) may import which, that the library never imports the experiments
(sfrik_experiments) nor their dependencies, that the neutral helpers (utils) import nothing of the
package, that the experiments' parts never import each other, and that only the solo-learn
integration imports solo-learn. A new import that breaks a rule fails here; a rule that changes is
changed here and in docs/architecture.md."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sfrik_plugin"
EXPERIMENTS = ROOT / "sfrik_experiments"

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
# The experiments (sfrik_experiments): the engine the demo and the study share, the commands on it,
# and their helpers (output, machine, memory, processes, arguments).
EXPERIMENT_APPS = {"bench", "demo", "study", "compare"}
EXPERIMENT_PARTS = EXPERIMENT_APPS | {"engine", "utils"}
# What the experiments need and the library does not (the bench and demo extras): the library's
# core imports none of them, so that `pip install sfrik-plugin` without extras imports it.
EXPERIMENT_DEPENDENCIES = ("matplotlib", "scipy", "lightning", "pytorch_lightning", "lightly", "pandas")
# The other hosts' adapters (lightly, stable-pretraining): part of the library, on the core only;
# the applications may use them (the benchmarks time the LeJEPA drop-in as users call it).
HOSTS = "hosts"
SOLO_LEARN_IMPORTERS = {"solo", "baselines.py"}  # sub-package / module names under sfrik_plugin
STABLE_PRETRAINING_IMPORTERS = {"hosts"}


def parse_imports(path: Path, package: Path | None = None) -> tuple[list[tuple[list[str], list[str]]], set[str]]:
    """path's imports, parsed once for every rule: each import of package (sfrik_plugin by default)
    as (the imported module's parts under it, the names taken from it: none for a plain `import`),
    relative, absolute and lazy ones alike; and the other top-level packages it imports."""
    package = package or PACKAGE
    here = path.relative_to(package).parts[:-1]  # sub-package of path
    ours: list[tuple[list[str], list[str]]] = []
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module.split(".") if node.module else []
            if node.level:
                parts = list(here[: len(here) - node.level + 1]) + module
            elif module[0] == package.name:
                parts = module[1:]
            else:
                others.add(module[0])
                continue
            ours.append((parts, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package.name:
                    ours.append((parts[1:], []))
                else:
                    others.add(parts[0])
    return ours, others


def imported_modules(path: Path, package: Path | None = None) -> tuple[set[str], set[str]]:
    """(package modules, other top-level packages) that path imports, first component only:
    `from sfrik_plugin import x` (or `from .. import x` at the top) counts x when x is a module or
    sub-package, the package's __init__ otherwise."""
    package = package or PACKAGE
    imports, others = parse_imports(path, package)
    ours = set()
    for parts, names in imports:
        if parts:
            ours.add(parts[0])
        for name in names if not parts else ():
            is_module = (package / f"{name}.py").is_file() or (package / name / "__init__.py").is_file()
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


def test_the_library_never_imports_the_experiments():
    library = [(PACKAGE, p) for p in sources()] + [(ROOT, p) for p in (ROOT / "hydra_plugins").rglob("*.py")]
    for root, path in library:
        _, others = imported_modules(path, root)
        assert "sfrik_experiments" not in others, f"{path.relative_to(ROOT)} imports sfrik_experiments"


def test_the_experiments_are_only_their_parts():
    parts = {p.name for p in EXPERIMENTS.iterdir() if (p / "__init__.py").is_file()}
    assert parts == EXPERIMENT_PARTS, f"sfrik_experiments holds {sorted(parts)}: give a new part its rule here"
    assert {p.stem for p in EXPERIMENTS.glob("*.py")} == {"__init__"}


def test_the_core_imports_none_of_the_experiments_dependencies():
    for module in sorted(CORE):
        _, others = imported_modules(PACKAGE / f"{module}.py")
        needed = others & set(EXPERIMENT_DEPENDENCIES)
        # baselines builds the baselines' losses from the library a user chose (lazily, named)
        assert not needed or module == "baselines", f"{module} imports {sorted(needed)}"
    for path in (PACKAGE / "utils").glob("*.py"):
        _, others = imported_modules(path)
        assert not others & set(EXPERIMENT_DEPENDENCIES), f"utils/{path.name} imports {sorted(others)}"


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is an experiments' dependency")
sys.meta_path.insert(0, Blocker())
import importlib
for module in {modules!r}:
    importlib.import_module(module)
import sfrik_plugin, torch
x = torch.nn.functional.normalize(torch.randn(16, 8, dtype=torch.float64), dim=1)
print("loss", float(sfrik_plugin.SFRIKLoss()(x, x.flip(0))))
"""


@pytest.mark.fresh_interpreter
def test_the_library_runs_without_the_experiments_dependencies():
    # what a user without the extras imports: the core, its helpers and the SFRIK loss (solo-learn's
    # integration and the hosts' adapters need their hosts, which bring Lightning)
    modules = [f"sfrik_plugin.{m}" if m != "__init__" else "sfrik_plugin" for m in sorted(CORE)]
    modules += [f"sfrik_plugin.utils.{p.stem}" for p in sorted((PACKAGE / "utils").glob("*.py"))]
    code = BLOCKER.format(blocked=set(EXPERIMENT_DEPENDENCIES), modules=modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("loss ")
    blocked = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER.format(blocked={"matplotlib"}, modules=["sfrik_experiments.utils.output"]).replace(
                "import sfrik_plugin, torch", "import matplotlib"
            ),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )  # the blocker blocks: the experiments' plots need matplotlib
    assert blocked.returncode != 0 and "experiments' dependency" in blocked.stderr


def experiment_sources(part: str):
    return sorted((EXPERIMENTS / part).rglob("*.py"))


def test_the_engine_imports_no_experiment_command():
    for path in experiment_sources("engine"):
        ours, _ = imported_modules(path, EXPERIMENTS)
        assert not ours & EXPERIMENT_APPS, f"engine/{path.name} imports {sorted(ours & EXPERIMENT_APPS)}"


def test_the_experiments_helpers_import_only_helpers():
    for path in experiment_sources("utils"):
        ours, _ = imported_modules(path, EXPERIMENTS)
        assert ours <= {"utils"}, f"sfrik_experiments/utils/{path.name} imports {sorted(ours)}"
        library = {
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sfrik_plugin"
        }  # of the library, only its neutral helpers (where results go, a run cut short)
        assert all(m.startswith("sfrik_plugin.utils") for m in library), f"utils/{path.name} imports {sorted(library)}"


@pytest.mark.parametrize("app", sorted(EXPERIMENT_APPS))
def test_experiment_commands_never_import_each_other(app):
    for path in experiment_sources(app):
        ours, _ = imported_modules(path, EXPERIMENTS)
        others = ours & (EXPERIMENT_APPS - {app})
        assert not others, f"{app}/{path.name} imports the command(s) {sorted(others)}"


def test_the_solo_integration_imports_no_experiment():
    for path in (PACKAGE / "solo").rglob("*.py"):
        _, others = imported_modules(path)
        assert "sfrik_experiments" not in others, f"solo/{path.name} imports sfrik_experiments"


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module (dotted, under package) -> the package modules it imports, resolved to modules."""
    names = {".".join(p.relative_to(package).with_suffix("").parts): p for p in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for parts, imported in parse_imports(path, package)[0]:
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


@pytest.mark.parametrize("package", [PACKAGE, EXPERIMENTS], ids=lambda p: p.name)
def test_no_import_cycle_between_modules(package):
    cycle = find_cycle(module_graph(package))
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
        f.write_text("def g():\n    from sfrik_experiments.engine import data\n")
        assert imported_modules(f)[1] == {"sfrik_experiments"}  # what the library-side rule looks for
    finally:
        PACKAGE = saved


def test_the_experiments_dependencies_are_the_extras_readme_names():
    """README: the experiments need `pip install ".[demo,bench]"`; every experiments' dependency
    they import is in one of those two extras of pyproject.toml."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {re.split(r"[<>=\[ ]", spec)[0].replace("-", "_") for spec in extras["demo"] + extras["bench"]}
    imported = set()
    for path in EXPERIMENTS.rglob("*.py"):
        imported |= imported_modules(path, EXPERIMENTS)[1] & set(EXPERIMENT_DEPENDENCIES)
    assert {"matplotlib", "lightning", "scipy"} <= imported
    assert imported - {"pytorch_lightning"} <= named, sorted(imported - named)  # lightly brings pytorch_lightning
    assert '".[demo,bench]"' in (ROOT / "README.md").read_text().replace("\n", " ")
