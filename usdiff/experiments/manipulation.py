"""Classifier-direction sweeps: decode images after moving their ``z_sem`` along one or more
classifier directions by a range of alphas (:func:`manipulation_sweep`, each image keeping its own
``x_T``), then score realness (a judge classifier on the moved code and on the re-encoded image, the
Fréchet distance to real codes, the independent critics) and anatomy per alpha (:func:`sweep_metrics`).

The protocol itself (encode, invert to ``x_T``, move ``z_sem``, decode) is
:func:`usdiff.translate.manipulate`; :class:`DDIMSteps` holds its step counts.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..latent import LinearClassifier, encode_images
from ..metrics.c2st import wilson_interval
from ..metrics.frechet import fd_from_features
from ..model import DDIMSteps
from ..translate import manipulate
from ..utils import as_image_batch, model_device
from .anatomy import anatomy_table, label_maps_at

__all__ = ["DDIMSteps", "manipulation_sweep", "sweep_metrics"]


@torch.no_grad()
def manipulation_sweep(model, x, classifiers: Mapping[str, LinearClassifier], alphas: Sequence[float],
                       ddim: DDIMSteps | None = None, batch_size: int | None = 32, progress: bool = True) -> dict:
    """Decode images after moving their ``z_sem`` along each classifier's direction by each alpha.

    For each classifier, :func:`usdiff.translate.manipulate` encodes every image to ``(z, x_T)``
    (DDIM inversion with its own ``z``) and decodes ``z' = manipulate_z(z, classifier, alpha)`` with
    that ``x_T`` for every alpha; ``alpha = 0`` decodes the normalised-and-restored ``z``, i.e. the
    plain reconstruction.

    Args:
        x: images ``(B, 1, H, W)`` in [-1, 1].
        classifiers: named fitted :class:`~usdiff.latent.LinearClassifier` (e.g. BCE and MSE).
        ddim: DDIM steps of the inversion and the decoding, and the inversion's refinement.
        batch_size: images decoded at once (None: the ``B`` images of one alpha).

    Returns:
        dict with ``alphas`` ``(K,)``, ``z`` ``(B, D)`` (the unmoved codes), ``x_T`` ``(B, 1, H, W)``
        and, per classifier name, ``images[name]`` ``(K, B, 1, H, W)`` and ``z_manip[name]``
        ``(K, B, D)`` (all CPU tensors).
    """
    x = as_image_batch(x)
    ddim = ddim if ddim is not None else DDIMSteps()
    alphas = [float(a) for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64))]
    if not alphas:
        raise ValueError("alphas must contain at least one value")
    if not classifiers:
        raise ValueError("classifiers must name at least one fitted LinearClassifier")
    x = x.to(model_device(model))
    images, z_manip = {}, {}
    for name, clf in classifiers.items():
        out = manipulate(model, x, clf, alphas, ddim=ddim, batch_size=batch_size or len(x), progress=progress)
        images[name], z_manip[name], x_T = out["images"].cpu(), out["z"].cpu(), out["x_T"].cpu()
    return {"alphas": torch.tensor(alphas), "z": model.encode(x).cpu(), "x_T": x_T, "images": images,
            "z_manip": z_manip}


def sweep_metrics(model, sweep: dict, judge: LinearClassifier, label_maps, real_z=None,
                  batch_size: int = 64, value_range=(-1.0, 1.0), critics=None,
                  **settings) -> dict[str, dict[str, np.ndarray]]:
    """Realness and anatomy per alpha of a :func:`manipulation_sweep`.

    Args:
        judge: the classifier whose ``P(real)`` scores every classifier's results (one judge
            keeps the curves comparable; an MSE classifier's score is not a probability).
        label_maps: ``(B, H, W)`` label maps of the swept images (or one ``(H, W)``).
        real_z: codes ``(M, D)`` of real images for the Fréchet distance (None: skipped).
        settings: detector settings of :func:`usdiff.metrics.anatomy.detect_dark_blobs`.

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
                m["fd_real"][k] = fd_from_features(z_img, real_z)
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
                seg = critics.anatomy_scores(ims[k], label_maps_at(labs, len(ims[k]), critics.size), value_range)
                m["seg_dice_mean"][k], m["seg_dice_aorta"][k] = seg["dice_mean"], seg["dice_aorta"]
                m["seg_one_aorta"][k] = seg["one_aorta_rate"]
                _set_ci(m, "seg_one_aorta", k, len(ims[k]))
        out[name] = m
    return out


def _set_ci(m: dict, key: str, k: int, n: int) -> None:
    """Store the Wilson interval of the rate ``m[key][k]`` over `n` images as ``m[key + "_ci"][k]``."""
    ci = m.setdefault(key + "_ci", np.full((len(m[key]), 2), np.nan))
    ci[k] = wilson_interval(int(round(m[key][k] * n)), n)
