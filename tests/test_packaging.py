"""Declared dependency floors are the versions the code needs."""
import re
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _floor(name: str) -> tuple[int, ...]:
    m = re.search(rf'"{re.escape(name)}>=([0-9.]+)"', PYPROJECT.read_text())
    assert m, f"{name} has no floor in pyproject.toml"
    return tuple(int(p) for p in m.group(1).split("."))


def test_dependency_floors_cover_the_apis_used():
    assert _floor("torch") >= (2, 3)            # torch.amp.GradScaler("cuda", ...) in usdiff.train
    assert _floor("scikit-learn") >= (1, 5)     # TSNE(max_iter=...) in usdiff.latent / the tests


def test_environment_yml_has_the_floors_of_pyproject():
    """conda users get the same floors as pip users (conda-forge names torch `pytorch`)."""
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    conda = {m.group(1): m.group(2) for m in re.finditer(r"^\s+- ([A-Za-z0-9_.-]+)>=([0-9.]+)\s*$",
                                                          (PYPROJECT.parent / "environment.yml").read_text(), re.M)}
    for spec in wanted:
        name, floor = spec.split(">=")
        assert conda.get({"torch": "pytorch"}.get(name, name)) == floor, (spec, conda)
