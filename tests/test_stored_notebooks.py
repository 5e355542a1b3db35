"""The stored notebooks read well from disk: no raw widget reprs, no frozen progress bars, JupyterLab's kernelspec."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
spec = importlib.util.spec_from_file_location("clean_notebooks", ROOT / "scripts" / "clean_notebooks.py")
clean_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clean_notebooks)


def test_clean_replaces_widgets_strips_progress_bars_and_sets_the_kernelspec():
    nb = {"metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "widgets": {}},
          "cells": [{"cell_type": "code", "outputs": [
              {"output_type": "stream", "name": "stderr", "text": ["sample:   0%|          | 0/600 [00:00<?, ?img/s]"]},
              {"output_type": "stream", "name": "stderr", "text": ["a real warning\n"]},
              {"output_type": "display_data", "data": {"text/plain": ["encode:   0%|          | 0/100 [00:00<?, ?it/s]"],
                                                       clean_notebooks.WIDGET_MIME: {"model_id": "y"}}},
              {"output_type": "display_data", "data": {"text/plain": ["VBox(children=(HBox("],
                                                       clean_notebooks.WIDGET_MIME: {"model_id": "x"}}}]}]}
    out = clean_notebooks.clean(nb)
    texts = [o["text"][0] for o in out["cells"][0]["outputs"]]
    assert texts == ["a real warning\n", clean_notebooks.WIDGET_NOTE + "\n"]
    assert out["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)" and "widgets" not in out["metadata"]
    assert clean_notebooks.clean(out) == out                     # idempotent
    assert nb["cells"][0]["outputs"][0]["name"] == "stderr"      # the input is not modified


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_notebook_is_clean(path):
    text = path.read_text(encoding="utf-8")
    assert clean_notebooks.dumps(clean_notebooks.clean(json.loads(text))) == text, \
        f"run: python scripts/clean_notebooks.py {path.relative_to(ROOT)}"
