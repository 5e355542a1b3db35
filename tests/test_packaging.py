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
