"""Make executed notebooks read well when opened from disk (GitHub, JupyterLab without a kernel).

    python scripts/clean_notebooks.py notebooks/*.ipynb        # in place (run by `make notebooks`)
    python scripts/clean_notebooks.py --check notebooks/*.ipynb  # exit 1 if any would change

* a widget's output (a live ipywidgets view, which shows as raw ``VBox(children=...)`` text or
  nothing without a kernel) becomes a short note saying to run the cell for the slider; the cells
  around each widget show its results as static figures;
* finished progress bars (tqdm output on stderr, frozen at whatever they showed last) are removed;
* the kernelspec is the one JupyterLab writes (``python3``, "Python 3 (ipykernel)"), so opening a
  notebook does not mark it modified.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
WIDGET_NOTE = ("Interactive widget: run this cell in JupyterLab (or Colab) to use it. "
               "The figures above show what it computes.")


def _looks_like_progress(text: str) -> bool:
    return "%|" in text or "it/s]" in text or "s/it]" in text or "Progress(" in text


def _is_progress(output: dict) -> bool:
    """A tqdm bar: text on stderr, or (tqdm.auto in a notebook) a progress widget."""
    if output.get("output_type") == "stream":
        return output.get("name") == "stderr" and _looks_like_progress("".join(output.get("text", "")))
    data = output.get("data", {})
    return WIDGET_MIME in data and _looks_like_progress("".join(data.get("text/plain", "")))


def clean(nb: dict) -> dict:
    """The cleaned notebook (a new dict; the input is not modified)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if _is_progress(out):
                continue
            if WIDGET_MIME in out.get("data", {}):
                out = {"output_type": "stream", "name": "stdout", "text": [WIDGET_NOTE + "\n"]}
            outputs.append(out)
        cell["outputs"] = outputs
    nb.setdefault("metadata", {})["kernelspec"] = dict(KERNELSPEC)
    nb["metadata"].pop("widgets", None)  # saved widget state of views that are no longer shown
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebook files")
    parser.add_argument("--check", action="store_true", help="only report notebooks that would change")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        new = dumps(clean(json.loads(text)))
        if new != text:
            dirty.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in dirty:
        print(f"{'would clean' if args.check else 'cleaned'} {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
