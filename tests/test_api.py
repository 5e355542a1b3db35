"""The public API stays small: no public function or method takes more than 8 parameters.

Two kinds of constructor are exempt: networks (``nn.Module`` and friends: their arguments are the
architecture) and translation methods (their arguments are the method's declared settings, one flag
each on the command line, read back by ``get_params``; grouping them would hide them from both).
"""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "usdiff"
MAX_PARAMS = 8
NETWORK_BASES = {"Module", "nn.Module", "Sampler", "Dataset"}


def public(name: str) -> bool:
    return not name.startswith("_") or name == "__init__"


def params(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return [n for n in names if n not in ("self", "cls")]


def base_names(cls: ast.ClassDef) -> set[str]:
    return {ast.unparse(b) for b in cls.bases}


def declares_settings(cls: ast.ClassDef) -> bool:
    """A translation method: a class that declares its ``fit_settings``."""
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "fit_settings" for t in n.targets)
               for n in cls.body)


def oversized() -> list[str]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(PKG.parent)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and public(node.name) and node.name != "__init__":
                if len(params(node)) > MAX_PARAMS:
                    out.append(f"{where}:{node.lineno} {node.name} ({len(params(node))})")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                network = bool(base_names(node) & NETWORK_BASES) or declares_settings(node)
                for fn in node.body:
                    if not isinstance(fn, ast.FunctionDef) or not public(fn.name):
                        continue
                    if fn.name == "__init__" and network:
                        continue
                    if len(params(fn)) > MAX_PARAMS:
                        out.append(f"{where}:{fn.lineno} {node.name}.{fn.name} ({len(params(fn))})")
    return out


def test_no_public_function_takes_more_than_eight_parameters():
    found = oversized()
    assert not found, f"public functions with more than {MAX_PARAMS} parameters:\n" + "\n".join(found)


def test_the_counter_sees_a_long_signature():
    tree = ast.parse("def f(a, b, c, d, e, f, g, h, i):\n    pass\nclass C:\n    def m(self, a, *, b=1):\n        pass\n")
    fns = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert [len(params(f)) for f in fns] == [9, 2]
