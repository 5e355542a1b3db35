"""Critics fitted to a user's own folders (``usdiff critics fit``): judges that have seen their scanner.

The shipped critics were trained on the built-in phantoms; on another scanner's frames their
P(real) and FD-US mean little. :func:`fit_critics` trains the same networks on ``ROOT/sim`` and
``ROOT/real`` (any frame size, brought to ``size`` px by ``fit``):

* a domain critic, sim (0) vs real (1), as :func:`~usdiff.metrics.critic_training.train_domain_critic`;
  its pooled features are the FD feature space (with the segmenter's bottleneck where there is one);
* where ``ROOT/labels`` holds a label map for every simulated image (same file name), an anatomy
  segmenter trained on the *simulated* images with ultrasound-like augmentation
  (:data:`~usdiff.data.augment.SPECKLE_APPEARANCE`: speckle, gain, blur, noise), because real images
  rarely come with labels. Its Dice on a translated image measures whether the simulated anatomy is
  still found; how well it segments *real* frames is unknown unless labelled real frames are given.

A seeded share of each folder (``held_out``) is kept out of training; the report of
:func:`held_out_report` on it (critic accuracy, FD-US floor and gap at the same n, the real-vs-real
C2ST interval, the segmenter's held-out Dice on simulation) is stored in the file with the names of
the held-out images, so that ``usdiff evaluate --critics FILE`` measures its floor and gap on them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data.augment import SPECKLE_APPEARANCE
from ..data.datasets import USImageFolder, check_fit, find_source, read_label_map
from ..data.scanner import SCANNER_FILE
from ..utils import check_positive_ints
from .c2st import c2st
from .critic_training import CRITIC_TRAINING, TrainSettings, train_domain_critic, train_segmenter
from .critics import BUILTIN_LABEL_NAMES, Critics, anatomy_report
from .frechet import fd_from_features

__all__ = ["CriticsFit", "fit_critics", "held_out_report", "split_held_out", "label_names_for", "report_lines"]

MIN_IMAGES = 20


@dataclass(frozen=True)
class CriticsFit:
    """How :func:`fit_critics` trains.

    Args:
        size: side (px) the critics work at (64 or 128 are the shipped sizes; any >= 32 works).
        fit: how frames of another size or aspect reach ``size x size``: ``"pad"`` or ``"crop"``.
        critic_steps, segmenter_steps: training steps of the domain critic and the segmenter.
        held_out: share of each folder kept out of training for the report.
        label_names: names of the label classes (class 0 first); None: the built-in tissue names
            for a folder this package wrote (``usdiff data scanner``'s ``scanner.json`` or a built-in
            manifest), else ``"class K"``.
        seed: seed of the split and of both trainings.
    """

    size: int = 64
    fit: str = "pad"
    critic_steps: int = 800
    segmenter_steps: int = 1500
    held_out: float = 0.2
    label_names: tuple[str, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        check_positive_ints(size=self.size, critic_steps=self.critic_steps, segmenter_steps=self.segmenter_steps)
        if self.size < 32:
            raise ValueError(f"size must be >= 32 (the domain critic halves the image five times), got {self.size}")
        check_fit(self.fit)
        if not 0.05 <= self.held_out <= 0.5:
            raise ValueError(f"held_out must be in [0.05, 0.5], got {self.held_out!r}")


def split_held_out(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held_out)`` of `n` items: a seeded shuffle, ``max(8, round(share n))`` held out
    but never more than ``n - 4`` (so a small folder holds out more than `share`: 8 of 20 is 40 %)."""
    k = min(n - 4, max(8, round(share * n)))
    order = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC817])).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def label_names_for(labels: np.ndarray, names: tuple[str, ...] | None, builtin: bool = False) -> tuple[str, ...]:
    """The class names for label maps holding the values of `labels`: `names` when given (checked
    against the largest label), else the built-in tissue names when `builtin` (a folder this package
    wrote), else ``"class 0"``, ``"class 1"``, ..."""
    top = int(labels.max()) if labels.size else 0
    if names is not None:
        names = tuple(str(n) for n in names)
        if len(names) <= top:
            raise ValueError(f"the label maps hold class {top} but label_names names only {len(names)} classes "
                             f"({', '.join(names)})")
        return names
    if builtin and top < len(BUILTIN_LABEL_NAMES):
        return BUILTIN_LABEL_NAMES
    return tuple(f"class {c}" for c in range(top + 1))


def _read_labels(labels_dir: Path, files, size: int, fit: str) -> np.ndarray:
    paths = [find_source(labels_dir, f) for f in files]
    missing = [f.name for f, p in zip(files, paths) if p is None]
    if missing:
        raise FileNotFoundError(f"{labels_dir} has no label map for {len(missing)} of the {len(files)} simulated "
                                f"images (first: {missing[0]}); each sim/NAME needs a label map of the same name, or "
                                "remove labels/ to fit critics without a segmenter")
    return np.stack([read_label_map(p, size, fit) for p in paths])


def fit_critics(root, settings: CriticsFit = CriticsFit(), *, progress: bool = True) -> Critics:
    """Train critics on the folders ``root/sim`` and ``root/real`` (and ``root/labels``, see the
    module doc) and return them with their held-out report (``critics.report``).

    Raises:
        FileNotFoundError: a folder is missing, or a simulated image has no label map.
        ValueError: fewer than 20 images in a folder, or bad settings.
    """
    root = Path(root)
    t = settings
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    folders = {d: USImageFolder(root / d, d, t.size, fit=t.fit, what=f"{d} image folder") for d in ("sim", "real")}
    for d, folder in folders.items():
        if len(folder) < MIN_IMAGES:
            raise ValueError(f"{root / d} holds {len(folder)} images; fitting critics needs at least {MIN_IMAGES} "
                             "per folder (a few hundred for a trustworthy report)")
    images = {d: f.images() for d, f in folders.items()}
    split = {d: split_held_out(len(images[d]), t.held_out, t.seed) for d in images}
    train = {d: images[d][torch.from_numpy(split[d][0])] for d in images}
    start = time.perf_counter()
    width = 16 if t.size <= 64 else 8
    training = replace(CRITIC_TRAINING, train_steps=t.critic_steps, width=width, seed=t.seed)
    critic, log = train_domain_critic(train["sim"], train["real"], t.size, training, progress=progress)
    anatomy, names, labels = None, BUILTIN_LABEL_NAMES, None
    if (root / "labels").is_dir():
        labels = _read_labels(root / "labels", folders["sim"].files, t.size, t.fit)
        written_here = (root / SCANNER_FILE).is_file() or (root / "manifest.json").is_file()
        names = label_names_for(labels, t.label_names, builtin=written_here)
        seg_training = TrainSettings(train_steps=t.segmenter_steps, batch_size=16, width=12, seed=t.seed)
        anatomy, _ = train_segmenter(train["sim"], labels[split["sim"][0]], t.size, seg_training,
                                     num_classes=len(names), appearance=SPECKLE_APPEARANCE, progress=progress,
                                     desc="segmenter (sim + US augmentation)")
    critics = Critics(t.size, critic, anatomy, label_names=names)
    held = {d: images[d][torch.from_numpy(split[d][1])] for d in images}
    held_labels = labels[split["sim"][1]] if labels is not None else None
    critics.report = {
        "fitted_on": str(root.resolve()), "fit": t.fit, "seed": t.seed, "seconds": round(time.perf_counter() - start, 1),
        "steps": {"critic": t.critic_steps, "segmenter": t.segmenter_steps if anatomy is not None else 0},
        "held_out_files": {d: [folders[d].files[i].name for i in split[d][1]] for d in images},
        "train_counts": {d: int(len(split[d][0])) for d in images},
        **held_out_report(critics, held["sim"], held["real"], held_labels, seed=t.seed),
    }
    critics.report["critic_train_seconds"] = round(log["seconds"], 1)
    return critics


def held_out_report(critics: Critics, sim, real, sim_labels=None, *, seed: int = 0) -> dict:
    """Judge the critics on held-out images in [-1, 1]: ``domain_accuracy`` (P(real) >= 0.5 on real,
    < 0.5 on sim), the FD-US ``fd_floor`` (first vs second half of `real`) and ``fd_gap`` (`sim` vs
    the second half) at the same ``fd_n``, the real-vs-real C2ST (``c2st_real_real`` with its
    ``c2st_real_real_ci``, which should contain 0.5) and, with `sim_labels` and a segmenter, its
    per-class ``dice_sim`` on the held-out simulated images."""
    vr = (-1.0, 1.0)
    p_sim, p_real = critics.p_real(sim, vr), critics.p_real(real, vr)
    h = len(real) // 2
    k = min(h, len(sim))
    f_a, f_b = critics.features(real[:k], vr), critics.features(real[h:h + k], vr)
    f_sim = critics.features(sim[:k], vr)
    rr = c2st(real[:h], real[h:2 * h], value_range=vr, size=critics.size, seed=seed)
    out = {
        "domain_accuracy": float(np.mean(np.concatenate([p_sim < 0.5, p_real >= 0.5]))),
        "p_real_sim_mean": float(p_sim.mean()), "p_real_real_mean": float(p_real.mean()),
        "fd_n": int(k), "fd_floor": fd_from_features(f_a, f_b), "fd_gap": fd_from_features(f_sim, f_b),
        "c2st_real_real": rr["acc"], "c2st_real_real_ci": [float(v) for v in rr["ci"]],
    }
    if sim_labels is not None and critics.anatomy is not None:
        scores = anatomy_report(critics.segment(sim, vr), sim_labels, names=critics.label_names)
        out["dice_sim"] = {name: round(v, 4) for name, v in scores["dice"].items()}
        out["dice_mean_sim"] = scores["dice_mean"]
        out["dice_meaning"] = ("segmenter trained on simulated images (US-like augmentation), tested on held-out "
                               "simulated images: an upper bound; its Dice on real frames is unknown without "
                               "labelled real frames")
    return out


def report_lines(report: dict) -> list[str]:
    """A fitted critics' report as readable lines (what each number means)."""
    lines = [f"held out: {len(report['held_out_files']['sim'])} sim, {len(report['held_out_files']['real'])} real "
             f"images (trained on {report['train_counts']['sim']} + {report['train_counts']['real']})",
             f"domain critic accuracy (held out)  {report['domain_accuracy']:.3f}   mean P(real): sim "
             f"{report['p_real_sim_mean']:.3f}, real {report['p_real_real_mean']:.3f}",
             f"FD-US floor (real vs real, n={report['fd_n']})  {report['fd_floor']:.3f}",
             f"FD-US gap (sim vs real, n={report['fd_n']})    {report['fd_gap']:.3f}"]
    lo, hi = report["c2st_real_real_ci"]
    verdict = "contains 0.5, as it should" if lo <= 0.5 <= hi else "does NOT contain 0.5: the two halves differ"
    lines.append(f"C2ST real vs real  {report['c2st_real_real']:.3f} [{lo:.3f}, {hi:.3f}]  ({verdict})")
    if "dice_sim" in report:
        per = ", ".join(f"{k} {v:.2f}" for k, v in report["dice_sim"].items())
        lines.append(f"segmenter Dice on held-out sim  {report['dice_mean_sim']:.3f} ({per})")
        lines.append(f"  ({report['dice_meaning']})")
    else:
        lines.append("no segmenter (no labels/ folder): anatomy is judged with the label-free structure measures")
    return lines
