"""The notebooks' interactive front ends (ipywidgets), all built the same way.

Each widget returns an ``ipywidgets.VBox`` with ``.controls`` (the input widgets by name),
``.state`` (what the current view shows, as numbers and tensors) and ``.redraw()`` (draws the view
of the current controls; tests and static runs call it directly). ``draw=True`` draws the first view
at once; ``draw=False`` leaves ``.state`` empty until a control changes or ``.redraw()`` is called.
The interpolation widget decodes only when its button is pressed (its ``draw`` defaults to False).

Every view is drawn by a figure function that notebooks also call for the static figures that stand
in for the widget where no kernel runs (a rendered notebook, nbval): ``noising_figure``,
``trajectory_figure``, ``strip_figure``, ``manipulation_figure``, :func:`usdiff.viz.plot_embedding`
and, for the interpolation and translation views, :func:`usdiff.viz.show_grid`. The schedule,
trajectory, strip and embedding widgets compute everything up front, so a slider only redraws; the
manipulation widget caches each image's codes and each view it decoded; the interpolation and
translation widgets run the model for every new view.

    w = schedule_widget(image)            # slide t: x_t under both schedules, alpha_bar_t and SNR
    w.controls["t"].value = 700; w.state["snr"]["cosine"]

==========================  ==========================================================================
``schedule_widget``         the forward process under two schedules
``trajectory_widget``       ``x0_hat`` along the DDIM reverse trajectory
``strip_widget``            precomputed interpolation strips
``embedding_widget``        precomputed embeddings (e.g. t-SNE at several perplexities)
``interpolation_widget``    a source, a target and a step count; a button decodes the strip
``manipulation_widget``     slide alpha along a classifier direction (:class:`AlphaSlider`, :class:`Scoring`)
``translation_widget``      a translation method and its :class:`~usdiff.experiments.Knob`
==========================  ==========================================================================
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .data.phantom import AORTA
from .experiments import DDIMSteps, Knob
from .latent import LinearClassifier
from .metrics.anatomy import count_aortas
from .model import alphas_cumprod, get_schedule
from .translate import interpolate, manipulate_z, translate_batches
from .translate.paths import as_one_image
from .utils import as_image_batch, model_device
from .viz import (
    labelled_toggle,
    plot_embedding,
    show_grid,
    show_in_output,
    to_numpy_images,
    wire_widget,
)

__all__ = ["snr", "noising_figure", "schedule_widget", "inversion_trajectories", "trajectory_figure",
           "trajectory_widget", "strip_figure", "strip_widget", "embedding_widget", "interpolation_widget",
           "AlphaSlider", "Scoring", "manipulation_figure", "manipulation_widget", "translation_widget", "VIEW_DDIM"]

VIEW_DDIM = DDIMSteps(encode=10, decode=10)   # the decoding widgets' default: a view in seconds on a CPU


def snr(alpha_bar):
    """Signal-to-noise ratio of ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``: ``SNR = a / (1 - a)`` (Kingma et al. 2021)."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return a / (1 - a).clamp(min=1e-12)


def _one_image(image) -> torch.Tensor:
    """One grey image as ``(1, 1, H, W)`` float32 (:func:`usdiff.translate.paths.as_one_image`, one channel)."""
    x = as_one_image(image, "image").float()
    if x.shape[1] != 1:
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
            :func:`usdiff.viz.plot_embedding`); domain: ``(N,)`` 0 = sim, 1 = real-like.

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


# ---- an interpolation strip on demand -----------------------------------------------------------

def interpolation_widget(model, sources: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                         n_steps: int = 6, max_steps: int = 12, ddim: DDIMSteps = VIEW_DDIM,
                         judge: LinearClassifier | None = None, draw: bool = False):
    """Pick a source and a target image and a number of steps, press the button, see the strip
    (:func:`usdiff.translate.interpolate`).

    Args:
        sources, targets: named images ``(1, H, W)`` in [-1, 1] for the two dropdowns.
        ddim: DDIM steps of the inversion and of the decoding.
        judge: optional classifier; each frame's title then shows ``P(real)`` of its path code.
        draw: decode and show the first pair's strip at once (default: only when the button is pressed).

    Returns:
        a ``VBox``; ``.controls``: ``source``, ``target``, ``n_steps`` and the ``run`` button (disabled
        while decoding); ``.state``: the last result of :func:`usdiff.translate.interpolate` (CPU tensors).
    """
    import ipywidgets as widgets

    if not sources or not targets:
        raise ValueError("sources and targets must each hold at least one named image")
    controls = {
        "source": widgets.Dropdown(options=list(sources), description="source"),
        "target": widgets.Dropdown(options=list(targets), description="target"),
        "n_steps": widgets.IntSlider(value=n_steps, min=2, max=max(max_steps, n_steps), description="steps"),
        "run": widgets.Button(description="interpolate", button_style="primary"),
    }
    output = widgets.Output()
    box = _box(controls, [widgets.HBox([controls["source"], controls["target"]]),
                          widgets.HBox([controls["n_steps"], controls["run"]])], output)

    def show():
        a, b = sources[controls["source"].value], targets[controls["target"].value]
        res = interpolate(model, a, b, n_steps=controls["n_steps"].value, ddim=ddim, progress=False)
        box.state.clear()
        box.state.update({k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in res.items()})
        titles = [f"a={t:.2f}" for t in res["alphas"].tolist()]
        if judge is not None:
            p = judge.predict_proba(res["z"].double().cpu().numpy())[:, 1]
            titles = [f"{t}\nP(real)={q:.2f}" for t, q in zip(titles, p)]
        n = len(res["images"])   # one row, panels shrink with the step count instead of wrapping
        fig = show_grid(res["images"], titles=titles, value_range=(-1, 1), ncols=n, size=max(1.1, min(1.6, 15 / n)),
                        suptitle=f"{controls['source'].value} -> {controls['target'].value}")
        for ax in fig.axes:
            ax.title.set_fontsize(7 if n > 8 else 9)
        show_in_output(output, fig)

    def redraw(_=None):
        button = controls["run"]
        button.disabled, button.description = True, "computing…"   # feedback while decoding
        try:
            show()
        finally:
            button.disabled, button.description = False, "interpolate"

    controls["run"].on_click(redraw)
    box.redraw = redraw
    if draw:
        redraw()
    return box


# ---- moving z_sem along a classifier direction ----------------------------------------------------

@dataclass(frozen=True)
class AlphaSlider:
    """The alpha slider of :func:`manipulation_widget`: its first `value`, its `bounds` and its `step`."""

    value: float = 1.0
    bounds: tuple[float, float] = (-1.5, 1.5)
    step: float = 0.05


@dataclass(frozen=True)
class Scoring:
    """What each view of :func:`manipulation_widget` measures besides the image change.

    Attributes:
        judge: classifier whose ``P(real)`` of the moved code is shown (None: the selected classifier).
        critics: the independent critics (:func:`usdiff.metrics.critics.load_critics`): the domain
            critic's ``P(real)`` of the *decoded image* (what the user got) and, with `label_maps`, the
            segmenter's aorta Dice against the source's label map.
        label_maps: per image name, its ``(H, W)`` label map (aorta Dice and count of aortas).
    """

    judge: LinearClassifier | None = None
    critics: object | None = None
    label_maps: Mapping[str, np.ndarray] | None = None


def manipulation_widget(model, images: Mapping[str, torch.Tensor], classifiers: Mapping[str, LinearClassifier],
                        alpha: AlphaSlider = AlphaSlider(), ddim: DDIMSteps = VIEW_DDIM,
                        scoring: Scoring = Scoring(), twins: Mapping[str, torch.Tensor] | None = None,
                        draw: bool = True):
    """Slide alpha, toggle the classifier and pick an image; the manipulated image redraws live.

    Each image is encoded to ``(z, x_T)`` the first time it is shown (then cached); moving the
    slider decodes ``manipulate_z(z, classifier, alpha)`` with that ``x_T``, once per view: going
    back to an (image, classifier, alpha) seen before redraws from memory. The view
    (:func:`manipulation_figure`) shows the reconstruction (alpha = 0), the manipulated image, their
    difference (own colour scale) and, if given, the image's real-like twin.

    Args:
        images: named images ``(1, H, W)`` in [-1, 1] for the dropdown.
        classifiers: named fitted classifiers for the toggle (e.g. ``{"BCE": ..., "MSE": ...}``).
        alpha: the slider's first value, bounds and step.
        ddim: DDIM steps of the inversion and of the decoding.
        scoring: the judge of the codes, the critics of the images and the label maps (:class:`Scoring`).
        twins: per image name, the real-like rendering of the same phantom ``(1, H, W)``: the target.
        draw: decode and show the first view at once.

    Returns:
        a ``VBox``; ``.controls``: ``image``, ``classifier`` and ``alpha``; ``.state`` the last view:
        ``image`` name, ``classifier`` name, ``alpha``, ``z`` (moved code), ``x_T``, ``recon`` and
        ``manipulated`` ``(1, 1, H, W)``, ``change`` (mean ``|manipulated - recon|``), ``p_real`` (of
        the code), ``p_critic`` (the domain critic on the decoded image, as in ``sweep_metrics``; None without critics), ``dice_aorta``
        and ``aorta_count`` (None without label maps).
    """
    import ipywidgets as widgets

    if not images or not classifiers:
        raise ValueError("images and classifiers must each hold at least one entry")
    judge, critics, label_maps = scoring.judge, scoring.critics, scoring.label_maps
    for name, extra in (("twins", twins), ("label_maps", label_maps)):
        missing = sorted(set(images) - set(extra)) if extra is not None else []
        if missing:
            raise ValueError(f"{name} must have an entry for every image; missing: {missing}")
    lo, hi = alpha.bounds
    clf_row, clf_toggle = labelled_toggle(list(classifiers), "classifier")
    controls = {
        "image": widgets.Dropdown(options=list(images), description="image"),
        "classifier": clf_toggle,
        "alpha": widgets.FloatSlider(value=alpha.value, min=lo, max=hi, step=alpha.step, description="alpha",
                                     continuous_update=False, readout_format=".2f"),
    }
    output = widgets.Output()
    box = _box(controls, [widgets.HBox([controls["image"], clf_row]), controls["alpha"]], output)
    cache: dict = {}
    decoded: dict = {}
    device = model_device(model)

    @torch.no_grad()
    def codes(name):
        if name not in cache:
            x = as_image_batch(images[name][None] if images[name].ndim == 3 else images[name]).to(device)
            z = model.encode(x)
            x_T = model.encode_stochastic(x, z, steps=ddim.encode, fixed_point_iters=ddim.fixed_point_iters)
            cache[name] = (z, x_T, model.decode(x_T, z, steps=ddim.decode).cpu())
        return cache[name]

    @torch.no_grad()
    def redraw(_=None):
        name, cname, a = controls["image"].value, controls["classifier"].value, float(controls["alpha"].value)
        z, x_T, recon = codes(name)
        z_new = manipulate_z(z, classifiers[cname], a)
        key = (name, cname, round(a, 6))
        if key not in decoded:              # a view seen before redraws without decoding again
            if len(decoded) >= 256:
                decoded.pop(next(iter(decoded)))
            decoded[key] = model.decode(x_T, z_new, steps=ddim.decode).cpu()
        out = decoded[key]
        state = {"image": name, "classifier": cname, "alpha": a, "z": z_new.cpu(), "x_T": x_T.cpu(), "recon": recon,
                 "manipulated": out, "change": float((out - recon).abs().mean()),
                 "p_real": float((judge or classifiers[cname]).predict_proba(z_new.double().cpu().numpy())[0, 1]),
                 "p_critic": None, "dice_aorta": None, "aorta_count": None}
        if critics is not None:
            state["p_critic"] = float(critics.p_real(out, (-1.0, 1.0))[0])
            if label_maps is not None:
                seg = critics.anatomy_scores(out, label_maps[name][None], (-1.0, 1.0))
                state["dice_aorta"] = float(seg["per_image"][0, AORTA])
        if label_maps is not None:
            state["aorta_count"] = int(count_aortas(out[0, 0].numpy(), value_range=(-1.0, 1.0)))
        box.state.clear()
        box.state.update(state)
        show_in_output(output, manipulation_figure(state, twins[name] if twins is not None else None))

    return wire_widget(box, controls, redraw, draw)


def manipulation_figure(state: Mapping, twin=None):
    """One view of :func:`manipulation_widget` (its ``.state``): reconstruction | manipulated |
    |difference| (own scale, colour bar) | `twin` ``(1, H, W)`` if given, with short titles and the
    view's scores in the title."""
    import matplotlib.pyplot as plt

    panels = [(state["recon"], "reconstruction (α = 0)"), (state["manipulated"], f"α = {state['alpha']:+.2f}")]
    if twin is not None:
        panels.append((as_image_batch(twin[None] if twin.ndim == 3 else twin), "real-like twin (target)"))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.5 * (len(panels) + 1) + 0.6, 3.1))
    for ax, (im, title) in zip([axes[0], axes[1], *axes[3:]], panels):
        ax.imshow(to_numpy_images(im, (-1, 1))[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    diff = (state["manipulated"] - state["recon"]).abs()[0, 0].numpy()
    shown = axes[2].imshow(diff, cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-3))
    axes[2].set_title(f"|difference|, mean {state['change']:.3f}", fontsize=9)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.03)
    for ax in axes:
        ax.axis("off")
    facts = [f"P(real) of the code {state['p_real']:.2f}"]
    if state["p_critic"] is not None:
        facts.append(f"critic P(real) of the image {state['p_critic']:.2f}")
    if state["dice_aorta"] is not None:
        facts.append(f"aorta Dice {state['dice_aorta']:.2f}")
    if state["aorta_count"] is not None:
        facts.append(f"aortas found {state['aorta_count']}")
    fig.suptitle(f"{state['classifier']} direction, {state['image']}: " + ", ".join(facts), fontsize=9)
    fig.tight_layout()
    return fig


# ---- translation methods and their knobs ----------------------------------------------------------

def translation_widget(model, methods: Mapping[str, object], knobs: Mapping[str, Knob], images, labels, critics,
                       seed: int = 0, draw: bool = True):
    """Pick a method and an image, slide the method's knob: the translated image redraws with the
    critic's P(real) and the segmenter's aorta Dice against the source's label map.

    Args:
        methods: name -> fitted translation method.
        knobs: name -> the :class:`~usdiff.experiments.Knob` the slider moves (a method missing here
            has no slider, e.g. the CycleGAN).
        images: ``(N, 1, H, W)`` simulated images in [-1, 1]; labels: their label maps ``(N, H, W)``.
        draw: translate and show the first view at once.

    Returns:
        a ``VBox``; ``.controls``: ``method``, ``image`` and ``value``; ``.state`` the last view
        (``method``, ``image``, ``value``, ``translated``, ``p_real``, ``dice_aorta``).
    """
    import ipywidgets as widgets

    if not methods:
        raise ValueError("methods must hold at least one fitted method")
    wrong = {name: type(k).__name__ for name, k in knobs.items() if not isinstance(k, Knob)}
    if wrong:
        raise ValueError(f"knobs must map method names to Knob(name, values), got {wrong}")
    images, labels = as_image_batch(images), np.asarray(labels)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError("images and labels must be non-empty and of equal length")
    first = next(iter(methods))
    controls = {
        "method": widgets.Dropdown(options=list(methods), value=first, description="method"),
        "image": widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image",
                                   continuous_update=False),
        "value": widgets.SelectionSlider(options=[0.0], description="knob", continuous_update=False),
    }
    output = widgets.Output()
    box = _box(controls, [widgets.HBox([controls["method"], controls["image"]]), controls["value"]], output)

    def set_knob(_=None):
        knob = knobs.get(controls["method"].value, Knob("(none)", [0.0]))
        controls["value"].options = [float(v) for v in knob.values]
        controls["value"].description = knob.name

    @torch.no_grad()
    def redraw(_=None):
        name, i, v = controls["method"].value, int(controls["image"].value), float(controls["value"].value)
        knob = knobs[name].name if name in knobs else None
        method = methods[name].with_knobs(**{knob: v}) if knob else methods[name]
        y = translate_batches(method, model, images[i:i + 1], labels=labels[i:i + 1], seed=seed)
        p = float(critics.p_real(y, (-1.0, 1.0))[0])
        dice = float(critics.anatomy_scores(y, labels[i:i + 1], (-1.0, 1.0))["dice_aorta"])
        box.state.clear()
        box.state.update({"method": name, "image": i, "value": v, "translated": y, "p_real": p, "dice_aorta": dice})
        label = f"{name}" + (f", {knob}={v:g}" if knob else "")
        fig = show_grid(torch.cat([images[i:i + 1], y]), value_range=(-1, 1), size=2.6,
                        titles=["simulated source", f"{label}\ncritic P(real)={p:.2f}, aorta Dice={dice:.2f}"])
        show_in_output(output, fig)

    def on_method(_=None):
        set_knob()
        redraw()

    controls["method"].observe(on_method, names="value")   # a new method first sets its knob's values
    set_knob()
    return wire_widget(box, {k: controls[k] for k in ("image", "value")}, redraw, draw)
