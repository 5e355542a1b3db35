"""The package's import arrows go one way: no module imports another that imports it back (also inside functions)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "usdiff"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("usdiff"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("usdiff"))
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    g = {}
    for name, path in files.items():
        g[name] = {t for t in imports(path) if t in files and t != name}
    return g


def test_no_import_cycles_between_modules():
    g = graph()
    # a package's __init__ re-exports its modules: edges from a module to its own package's __init__ are cycles too
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 1
        for nxt in g[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in g:
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_the_layers_point_downwards():
    g = graph()
    assert not any(t.startswith("usdiff.analysis") for t in g["usdiff.translate.folder"] | g["usdiff.translate.base"])
    assert "usdiff.translate" not in g["usdiff.latent"] and "usdiff.analysis" not in g["usdiff.latent"]
    assert not any(t.startswith("usdiff.downstream") or t.startswith("usdiff.cli")
                   for name, deps in g.items() if name not in ("usdiff.cli", "usdiff.__main__") for t in deps)
