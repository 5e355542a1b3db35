"""How well do the label-free structure measures agree with a segmenter's Dice where labels exist?

:func:`structure_agreement` takes source images with their label maps and several sets of outputs
of those sources (translations, or images that keep or break the anatomy on purpose), scores every
output with the label-free measures of :mod:`usdiff.metrics.structure` against its source and with
the critics' segmenter against the source's label map, and returns per set the means of both, and
over all outputs together the Spearman rank correlation of each measure with the segmenter's mean
Dice, with a bootstrap 95 % interval over the outputs. On the built-in data this says how far a user
without labels can trust each measure.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import spearmanr

from ..data.datasets import resize_label_maps
from ..metrics.critics import Critics
from ..metrics.structure import STRUCTURE_MEASURES, structure_scores

__all__ = ["structure_agreement", "agreement_table"]


def _spearman_ci(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> tuple[float, tuple[float, float]]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        boots.append(spearmanr(x[i], y[i]).statistic)
    boots = np.asarray(boots, float)
    boots = boots[np.isfinite(boots)]
    return rho, (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))


def structure_agreement(critics: Critics, sources, label_maps, outputs: Mapping[str, object], *,
                        value_range=(-1.0, 1.0), n_boot: int = 500, seed: int = 0) -> dict:
    """Label-free measures against the segmenter's Dice (see the module doc).

    Args:
        critics: judges with a segmenter (its Dice of each output against the source's label map).
        sources: ``(N, 1, H, W)`` source images in `value_range`.
        label_maps: ``(N, H, W)`` label maps of the sources.
        outputs: set name -> ``(N, 1, H, W)`` outputs of the same sources, same order.

    Returns:
        ``{"sets": {name: {"dice_mean", "dice_aorta", measure: mean, ...}}, "per_image": {name:
        {"dice": (N,), measure: (N,)}}, "spearman": {measure: rho}, "spearman_ci": {measure: (low,
        high)}, "n": images per set}``; ``per_image["dice"]`` is the mean over the foreground
        tissues of each image.
    """
    if not outputs:
        raise ValueError("outputs is empty: give at least one set of outputs of the sources")
    labels = resize_label_maps(np.asarray(label_maps), critics.size)
    sets, per_image_all, dice_all, measure_all = {}, {}, [], {m: [] for m in STRUCTURE_MEASURES}
    for name, out in outputs.items():
        if len(out) != len(sources):
            raise ValueError(f"outputs[{name!r}] holds {len(out)} images for {len(sources)} sources")
        seg = critics.anatomy_scores(out, labels, value_range)
        per_image = np.asarray(seg["per_image"])[:, 1:]
        with np.errstate(all="ignore"):
            dice = np.nanmean(np.where(np.isfinite(per_image), per_image, np.nan), axis=1)
        scores = structure_scores(sources, out)
        sets[name] = {"dice_mean": seg["dice_mean"], "dice_aorta": seg["dice_aorta"],
                      **{m: float(np.nanmean(scores[m])) for m in STRUCTURE_MEASURES}}
        per_image_all[name] = {"dice": dice, **scores}
        dice_all.append(dice)
        for m in STRUCTURE_MEASURES:
            measure_all[m].append(scores[m])
    dice_all = np.concatenate(dice_all)
    rho, ci = {}, {}
    for m in STRUCTURE_MEASURES:
        rho[m], ci[m] = _spearman_ci(np.concatenate(measure_all[m]), dice_all, n_boot, seed)
    return {"sets": sets, "per_image": per_image_all, "spearman": rho, "spearman_ci": ci, "n": len(sources)}


def agreement_table(result: dict) -> str:
    """:func:`structure_agreement`'s result as aligned text: one row per set, then the rank correlations."""
    head = f"{'outputs':<30s} {'Dice':>6s} {'aorta':>6s} " + " ".join(f"{m:>12s}" for m in STRUCTURE_MEASURES)
    lines = [head]
    for name, r in result["sets"].items():
        lines.append(f"{name:<30s} {r['dice_mean']:6.3f} {r['dice_aorta']:6.3f} "
                     + " ".join(f"{r[m]:12.3f}" for m in STRUCTURE_MEASURES))
    lines.append(f"{'Spearman rho with Dice [95% CI]':<44s}" + " ".join(
        f"{result['spearman'][m]:5.2f} [{result['spearman_ci'][m][0]:.2f},{result['spearman_ci'][m][1]:.2f}]"
        for m in STRUCTURE_MEASURES))
    return "\n".join(lines)
