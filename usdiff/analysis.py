"""Measuring translations: codes of a data set, anatomy along a strip, manipulation sweeps, widgets.

The notebooks on interpolation, classifier manipulation and the latent space share these steps:

* :func:`encode_dataset` / :func:`encode_images`: semantic codes ``z_sem`` of many images;
* :func:`reconstruction_error`: how exactly ``(x_T, z_sem)`` gives an image back (MSE, PSNR, cost);
* :func:`strip_anatomy`: aortas along an interpolation strip, their distance to the source and
  target label maps, and where the anatomy *jumps* (the lowest Dice of the dark-structure masks
  of two consecutive frames);
* :func:`manipulation_sweep` and :func:`sweep_metrics`: decode images after moving their
  ``z_sem`` along one or more classifier directions by a range of alphas (each image keeps its
  own ``x_T``), then score realness (a judge classifier on the moved code and on the re-encoded
  image, the Fréchet distance to real codes) and anatomy (aorta count and position) per alpha;
* :func:`nearest_domain`: where moved or interpolated codes land among the codes of the data:
  the share of real codes among their nearest neighbours, and how far off the data they are;
* :func:`plot_strip`: a strip of frames with its two inputs above the ends;
* :func:`interpolation_widget` and :func:`manipulation_widget`: ipywidgets front ends.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.phantom import AORTA
from .latent import LinearClassifier, encode_dataset, encode_images
from .latent import as_image_batch as _as_batch
from .metrics.anatomy import (
    anatomy_score,
    aorta_position_error,
    count_aortas,
    dark_structure_mask,
    dice,
)
from .metrics.c2st import wilson_interval
from .metrics.frechet import fid_from_features
from .translate import interpolate, manipulate_z, translate_batches
from .utils import model_device as _model_device

__all__ = [
    "encode_images",
    "encode_dataset",
    "reconstruction_error",
    "strip_anatomy",
    "anatomy_table",
    "manipulation_sweep",
    "sweep_metrics",
    "nearest_domain",
    "plot_strip",
    "translate_batches",
    "knob_sweep",
    "pick_balanced",
    "translation_verdicts",
    "liver_speckle_snr",
    "plot_pareto",
    "translation_widget",
    "interpolation_widget",
    "manipulation_widget",
]


@torch.no_grad()
def reconstruction_error(model, images, steps: int = 100, fixed_point_iters: int = 0,
                         batch_size: int = 32, progress: bool = False) -> dict:
    """Error of the reconstructions ``decode(encode_stochastic(x), z_sem)``, `steps` DDIM steps each way.

    Args:
        images: ``(B, 1, H, W)`` in [-1, 1].
        fixed_point_iters: refinement of the inversion (see ``DiffAE.encode_stochastic``).
        progress: show a tqdm bar over the images.

    Returns:
        dict with per-image ``mse`` and ``psnr`` (dB, peak-to-peak 2: ``10 log10(4 / mse)``) as
        ``(B,)`` CPU tensors, ``unet_calls`` (mean UNet forward passes per batch, encode + decode) and
        ``seconds`` (wall time of the whole set).
    """
    x = _as_batch(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = _model_device(model)
    calls = []
    hook = model.unet.register_forward_hook(lambda *_: calls.append(1))
    start = time.perf_counter()
    batches = x.split(batch_size)
    mse = []
    try:
        with tqdm(total=len(x), desc="reconstruct", disable=not progress, leave=False) as bar:
            for chunk in batches:
                chunk = chunk.to(device)
                rec = model.reconstruct(chunk, steps=steps, fixed_point_iters=fixed_point_iters)
                mse.append((rec - chunk).square().flatten(1).mean(1).cpu())
                bar.update(len(chunk))
    finally:
        hook.remove()
    mse = torch.cat(mse)
    return {"mse": mse, "psnr": 10 * torch.log10(4.0 / mse), "unet_calls": len(calls) / len(batches),
            "seconds": time.perf_counter() - start}


# ---- translation methods -------------------------------------------------------------------------

def knob_sweep(method, model, knob: str, values: Sequence, x, labels, critics, seed: int = 0,
               progress: bool = True) -> dict:
    """Translate `x` (simulated, [-1, 1]) with `method` at each value of one knob; score every result
    with the independent critics: mean ``p_real``, segmenter ``dice_mean`` / ``dice_aorta`` against
    the sources' `labels`, ``one_aorta_rate``. Returns lists per score plus ``values`` and ``images``."""
    out = {"values": list(values), "p_real": [], "dice_mean": [], "dice_aorta": [], "one_aorta_rate": [], "images": []}
    for v in tqdm(list(values), desc=f"{method.name}: {knob}", disable=not progress):
        y = translate_batches(method.with_knobs(**{knob: v}), model, x, labels=labels, seed=seed)
        scores = critics.anatomy_scores(y, labels, value_range=(-1.0, 1.0))
        out["p_real"].append(float(critics.p_real(y, value_range=(-1.0, 1.0)).mean()))
        for k in ("dice_mean", "dice_aorta", "one_aorta_rate"):
            out[k].append(float(scores[k]))
        out["images"].append(y)
    return out


def pick_balanced(p_real: Sequence[float], dice_aorta: Sequence[float], dice_ref: float) -> int:
    """Index of the setting that maximises ``min(P(real), aorta Dice / dice_ref)``: realness and kept
    anatomy weighted alike, neither bought with the other (ties: the first, i.e. the gentler setting)."""
    if len(p_real) != len(dice_aorta) or not len(p_real):
        raise ValueError("p_real and dice_aorta must be non-empty and of equal length")
    if not dice_ref > 0:
        raise ValueError(f"dice_ref must be > 0, got {dice_ref}")
    score = np.minimum(np.asarray(p_real, float), np.asarray(dice_aorta, float) / dice_ref)
    return int(np.argmax(score))


def translation_verdicts(rows: Mapping[str, dict], sim_row: str, methods: Sequence[str]) -> dict[str, dict]:
    """For each method row of a :func:`~usdiff.metrics.judge.judge_rows` table, compared with the
    untranslated simulated images (`sim_row`):

    * ``looks_real``: the domain critic's mean P(real) >= 0.5;
    * ``halves_gap``: FD-US to the real-like set at most half that of the untranslated simulation;
    * ``indistinguishable``: the C2ST 95 % interval contains 0.5;
    * ``anatomy_kept``: aorta Dice and one-aorta rate at least 0.9 x those of the untranslated images
      (the segmenter's own level on simulation, so its domain gap is not counted against a method).
    """
    sim = rows[sim_row]
    out = {}
    for name in methods:
        r = rows[name]
        lo, hi = r["c2st_ci"]
        out[name] = {
            "looks_real": r["p_real_mean"] >= 0.5,
            "halves_gap": r["fd"] <= 0.5 * sim["fd"],
            "indistinguishable": lo <= 0.5 <= hi,
            "anatomy_kept": (r["dice_aorta"] >= 0.9 * sim["dice_aorta"]
                             and r["one_aorta_rate"] >= 0.9 * sim["one_aorta_rate"]),
        }
    return out


def liver_speckle_snr(images, labels, value_range=(-1.0, 1.0), min_pixels: int = 30) -> float:
    """Mean over images of the speckle SNR (mean / std of the intensity) inside the liver, eroded by one
    pixel so that its border does not count; images whose liver keeps fewer than `min_pixels` are skipped
    (NaN when none is left).

    It is computed on the *displayed* intensity, not on the envelope, so compare it with the same number
    for real-like images (fully developed speckle gives 1.91 on the envelope, less after log compression)."""
    from scipy import ndimage

    from .data.phantom import LIVER
    from .data.render import speckle_snr

    x = _as_batch(images)[:, 0].double().numpy()
    lo, hi = value_range
    x = (x - lo) / (hi - lo)
    labels = np.asarray(labels)
    values = []
    for img, lab in zip(x, labels):
        mask = ndimage.binary_erosion(lab == LIVER)
        if mask.sum() >= min_pixels:
            values.append(speckle_snr(img, mask))
    return float(np.mean(values)) if values else float("nan")


def plot_pareto(curves: Mapping[str, Mapping[str, Sequence[float]]], points: Mapping[str, tuple] | None = None,
                ax=None, title: str = "realism vs anatomy"):
    """Realism (critic P(real), x) against kept anatomy (aorta Dice relative to the untranslated images, y).

    Args:
        curves: method -> ``{"p_real": [...], "dice_rel": [...], "values": [...], "knob": name}`` (one
            curve per method across its knob; each point labelled with its knob value).
        points: name -> ``(p_real, dice_rel)`` single settings (e.g. the test results), drawn as stars.
    """
    import matplotlib.pyplot as plt

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


def translation_widget(model, methods: Mapping[str, object], knobs: Mapping[str, tuple], images, labels, critics,
                       seed: int = 0, draw: bool = True):
    """Pick a method and an image, slide the method's knob: the translated image redraws with the
    critic's P(real) and the segmenter's aorta Dice against the source's label map.

    Args:
        methods: name -> fitted translation method.
        knobs: name -> ``(knob, values)``: the knob the slider moves and its values (a method missing
            here has no slider, e.g. the CycleGAN).
        images: ``(N, 1, H, W)`` simulated images in [-1, 1]; labels: their label maps ``(N, H, W)``.

    Returns:
        an ``ipywidgets.VBox``; ``.controls`` holds ``method``, ``image`` and ``value``; ``.state`` the
        last view (``method``, ``image``, ``value``, ``translated``, ``p_real``, ``dice_aorta``).
    """
    import ipywidgets as widgets

    from .viz import show_grid

    if not methods:
        raise ValueError("methods must hold at least one fitted method")
    images, labels = _as_batch(images), np.asarray(labels)
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
    box = widgets.VBox([widgets.HBox([controls["method"], controls["image"]]), controls["value"], output])
    box.controls, box.state = controls, {}

    def set_knob(_=None):
        knob, values = knobs.get(controls["method"].value, ("(none)", [0.0]))
        controls["value"].options = [float(v) for v in values]
        controls["value"].description = knob

    @torch.no_grad()
    def redraw(_=None):
        name, i, v = controls["method"].value, int(controls["image"].value), float(controls["value"].value)
        knob = knobs.get(name, (None,))[0]
        method = methods[name].with_knobs(**{knob: v}) if knob else methods[name]
        y = translate_batches(method, model, images[i:i + 1], labels=labels[i:i + 1], seed=seed)
        p = float(critics.p_real(y, (-1.0, 1.0))[0])
        dice = float(critics.anatomy_scores(y, labels[i:i + 1], (-1.0, 1.0))["dice_aorta"])
        box.state.clear()
        box.state.update({"method": name, "image": i, "value": v, "translated": y, "p_real": p, "dice_aorta": dice})
        label = f"{name}" + (f", {knob}={v:g}" if knob else "")
        fig = show_grid(torch.cat([images[i:i + 1], y]), value_range=(-1, 1), size=2.6,
                        titles=["simulated source", f"{label}\ncritic P(real)={p:.2f}, aorta Dice={dice:.2f}"])
        _show_in_output(output, fig)

    def on_method(_=None):
        set_knob()
        redraw()

    controls["method"].observe(on_method, names="value")   # a new method first sets its knob's values
    set_knob()
    from .viz import wire_widget

    return wire_widget(box, {k: controls[k] for k in ("image", "value")}, redraw, draw)


# ---- anatomy -------------------------------------------------------------------------------------

def strip_anatomy(images, label_maps: Mapping[str, np.ndarray], value_range=(-1.0, 1.0), **settings) -> dict:
    """Anatomy along a strip of frames ``(N, 1, H, W)`` (an interpolation path).

    Args:
        label_maps: named label maps ``(H, W)`` to measure the aorta position against, e.g.
            ``{"source": labels_a, "target": labels_b}``.
        settings: detector settings of :func:`usdiff.metrics.anatomy.detect_dark_blobs`.

    Returns:
        dict with ``aorta_count`` ``(N,)`` (dark round blobs per frame), ``error_<name>``
        ``(N,)`` (px from that label map's aorta to the nearest blob, NaN when none),
        ``masks`` ``(N, H, W)`` (all enclosed dark structures, :func:`dark_structure_mask`),
        ``mask_dice_next`` ``(N - 1,)`` (Dice of the masks of frames ``k`` and ``k + 1``) and
        ``jump``: the ``k`` with the lowest such Dice, i.e. the largest change of the dark
        anatomy happens between frames ``k`` and ``k + 1``.
    """
    x = _as_batch(images)
    if len(x) < 2:
        raise ValueError(f"a strip needs at least 2 frames, got {len(x)}")
    frames = x[:, 0].numpy()
    out: dict = {"aorta_count": np.asarray(count_aortas(frames, value_range=value_range, **settings))}
    for name, lab in label_maps.items():
        out[f"error_{name}"] = np.array([aorta_position_error(f, lab, value_range=value_range, **settings)
                                         for f in frames])
    masks = dark_structure_mask(frames, value_range=value_range, **settings)
    out["masks"] = masks
    out["mask_dice_next"] = np.array([dice(masks[k], masks[k + 1]) for k in range(len(masks) - 1)])
    out["jump"] = int(np.argmin(out["mask_dice_next"]))
    return out


def anatomy_table(images, label_maps, value_range=(-1.0, 1.0), **settings) -> dict[str, np.ndarray]:
    """:func:`~usdiff.metrics.anatomy.anatomy_score` of every image ``(B, 1, H, W)`` as arrays.

    Args:
        label_maps: one ``(H, W)`` map for all images or ``(B, H, W)``, one per image.

    Returns:
        dict of ``(B,)`` arrays: ``aorta_count``, ``aorta_found``, ``aorta_error_px``,
        ``extra_blobs``, ``aorta_dice``, ``vessel_dice`` and ``one_aorta`` (count == 1).
    """
    x = _as_batch(images)
    labs = np.asarray(label_maps)
    if labs.ndim == 2:
        labs = np.broadcast_to(labs, (len(x), *labs.shape))
    if labs.ndim != 3 or len(labs) != len(x):
        raise ValueError(f"label_maps must be (H, W) or (B={len(x)}, H, W), got shape {labs.shape}")
    rows = [anatomy_score(x[i, 0].numpy(), labs[i], value_range=value_range, **settings) for i in range(len(x))]
    table = {k: np.array([r[k] for r in rows]) for k in rows[0]} if rows else {}
    table["one_aorta"] = table["aorta_count"] == 1
    return table


# ---- manipulation sweeps -------------------------------------------------------------------------

@torch.no_grad()
def manipulation_sweep(model, x, classifiers: Mapping[str, LinearClassifier], alphas: Sequence[float],
                       encode_steps: int = 100, decode_steps: int = 100, batch_size: int | None = 32,
                       progress: bool = True, fixed_point_iters: int = 0) -> dict:
    """Decode images after moving their ``z_sem`` along each classifier's direction by each alpha.

    Every image is encoded once to ``(z, x_T)`` (DDIM inversion with its own ``z``); for each
    classifier and alpha, ``z' = manipulate_z(z, classifier, alpha)`` is decoded with the same
    ``x_T``. ``alpha = 0`` is the plain reconstruction (decoded once, shared by all classifiers).

    Args:
        x: images ``(B, 1, H, W)`` in [-1, 1].
        classifiers: named fitted :class:`~usdiff.latent.LinearClassifier` (e.g. BCE and MSE).
        fixed_point_iters: refine the inversion (see ``DiffAE.encode_stochastic``; 0 = plain DDIM).

    Returns:
        dict with ``alphas`` ``(K,)``, ``z`` ``(B, D)``, ``x_T`` ``(B, 1, H, W)`` and, per
        classifier name, ``images[name]`` ``(K, B, 1, H, W)`` and ``z_manip[name]`` ``(K, B, D)``
        (all CPU tensors).
    """
    x = _as_batch(x)
    alphas = [float(a) for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64))]
    if not alphas:
        raise ValueError("alphas must contain at least one value")
    if not classifiers:
        raise ValueError("classifiers must name at least one fitted LinearClassifier")
    device = _model_device(model)
    x = x.to(device)
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, steps=encode_steps, progress=progress,
                                  fixed_point_iters=fixed_point_iters)
    size = batch_size or len(x)

    def decode(z_new):
        return torch.cat([model.decode(x_T[s:s + size], z_new[s:s + size], steps=decode_steps).cpu()
                          for s in range(0, len(x), size)])

    recon = decode(z) if 0.0 in alphas else None
    jobs = [(name, k) for name in classifiers for k, a in enumerate(alphas) if a != 0.0]
    bar = tqdm(total=len(jobs), desc="manipulate", disable=not progress, leave=False)
    images, z_manip = {}, {}
    for name, clf in classifiers.items():
        zs, ims = [], []
        for a in alphas:
            z_new = z if a == 0.0 else manipulate_z(z, clf, a)
            zs.append(z_new.cpu())
            if a == 0.0:
                ims.append(recon)
            else:
                ims.append(decode(z_new))
                bar.update(1)
        images[name], z_manip[name] = torch.stack(ims), torch.stack(zs)
    bar.close()
    return {"alphas": torch.tensor(alphas), "z": z.cpu(), "x_T": x_T.cpu(), "images": images, "z_manip": z_manip}


def sweep_metrics(model, sweep: dict, judge: LinearClassifier, label_maps, real_z=None,
                  batch_size: int = 64, value_range=(-1.0, 1.0), critics=None,
                  **settings) -> dict[str, dict[str, np.ndarray]]:
    """Realness and anatomy per alpha of a :func:`manipulation_sweep`.

    Args:
        judge: the classifier whose ``P(real)`` scores every classifier's results (one judge
            keeps the curves comparable; an MSE classifier's score is not a probability).
        label_maps: ``(B, H, W)`` label maps of the swept images (or one ``(H, W)``).
        real_z: codes ``(M, D)`` of real images for the Fréchet distance (None: skipped).

    Returns:
        ``{name: metrics}`` with ``(K,)`` arrays over the alphas: ``p_code`` (mean ``P(real)``
        of the moved codes ``z'``: what we asked for), ``p_image`` (mean ``P(real)`` of the
        decoded images encoded again: what we got), ``fd_real`` (Fréchet distance between the
        re-encoded codes and `real_z`; NaN without it), ``aorta_count`` (mean), ``one_aorta``
        (fraction of images with exactly one), ``aorta_found`` (fraction with a blob on the
        true aorta), ``aorta_error_px`` (median over images with a blob) and ``extra_blobs``
        (mean blobs off every vessel).
        With `critics` (:func:`usdiff.metrics.critics.load_critics`, independent of the DiffAE)
        also ``p_critic`` (the domain critic's mean ``P(real)`` of the decoded images),
        ``seg_dice_mean`` / ``seg_dice_aorta`` (segmenter on the decoded image vs the source label
        map) and ``seg_one_aorta`` (fraction with exactly one segmented aorta).
        Every fraction over images (``one_aorta``, ``aorta_found``, ``seg_one_aorta``) comes with
        its 95 % Wilson interval as ``<key>_ci``, shape ``(K, 2)``: on a few dozen images one
        image moves a rate by several points, so rates are compared with their intervals.
    """
    out = {}
    labs = np.asarray(label_maps)
    keys = ["p_code", "p_image", "fd_real", "aorta_count", "one_aorta", "aorta_found", "aorta_error_px",
            "extra_blobs"]
    if critics is not None:
        keys += ["p_critic", "seg_dice_mean", "seg_dice_aorta", "seg_one_aorta"]
    for name, ims in sweep["images"].items():
        k_count = len(ims)
        m = {key: np.full(k_count, np.nan) for key in keys}
        for k in range(k_count):
            m["p_code"][k] = judge.predict_proba(sweep["z_manip"][name][k].double().numpy())[:, 1].mean()
            z_img = encode_images(model, ims[k], batch_size=batch_size)
            m["p_image"][k] = judge.predict_proba(z_img)[:, 1].mean()
            if real_z is not None and len(z_img) >= 2:
                m["fd_real"][k] = fid_from_features(z_img, real_z)
            table = anatomy_table(ims[k], label_maps, value_range=value_range, **settings)
            errors = table["aorta_error_px"][np.isfinite(table["aorta_error_px"])]
            m["aorta_count"][k] = table["aorta_count"].mean()
            m["one_aorta"][k] = table["one_aorta"].mean()
            m["aorta_found"][k] = table["aorta_found"].mean()
            m["aorta_error_px"][k] = np.median(errors) if len(errors) else np.nan
            m["extra_blobs"][k] = table["extra_blobs"].mean()
            _set_ci(m, "one_aorta", k, len(ims[k]))
            _set_ci(m, "aorta_found", k, len(ims[k]))
            if critics is not None:
                m["p_critic"][k] = critics.p_real(ims[k], value_range).mean()
                seg = critics.anatomy_scores(ims[k], _labels_at(labs, len(ims[k]), critics.size), value_range)
                m["seg_dice_mean"][k], m["seg_dice_aorta"][k] = seg["dice_mean"], seg["dice_aorta"]
                m["seg_one_aorta"][k] = seg["one_aorta_rate"]
                _set_ci(m, "seg_one_aorta", k, len(ims[k]))
        out[name] = m
    return out


def _set_ci(m: dict, key: str, k: int, n: int) -> None:
    """Store the Wilson interval of the rate ``m[key][k]`` over `n` images as ``m[key + "_ci"][k]``."""
    ci = m.setdefault(key + "_ci", np.full((len(m[key]), 2), np.nan))
    ci[k] = wilson_interval(int(round(m[key][k] * n)), n)


def _labels_at(labels: np.ndarray, n: int, size: int) -> np.ndarray:
    """Label maps ``(n, size, size)`` (nearest resize; one map is repeated for a batch)."""
    from .metrics.judge import resize_label_maps

    labels = labels[None] if labels.ndim == 2 else labels
    if len(labels) == 1 and n > 1:
        labels = np.repeat(labels, n, axis=0)
    return resize_label_maps(labels, size)


# ---- where codes land -----------------------------------------------------------------------------

def nearest_domain(z_ref, y_ref, z_query, k: int = 5) -> dict[str, np.ndarray]:
    """Where query codes ``(M, D)`` land among reference codes ``(N, D)`` with domains ``y_ref``.

    Args:
        z_ref, y_ref: the data's codes and labels (0 = sim, 1 = real).
        z_query: codes to place, e.g. manipulated or interpolated ones.
        k: neighbours to vote.

    Returns:
        dict of ``(M,)`` arrays: ``real_fraction`` (share of real codes among the `k` nearest
        reference codes, Euclidean), ``nn_distance`` (distance to the nearest reference code) and
        ``off_data`` (that distance divided by the median nearest-neighbour distance *within* the
        reference codes: about 1 or below for a code among the data, much larger in empty space).
    """
    from sklearn.neighbors import NearestNeighbors

    ref = np.asarray(z_ref, dtype=np.float64)
    query = np.asarray(z_query, dtype=np.float64)
    y = np.asarray(y_ref).reshape(-1)
    if ref.ndim != 2 or query.ndim != 2 or ref.shape[1] != query.shape[1]:
        raise ValueError(f"z_ref and z_query must be (N, D) and (M, D), got {ref.shape} and {query.shape}")
    if len(y) != len(ref) or not np.isin(y, (0, 1)).all():
        raise ValueError("y_ref must hold one label 0 (sim) or 1 (real) per reference code")
    if not isinstance(k, (int, np.integer)) or not 1 <= k < len(ref):
        raise ValueError(f"k must be an int in [1, {len(ref) - 1}], got {k!r}")
    nn = NearestNeighbors(n_neighbors=k + 1).fit(ref)
    d_ref, _ = nn.kneighbors(ref, n_neighbors=2)            # column 0 is the point itself
    scale = float(np.median(d_ref[:, 1]))
    dist, ind = nn.kneighbors(query, n_neighbors=k)
    return {"real_fraction": y[ind].mean(axis=1), "nn_distance": dist[:, 0],
            "off_data": dist[:, 0] / max(scale, 1e-12)}


# ---- figures and widgets -------------------------------------------------------------------------------------

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
    import matplotlib.pyplot as plt

    from .viz import to_numpy_images

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


def interpolation_widget(model, sources: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                         n_steps: int = 6, max_steps: int = 12, encode_steps: int = 10, decode_steps: int = 10,
                         judge: LinearClassifier | None = None):
    """Pick a source and a target image and a number of steps, press the button, see the strip.

    Args:
        sources, targets: named images ``(1, H, W)`` in [-1, 1] for the two dropdowns.
        judge: optional classifier; each frame's title then shows ``P(real)`` of its path code.

    Returns:
        an ``ipywidgets.VBox``; ``.controls`` holds the ``source``, ``target``, ``n_steps`` and
        ``run`` widgets, ``.state`` the last result of :func:`usdiff.translate.interpolate`
        (filled when the button is pressed; nothing is decoded before).
    """
    import ipywidgets as widgets

    from .viz import show_grid

    if not sources or not targets:
        raise ValueError("sources and targets must each hold at least one named image")
    controls = {
        "source": widgets.Dropdown(options=list(sources), description="source"),
        "target": widgets.Dropdown(options=list(targets), description="target"),
        "n_steps": widgets.IntSlider(value=n_steps, min=2, max=max(max_steps, n_steps), description="steps"),
        "run": widgets.Button(description="interpolate", button_style="primary"),
    }
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([controls["source"], controls["target"]]),
                        widgets.HBox([controls["n_steps"], controls["run"]]), output])
    box.controls, box.state = controls, {}

    def run(_=None):
        button = controls["run"]
        button.disabled, button.description = True, "computing…"   # feedback while decoding
        try:
            _run()
        finally:
            button.disabled, button.description = False, "interpolate"

    def _run():
        a, b = sources[controls["source"].value], targets[controls["target"].value]
        res = interpolate(model, a, b, n_steps=controls["n_steps"].value, encode_steps=encode_steps,
                          decode_steps=decode_steps, progress=False)
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
        _show_in_output(output, fig)

    controls["run"].on_click(run)
    box.run = run
    return box


def manipulation_widget(model, images: Mapping[str, torch.Tensor], classifiers: Mapping[str, LinearClassifier],
                        alpha: float = 1.0, alpha_range: tuple[float, float] = (-1.5, 1.5), alpha_step: float = 0.05,
                        encode_steps: int = 10, decode_steps: int = 10, judge: LinearClassifier | None = None,
                        draw: bool = True, critics=None, twins: Mapping[str, torch.Tensor] | None = None,
                        label_maps: Mapping[str, np.ndarray] | None = None):
    """Slide alpha, toggle the classifier and pick an image; the manipulated image redraws live.

    Each image is encoded to ``(z, x_T)`` the first time it is shown (then cached); moving the
    slider decodes ``manipulate_z(z, classifier, alpha)`` with that ``x_T``, once per view: going
    back to an (image, classifier, alpha) seen before redraws from memory. The view shows the
    reconstruction (alpha = 0), the manipulated image, their difference (own colour scale) and, if
    given, the image's real-like twin.

    Args:
        images: named images ``(1, H, W)`` in [-1, 1] for the dropdown.
        classifiers: named fitted classifiers for the toggle (e.g. ``{"BCE": ..., "MSE": ...}``).
        judge: classifier whose ``P(real)`` of the moved code is shown (default: the selected one).
        draw: decode and show the first view at once.
        critics: the independent critics (:func:`usdiff.metrics.critics.load_critics`): the view then
            shows the domain critic's ``P(real)`` of the *decoded images* (what the user got) and,
            with `label_maps`, the segmenter's aorta Dice against the source's label map.
        twins: per image name, the real-like rendering of the same phantom ``(1, H, W)``: the target.
        label_maps: per image name, its ``(H, W)`` label map (aorta Dice and count of aortas).

    Returns:
        an ``ipywidgets.VBox``; ``.controls`` holds ``image``, ``classifier`` and ``alpha``;
        ``.state`` the last view: ``image`` name, ``classifier`` name, ``alpha``, ``z``
        (moved code), ``x_T``, ``recon`` and ``manipulated`` ``(1, 1, H, W)``, ``change`` (mean
        ``|manipulated - recon|``), ``p_real`` (of the code), ``p_image`` (critic on the decoded
        image; None without `critics`), ``dice_aorta`` and ``aorta_count`` (None without labels).
    """
    import ipywidgets as widgets

    if not images or not classifiers:
        raise ValueError("images and classifiers must each hold at least one entry")
    for name, extra in (("twins", twins), ("label_maps", label_maps)):
        missing = sorted(set(images) - set(extra)) if extra is not None else []
        if missing:
            raise ValueError(f"{name} must have an entry for every image; missing: {missing}")
    from .viz import labelled_toggle, wire_widget

    lo, hi = alpha_range
    clf_row, clf_toggle = labelled_toggle(list(classifiers), "classifier")
    controls = {
        "image": widgets.Dropdown(options=list(images), description="image"),
        "classifier": clf_toggle,
        "alpha": widgets.FloatSlider(value=alpha, min=lo, max=hi, step=alpha_step, description="alpha",
                                     continuous_update=False, readout_format=".2f"),
    }
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([controls["image"], clf_row]), controls["alpha"], output])
    box.controls, box.state = controls, {}
    cache: dict = {}
    decoded: dict = {}
    device = _model_device(model)

    @torch.no_grad()
    def codes(name):
        if name not in cache:
            x = _as_batch(images[name][None] if images[name].ndim == 3 else images[name]).to(device)
            z = model.encode(x)
            x_T = model.encode_stochastic(x, z, steps=encode_steps)
            cache[name] = (z, x_T, model.decode(x_T, z, steps=decode_steps).cpu())
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
            decoded[key] = model.decode(x_T, z_new, steps=decode_steps).cpu()
        out = decoded[key]
        state = {"image": name, "classifier": cname, "alpha": a, "z": z_new.cpu(), "x_T": x_T.cpu(), "recon": recon,
                 "manipulated": out, "change": float((out - recon).abs().mean()),
                 "p_real": float((judge or classifiers[cname]).predict_proba(z_new.double().cpu().numpy())[0, 1]),
                 "p_image": None, "dice_aorta": None, "aorta_count": None}
        if critics is not None:
            state["p_image"] = float(critics.p_real(out, (-1.0, 1.0))[0])
            if label_maps is not None:
                seg = critics.anatomy_scores(out, label_maps[name][None], (-1.0, 1.0))
                state["dice_aorta"] = float(seg["per_image"][0, AORTA])
        if label_maps is not None:
            state["aorta_count"] = int(count_aortas(out[0, 0].numpy(), value_range=(-1.0, 1.0)))
        box.state.clear()
        box.state.update(state)
        _show_in_output(output, _manipulation_figure(state, twins[name] if twins is not None else None))

    return wire_widget(box, controls, redraw, draw)


def _show_in_output(output, fig) -> None:
    from .viz import show_in_output

    show_in_output(output, fig)


def _manipulation_figure(state: dict, twin):
    """Reconstruction | manipulated | |difference| (own scale, colour bar) | twin, short titles."""
    import matplotlib.pyplot as plt

    from .viz import to_numpy_images

    panels = [(state["recon"], "reconstruction (α = 0)"), (state["manipulated"], f"α = {state['alpha']:+.2f}")]
    if twin is not None:
        panels.append((_as_batch(twin[None] if twin.ndim == 3 else twin), "real-like twin (target)"))
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
    if state["p_image"] is not None:
        facts.append(f"critic P(real) of the image {state['p_image']:.2f}")
    if state["dice_aorta"] is not None:
        facts.append(f"aorta Dice {state['dice_aorta']:.2f}")
    if state["aorta_count"] is not None:
        facts.append(f"aortas found {state['aorta_count']}")
    fig.suptitle(f"{state['classifier']} direction, {state['image']}: " + ", ".join(facts), fontsize=9)
    fig.tight_layout()
    return fig


# ---- does z_sem carry the image? ------------------------------------------------------------------

@torch.no_grad()
def fine_texture(images, mask=None) -> np.ndarray:
    """Per image, the mean ``|x - box3(x)|`` (the image minus its 3x3 box blur; borders replicated) over
    the pixels where `mask` ``(H, W)`` is true (all pixels when None): how much pixel-scale texture
    (speckle, noise) an image has, in its own intensity units. A hand-made judge that knows nothing of
    any model; on the built-in data it separates every held-out real-like image from every simulated
    one (benchmarks/README.md). Returns ``(N,)``.

    Raises:
        ValueError: if `mask` is not ``(H, W)`` or selects no pixel.
    """
    x = _as_batch(images).float()
    m = torch.ones(x.shape[-2:]) if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if m.shape != x.shape[-2:] or m.sum() == 0:
        raise ValueError(f"mask must be a non-empty {tuple(x.shape[-2:])} array, got shape {tuple(m.shape)}")
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (((x - blur).abs() * m).sum((1, 2, 3)) / (m.sum() * x.shape[1])).numpy()


@torch.no_grad()
def z_swap_ratio(model, x_a, x_b, steps: int = 50, batch_size: int = 32) -> np.ndarray:
    """How much decoding depends on ``z_sem``: per pair, mean ``|decode(x_T^A, z^B) - decode(x_T^A, z^A)|``
    over mean ``|A - B|`` (0: ``z_sem`` ignored, about 1: ``z_sem`` decides the image).

    ``x_T^A`` is A's DDIM inversion (`steps` steps) with its own code; images ``(N, 1, H, W)`` in [-1, 1].
    """
    x_a, x_b = _as_batch(x_a), _as_batch(x_b)
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_a and x_b must have the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}")
    device = _model_device(model)
    out = []
    for s in range(0, len(x_a), batch_size):
        a, b = x_a[s:s + batch_size].to(device), x_b[s:s + batch_size].to(device)
        z_a, z_b = model.encode(a), model.encode(b)
        x_t = model.encode_stochastic(a, z_a, steps=steps)
        own, swapped = model.decode(x_t, z_a, steps=steps), model.decode(x_t, z_b, steps=steps)
        out.append(((swapped - own).abs().flatten(1).mean(1) / (a - b).abs().flatten(1).mean(1).clamp(min=1e-8)).cpu())
    return torch.cat(out).double().numpy()


def diffae_goals(model, data_dir, critics, n: int = 400, steps: int = 20, n_swap: int = 64, seed: int = 0,
                 progress: bool = True, recon_steps: int = 100, swap_steps: int = 50, prior: str = "gaussian") -> dict:
    """Does this DiffAE's ``z_sem`` carry the image? Measured on the held-out test split with the
    independent critics (never the model itself):

    * ``domain_kept_sim`` / ``domain_kept_real``: held-out codes decoded from *random* ``x_T``
      (`steps` DDIM steps, the study's protocol; `prior` as in ``DiffAE.random_x_T``: ``"gaussian"``
      is the study's ``N(0, I)``) that the domain critic puts in their source's domain;
    * ``dice_aorta`` / ``one_aorta_rate`` of those samples against the *source* label maps, beside
      ``dice_aorta_data`` (the held-out images themselves);
    * ``fd_samples`` (FD-US of the samples vs the held-out images), ``fd_gap`` (sim vs real-like,
      same n) and their ratio ``fd_ratio``;
    * ``texture_kept_sim`` / ``texture_kept_real``: samples whose :func:`fine_texture` inside the
      sector lies on their source's side of the midpoint between the held-out sim and real-like
      medians (a second, hand-made judge of the domain: the critic may decide by other cues);
    * ``psnr_100``: reconstruction PSNR (dB) with `recon_steps` (the goal: 100) plain DDIM steps each
      way (`n_swap` images);
    * ``z_swap``: median :func:`z_swap_ratio` (`swap_steps` inversion and decoding steps) over `n_swap`
      pairs of different phantoms.
    """
    from .data import BuiltinDataset
    from .metrics.evaluate import diffae_samples
    from .metrics.frechet import fid_from_features

    size = model.config.image_size
    half = n // 2
    sims = BuiltinDataset(data_dir, split="test", domain="sim", size=size)
    reals = BuiltinDataset(data_dir, split="test", domain="real", size=size)
    half = min(half, len(sims))
    x = torch.stack([sims[i][0] for i in range(half)] + [reals[i][0] for i in range(half)])   # [-1, 1]
    labels = np.stack([sims.label_map(i) for i in range(half)] * 2)
    fake = diffae_samples(model, x, steps=steps, seed=seed, progress=progress, prior=prior)   # [0, 1]
    data = (x + 1) / 2
    p = critics.p_real(fake)
    src_real = np.r_[np.zeros(half, bool), np.ones(half, bool)]
    seg_fake = critics.anatomy_scores(fake, _labels_at(labels, len(labels), critics.size))
    seg_data = critics.anatomy_scores(data, _labels_at(labels, len(labels), critics.size))
    f_data, f_fake = critics.features(data), critics.features(fake)
    fd_samples = fid_from_features(f_fake, f_data)
    fd_gap = fid_from_features(f_data[:half], f_data[half:])   # sim vs real-like of the same phantoms
    sector = x.mean(0)[0] > -0.9                                  # pixels inside the scan sector
    tex_data, tex_fake = fine_texture(x, sector), fine_texture(fake * 2 - 1, sector)
    cut = (np.median(tex_data[:half]) + np.median(tex_data[half:])) / 2
    k = min(n_swap, half)
    rec = reconstruction_error(model, x[:k], steps=recon_steps, progress=progress)
    perm = np.roll(np.arange(k), 1)                              # B = another phantom, same domain mix
    swap = z_swap_ratio(model, x[:k], x[perm], steps=swap_steps)
    return {"n": 2 * half, "prior": prior, "domain_kept_sim": float(np.mean(p[~src_real] < 0.5)),
            "domain_kept_real": float(np.mean(p[src_real] > 0.5)), "dice_aorta": seg_fake["dice_aorta"],
            "one_aorta_rate": seg_fake["one_aorta_rate"], "dice_aorta_data": seg_data["dice_aorta"],
            "fd_samples": fd_samples, "fd_gap": fd_gap, "fd_ratio": fd_samples / fd_gap,
            "texture_kept_sim": float(np.mean(tex_fake[~src_real] < cut)),
            "texture_kept_real": float(np.mean(tex_fake[src_real] > cut)), "texture_cut": float(cut),
            "psnr_100": float(rec["psnr"].mean()), "z_swap": float(np.median(swap))}
