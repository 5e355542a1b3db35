"""Anatomy of sets of images and of interpolation strips, read with the hand-written detector of
:mod:`usdiff.metrics.anatomy`:

* :func:`anatomy_table`: per image, aortas counted and located against a label map;
* :func:`strip_anatomy`: aortas along a strip, their distance to the source and target label maps,
  and where the anatomy *jumps* (the lowest Dice of the dark-structure masks of two consecutive frames);
* :func:`label_maps_at`: label maps at a critic's size, one per image.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..data import resize_label_maps
from ..metrics.anatomy import (
    anatomy_score,
    aorta_position_error,
    count_aortas,
    dark_structure_mask,
    dice,
)
from ..utils import as_image_batch

__all__ = ["strip_anatomy", "anatomy_table", "label_maps_at"]


def strip_anatomy(images, label_maps: Mapping[str, np.ndarray], value_range=(-1.0, 1.0), **settings) -> dict:
    """Anatomy along a strip of frames ``(N, 1, H, W)`` (an interpolation path).

    Args:
        label_maps: named label maps ``(H, W)`` to measure the aorta position against, e.g.
            ``{"source": labels_a, "target": labels_b}``.
        settings: detector settings of :func:`usdiff.metrics.anatomy.detect_dark_blobs`.

    Returns:
        dict with ``aorta_count`` ``(N,)`` (dark round blobs per frame), ``error_<name>``
        ``(N,)`` (px from that label map's aorta to the nearest blob, NaN when none),
        ``masks`` ``(N, H, W)`` (all enclosed dark structures,
        :func:`usdiff.metrics.anatomy.dark_structure_mask`), ``mask_dice_next`` ``(N - 1,)`` (Dice
        of the masks of frames ``k`` and ``k + 1``) and ``jump``: the ``k`` with the lowest such
        Dice, i.e. the largest change of the dark anatomy happens between frames ``k`` and ``k + 1``.
    """
    x = as_image_batch(images)
    if len(x) < 2:
        raise ValueError(f"a strip needs at least 2 frames, got {len(x)}")
    frames = x[:, 0].numpy()
    out: dict = {"aorta_count": np.asarray(count_aortas(frames, value_range=value_range, **settings))}
    for name, lab in label_maps.items():
        out[f"error_{name}"] = np.array([aorta_position_error(f, lab, value_range=value_range, **settings)
                                         for f in frames])
    masks = dark_structure_mask(frames, value_range=value_range, **settings)
    out["masks"] = masks
    # two frames with no dark structure at all agree: 1, where dice() says NaN (absent in both)
    out["mask_dice_next"] = np.nan_to_num(np.array([dice(masks[k], masks[k + 1]) for k in range(len(masks) - 1)]),
                                          nan=1.0)
    out["jump"] = int(np.argmin(out["mask_dice_next"]))
    return out


def anatomy_table(images, label_maps, value_range=(-1.0, 1.0), **settings) -> dict[str, np.ndarray]:
    """:func:`~usdiff.metrics.anatomy.anatomy_score` of every image ``(B, 1, H, W)`` as arrays.

    Args:
        label_maps: one ``(H, W)`` map for all images or ``(B, H, W)``, one per image.

    Returns:
        dict of ``(B,)`` arrays: ``aorta_count``, ``aorta_found``, ``aorta_error_px``,
        ``extra_blobs``, ``dice_aorta``, ``dice_vessels`` and ``one_aorta`` (count == 1).
    """
    x = as_image_batch(images)
    labs = np.asarray(label_maps)
    if labs.ndim == 2:
        labs = np.broadcast_to(labs, (len(x), *labs.shape))
    if labs.ndim != 3 or len(labs) != len(x):
        raise ValueError(f"label_maps must be (H, W) or (B={len(x)}, H, W), got shape {labs.shape}")
    rows = [anatomy_score(x[i, 0].numpy(), labs[i], value_range=value_range, **settings) for i in range(len(x))]
    table = {k: np.array([r[k] for r in rows]) for k in rows[0]} if rows else {}
    table["one_aorta"] = table["aorta_count"] == 1
    return table


def label_maps_at(labels: np.ndarray, n: int, size: int) -> np.ndarray:
    """Label maps ``(n, size, size)`` (nearest resize; one map ``(H, W)`` or ``(1, H, W)`` is repeated
    for a batch of `n`), e.g. for the segmenter of :func:`usdiff.metrics.critics.load_critics`."""
    labels = labels[None] if labels.ndim == 2 else labels
    if len(labels) == 1 and n > 1:
        labels = np.repeat(labels, n, axis=0)
    return resize_label_maps(labels, size)
