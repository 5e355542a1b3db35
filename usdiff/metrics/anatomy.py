"""Anatomy preservation: find the dark round vessels (aorta, IVC) in an ultrasound image.

The original study could only eyeball whether a translated image kept its anatomy (its MSE
manipulation produced "multiple aortas"). Here the aorta is measured: blood is anechoic, so a
vessel cut across is a dark, round blob inside the fan. The detector

1. finds the fan (the nonzero scan region, holes filled so that dark structures count as inside),
2. smooths the image (Gaussian, `sigma` px) to average out speckle,
3. marks pixels darker than `rel_threshold` x the local mean brightness of the fan around them
   (a normalised box filter of side `window`, so depth attenuation does not matter),
4. labels connected components (:mod:`scipy.ndimage`) and keeps those that are round
   (`circularity` >= `min_circularity`), of plausible size (`min_radius` .. `max_radius`),
   and that do not touch the fan border (shadows behind bone or gas do).

``circularity`` is ``axis_ratio x min(1, fill)`` from the second moments of the component:
``axis_ratio = sqrt(l_min / l_max)`` (eigenvalues of the pixel covariance) and
``fill = area / (4 pi sqrt(l_min l_max))``, which is 1 for any filled ellipse and smaller for
ragged or hollow shapes. A disk gives about 1, an ellipse its axis ratio. All lengths are in pixels; the defaults scale with the image side.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "Blob",
    "fan_mask",
    "detect_dark_blobs",
    "dark_structure_mask",
    "count_aortas",
    "aorta_centroid",
    "aorta_position_error",
    "anatomy_score",
    "dice",
]


class Blob(NamedTuple):
    """One dark round structure: centre ``(cy, cx)`` and equivalent radius in pixels."""

    cy: float
    cx: float
    radius: float
    circularity: float


# ---- inputs -------------------------------------------------------------------------------------

def _as_images(image, value_range=(0.0, 1.0)) -> tuple[np.ndarray, bool]:
    """Any image or batch -> ``(B, H, W)`` float64 in [0, 1] and whether a batch was given."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        batch, arr = False, arr[None]
    elif arr.ndim == 3 and arr.shape[0] == 1 and not isinstance(image, (list, tuple)):
        batch = False  # (1, H, W): one image with a channel axis
    elif arr.ndim == 3:
        batch = True
    elif arr.ndim == 4 and arr.shape[1] == 1:
        batch, arr = True, arr[:, 0]
    else:
        raise ValueError(f"image must be (H, W), (1, H, W), (B, H, W) or (B, 1, H, W), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0), batch


def _as_label_map(label_map, shape) -> np.ndarray:
    if isinstance(label_map, torch.Tensor):
        label_map = label_map.detach().cpu().numpy()
    lab = np.asarray(label_map)
    lab = lab[0] if lab.ndim == 3 and lab.shape[0] == 1 else lab
    if lab.shape != tuple(shape):
        raise ValueError(f"label_map must have the image's shape {tuple(shape)}, got {lab.shape}")
    return lab


def _tissue(name: str) -> int:
    from ..data import TISSUES

    if name not in TISSUES:
        raise KeyError(f"usdiff.data.TISSUES has no {name!r}; known: {sorted(TISSUES)}")
    return int(TISSUES[name])


# ---- detection ----------------------------------------------------------------------------------

def fan_mask(image: np.ndarray, threshold: float = 0.02, sigma: float = 1.0) -> np.ndarray:
    """Boolean ``(H, W)`` scan region: smoothed pixels above `threshold`, with holes filled.

    Filling holes puts dark structures that tissue surrounds (vessels) inside the fan, while
    dark regions open to the outside (shadows reaching the fan's far edge) stay outside.
    """
    img, batch = _as_images(image)
    if batch:
        raise ValueError("fan_mask takes one image (H, W)")
    img = img[0]
    smooth = ndimage.gaussian_filter(img, sigma) if sigma > 0 else img
    mask = ndimage.binary_closing(smooth > threshold, structure=np.ones((3, 3)), iterations=2, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    lab, n = ndimage.label(mask)
    if n > 1:  # keep the largest region (the fan) only
        sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    return mask


def _defaults(size: int, sigma, window, min_radius, max_radius):
    scale = size / 64.0
    return (scale * 1.0 if sigma is None else sigma,
            max(5, int(round(size / 4)) | 1) if window is None else int(window),
            max(1.5, 1.5 * scale) if min_radius is None else min_radius,
            size * 0.15 if max_radius is None else max_radius)


def _circularity(dy: np.ndarray, dx: np.ndarray, area: float) -> float:
    """Axis ratio x fill of a pixel set given centred coordinates (see the module docstring)."""
    cov = np.cov(np.stack([dy, dx])) if len(dy) > 1 else np.eye(2)
    lam = np.clip(np.linalg.eigvalsh(cov + np.eye(2) / 12.0), 1e-12, None)  # +1/12: pixel extent
    ratio = math.sqrt(lam[0] / lam[1])
    fill = area / (4.0 * math.pi * math.sqrt(lam[0] * lam[1]))
    return float(ratio * min(1.0, fill))


def _detect_one(img: np.ndarray, sigma, rel_threshold, window, min_radius, max_radius, min_circularity,
                fan_threshold, mask) -> tuple[list[Blob], np.ndarray]:
    h, w = img.shape
    sigma, window, min_radius, max_radius = _defaults(min(h, w), sigma, window, min_radius, max_radius)
    fan = fan_mask(img, fan_threshold) if mask is None else np.asarray(mask, dtype=bool)
    if fan.shape != img.shape:
        raise ValueError(f"mask must have the image's shape {img.shape}, got {fan.shape}")
    accepted = np.zeros_like(fan)
    if not fan.any():
        return [], accepted
    smooth = ndimage.gaussian_filter(img, sigma) if sigma > 0 else img
    # mean brightness of the fan around each pixel (normalised convolution ignores outside pixels)
    num = ndimage.uniform_filter(np.where(fan, smooth, 0.0), size=window, mode="constant")
    den = ndimage.uniform_filter(fan.astype(np.float64), size=window, mode="constant")
    local = num / np.maximum(den, 1e-12)
    dark = (smooth < rel_threshold * local) & fan
    dark = ndimage.binary_opening(dark, structure=np.ones((2, 2)))
    labels, n = ndimage.label(dark)
    if n == 0:
        return [], accepted
    border = fan & ~ndimage.binary_erosion(fan, structure=np.ones((3, 3)), border_value=0)
    touches = ndimage.maximum(border, labels, index=np.arange(1, n + 1))
    yy, xx = np.indices(img.shape)
    blobs = []
    for k, objects in enumerate(ndimage.find_objects(labels), start=1):
        if touches[k - 1]:
            continue
        region = labels[objects] == k
        area = float(region.sum())
        radius = math.sqrt(area / math.pi)
        if not min_radius <= radius <= max_radius:
            continue
        ys, xs = yy[objects][region], xx[objects][region]
        cy, cx = ys.mean(), xs.mean()
        circularity = _circularity(ys - cy, xs - cx, area)
        if circularity < min_circularity:
            continue
        blobs.append(Blob(float(cy), float(cx), radius, circularity))
        accepted[objects] |= region
    return blobs, accepted


def detect_dark_blobs(image, sigma: float | None = None, rel_threshold: float = 0.5, window: int | None = None,
                      min_radius: float | None = None, max_radius: float | None = None,
                      min_circularity: float = 0.6, fan_threshold: float = 0.02, mask=None,
                      value_range: tuple[float, float] = (0.0, 1.0)):
    """Dark, round, anechoic structures inside the fan.

    Args:
        image: ``(H, W)`` or ``(1, H, W)``, or a batch ``(B, H, W)`` / ``(B, 1, H, W)``, with
            pixels in `value_range` (``(-1, 1)`` for model outputs).
        sigma: Gaussian smoothing in px (default ``H / 64``).
        rel_threshold: a pixel is dark below this fraction of the local fan brightness.
        window: side of the local-brightness box in px (default about ``H / 4``).
        min_radius, max_radius: equivalent radius ``sqrt(area / pi)`` bounds in px
            (defaults ``max(1.5, 1.5 H / 64)`` and ``0.15 H``).
        min_circularity: see the module docstring (1 = disk).
        fan_threshold: brightness above which a pixel belongs to the scan region.
        mask: optional boolean ``(H, W)`` fan mask to use instead of the automatic one.

    Returns:
        a list of :class:`Blob` ``(cy, cx, radius, circularity)`` sorted by decreasing
        circularity; for a batch, one such list per image.
    """
    imgs, batch = _as_images(image, value_range)
    if not 0 < rel_threshold < 1:
        raise ValueError(f"rel_threshold must be in (0, 1), got {rel_threshold}")
    out = []
    for img in imgs:
        blobs, _ = _detect_one(img, sigma, rel_threshold, window, min_radius, max_radius, min_circularity,
                               fan_threshold, mask)
        out.append(sorted(blobs, key=lambda b: -b.circularity))
    return out if batch else out[0]


def dark_structure_mask(image, **kwargs) -> np.ndarray:
    """Boolean mask ``(H, W)`` (or ``(B, H, W)``) of the pixels of the accepted dark blobs."""
    value_range = kwargs.pop("value_range", (0.0, 1.0))
    imgs, batch = _as_images(image, value_range)
    keys = ("sigma", "rel_threshold", "window", "min_radius", "max_radius", "min_circularity",
            "fan_threshold", "mask")
    defaults = dict(sigma=None, rel_threshold=0.5, window=None, min_radius=None, max_radius=None,
                    min_circularity=0.6, fan_threshold=0.02, mask=None)
    unknown = set(kwargs) - set(keys)
    if unknown:
        raise TypeError(f"unexpected arguments: {sorted(unknown)}")
    params = {**defaults, **kwargs}
    masks = np.stack([_detect_one(img, *(params[k] for k in keys))[1] for img in imgs])
    return masks if batch else masks[0]


def count_aortas(image, **kwargs):
    """Number of dark round blobs (aorta candidates): an int, or an int array ``(B,)`` for a batch.

    A faithful translation of an image with one aorta should give 1 (the IVC, when it is cut
    round, counts too: compare with the count on the source image rather than with 1).
    """
    _, batch = _as_images(image, kwargs.get("value_range", (0.0, 1.0)))
    blobs = detect_dark_blobs(image, **kwargs)
    return np.array([len(b) for b in blobs], dtype=np.int64) if batch else len(blobs)


# ---- comparison with the label map -----------------------------------------------------------

def aorta_centroid(label_map, aorta_label: int | None = None) -> tuple[float, float] | None:
    """``(cy, cx)`` of the aorta pixels of a label map ``(H, W)``, or None when there are none."""
    lab = np.asarray(label_map.detach().cpu().numpy() if isinstance(label_map, torch.Tensor) else label_map)
    lab = lab[0] if lab.ndim == 3 and lab.shape[0] == 1 else lab
    aorta_label = _tissue("aorta") if aorta_label is None else aorta_label
    ys, xs = np.nonzero(lab == aorta_label)
    if len(ys) == 0:
        return None
    return float(ys.mean()), float(xs.mean())


def aorta_position_error(image, label_map, aorta_label: int | None = None, **kwargs) -> float:
    """Distance in px from the label map's aorta centroid to the nearest detected blob.

    NaN when no blob is detected or the label map has no aorta.
    """
    imgs, batch = _as_images(image, kwargs.get("value_range", (0.0, 1.0)))
    if batch:
        raise ValueError("aorta_position_error takes one image (H, W); loop over a batch")
    true = aorta_centroid(_as_label_map(label_map, imgs.shape[1:]), aorta_label)
    blobs = detect_dark_blobs(image, **kwargs)
    if true is None or not blobs:
        return float("nan")
    return float(min(math.hypot(b.cy - true[0], b.cx - true[1]) for b in blobs))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2 |a & b| / (|a| + |b|)`` of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * (a & b).sum() / total)


def anatomy_score(image, label_map, aorta_label: int | None = None, vessel_labels=None,
                  tolerance: float | None = None, **kwargs) -> dict:
    """How well one image shows the anatomy of its label map ``(H, W)``.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` image (see :func:`detect_dark_blobs` for `kwargs`).
        label_map: ``(H, W)`` integer labels with values from ``usdiff.data.TISSUES``.
        aorta_label: label of the aorta (default ``TISSUES["aorta"]``).
        vessel_labels: labels of anechoic vessels (default aorta and, when present, ``ivc``).
        tolerance: max distance in px for the aorta to count as found (default: the true
            aorta's equivalent radius, at least 2 px).

    Returns:
        dict with ``aorta_count`` (number of blobs), ``aorta_found`` (a blob within
        `tolerance` of the true aorta centre), ``aorta_error_px`` (distance to the nearest
        blob, NaN if none), ``extra_blobs`` (blobs that match no vessel of the label map) and
        ``vessel_dice`` (Dice of the detected dark-structure mask against the vessel labels).
    """
    imgs, batch = _as_images(image, kwargs.get("value_range", (0.0, 1.0)))
    if batch:
        raise ValueError("anatomy_score takes one image (H, W); loop over a batch")
    lab = _as_label_map(label_map, imgs.shape[1:])
    aorta_label = _tissue("aorta") if aorta_label is None else aorta_label
    if vessel_labels is None:
        vessel_labels = [aorta_label]
        try:
            vessel_labels.append(_tissue("ivc"))
        except KeyError:
            pass
    vessels = np.isin(lab, list(vessel_labels))
    true = aorta_centroid(lab, aorta_label)
    if tolerance is None:
        area = float((lab == aorta_label).sum())
        tolerance = max(2.0, math.sqrt(area / math.pi))
    blobs = detect_dark_blobs(image, **kwargs)
    mask = dark_structure_mask(image, **kwargs)
    error = float("nan")
    if true is not None and blobs:
        error = float(min(math.hypot(b.cy - true[0], b.cx - true[1]) for b in blobs))
    # a blob "matches" a vessel when its centre lies on (or within 1 px of) a vessel pixel
    near_vessel = ndimage.binary_dilation(vessels, iterations=1) if vessels.any() else vessels
    extra = sum(1 for b in blobs if not near_vessel[int(round(b.cy)), int(round(b.cx))])
    return {"aorta_count": len(blobs), "aorta_found": bool(error <= tolerance),
            "aorta_error_px": error, "extra_blobs": int(extra), "vessel_dice": dice(mask, vessels)}
