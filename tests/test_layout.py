"""The package's import arrows go one way (also inside functions): every module has a layer, imports
only from its own layer or lower ones, never forms a cycle, and never reaches for another module's
private names."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "usdiff"

# Lowest first. A key covers that module and, for a package, every module inside it (the longest
# key that names a module or one of its packages wins); `usdiff` itself covers only its __init__.
ORDER = ["utils", "data", "model", "train", "metrics", "latent", "translate", "analysis", "cli"]
LAYERS = {
    "usdiff": "utils",                 # __version__ only
    "usdiff.utils": "utils",           # devices, seeding, small helpers: imports nothing of usdiff
    "usdiff.data": "data",             # phantoms, rendering, data sets
    "usdiff.io": "data",               # image folders in, PNGs out: reads through usdiff.data
    "usdiff.model": "model",
    "usdiff.train": "train",
    "usdiff.metrics": "metrics",
    "usdiff.latent": "latent",
    "usdiff.translate": "translate",
    # what uses the whole stack: notebooks' helpers, folder jobs, downstream tasks, figures
    "usdiff.experiments": "analysis",
    "usdiff.downstream": "analysis",
    "usdiff.pipelines": "analysis",
    "usdiff.widgets": "analysis",
    "usdiff.viz": "analysis",
    "usdiff.cli": "cli",
    "usdiff.__main__": "cli",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module an ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    name = module_name(path)
    package = (name if path.name == "__init__.py" else name.rsplit(".", 1)[0]).split(".")
    return ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))


def imports(path: Path) -> dict[str, int]:
    """Every usdiff module that `path` imports (anywhere in the file), with the line of its first import."""
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = resolve(node, path)
            names = [target] + [f"{target}.{a.name}" for a in node.names]   # `from . import mod` imports mod
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for t in names:
            if t.startswith("usdiff") and t in FILES:
                out[t] = min(out.get(t, node.lineno), node.lineno)
    return out


def arrows() -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of one usdiff module by another."""
    return [(name, t, line) for name, path in FILES.items() for t, line in sorted(imports(path).items())
            if t != name]


def graph() -> dict[str, set[str]]:
    g = {name: set() for name in FILES}
    for src, dst, _ in arrows():
        g[src].add(dst)
    return g


def unit(module: str) -> str | None:
    """The LAYERS key that covers `module`, or None."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    return "usdiff" if module == "usdiff" else None


def layer(module: str) -> int:
    return ORDER.index(LAYERS[unit(module)])


def where(module: str, line: int) -> str:
    return f"{FILES[module].relative_to(PKG.parent)}:{line}"


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state, found = {}, []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return found


def test_the_layer_map_names_known_layers():
    assert set(LAYERS.values()) <= set(ORDER), set(LAYERS.values()) - set(ORDER)


def test_every_module_has_a_layer():
    missing = sorted(m for m in FILES if unit(m) is None)
    assert not missing, f"modules without a layer: {missing}; add them to LAYERS in {Path(__file__).name}"


def test_no_import_cycles_between_modules():
    # a package's __init__ re-exports its modules: edges from a module to its own package's __init__ are cycles too
    found = cycles(graph())
    assert not found, f"import cycles: {found[:3]}"


def test_modules_of_one_layer_import_each_other_one_way():
    """Within a layer the units (a module, or a package as a whole) form no cycle either: one of
    two that import each other's modules sits above the other."""
    g: dict[str, set[str]] = {}
    for src, dst, _ in arrows():
        a, b = unit(src), unit(dst)
        if a and b and a != b and LAYERS[a] == LAYERS[b]:
            g.setdefault(a, set()).add(b)
    found = cycles(g)
    assert not found, f"cycles between units of one layer: {found[:3]}"


def test_the_layers_point_downwards():
    assert all(unit(m) for m in FILES), "a module has no layer (see test_every_module_has_a_layer)"
    upwards = [f"{where(src, line)}: {src} ({LAYERS[unit(src)]}) -> {dst} ({LAYERS[unit(dst)]})"
               for src, dst, line in arrows() if layer(dst) > layer(src)]
    assert not upwards, "imports of a higher layer (order: " + " < ".join(ORDER) + "):\n" + "\n".join(upwards)


def test_the_arrows_include_the_imports_inside_functions():
    g = graph()
    lazy = set()
    for name, path in FILES.items():
        for f in ast.walk(ast.parse(path.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(f):
                    if isinstance(n, ast.ImportFrom) and resolve(n, path) in FILES:
                        lazy.add((name, resolve(n, path)))
    lazy = {(src, dst) for src, dst in lazy if src != dst}
    assert lazy, "no usdiff module imports inside a function: this test checks nothing"
    assert all(dst in g[src] for src, dst in lazy), sorted(a for a in lazy if a[1] not in g[a[0]])


def private_imports() -> list[str]:
    """``file:line: module.name`` for every private name (``_x``, not ``__x__``) that a usdiff
    module takes from another one: ``from m import _x``, or ``m._x`` on an imported module ``m``."""

    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    out = []
    for name, path in FILES.items():
        tree = ast.parse(path.read_text())
        modules = {}                                # local name -> usdiff module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = resolve(node, path)
                if not target.startswith("usdiff") or target == name:
                    continue
                for a in node.names:
                    if f"{target}.{a.name}" in FILES:
                        modules[a.asname or a.name] = f"{target}.{a.name}"
                    if private(a.name):
                        out.append(f"{where(name, node.lineno)}: {target}.{a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in FILES and a.asname:
                        modules[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and modules[node.value.id] != name and private(node.attr)):
                out.append(f"{where(name, node.lineno)}: {modules[node.value.id]}.{node.attr}")
    return sorted(set(out))


def test_no_module_imports_private_names_of_another():
    found = private_imports()
    assert not found, "private names imported from another module:\n" + "\n".join(found)
