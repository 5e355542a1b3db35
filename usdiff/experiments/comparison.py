"""Translation methods compared on the same images with the independent critics:

* :func:`knob_sweep`: one method at each value of one :class:`Knob`, scored for realness and kept anatomy;
* :func:`pick_balanced`: the setting that trades neither for the other;
* :func:`translation_verdicts`: plain yes/no verdicts per method from a judge table;
* :func:`liver_speckle_snr`: the speckle SNR inside the liver, to compare textures.

The realism-vs-anatomy figure of knob sweeps is :func:`usdiff.viz.plot_pareto`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..translate import translate_batches
from ..utils import as_image_batch, to_unit_range

__all__ = ["Knob", "knob_sweep", "pick_balanced", "translation_verdicts", "liver_speckle_snr"]


@dataclass(frozen=True)
class Knob:
    """A translation method's knob (a name that ``method.with_knobs`` takes) and the values to try,
    gentlest first (``values`` is stored as a tuple)."""

    name: str
    values: tuple

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a knob needs a name (str), got {self.name!r}")
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError(f"knob {self.name!r} needs at least one value")


def knob_sweep(method, model, knob: Knob, x, labels, critics, seed: int = 0, progress: bool = True) -> dict:
    """Translate `x` (simulated, [-1, 1]) with `method` at each value of `knob`; score every result
    with the independent critics: mean ``p_real``, segmenter ``dice_mean`` / ``dice_aorta`` against
    the sources' `labels`, ``one_aorta_rate``. Returns lists per score plus ``values`` and ``images``."""
    values = list(knob.values)
    out = {"values": values, "p_real": [], "dice_mean": [], "dice_aorta": [], "one_aorta_rate": [], "images": []}
    for v in tqdm(values, desc=f"{method.name}: {knob.name}", disable=not progress):
        y = translate_batches(method.with_knobs(**{knob.name: v}), model, x, labels=labels, seed=seed)
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

    from ..data.phantom import LIVER
    from ..data.render import speckle_snr

    x = to_unit_range(as_image_batch(images)[:, 0].double().numpy(), value_range)
    labels = np.asarray(labels)
    values = []
    for img, lab in zip(x, labels):
        mask = ndimage.binary_erosion(lab == LIVER)
        if mask.sum() >= min_pixels:
            values.append(speckle_snr(img, mask))
    return float(np.mean(values)) if values else float("nan")
