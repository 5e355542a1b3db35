"""Anatomy preservation: find the dark round vessels (aorta) in an ultrasound image.

The original study could only eyeball whether a translated image kept its anatomy (its MSE
manipulation produced "multiple aortas"). Here the aorta is measured: blood is anechoic, so an
aorta cut across is a dark, round blob inside the fan. The detector

1. finds the fan (the nonzero scan region, holes filled so that dark structures count as inside),
2. smooths the image (Gaussian, `sigma` px) to average out speckle,
3. marks pixels darker than `rel_threshold` x the local mean brightness of the fan around them
   (a normalised box filter of side `window`, so depth attenuation does not matter),
4. labels connected components (:mod:`scipy.ndimage`) and keeps those that

   * are enclosed: they touch neither the fan border nor leave a quarter of the ring around
     them outside the fan (acoustic shadows open onto the fan's far edge),
   * are much darker than *every* side of their surroundings: ``contrast`` = mean inside /
     darkest of the four quarter-rings at ``r .. 2r`` (up, right, down, left) is at most
     `max_contrast` (the region below a shadow is as dark as the shadow),
   * have an equivalent radius ``sqrt(area / pi)`` in ``[min_radius, max_radius]``,
   * are round: ``circularity >= min_circularity``.

``circularity`` is ``axis_ratio x min(1, fill)`` from the second moments of the component:
``axis_ratio = sqrt(l_min / l_max)`` (eigenvalues of the pixel covariance) and
``fill = area / (4 pi sqrt(l_min l_max))``, which is 1 for any filled ellipse and smaller for
ragged or hollow shapes. A disk gives about 1, an ellipse its axis ratio; the flattened IVC
usually falls below the default 0.6.

All lengths are in pixels; the defaults scale with the image side ``H``. Measured on the 200
test phantoms of a 2,000-pair built-in data set rendered at 128 px (the default): the aorta is
found (within its radius) in 100 % of the simulated images at 128 px and, resized to 64 px as the
shipped model sees them, 100 %; in the real-like images 96 % (128 px) and 89 % (64 px). Exactly
one blob is detected in 89 % of the simulated images at both sizes (the other 11 % add a round
IVC) and in 91 % / 84 % of the real-like ones. Rendered directly at 64 px, real-like speckle is
as coarse as the aorta and it is found in only 30 %: render at 128 px and let the data sets
resize, which averages the speckle.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ..utils import to_unit_range

__all__ = [
    "Blob",
    "DEFAULTS",
    "fan_mask",
    "detect_dark_blobs",
    "dark_structure_mask",
    "count_aortas",
    "aorta_centroid",
    "aorta_position_error",
    "anatomy_score",
    "dice",
]

# detector settings; None = scaled with the image side H (see `_resolve`)
DEFAULTS = {"sigma": None, "rel_threshold": 0.5, "window": None, "min_radius": None, "max_radius": None,
            "min_circularity": 0.6, "max_contrast": 0.5, "fan_threshold": 0.02, "mask": None}


class Blob(NamedTuple):
    """One dark round structure: centre ``(cy, cx)``, equivalent radius (px), circularity, contrast."""

    cy: float
    cx: float
    radius: float
    circularity: float
    contrast: float


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
    return to_unit_range(arr, (lo, hi)), batch


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


def _resolve(size: int, settings: dict) -> dict:
    """Detector settings with the size-dependent defaults filled in; unknown names raise."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected detector arguments {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **settings}
    scale = size / 64.0
    p["sigma"] = 0.75 * scale if p["sigma"] is None else float(p["sigma"])
    p["window"] = max(5, int(round(size / 4)) | 1) if p["window"] is None else int(p["window"])
    p["min_radius"] = max(1.5, 1.5 * scale) if p["min_radius"] is None else float(p["min_radius"])
    p["max_radius"] = 0.15 * size if p["max_radius"] is None else float(p["max_radius"])
    if not 0 < p["rel_threshold"] < 1:
        raise ValueError(f"rel_threshold must be in (0, 1), got {p['rel_threshold']}")
    return p


def _shape(dy: np.ndarray, dx: np.ndarray, area: float) -> tuple[float, float]:
    """``(axis_ratio, fill)`` of a pixel set given centred coordinates (see the module docstring)."""
    cov = np.cov(np.stack([dy, dx])) if len(dy) > 1 else np.zeros((2, 2))
    lam = np.clip(np.linalg.eigvalsh(cov + np.eye(2) / 12.0), 1e-12, None)  # +1/12: pixel extent
    return math.sqrt(lam[0] / lam[1]), area / (4.0 * math.pi * math.sqrt(lam[0] * lam[1]))


def _ring_quadrants(smooth, fan, labels, k, cy, cx, radius):
    """Mean brightness of the ring ``r+1 .. 2r+2`` around a blob in 4 sectors (up, right, down,
    left) and the fraction of each sector inside the fan."""
    h, w = smooth.shape
    r_out = 2.0 * radius + 2.0
    y0, y1 = max(0, int(cy - r_out) - 1), min(h, int(cy + r_out) + 2)
    x0, x1 = max(0, int(cx - r_out) - 1), min(w, int(cx + r_out) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(yy - cy, xx - cx)
    ring = (d >= radius + 1.0) & (d <= r_out) & (labels[y0:y1, x0:x1] != k)
    sector = ((np.degrees(np.arctan2(xx - cx, cy - yy)) + 45.0) % 360.0 // 90.0).astype(int)
    sm, fn = smooth[y0:y1, x0:x1], fan[y0:y1, x0:x1]
    means, inside = np.zeros(4), np.zeros(4)
    for q in range(4):
        sel = ring & (sector == q)
        inside[q] = (sel & fn).sum() / max(int(sel.sum()), 1)
        means[q] = sm[sel & fn].mean() if (sel & fn).any() else 0.0
    return means, inside


def _candidates(img: np.ndarray, p: dict):
    """Dark connected components inside the fan, not touching its border, and their features.

    Returns ``(labels, features)``: the component label image ``(H, W)`` and one dict per
    kept component (``label, cy, cx, radius, circularity, contrast, enclosed``).
    """
    fan = fan_mask(img, p["fan_threshold"]) if p["mask"] is None else np.asarray(p["mask"], dtype=bool)
    if fan.shape != img.shape:
        raise ValueError(f"mask must have the image's shape {img.shape}, got {fan.shape}")
    if not fan.any():
        return np.zeros(img.shape, int), []
    smooth = ndimage.gaussian_filter(img, p["sigma"]) if p["sigma"] > 0 else img
    # mean brightness of the fan around each pixel (normalised convolution ignores outside pixels)
    num = ndimage.uniform_filter(np.where(fan, smooth, 0.0), size=p["window"], mode="constant")
    den = ndimage.uniform_filter(fan.astype(np.float64), size=p["window"], mode="constant")
    local = num / np.maximum(den, 1e-12)
    dark = (smooth < p["rel_threshold"] * local) & fan
    dark = ndimage.binary_opening(dark, structure=np.ones((2, 2)))
    labels, n = ndimage.label(dark)
    if n == 0:
        return labels, []
    border = fan & ~ndimage.binary_erosion(fan, structure=np.ones((3, 3)), border_value=0)
    touches = ndimage.maximum(border, labels, index=np.arange(1, n + 1))
    yy, xx = np.indices(img.shape)
    feats = []
    for k, objects in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[objects] == k
        area = float(region.sum())
        radius = math.sqrt(area / math.pi)
        if touches[k - 1] or radius < p["min_radius"]:
            continue
        ys, xs = yy[objects][region], xx[objects][region]
        cy, cx = float(ys.mean()), float(xs.mean())
        ratio, fill = _shape(ys - cy, xs - cx, area)
        ring, inside = _ring_quadrants(smooth, fan, labels, k, cy, cx, radius)
        feats.append({"label": k, "cy": cy, "cx": cx, "radius": radius, "circularity": ratio * min(1.0, fill),
                      "contrast": float(smooth[objects][region].mean()) / max(float(ring.min()), 1e-6),
                      "enclosed": bool(inside.min() > 0.5)})
    return labels, feats


def _detect_one(img: np.ndarray, p: dict, round_only: bool = True) -> tuple[list[Blob], np.ndarray]:
    """Accepted blobs of one image ``(H, W)`` and the boolean mask of their pixels."""
    labels, feats = _candidates(img, p)
    accepted = np.zeros(img.shape, bool)
    blobs = []
    for f in feats:
        if not (f["enclosed"] and f["contrast"] <= p["max_contrast"]):
            continue
        if round_only and not (f["radius"] <= p["max_radius"] and f["circularity"] >= p["min_circularity"]):
            continue
        blobs.append(Blob(f["cy"], f["cx"], f["radius"], f["circularity"], f["contrast"]))
        accepted[labels == f["label"]] = True
    return sorted(blobs, key=lambda b: -b.circularity), accepted


def detect_dark_blobs(image, value_range: tuple[float, float] = (0.0, 1.0), **settings):
    """Dark, round, anechoic structures (aorta candidates) inside the fan.

    Args:
        image: ``(H, W)`` or ``(1, H, W)``, or a batch ``(B, H, W)`` / ``(B, 1, H, W)``, with
            pixels in `value_range` (``(-1, 1)`` for model outputs); numpy or torch.
        settings: detector settings (module docstring), defaults in :data:`DEFAULTS`:
            ``sigma`` (smoothing, default ``0.75 H / 64``), ``rel_threshold`` (0.5), ``window``
            (local-brightness box, about ``H / 4``), ``min_radius`` / ``max_radius``
            (``max(1.5, 1.5 H / 64)`` / ``0.15 H``), ``min_circularity`` (0.6),
            ``max_contrast`` (0.5), ``fan_threshold`` (0.02), ``mask`` (a boolean ``(H, W)``
            fan to use instead of the automatic one).

    Returns:
        a list of :class:`Blob` ``(cy, cx, radius, circularity, contrast)`` sorted by
        decreasing circularity; for a batch, one such list per image.
    """
    imgs, batch = _as_images(image, value_range)
    p = _resolve(min(imgs.shape[1:]), settings)
    out = [_detect_one(img, p)[0] for img in imgs]
    return out if batch else out[0]


def dark_structure_mask(image, round_only: bool = False, value_range: tuple[float, float] = (0.0, 1.0),
                        **settings) -> np.ndarray:
    """Boolean mask ``(H, W)`` (or ``(B, H, W)``) of the enclosed anechoic structures.

    With ``round_only=False`` (default) every enclosed dark component of at least `min_radius`
    counts, whatever its shape (aorta, IVC, cysts); with True only the detected round blobs.
    """
    imgs, batch = _as_images(image, value_range)
    p = _resolve(min(imgs.shape[1:]), settings)
    masks = np.stack([_detect_one(img, p, round_only=round_only)[1] for img in imgs])
    return masks if batch else masks[0]


def count_aortas(image, value_range: tuple[float, float] = (0.0, 1.0), **settings):
    """Number of dark round blobs (aorta candidates): an int, or an int array ``(B,)`` for a batch.

    An image of the built-in data shows one aorta; a faithful translation should keep 1. A
    round IVC can count too, so compare with the count on the source image.
    """
    _, batch = _as_images(image, value_range)
    blobs = detect_dark_blobs(image, value_range=value_range, **settings)
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


def _nearest(blobs: list[Blob], point) -> tuple[Blob | None, float]:
    if point is None or not blobs:
        return None, float("nan")
    dist = [math.hypot(b.cy - point[0], b.cx - point[1]) for b in blobs]
    i = int(np.argmin(dist))
    return blobs[i], float(dist[i])


def aorta_position_error(image, label_map, aorta_label: int | None = None,
                         value_range: tuple[float, float] = (0.0, 1.0), **settings) -> float:
    """Distance in px from the label map's aorta centroid to the nearest detected blob.

    NaN when no blob is detected or the label map has no aorta.
    """
    imgs, batch = _as_images(image, value_range)
    if batch:
        raise ValueError("aorta_position_error takes one image (H, W); loop over a batch")
    true = aorta_centroid(_as_label_map(label_map, imgs.shape[1:]), aorta_label)
    return _nearest(detect_dark_blobs(imgs[0], **settings), true)[1]


def dice(a, b):
    """Dice overlap ``2 |a & b| / (|a| + |b|)`` of two boolean masks ``(H, W)``, or of each pair of a
    batch ``(N, H, W)`` (then an ``(N,)`` array): the package's one Dice.

    NaN where both masks are empty: the structure is absent from both, so there is nothing to
    overlap, and a mean over the structures that occur (``np.nanmean``) skips it. A caller that
    wants two empty masks to count as agreeing maps NaN to 1 itself.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (N, H, W), got shape {a.shape}")
    inter = (a & b).sum(axis=(-2, -1))
    total = a.sum(axis=(-2, -1)) + b.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, 2.0 * inter / total, np.nan)
    return float(out) if a.ndim == 2 else out


def anatomy_score(image, label_map, aorta_label: int | None = None, vessel_labels=None,
                  tolerance: float | None = None, value_range: tuple[float, float] = (0.0, 1.0),
                  **settings) -> dict:
    """How well one image shows the vessels of its label map ``(H, W)``.

    Args:
        image: ``(H, W)`` or ``(1, H, W)`` image (`settings` as in :func:`detect_dark_blobs`).
        label_map: ``(H, W)`` integer labels with values from ``usdiff.data.TISSUES``.
        aorta_label: label of the aorta (default ``TISSUES["aorta"]``).
        vessel_labels: labels of anechoic vessels (default the aorta and, when present, ``ivc``).
        tolerance: max distance in px for the aorta to count as found (default: the true
            aorta's equivalent radius, at least 2 px).

    Returns:
        dict with ``aorta_count`` (round dark blobs), ``aorta_found`` (one lies within
        `tolerance` of the true aorta centre), ``aorta_error_px`` (distance to the nearest,
        NaN if none), ``extra_blobs`` (round blobs whose centre is on no vessel of the label
        map: hallucinated aortas), ``dice_aorta`` (:func:`dice` of the blob nearest the aorta
        against the aorta label, 0 if none) and ``dice_vessels`` (:func:`dice` of all enclosed
        anechoic structures, :func:`dark_structure_mask`, against the vessel labels; NaN when
        neither has any).
    """
    imgs, batch = _as_images(image, value_range)
    if batch:
        raise ValueError("anatomy_score takes one image (H, W); loop over a batch")
    img = imgs[0]
    lab = _as_label_map(label_map, img.shape)
    aorta_label = _tissue("aorta") if aorta_label is None else aorta_label
    if vessel_labels is None:
        vessel_labels = [aorta_label]
        try:
            vessel_labels.append(_tissue("ivc"))
        except KeyError:
            pass
    aorta = lab == aorta_label
    vessels = np.isin(lab, list(vessel_labels))
    true = aorta_centroid(lab, aorta_label)
    if tolerance is None:
        tolerance = max(2.0, math.sqrt(float(aorta.sum()) / math.pi))
    p = _resolve(min(img.shape), settings)
    labels, _ = _candidates(img, p)
    blobs, _ = _detect_one(img, p)
    nearest, error = _nearest(blobs, true)
    dice_aorta = 0.0
    if nearest is not None:
        blob_mask = labels == labels[int(round(nearest.cy)), int(round(nearest.cx))]
        if labels[int(round(nearest.cy)), int(round(nearest.cx))] == 0:  # centre off a concave blob
            blob_mask = np.zeros_like(aorta)
        dice_aorta = dice(blob_mask, aorta)   # the label map has an aorta here: never NaN
    # a blob "matches" a vessel when its centre lies on (or within 1 px of) a vessel pixel
    near_vessel = ndimage.binary_dilation(vessels) if vessels.any() else vessels
    extra = sum(1 for b in blobs if not near_vessel[int(round(b.cy)), int(round(b.cx))])
    vessel_mask = _detect_one(img, p, round_only=False)[1]
    return {"aorta_count": len(blobs), "aorta_found": bool(error <= tolerance), "aorta_error_px": error,
            "extra_blobs": int(extra), "dice_aorta": dice_aorta, "dice_vessels": dice(vessel_mask, vessels)}
