"""Judge a set of generated or translated images with the independent critics (``usdiff evaluate``).

:func:`evaluate_images` compares a *fake* set with a *real* set and returns

* ``fd``: FD-US, the Fréchet distance in the critics' US feature space (lower = closer);
* ``fd_floor`` / ``fd_gap``: the same distance between two disjoint held-out real-like sets
  (what "indistinguishable" scores at this n) and between held-out simulated and real-like
  images (the sim-to-real gap), both at the same n, when the built-in data set is available;
* ``kid``: kernel distance (unbiased MMD², cubic kernel) in the same features;
* ``c2st_acc`` / ``c2st_ci``: held-out accuracy (95 % interval) of a fresh classifier trained to
  tell fake from real (0.5 = indistinguishable);
* ``p_real_mean``: the shipped domain critic's mean probability that a fake image is real-like;
* with label maps of the fakes' *sources*: ``dice_mean``, ``dice_aorta`` (segmenter on the fake
  image vs the source label map) and ``one_aorta_rate`` (exactly one aorta segmented).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.datasets import (
    USImageFolder,
    image_shape,
    list_images,
    load_builtin_arrays,
    read_label_map,
    resize_label_maps,
)
from ..utils import as_image_batch, from_model_range
from .c2st import c2st
from .critics import Critics, load_critics, nearest_critic_size
from .frechet import fd_from_features, kid

__all__ = ["EVALUATE_KEYS", "evaluate_images", "builtin_reference", "evaluate_folders", "read_label_maps",
           "judge_rows", "judge_table", "fd_us_folders"]

EVALUATE_KEYS = ("fd", "fd_floor", "fd_gap", "kid", "c2st_acc", "c2st_ci", "p_real_mean",
                 "dice_mean", "dice_aorta", "one_aorta_rate")
_REPEAT = re.compile(r"_r\d+$")
_DOMAIN = re.compile(r"^(sim|real)_")


def builtin_reference(data_dir, size: int, n: int) -> dict:
    """Held-out reference sets of the built-in data set at `size` px, `n` images each, in [0, 1]:
    ``{"real_test", "real_val", "sim_test"}`` (for the FD floor and gap)."""
    test = load_builtin_arrays(data_dir, "test", size, n=n, progress=False)
    val = load_builtin_arrays(data_dir, "val", size, domains=("real",), n=n, progress=False)
    return {"real_test": from_model_range(test["real"]), "real_val": from_model_range(val["real"]),
            "sim_test": from_model_range(test["sim"])}


def evaluate_images(real, fake, critics: Critics, labels=None, reference: dict | None = None,
                    n: int = 1200, value_range=(0.0, 1.0), seed: int = 0) -> dict:
    """Judge `fake` images against `real` images ``(N, 1, H, W)`` in `value_range` (see module doc).

    Args:
        labels: label maps ``(N_fake, H, W)`` of the fakes' sources (same order), or None.
        reference: :func:`builtin_reference` sets for ``fd_floor`` / ``fd_gap`` (omitted if None).
        n: at most `n` images of each set; the floor and gap use the same number.

    Returns:
        A dict with the keys of :data:`EVALUATE_KEYS` that apply, plus ``n`` (images per set used).
    """
    if n < 4:
        raise ValueError(f"n must be >= 4, got {n}")
    real, fake = as_image_batch(real, "real", min_count=4), as_image_batch(fake, "fake", min_count=4)
    m = min(n, len(real), len(fake))
    real_m, fake_m = real[:m], fake[:m]
    f_real = critics.features(real_m, value_range)
    f_fake = critics.features(fake_m, value_range)
    sub = min(1000, max(2, m // 2))
    out: dict = {"fd": fd_from_features(f_fake, f_real)}
    if reference is not None:
        k = min(m, len(reference["real_val"]), len(reference["real_test"]), len(reference["sim_test"]))
        f_ref = critics.features(reference["real_val"][:k])
        out["fd_floor"] = fd_from_features(critics.features(reference["real_test"][:k]), f_ref)
        out["fd_gap"] = fd_from_features(critics.features(reference["sim_test"][:k]), f_ref)
    out["kid"] = kid(f_fake, f_real, subset_size=sub, seed=seed)[0]
    test = c2st(fake_m, real_m, value_range=value_range, size=critics.size, seed=seed)
    out["c2st_acc"], out["c2st_ci"] = test["acc"], list(test["ci"])
    out["p_real_mean"] = float(critics.p_real(fake_m, value_range).mean())
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(fake):
            raise ValueError(f"got {len(labels)} label maps for {len(fake)} fake images")
        scores = critics.anatomy_scores(fake_m, resize_label_maps(labels[:m], critics.size), value_range)
        out["dice_mean"], out["dice_aorta"] = scores["dice_mean"], scores["dice_aorta"]
        out["one_aorta_rate"] = scores["one_aorta_rate"]
    out["n"] = m
    return out


def read_label_maps(labels_dir, image_files, size: int) -> np.ndarray:
    """Label maps for images named after their sources: ``ID.png``, ``ID_rK.png``, ``sim_ID.png`` or
    ``real_ID.png`` (as ``usdiff sample`` names them) -> ``labels_dir/ID.png``.

    Raises:
        FileNotFoundError: naming the first image without a label map.
        ValueError: a label map that cannot be read.
    """
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"label folder {labels_dir} does not exist")
    out = []
    for f in image_files:
        stem = Path(f).stem
        candidates = [labels_dir / f"{stem}.png", labels_dir / f"{_DOMAIN.sub('', _REPEAT.sub('', stem))}.png"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no label map for {Path(f).name} in {labels_dir} (looked for "
                                    f"{candidates[0].name}); fake images must be named after their source image")
        out.append(read_label_map(path, size))
    return np.stack(out)


def _critics_and_folders(real_dir, fake_dir, n, size, device):
    """The critics for the fake images' size (or `size`) and both folders read at that size."""
    fake_files = list_images(fake_dir, what="fake image folder")
    if size is None:
        size = nearest_critic_size(min(image_shape(fake_files[0])))
    critics = load_critics(size, device=device)
    fake = USImageFolder(fake_dir, size=size, n=n, value_range=(0.0, 1.0), what="fake image folder")
    real = USImageFolder(real_dir, size=size, n=n, value_range=(0.0, 1.0), what="real image folder")
    return critics, real.images(), fake.images(), fake.files


def evaluate_folders(real_dir, fake_dir, labels_dir=None, n: int = 1200, size: int | None = None,
                     data_dir=None, device=None, seed: int = 0) -> dict:
    """:func:`evaluate_images` on two folders of images (any size and mode; resized to the critics' size).

    `size` picks the critics (64 or 128; default: by the fake images' side); `data_dir` is the
    built-in data set for the floor and gap (omitted when None or missing).
    """
    critics, real, fake, fake_files = _critics_and_folders(real_dir, fake_dir, n, size, device)
    size = critics.size
    labels = read_label_maps(labels_dir, fake_files, size) if labels_dir is not None else None
    reference = None
    if data_dir is not None and (Path(data_dir) / "manifest.json").is_file():
        reference = builtin_reference(data_dir, size, min(n, len(fake), len(real)))
    return evaluate_images(real, fake, critics, labels=labels, reference=reference, n=n, seed=seed)


def judge_rows(pairs: dict, critics: Critics, n: int = 1200, labels: dict | None = None,
               value_range=(0.0, 1.0), seed: int = 0) -> dict[str, dict]:
    """:func:`evaluate_images` for several named ``(reference, candidate)`` image pairs at the same n.

    `labels` maps a row name to the candidate's source label maps (anatomy columns for that row).
    """
    labels = labels or {}
    return {name: evaluate_images(ref, cand, critics, labels=labels.get(name), n=n, value_range=value_range,
                                  seed=seed) for name, (ref, cand) in pairs.items()}


def judge_table(rows: dict[str, dict]) -> str:
    """Rows of :func:`judge_rows` as a fixed-width table (FD-US, KID x 1000, C2ST with interval, P(real))."""
    head = f"{'':34s} {'n':>5s} {'FD-US':>9s} {'KIDx1e3':>9s} {'C2ST acc [95% CI]':>22s} {'P(real)':>8s}"
    anatomy = any("dice_mean" in r for r in rows.values())
    if anatomy:
        head += f" {'Dice':>6s} {'aorta':>6s} {'1 aorta':>8s}"
    lines = [head]
    for name, r in rows.items():
        lo, hi = r["c2st_ci"]
        line = (f"{name:34s} {r['n']:5d} {r['fd']:9.3f} {1e3 * r['kid']:9.2f} "
                f"{r['c2st_acc']:9.3f} [{lo:.2f}, {hi:.2f}] {r['p_real_mean']:8.3f}")
        if anatomy and "dice_mean" in r:
            line += f" {r['dice_mean']:6.3f} {r['dice_aorta']:6.3f} {r['one_aorta_rate']:8.2f}"
        lines.append(line)
    return "\n".join(lines)


def fd_us_folders(real_dir, fake_dir, n: int = 1200, size: int | None = None, device=None) -> dict:
    """FD-US and KID between two image folders: ``usdiff fid --features us``, the offline stand-in
    for FID (a :func:`~usdiff.metrics.evaluate.distance_report` whose ``metric`` names FD-US)."""
    from .critics import USFeatures
    from .evaluate import distance_report

    critics, real, fake, _ = _critics_and_folders(real_dir, fake_dir, n, size, device)
    m = min(len(real), len(fake))
    report = distance_report(real, fake, USFeatures(critics), n=n, kid_subset_size=min(1000, max(2, m // 2)))
    report.update(real=str(real_dir), fake=str(fake_dir), layer="critics", weights=str(critics.path))
    return report
