"""Label-free structure measures: is the anatomy of a source image still where it was after translation?

Without label maps (and a segmenter trained on them) anatomy preservation can still be measured
between each source image and its translation, on what both share: the coarse layout of dark and
bright regions and their boundaries. Speckle, noise and gain are what a sim-to-real translation is
*meant* to change, so every measure first low-passes both images with a Gaussian of `sigma` pixels
(default ``side / 32``: 2 px at 64 px, about one speckle grain of the built-in real-like frames
times two), and all are invariant to a global gain. They are measured inside the source's image region (its
pixels above the background level, holes filled, eroded by ``2 sigma + 2`` px), so that the border
of an ultrasound fan, which every translation keeps, does not count as kept anatomy:

* :func:`lowpass_correlation` -- Pearson correlation of the two low-passed images (1 = same layout up
  to gain and offset);
* :func:`edge_f_score` -- boundary agreement: the strongest ``edge_share`` of gradient magnitudes of
  each low-passed image are its edges; precision / recall of one edge map against the other within
  `tolerance` pixels, and their harmonic mean (the boundary F-score of Martin et al., 2004, BSDS);
* :func:`normalized_mutual_information` -- ``2 I(A; B) / (H(A) + H(B))`` of the low-passed images'
  joint histogram of quantile bins (1 = one determines the other, 0 = independent; a monotone
  grey-level change of a low-passed image leaves it unchanged; Studholme et al. 1999 use the related ``(H(A) + H(B)) / H(A, B)``).

:func:`structure_scores` computes all three per image pair. How far they agree with a segmenter's
Dice is measured on the built-in data (where labels exist) by
:func:`usdiff.experiments.structure_agreement`.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..utils import as_image_batch

__all__ = ["STRUCTURE_MEASURES", "image_regions", "lowpass_correlation", "edge_f_score", "normalized_mutual_information",
           "structure_scores"]

STRUCTURE_MEASURES = ("lowpass_corr", "edge_f", "nmi")


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two image batches of the same shape as float64 arrays ``(N, H, W)``."""
    a = as_image_batch(a, "sources", min_count=1).double().numpy()[:, 0]
    b = as_image_batch(b, "outputs", min_count=1).double().numpy()[:, 0]
    if a.shape != b.shape:
        raise ValueError(f"sources and outputs must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _sigma(shape, sigma) -> float:
    s = max(shape[-2:]) / 32 if sigma is None else float(sigma)
    if not s >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    return s


def _lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, (0, sigma, sigma), mode="nearest") if sigma > 0 else x


def _prepared(sources, outputs, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Both batches low-passed, the sources' regions and the sigma used."""
    a, b = _pairs(sources, outputs)
    s = _sigma(a.shape, sigma)
    region = image_regions(a, s)
    return _lowpass(a, s), _lowpass(b, s), region, s


def image_regions(sources, sigma: float | None = None) -> np.ndarray:
    """Where the measures look, ``(N, H, W)`` bool: each source's pixels above its background (its
    minimum), holes filled, eroded by ``ceil(2 sigma) + 2`` px; the whole frame when that leaves
    fewer than 1/8 of the pixels (an image without a black surround)."""
    a = as_image_batch(sources, "sources", min_count=1).double().numpy()[:, 0]
    s = _sigma(a.shape, sigma)
    out = np.ones(a.shape, bool)
    for i, x in enumerate(a):
        lo, hi = x.min(), x.max()
        inside = ndimage.binary_fill_holes(x > lo + 1e-3 * (hi - lo))
        inside = ndimage.binary_erosion(inside, iterations=int(np.ceil(2 * s)) + 2)
        if inside.sum() >= x.size / 8:
            out[i] = inside
    return out


def lowpass_correlation(sources, outputs, sigma: float | None = None) -> np.ndarray:
    """Pearson correlation ``(N,)`` of each low-passed source with its low-passed output (NaN where
    either is constant)."""
    a, b, region, _ = _prepared(sources, outputs, sigma)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        x, y = a[i][region[i]], b[i][region[i]]
        x, y = x - x.mean(), y - y.mean()
        denom = np.sqrt((x * x).sum() * (y * y).sum())
        if denom > 0:
            out[i] = float((x * y).sum() / denom)
    return out


def _edges(x: np.ndarray, share: float, region: np.ndarray) -> np.ndarray:
    """The `share` of `region`'s pixels with the largest gradient magnitude (Sobel) of each image,
    ``(N, H, W)`` bool (False outside the region)."""
    mag = np.hypot(ndimage.sobel(x, axis=1), ndimage.sobel(x, axis=2))
    out = np.zeros(x.shape, bool)
    for i in range(len(x)):
        thr = np.quantile(mag[i][region[i]], 1.0 - share)
        out[i] = region[i] & (mag[i] >= thr) & (mag[i] > 0)
    return out


def edge_f_score(sources, outputs, sigma: float | None = None, tolerance: float = 1.5,
                 edge_share: float = 0.1) -> np.ndarray:
    """Boundary F-score ``(N,)`` of each output's edges against its source's (see the module doc):
    an edge pixel counts as matched when the other map has an edge within `tolerance` px (Euclidean);
    NaN where neither image has an edge."""
    if not 0 < edge_share < 1:
        raise ValueError(f"edge_share must be in (0, 1), got {edge_share!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    a, b, region, _ = _prepared(sources, outputs, sigma)
    ea, eb = _edges(a, edge_share, region), _edges(b, edge_share, region)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if not ea[i].any() and not eb[i].any():
            continue
        if not ea[i].any() or not eb[i].any():
            out[i] = 0.0
            continue
        da = ndimage.distance_transform_edt(~ea[i])     # distance to the nearest source edge
        db = ndimage.distance_transform_edt(~eb[i])
        precision = float(np.mean(da[eb[i]] <= tolerance))
        recall = float(np.mean(db[ea[i]] <= tolerance))
        out[i] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out


def _quantile_bins(x: np.ndarray, bins: int) -> np.ndarray:
    """Bin index ``0 .. bins-1`` of every pixel by the image's own quantiles (equal-count bins), on
    values scaled to [0, 1] and rounded to 1e-9, so that an affine change does not move pixels
    between bins through rounding."""
    lo, hi = x.min(), x.max()
    x = np.round((x - lo) / (hi - lo), 9) if hi > lo else np.zeros_like(x)
    edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, x, side="right")


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def normalized_mutual_information(sources, outputs, sigma: float | None = None, bins: int = 16) -> np.ndarray:
    """``2 I(A; B) / (H(A) + H(B))`` ``(N,)`` of each low-passed source and output (quantile bins of
    each image, so a monotone grey-level change of a low-passed image gives the same value); NaN where an image is constant."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    a, b, region, _ = _prepared(sources, outputs, sigma)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        ia, ib = _quantile_bins(a[i][region[i]], bins), _quantile_bins(b[i][region[i]], bins)
        joint = np.bincount(ia * bins + ib, minlength=bins * bins).reshape(bins, bins) / ia.size
        ha, hb = _entropy(joint.sum(1)), _entropy(joint.sum(0))
        if ha > 0 and hb > 0:
            out[i] = 2 * (ha + hb - _entropy(joint.ravel())) / (ha + hb)
    return out


def structure_scores(sources, outputs, sigma: float | None = None) -> dict[str, np.ndarray]:
    """All three measures per image pair: ``{"lowpass_corr", "edge_f", "nmi"}`` -> ``(N,)``.

    `sources` and `outputs` are image batches of the same shape, in any common value range.
    """
    return {"lowpass_corr": lowpass_correlation(sources, outputs, sigma),
            "edge_f": edge_f_score(sources, outputs, sigma),
            "nmi": normalized_mutual_information(sources, outputs, sigma)}
