"""Widgets that teach: each one computes everything it can show up front, so that moving a slider
only redraws a figure (well under a second on a CPU) instead of running the model again.

Every widget has a figure function that draws one view (``noising_figure``, ``trajectory_figure``,
``strip_figure``, :func:`usdiff.latent.plot_embedding`); notebooks call it for the static
figures that stand in for the widget where no kernel runs (a rendered notebook, nbval). Each widget
returns an ``ipywidgets.VBox`` with ``.controls`` (the input widgets by name), ``.state`` (what the
current view shows, as numbers) and ``.redraw()``.

    w = schedule_widget(image)            # slide t: x_t under both schedules, alpha_bar_t and SNR
    w.controls["t"].value = 700; w.state["snr"]["cosine"]
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .latent import plot_embedding
from .model import alphas_cumprod, get_schedule
from .utils import model_device
from .viz import labelled_toggle, show_in_output, to_numpy_images, wire_widget

__all__ = ["snr", "noising_figure", "schedule_widget", "inversion_trajectories", "trajectory_figure",
           "trajectory_widget", "strip_figure", "strip_widget", "embedding_widget"]


def snr(alpha_bar):
    """Signal-to-noise ratio of ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``: ``SNR = a / (1 - a)`` (Kingma et al. 2021)."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return a / (1 - a).clamp(min=1e-12)


def _one_image(image) -> torch.Tensor:
    x = torch.as_tensor(image, dtype=torch.float32)
    while x.ndim < 4:
        x = x[None]
    if x.shape[:2] != (1, 1):
        raise ValueError(f"image must be one grey image (H, W), (1, H, W) or (1, 1, H, W), got {tuple(x.shape)}")
    return x


def _box(controls: dict, rows: list, output):
    import ipywidgets as widgets

    box = widgets.VBox([*rows, output])
    box.controls, box.state = controls, {}
    return box


# ---- the forward process under two schedules --------------------------------------------------

def noising_figure(image, t: int, schedules: Sequence[str] = ("linear", "cosine"), T: int = 1000, noise=None,
                   seed: int = 0):
    """``x_t`` of one image under each schedule (same noise), and ``log10 SNR(t)`` with `t` marked.

    Args:
        image: one image in [-1, 1]; t: timestep in [0, T-1]; noise: the ``eps`` to use (default: seeded).
    """
    import matplotlib.pyplot as plt

    x0 = _one_image(image)
    if not 0 <= int(t) < T:
        raise ValueError(f"t must be in [0, {T - 1}], got {t}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(1, len(schedules) + 1, figsize=(2.6 * len(schedules) + 3.6, 2.7),
                             gridspec_kw={"width_ratios": [1] * len(schedules) + [1.5]})
    curve = axes[-1]
    for ax, name in zip(axes, schedules):
        ab = alphas_cumprod(get_schedule(name, T))
        x_t = ab[t].sqrt().float() * x0 + (1 - ab[t]).sqrt().float() * noise
        ax.imshow(to_numpy_images(x_t.clamp(-1, 1), (-1, 1))[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name}, t={t}\n" + r"$\bar\alpha_t$" + f"={float(ab[t]):.3f}, SNR={float(snr(ab[t])):.3g}",
                     fontsize=8)
        ax.axis("off")
        line, = curve.plot(np.log10(snr(ab).numpy()), label=name)
        curve.plot([t], [np.log10(float(snr(ab[t])))], "o", color=line.get_color())
    curve.axvline(t, color="0.5", lw=0.8)
    curve.axhline(0, color="0.7", lw=0.8, ls=":")
    curve.set(xlabel="t", ylabel="log10 SNR", title="signal-to-noise ratio")
    curve.title.set_fontsize(9)
    curve.legend(fontsize=7)
    fig.tight_layout()
    return fig


def schedule_widget(image, schedules: Sequence[str] = ("linear", "cosine"), T: int = 1000, t: int = 500,
                    seed: int = 0, draw: bool = True):
    """A ``t`` slider over the forward process: the noised image under each schedule (one fixed noise
    draw, so only ``t`` changes), with ``alpha_bar_t`` and ``SNR(t)``.

    Returns:
        a ``VBox``; ``.controls["t"]``; ``.state``: ``t``, ``alpha_bar`` and ``snr`` per schedule.
    """
    import ipywidgets as widgets

    x0 = _one_image(image)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    bars = {name: alphas_cumprod(get_schedule(name, T)) for name in schedules}
    controls = {"t": widgets.IntSlider(value=t, min=0, max=T - 1, step=10, description="t",
                                       continuous_update=False)}
    output = widgets.Output()
    box = _box(controls, [controls["t"]], output)

    def redraw(_=None):
        k = int(controls["t"].value)
        box.state.clear()
        box.state.update({"t": k, "alpha_bar": {n: float(ab[k]) for n, ab in bars.items()},
                          "snr": {n: float(snr(ab[k])) for n, ab in bars.items()}})
        show_in_output(output, noising_figure(x0, k, schedules, T, noise=noise))

    return wire_widget(box, controls, redraw, draw)


# ---- how an image forms: x0_hat along the reverse trajectory ------------------------------------

@torch.no_grad()
def inversion_trajectories(model, x0, steps: int = 20, seed: int = 0, prior: str = "gaussian") -> dict[str, dict]:
    """Decode one image's ``z_sem`` from its own inverted ``x_T`` and from a random ``x_T`` (drawn from
    `prior`, see :meth:`usdiff.model.DiffAE.random_x_T`), keeping every step
    (:meth:`usdiff.model.DiffAE.decode_trajectory`): ``{"inverted x_T": ..., "random x_T": ...}``."""
    x = _one_image(x0).to(model_device(model))
    z = model.encode(x)
    random_x_T = model.random_x_T(1, steps=steps, prior=prior, generator=torch.Generator().manual_seed(seed))
    starts = {"inverted x_T": model.encode_stochastic(x, z, steps=steps), "random x_T": random_x_T.to(x)}
    return {name: {k: v.cpu() for k, v in model.decode_trajectory(x_T, z, steps=steps).items()}
            for name, x_T in starts.items()}


def trajectory_figure(trajectories: Mapping[str, dict], step: int, image=None):
    """At DDIM step `step` (0 = the start), per trajectory: the state ``x_t`` and the prediction
    ``x0_hat``; the input `image` beside them if given."""
    import matplotlib.pyplot as plt

    names = list(trajectories)
    n_steps = len(trajectories[names[0]]["t"])
    if not 0 <= step < n_steps:
        raise ValueError(f"step must be in [0, {n_steps - 1}], got {step}")
    cols = 2 + (image is not None)
    fig, axes = plt.subplots(len(names), cols, figsize=(2.2 * cols, 2.3 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        tr = trajectories[name]
        t = int(tr["t"][step])
        panels = [(tr["x_t"][step][0], f"{name}\nx_t, t={t}"), (tr["x0"][step][0], r"$\hat x_0$" + f" at t={t}")]
        if image is not None:
            panels.append((_one_image(image)[0], "input"))
        for ax, (im, title) in zip(row, panels):
            ax.imshow(to_numpy_images(im.clamp(-1, 1), (-1, 1))[0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def trajectory_widget(model, x0, steps: int = 20, seed: int = 0, draw: bool = True):
    """A step slider along the DDIM reverse trajectory of one image's ``z_sem``, from its inverted
    ``x_T`` and from a random one: what ``x0_hat`` looks like at every noise level. Both
    trajectories are computed once (``2 * steps + steps`` UNet passes).

    Returns:
        a ``VBox``; ``.controls["step"]``; ``.state``: ``step``, ``t`` and ``trajectories``.
    """
    import ipywidgets as widgets

    trajectories = inversion_trajectories(model, x0, steps=steps, seed=seed)
    controls = {"step": widgets.IntSlider(value=0, min=0, max=steps - 1, description="DDIM step",
                                          continuous_update=False)}
    output = widgets.Output()
    box = _box(controls, [controls["step"]], output)

    def redraw(_=None):
        k = int(controls["step"].value)
        box.state.update({"step": k, "t": int(trajectories["inverted x_T"]["t"][k]), "trajectories": trajectories})
        show_in_output(output, trajectory_figure(trajectories, k, image=x0))

    return wire_widget(box, controls, redraw, draw)


# ---- a precomputed interpolation strip --------------------------------------------------------

def strip_figure(images, alphas, index: int, title: str = "", scores: Mapping[str, Sequence[float]] | None = None):
    """Frame `index` of a strip large, the whole strip small underneath with the frame marked;
    `scores` (name -> one value per frame) are printed in the title."""
    import matplotlib.pyplot as plt

    n = len(images)
    if not 0 <= index < n:
        raise ValueError(f"index must be in [0, {n - 1}], got {index}")
    fig = plt.figure(figsize=(max(6.0, 0.9 * n), 4.6))
    grid = fig.add_gridspec(2, n, height_ratios=[3.2, 1])
    big = fig.add_subplot(grid[0, :])
    big.imshow(to_numpy_images(images[index], (-1, 1))[0], cmap="gray", vmin=0, vmax=1)
    extra = "".join(f", {k} {float(v[index]):.2f}" for k, v in (scores or {}).items())
    big.set_title(f"{title} alpha={float(alphas[index]):.2f}{extra}", fontsize=9)
    big.axis("off")
    for i in range(n):
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(to_numpy_images(images[i], (-1, 1))[0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_color("tab:red" if i == index else "0.8")
            side.set_linewidth(2.5 if i == index else 0.5)
    fig.tight_layout()
    return fig


def strip_widget(strips: Mapping[str, Mapping], scores: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                 draw: bool = True):
    """An alpha slider and a mode toggle over interpolation strips computed beforehand.

    Args:
        strips: mode name (e.g. ``"slerp"``, ``"lerp"``, ``"fixed"``, ``"random"``) -> the dict of
            :func:`usdiff.translate.interpolate` (``images``, ``alphas``); all with the same alphas.
        scores: per mode, name -> one number per frame (e.g. ``{"P(real)": ..., "aortas": ...}``).

    Returns:
        a ``VBox``; ``.controls``: ``mode``, ``alpha`` (index into the alphas); ``.state``: ``mode``,
        ``alpha``, ``image`` and the frame's ``scores``.
    """
    import ipywidgets as widgets

    if not strips:
        raise ValueError("strips must hold at least one named strip")
    alphas = [float(a) for a in next(iter(strips.values()))["alphas"]]
    for name, s in strips.items():
        if len(s["images"]) != len(alphas) or not np.allclose([float(a) for a in s["alphas"]], alphas):
            raise ValueError(f"strip {name!r} has other alphas than the first strip; compute all with the same n_steps")
    mode_row, mode = labelled_toggle(list(strips), "x_T")
    controls = {"mode": mode,
                "alpha": widgets.SelectionSlider(options=[(f"{a:.2f}", i) for i, a in enumerate(alphas)],
                                                 value=0, description="alpha", continuous_update=True)}
    output = widgets.Output()
    box = _box(controls, [mode_row, controls["alpha"]], output)

    def redraw(_=None):
        mode, i = controls["mode"].value, int(controls["alpha"].value)
        frame_scores = {k: float(v[i]) for k, v in (scores or {}).get(mode, {}).items()}
        box.state.clear()
        box.state.update({"mode": mode, "alpha": alphas[i], "image": strips[mode]["images"][i], "scores": frame_scores})
        show_in_output(output, strip_figure(strips[mode]["images"], alphas, i, title=f"x_T {mode}:",
                                   scores=(scores or {}).get(mode)))

    return wire_widget(box, controls, redraw, draw)


# ---- embeddings side by side ---------------------------------------------------------------------

def embedding_widget(embeddings: Mapping, domain, label: str = "perplexity", draw: bool = True):
    """A slider over embeddings computed beforehand (e.g. t-SNE at several perplexities).

    Args:
        embeddings: setting -> ``(N, 2)`` points (checked when drawn, by
            :func:`usdiff.latent.plot_embedding`); domain: ``(N,)`` 0 = sim, 1 = real-like.

    Returns:
        a ``VBox``; ``.controls["setting"]``; ``.state``: ``setting`` and ``points``.
    """
    import ipywidgets as widgets

    if not embeddings:
        raise ValueError("embeddings must hold at least one setting")
    controls = {"setting": widgets.SelectionSlider(options=list(embeddings), description=label,
                                                   continuous_update=True)}
    output = widgets.Output()
    box = _box(controls, [controls["setting"]], output)

    def redraw(_=None):
        key = controls["setting"].value
        box.state.clear()
        box.state.update({"setting": key, "points": np.asarray(embeddings[key])})
        show_in_output(output, plot_embedding(np.asarray(embeddings[key]), domain, title=f"t-SNE, {label} {key}"))

    return wire_widget(box, controls, redraw, draw)
