"""The package's shape: data flows one way (docs/architecture.md).

Every module of `src/pytest_emergent` belongs to a stage; a module may import (type-only
imports included) from its own stage and the stages below it, never from one above, and
only `plugin/` imports pytest. An `ast` walk of the source, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pytest_emergent"

#: stage -> rank, in the order data flows; a stage may import only stages of lower or equal
#: rank. errors, resources and stats import nothing of the package above them.
STAGES: dict[str, int] = {
    "errors": 0, "resources": 0, "_io": 0, "stats": 0,
    "spec": 1,
    "models": 2,
    "judging": 3,
    "finetune": 4,
    "mitigations": 5,
    "run": 6,
    "report": 7,
    "integrations": 8, "serve": 8,
    "plugin": 9,
    # the public face and the documented CLI name sit on top
    "__init__": 10, "calibrate": 10,
}


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def stage_of(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


def _type_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports_of(path: Path, src: Path = SRC, *, runtime_only: bool = False
               ) -> list[tuple[str, int]]:
    """(imported module relative to pytest_emergent, or "PYTEST"; line) for every import;
    `from package import submodule` counts as importing the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_only(tree) if runtime_only else set()
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            base = src.joinpath(*node.module.split(".")[1:])
            if node.module.startswith("pytest_emergent") and base.is_dir():
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if (base / f"{a.name}.py").is_file() or (base / a.name).is_dir()]
                names = subs if len(subs) == len(node.names) else [node.module, *subs]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "pytest" or name.startswith(("pytest.", "_pytest")):
                out.append(("PYTEST", node.lineno))
            elif name == "pytest_emergent":
                out.append(("__init__", node.lineno))
            elif name.startswith("pytest_emergent."):
                out.append((name.removeprefix("pytest_emergent."), node.lineno))
    return out


def violations(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        module = module_name(path, src)
        stage = stage_of(module)
        assert stage in STAGES, f"{path}: module {module!r} belongs to no stage of STAGES"
        for target, line in imports_of(path, src):
            where = f"{path.relative_to(src.parent)}:{line}"
            if target == "PYTEST":
                if stage not in ("plugin",):
                    found.append(f"{where}: imports pytest outside plugin/")
                continue
            other = stage_of(target)
            if other not in STAGES:
                found.append(f"{where}: imports {target}, which belongs to no stage")
            elif STAGES[other] > STAGES[stage]:
                found.append(f"{where}: {stage} (rank {STAGES[stage]}) imports {target} "
                             f"({other}, rank {STAGES[other]})")
    return found


def import_cycles(src: Path = SRC) -> list[list[str]]:
    """Strongly connected groups of more than one module in the graph of imports that run
    (type-only imports under `if TYPE_CHECKING:` cannot form a circle at run time)."""
    modules = {module_name(p, src): p for p in src.rglob("*.py")}
    graph = {m: {t for t, _ in imports_of(p, src, runtime_only=True) if t in modules and t != m}
             for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_upward_import_and_pytest_only_in_plugin() -> None:
    assert violations() == []


def test_no_import_cycles() -> None:
    assert import_cycles() == []


def test_the_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    # a copy of the tree with one upward import added: the stats stage reaching into run
    copy = tmp_path / "pytest_emergent"
    for path in SRC.rglob("*.py"):
        target = copy / path.relative_to(SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    bad = copy / "stats" / "gate.py"
    bad.write_text(bad.read_text() + "\nfrom pytest_emergent.run.evaluate import evaluate\n")
    (copy / "spec" / "sneaky.py").write_text("import pytest\n")
    found = violations(copy)
    assert any("stats/gate.py" in f and "imports run.evaluate" in f for f in found), found
    assert any("spec/sneaky.py:1: imports pytest outside plugin/" in f for f in found), found


def test_modules_stay_small() -> None:
    """A module holds one job: none grows past a few hundred lines."""
    limit = 400
    big = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit}
    assert big == {}, f"modules over {limit} lines; split them by job"
