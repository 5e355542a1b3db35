"""Declared dependency floors are the versions the code needs, the environment meets them, and
pip and conda users get the same ones."""
import inspect
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
REQUIRED = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]


def release(text: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"2.3.1+cu121"`` -> ``(2, 3, 1)``."""
    m = re.match(r"\d+(\.\d+)*", text)
    assert m, f"not a version: {text!r}"
    return tuple(int(p) for p in m.group().split("."))


def floors(specs) -> dict[str, tuple[int, ...]]:
    out = {}
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec)
        assert m, f"{spec!r}: every dependency is declared as NAME>=FLOOR"
        out[m.group(1)] = release(m.group(2))
    return out


def _grad_scaler_takes_a_device():
    import torch

    return "device" in inspect.signature(torch.amp.GradScaler).parameters


def _tsne_takes_max_iter():
    from sklearn.manifold import TSNE

    return "max_iter" in inspect.signature(TSNE).parameters


# (package, the release that introduced the API, a file that uses it, how it is used, the API exists here)
APIS = [
    ("torch", (2, 3), "usdiff/train.py", r'torch\.amp\.GradScaler\("cuda"', _grad_scaler_takes_a_device),
    ("scikit-learn", (1, 5), "tests/test_latent.py", r"embed_tsne\([^)]*max_iter=", _tsne_takes_max_iter),
]


@pytest.mark.parametrize("spec", REQUIRED + PROJECT["optional-dependencies"]["bench"])
def test_installed_versions_meet_the_declared_floors(spec):
    (name, floor), = floors([spec]).items()
    try:
        installed = version(name)
    except PackageNotFoundError:
        if spec in REQUIRED:
            raise AssertionError(f"{name} is a declared dependency but is not installed") from None
        pytest.skip(f"optional {name} is not installed")
    assert release(installed) >= floor, f"{name} {installed} is older than the declared floor {spec}"


@pytest.mark.parametrize("package, since, path, usage, exists", APIS, ids=[a[0] for a in APIS])
def test_dependency_floors_cover_the_apis_used(package, since, path, usage, exists):
    assert re.search(usage, (ROOT / path).read_text()), f"{path} does not match {usage!r}: update APIS"
    assert exists(), f"the installed {package} lacks the API that {path} uses"
    floor = floors(REQUIRED)[package]
    assert floor >= since, f"{path} needs {package}>={'.'.join(map(str, since))}, pyproject.toml allows {floor}"


def test_environment_yml_has_the_floors_of_pyproject():
    """conda users get the same floors as pip users (conda-forge names torch `pytorch`)."""
    conda = {m.group(1): m.group(2) for m in re.finditer(r"^\s+- ([A-Za-z0-9_.-]+)>=([0-9.]+)\s*$",
                                                          (ROOT / "environment.yml").read_text(), re.M)}
    pip = {{"torch": "pytorch"}.get(name, name): floor for name, floor in
           (spec.split(">=") for spec in REQUIRED)}
    assert conda == pip, {"only conda": conda.keys() - pip.keys(), "only pip": pip.keys() - conda.keys(),
                          "differ": {k for k in conda.keys() & pip.keys() if conda[k] != pip[k]}}
