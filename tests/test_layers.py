"""The layering of the code, read from its imports (every import statement of every module, walked as an AST):
dissectors describe, the engine in voipwatch/ runs them, detectors judge. Nothing below detectors/ imports it
except the registry loader, and no module imports itself through a chain of others."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("voipwatch", "dissectors", "detectors")
REGISTRY_LOADER = ("voipwatch.detect", "_import_detector_modules")   # module, function allowed to import detectors


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, enclosing function or None, line) for every import in a module, relative ones resolved;
    `from package import submodule` counts as an import of the submodule."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((alias.name, function, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if sub in MODULES else base, function, child.lineno))
            visit(child, inner)

    visit(tree, None)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(target: str) -> str | None:
    """The repository module an import names (a module, or the package whose attribute it takes), else None."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_the_walk_sees_every_layer():
    assert {"voipwatch.detect", "voipwatch.pipeline", "dissectors.sip", "detectors.cross_vlan"} <= set(MODULES)
    assert ("dissectors.dispatch", None) in {(t, f) for t, f, _ in IMPORTS["voipwatch.pipeline"]}
    assert ("dissectors.sip", None) in {(t, f) for t, f, _ in IMPORTS["dissectors.dispatch"]}


def test_only_the_registry_loader_imports_detectors():
    offenders = [f"{MODULES[name].relative_to(REPO)}:{line} imports {target}"
                 for name, imports in IMPORTS.items() if not name.startswith("detectors")
                 for target, function, line in imports
                 if target.split(".")[0] == "detectors" and (name, function) != REGISTRY_LOADER]
    assert offenders == []
    assert ("detectors", REGISTRY_LOADER[1]) in {(t, f) for t, f, _ in IMPORTS[REGISTRY_LOADER[0]]}


def test_dissectors_import_only_dissectors_and_records():
    offenders = [(name, target) for name, imports in IMPORTS.items() if name.startswith("dissectors")
                 for target, _, _ in imports
                 if (_internal(target) or "dissectors").split(".")[0] != "dissectors"
                 and _internal(target) != "voipwatch.records"]
    assert offenders == []


def test_no_import_cycle():
    """Every import counts, also those inside functions: a cycle through a lazy import is still a cycle."""
    graph = {name: sorted({t for target, _, _ in imports if (t := _internal(target)) and t != name})
             for name, imports in IMPORTS.items()}
    state: dict[str, int] = {}          # 1 on the current path, 2 done
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [node, nxt])
            elif nxt not in state:
                walk(nxt, path + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert cycles == []
