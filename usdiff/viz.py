"""Plotting helpers used by the notebooks: image grids, strips and curves.

Every function takes images as numpy arrays or tensors shaped ``(H, W)``, ``(1, H, W)`` or
``(B, 1, H, W)`` with values in ``[0, 1]`` (use ``value_range=(-1, 1)`` for model outputs) and
returns the matplotlib ``Figure`` so that notebooks can show or save it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_images(images, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Any image batch -> float array ``(B, H, W)`` in ``[0, 1]``.

    Raises:
        ValueError: if `images` is not 2-D, 3-D ``(B|1, H, W)`` or 4-D ``(B, 1, H, W)``.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    elif isinstance(images, (list, tuple)):
        images = np.stack([to_numpy_images(im, value_range)[0] for im in images])
        value_range = (0.0, 1.0)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    elif images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must have 1 channel, got shape {images.shape}")
        images = images[:, 0]
    elif images.ndim != 3:
        raise ValueError(f"images must be (H, W), (B, H, W) or (B, 1, H, W), got shape {images.shape}")
    lo, hi = value_range
    return np.clip((images - lo) / (hi - lo), 0.0, 1.0)


def show_grid(
    images,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    cmap: str = "gray",
    size: float = 2.0,
    suptitle: str | None = None,
    row_labels: Sequence[str] | None = None,
):
    """Show a batch ``(B, 1, H, W)`` as a grid with optional per-image titles and row labels."""
    imgs = to_numpy_images(images, value_range)
    n = len(imgs)
    ncols = ncols or min(n, 8)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(imgs[i], cmap=cmap, vmin=0, vmax=1)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_rows(rows: dict[str, object], titles: Sequence[str] | None = None,
              value_range: tuple[float, float] = (0.0, 1.0), size: float = 1.8, suptitle: str | None = None):
    """Several equally long image strips stacked as rows, each labelled by its dict key."""
    arrays = [to_numpy_images(v, value_range) for v in rows.values()]
    ncols = len(arrays[0])
    if any(len(a) != ncols for a in arrays):
        raise ValueError("all rows must have the same number of images")
    return show_grid(np.concatenate(arrays), titles=titles, ncols=ncols, size=size,
                     suptitle=suptitle, row_labels=list(rows.keys()))


def plot_curves(x, curves: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str | None = None,
                ax=None, **kwargs):
    """Line plot of several named curves over the same `x`; returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=kwargs.pop("figsize", (5, 3.2)))
    else:
        fig = ax.figure
    for name, ys in curves.items():
        ax.plot(x, ys, marker="o", ms=3, label=name, **kwargs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save `fig` as PNG, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def show_label_maps(label_maps, titles: Sequence[str] | None = None, size: float = 1.9, suptitle: str | None = None):
    """Tissue label maps ``(B, H, W)`` in their tissue colours, with a legend naming every tissue shown."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .data.phantom import LABEL_NAMES, NUM_LABELS, tissue_colors

    maps = np.asarray(label_maps.cpu() if isinstance(label_maps, torch.Tensor) else label_maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.size == 0 or maps.min() < 0 or maps.max() >= NUM_LABELS:
        raise ValueError(f"label_maps must be (B, H, W) with labels in [0, {NUM_LABELS - 1}], got shape {maps.shape}")
    colours = tissue_colors()
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 1.6, size + (0.4 if suptitle else 0)),
                             squeeze=False)
    for i, (ax, lab) in enumerate(zip(axes[0], maps)):
        ax.imshow(lab, cmap=ListedColormap(colours), vmin=-0.5, vmax=NUM_LABELS - 0.5, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    present = sorted(set(np.unique(maps).tolist()))
    fig.legend(handles=[Patch(color=colours[k], label=LABEL_NAMES[k]) for k in present], loc="center right",
               fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / (size * len(maps) + 1.6), 1))
    return fig


def labelled_toggle(options, label: str):
    """``(row, toggle)``: ToggleButtons with their label in a Label beside them, not in the toggle's
    own description, which JupyterLab lays out above the buttons when they wrap."""
    import ipywidgets as widgets

    toggle = widgets.ToggleButtons(options=options, description="", style={"button_width": "auto"})
    return widgets.HBox([widgets.Label(label, layout=widgets.Layout(width="auto", margin="0 8px 0 0")), toggle]), toggle


def wire_widget(box, controls: dict, redraw, draw: bool = True):
    """Call ``redraw`` whenever one of `controls` changes value, keep it as ``box.redraw`` (tests
    and static runs call it directly) and draw the first view now if `draw`. Returns `box`."""
    for c in controls.values():
        c.observe(redraw, names="value")
    box.redraw = redraw
    if draw:
        redraw()
    return box


def show_in_output(output, fig) -> None:
    """Draw `fig` into an ipywidgets ``Output`` (replacing what it showed) and close it, so that a
    widget's redraw neither stacks figures nor leaks them."""
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)
    plt.close(fig)
