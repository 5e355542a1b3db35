"""Figures of the notebooks: image grids, strips, curves, label maps, code embeddings and the
realism-vs-anatomy plane of translation methods.

Every function takes images as numpy arrays or tensors shaped ``(H, W)``, ``(1, H, W)`` or
``(B, 1, H, W)`` with values in ``[0, 1]`` (use ``value_range=(-1, 1)`` for model outputs) and
returns the matplotlib ``Figure`` so that notebooks can show or save it. The numbers these figures
show are computed in :mod:`usdiff.experiments` and :mod:`usdiff.latent`; the small helpers at the end
(:func:`labelled_toggle`, :func:`wire_widget`, :func:`show_in_output`) serve :mod:`usdiff.widgets`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .latent import DOMAIN_NAMES, check_domain_labels
from .utils import check_matrix, to_unit_range

DOMAIN_COLORS = {0: "tab:orange", 1: "tab:blue"}  # as in the original t-SNE figure
# Colours of overlaid point sets: none is a domain colour, so a placed code never reads as data.
EXTRA_COLORS = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "black"]


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
    return to_unit_range(images, value_range)


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


def plot_strip(images, inputs=None, titles: Sequence[str] | None = None,
               input_titles: Sequence[str] = ("source", "target"), value_range=(-1.0, 1.0),
               size: float = 1.6, suptitle: str | None = None, marks: Mapping[int, str] | None = None):
    """A strip of frames ``(N, 1, H, W)``, optionally with the two inputs above its first and last frame.

    Args:
        inputs: ``(source, target)`` images ``(1, H, W)`` shown above frames 0 and N - 1 (None: no row).
        titles: one title per frame.
        marks: ``{frame index: colour}``: frames to outline (e.g. the two sides of an anatomy jump).

    Returns:
        the matplotlib Figure (``2 + N`` image axes with inputs, ``N`` without).
    """
    frames = to_numpy_images(images, value_range)
    n = len(frames)
    rows = 1 if inputs is None else 2
    fig, axes = plt.subplots(rows, n, figsize=(size * n, size * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k in range(n):
        ax = axes[-1, k]
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(frames[k], cmap="gray", vmin=0, vmax=1)
        if titles is not None and k < len(titles):
            ax.set_title(titles[k], fontsize=8)
        if marks and k in marks:
            for spine in ax.spines.values():
                spine.set_edgecolor(marks[k])
                spine.set_linewidth(3)
    if inputs is not None:
        if len(inputs) != 2:
            raise ValueError(f"inputs must be (source, target), got {len(inputs)} images")
        for col, im, title in zip((0, n - 1), inputs, input_titles):
            ax = axes[0, col]
            ax.imshow(to_numpy_images(im, value_range)[0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"input: {title}", fontsize=8)
        axes[0, 0].set_axis_on()
        axes[0, 0].set_xticks([])
        axes[0, 0].set_yticks([])
        axes[0, n - 1].set_axis_on()
        axes[0, n - 1].set_xticks([])
        axes[0, n - 1].set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_pareto(curves: Mapping[str, Mapping[str, Sequence[float]]], points: Mapping[str, tuple] | None = None,
                ax=None, title: str = "realism vs anatomy"):
    """Realism (critic P(real), x) against kept anatomy (aorta Dice relative to the untranslated images, y).

    Args:
        curves: method -> ``{"p_real": [...], "dice_rel": [...], "values": [...], "knob": name}`` (one
            curve per method across its knob, e.g. from :func:`usdiff.experiments.knob_sweep`; each
            point labelled with its knob value).
        points: name -> ``(p_real, dice_rel)`` single settings (e.g. the test results), drawn as stars.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.4, 4))
    for name, c in curves.items():
        line, = ax.plot(c["p_real"], c["dice_rel"], "o-", ms=4, label=f"{name} ({c.get('knob', 'knob')})")
        for x, y, v in zip(c["p_real"], c["dice_rel"], c["values"]):
            ax.annotate(f"{v:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=line.get_color())
    for name, (x, y) in (points or {}).items():
        ax.plot([x], [y], "*", ms=10, label=name)
    ax.axvline(0.5, color="gray", lw=0.8, ls=":")
    ax.axhline(0.9, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="critic P(real) of the translated images", ylabel="aorta Dice / untranslated", xlim=(-0.02, 1.02),
           title=title)
    ax.legend(fontsize=7, loc="lower left")
    return ax.figure


@dataclass(frozen=True)
class DomainStyle:
    """Legend names and colours per domain label, laid over the defaults (:data:`usdiff.latent.DOMAIN_NAMES`,
    :data:`DOMAIN_COLORS`: 0 simulated in orange, 1 real in blue)."""

    names: Mapping[int, str] = field(default_factory=dict)
    colors: Mapping[int, str] = field(default_factory=dict)


def plot_embedding(emb, y, extra: dict | None = None, ax=None, title: str | None = None, s: float = 8.0,
                   alpha: float = 0.6, domains: DomainStyle = DomainStyle()):
    """Scatter a 2-D embedding ``(N, 2)`` coloured by domain (real blue, simulated orange).

    Args:
        emb: ``(N, 2)`` points (e.g. from :func:`usdiff.latent.embed_tsne` or :func:`usdiff.latent.embed_pca`).
        y: ``(N,)`` domain labels, 0 = sim, 1 = real.
        extra: optional ``{label: (M, 2) points}`` overlaid with distinct markers, e.g. the
            manipulated codes (embedded together with the others) or a path of interpolations.
        s, alpha: marker size and opacity of the data points (overlaid points are 12 x larger, opaque).
        domains: per-label legend names and colours.

    Returns:
        the matplotlib Figure.
    """
    emb = check_matrix(emb, "emb")
    if emb.shape[1] != 2:
        raise ValueError(f"emb must be (N, 2), got shape {emb.shape}")
    y = check_domain_labels(y, len(emb))
    names = {**DOMAIN_NAMES, **domains.names}
    colors = {**DOMAIN_COLORS, **domains.colors}
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    for k in (1, 0):
        pts = emb[y == k]
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, c=colors[k], label=f"{names[k]} ({len(pts)})")
    markers = ["*", "^", "s", "P", "D", "X", "v"]
    for i, (label, pts) in enumerate((extra or {}).items()):
        pts = check_matrix(pts, f"extra[{label!r}]")
        if pts.shape[1] != 2:
            raise ValueError(f"extra[{label!r}] must be (M, 2), got shape {pts.shape}")
        ax.scatter(pts[:, 0], pts[:, 1], s=s * 12, marker=markers[i % len(markers)], edgecolors="k",
                   linewidths=0.6, label=str(label), zorder=3, c=EXTRA_COLORS[i % len(EXTRA_COLORS)])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    if title:
        ax.set_title(title)
    if extra:   # many entries: the legend goes beside the axes, not over the data
        ax.legend(fontsize=7, markerscale=1.2, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=8, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig


# ---- helpers of the widgets (usdiff.widgets) -------------------------------------------------------

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
