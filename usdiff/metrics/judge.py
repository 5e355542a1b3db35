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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import (
    USImageFolder,
    image_shape,
    list_images,
    load_builtin_arrays,
    read_image,
    read_label_maps,
    read_sources,
    resize_label_maps,
)
from ..utils import as_image_batch, from_model_range, get_device
from .c2st import c2st
from .critics import Critics, load_critics, nearest_critic_size
from .frechet import fd_from_features, kid
from .structure import structure_scores

__all__ = ["EVALUATE_KEYS", "evaluate_images", "builtin_reference", "evaluate_folders", "read_label_maps",
           "read_sources", "JudgedFolders", "fitted_reference", "SHIPPED_FD_RATIO",
           "judge_rows", "judge_table", "fd_us_folders"]

EVALUATE_KEYS = ("fd", "fd_floor", "fd_gap", "kid", "c2st_acc", "c2st_ci", "p_real_mean",
                 "dice_mean", "dice_aorta", "one_aorta_rate")
# the shipped critics are no judges of a real folder whose FD-US to the built-in real-like images
# exceeds this many times the built-in floor (or that they do not call real)
SHIPPED_FD_RATIO = 10.0


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
        n: at most `n` images of each set (KID, C2ST, P(real), Dice). FD-US, its floor and its
            gap are computed at one n, ``fd_n``: `n`, or fewer when the reference sets are smaller
            (FD grows as n shrinks, so only values at the same n compare).

    Returns:
        A dict with the keys of :data:`EVALUATE_KEYS` that apply, plus ``n`` (images per set used)
        and ``fd_n``. The aorta entries are left out when the critics name no class "aorta".
    """
    if n < 4:
        raise ValueError(f"n must be >= 4, got {n}")
    real, fake = as_image_batch(real, "real", min_count=4), as_image_batch(fake, "fake", min_count=4)
    m = min(n, len(real), len(fake))
    real_m, fake_m = real[:m], fake[:m]
    f_real = critics.features(real_m, value_range)
    f_fake = critics.features(fake_m, value_range)
    sub = min(1000, max(2, m // 2))
    k = m
    if reference is not None:
        k = min(m, len(reference["real_val"]), len(reference["real_test"]), len(reference["sim_test"]))
        if k < 2:
            raise ValueError(f"the reference sets hold {k} image(s); the FD floor and gap need at least 2")
    out: dict = {"fd": fd_from_features(f_fake[:k], f_real[:k]), "fd_n": k}
    if reference is not None:
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
        out["dice_mean"] = scores["dice_mean"]
        if "aorta" in critics.label_names:
            out["dice_aorta"], out["one_aorta_rate"] = scores["dice_aorta"], scores["one_aorta_rate"]
    out["n"] = m
    return out


def _critics_and_folders(real_dir, fake_dir, n, size, device):
    """The critics for the fake images' size (or `size`) and both folders read at that size."""
    fake_files = list_images(fake_dir, what="fake image folder")
    if size is None:
        size = nearest_critic_size(min(image_shape(fake_files[0])))
    critics = load_critics(size, device=device)
    fake = USImageFolder(fake_dir, size=size, n=n, value_range=(0.0, 1.0), what="fake image folder")
    real = USImageFolder(real_dir, size=size, n=n, value_range=(0.0, 1.0), what="real image folder")
    return critics, real.images(), fake.images(), fake.files


@dataclass(frozen=True)
class JudgedFolders:
    """The folders ``usdiff evaluate`` reads.

    Args:
        real: real images (any size and mode).
        fake: generated or translated images.
        labels: label maps of the fakes' *sources* (same names; anatomy Dice with a segmenter).
        sources: the fakes' source images (same names; the label-free structure measures).
        fit: how frames reach the critics' square size: ``"pad"`` or ``"crop"``; None: the way the
            critics were fitted (``critics.report["fit"]``), ``"pad"`` for the shipped ones.
    """

    real: Path
    fake: Path
    labels: Path | None = None
    sources: Path | None = None
    fit: str | None = None


def _as_critics(critics, fake_files, device) -> Critics:
    """Critics from what ``evaluate_folders`` was given; a :class:`Critics` is moved to `device` in place."""
    if isinstance(critics, Critics):
        return critics.to(get_device(device))
    if critics is None:
        return load_critics(nearest_critic_size(min(image_shape(fake_files[0]))), device=device)
    if isinstance(critics, (int, np.integer)) and not isinstance(critics, bool):
        return load_critics(int(critics), device=device)
    return load_critics(path=critics, device=device)


def fitted_reference(critics: Critics, data_dir=None, n: int = 1200, fit: str = "pad") -> dict | None:
    """The floor and gap sets of fitted critics: their held-out images (named in ``critics.report``)
    of `data_dir` (default: the folder they were fitted on), in [0, 1]; None when they are not there.

    ``real_test`` / ``real_val`` are the two halves of the held-out real images, ``sim_test`` the
    held-out simulated ones (at most `n` each)."""
    names = critics.report.get("held_out_files")
    if not names:
        return None
    root = Path(data_dir) if data_dir is not None else Path(critics.report.get("fitted_on", ""))
    if not all((root / d / f).is_file() for d in ("sim", "real") for f in names[d]):
        return None
    real = [root / "real" / f for f in names["real"]]
    h = min(len(real) // 2, n)

    def read(files):
        return torch.stack([read_image(f, critics.size, fit) for f in files])

    return {"real_test": read(real[:h]), "real_val": read(real[h:2 * h]),
            "sim_test": read([root / "sim" / f for f in names["sim"][:n]])}


def _shipped_warning(critics: Critics, real, reference: dict | None, report: dict, seed: int = 0) -> str | None:
    """Why the shipped critics are no judges of `real` (None when nothing says so): they do not call
    it real, or (with the built-in `reference`) its FD-US to the built-in real-like images is beyond
    :data:`SHIPPED_FD_RATIO` times the floor (``report["fd_floor"]``, at ``report["fd_n"]``), or a
    fresh classifier tells it from them (C2ST interval above 0.6)."""
    why = []
    p = float(critics.p_real(real).mean())
    if p < 0.5:
        why.append(f"mean P(real) of your real images {p:.2f}")
    if reference is not None:
        k = report["fd_n"]
        f_ref = critics.features(reference["real_val"][:k])
        ratio = fd_from_features(critics.features(real[:k]), f_ref) / max(report["fd_floor"], 1e-12)
        if ratio > SHIPPED_FD_RATIO:
            why.append(f"their FD-US to the built-in real-like images {ratio:.0f}x the built-in floor")
        test = c2st(real[:k], reference["real_val"][:k], size=critics.size, seed=seed)
        if test["ci"][0] > 0.6:
            why.append(f"a fresh classifier tells them from the built-in real-like images (C2ST {test['acc']:.2f} "
                       f"[{test['ci'][0]:.2f}, {test['ci'][1]:.2f}], n={k})")
    if not why:
        return None
    return ("the shipped critics were trained on the built-in phantoms and your real images are not like theirs "
            f"({'; '.join(why)}): their P(real), FD-US and Dice say little about your scanner. Fit critics to "
            "your folders with `usdiff critics fit --data ROOT --out FILE` and pass --critics FILE "
            "(the C2ST needs no fitting)")


def evaluate_folders(folders: JudgedFolders, critics=None, *, n: int = 1200, data_dir=None, device=None,
                     seed: int = 0) -> dict:
    """:func:`evaluate_images` on folders of images (any size and mode; brought to the critics' size).

    Args:
        folders: the real, fake (and optional labels / sources) folders.
        critics: a :class:`Critics`, the path of a critics file (``usdiff critics fit``), a shipped
            size (64 or 128), or None: the shipped ones for the fake images' side.
        data_dir: where the FD floor and gap come from: a built-in data set, or for fitted critics
            the folder they were fitted on (default: the one named in their report).

    Returns:
        :func:`evaluate_images`'s dict, with the label-free structure means (``lowpass_corr``,
        ``edge_f``, ``nmi``) when ``folders.sources`` is given, and ``warnings``: a list that holds
        one sentence when the shipped critics are out of their depth on the real folder (they do
        not call it real; with a built-in data set also: it is far from or separable from the
        built-in real-like images).
    """
    if not isinstance(folders, JudgedFolders):
        raise TypeError(f"folders must be a JudgedFolders(real, fake, ...), got {type(folders).__name__}")
    fake_files = list_images(folders.fake, what="fake image folder")
    critics = _as_critics(critics, fake_files, device)
    size = critics.size
    fitted_fit = critics.report.get("fit", "pad")
    fit = fitted_fit if folders.fit is None else folders.fit
    if fit != fitted_fit:
        raise ValueError(f"folders.fit is {fit!r} but these critics were fitted with fit={fitted_fit!r}; judge frames "
                         "the way the critics saw them (leave fit out)")
    if folders.labels is not None and critics.anatomy is None:
        raise ValueError(f"label maps were given (folders.labels = {folders.labels}) but these critics have no "
                         "segmenter (they were fitted without labels); leave the labels out or fit critics with labels")
    fake_set = USImageFolder(folders.fake, size=size, n=n, value_range=(0.0, 1.0), fit=fit, what="fake image folder")
    real = USImageFolder(folders.real, size=size, n=n, value_range=(0.0, 1.0), fit=fit,
                         what="real image folder").images()
    fake = fake_set.images()
    labels = read_label_maps(folders.labels, fake_set.files, size, fit) if folders.labels is not None else None
    m = min(n, len(fake), len(real))
    reference, warnings = None, []
    if data_dir is not None and (Path(data_dir) / "manifest.json").is_file():
        reference = builtin_reference(data_dir, size, m)
    elif not critics.shipped and critics.report.get("held_out_files"):
        reference = fitted_reference(critics, data_dir, m, fit)
        if reference is None:
            root = data_dir if data_dir is not None else critics.report.get("fitted_on")
            warnings.append(f"the held-out images these critics were fitted with are not in {root}: no FD-US floor "
                            "and gap (pass the folder they were fitted on as data_dir, CLI --data)")
    report = evaluate_images(real, fake, critics, labels=labels, reference=reference, n=n, seed=seed)
    if folders.sources is not None:
        sources = read_sources(folders.sources, fake_set.files, size, fit)
        for name, values in structure_scores(sources[:m], fake[:m]).items():
            report[name] = float(np.nanmean(values))
    warning = _shipped_warning(critics, real[:m], reference, report, seed) if critics.shipped else None
    report["warnings"] = warnings + ([warning] if warning else [])
    report["critics"] = str(critics.path) if critics.path is not None else "in memory"
    return report


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
            line += f" {r['dice_mean']:6.3f} {r.get('dice_aorta', float('nan')):6.3f} " \
                    f"{r.get('one_aorta_rate', float('nan')):8.2f}"
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
