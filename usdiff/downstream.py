"""The downstream test: does (translated) simulation train a segmenter that works on real ultrasound?

The same small segmentation network (:class:`usdiff.metrics.critics.AnatomySegmenter`), with the same
budget and seed, is trained on each training set and tested on the same held-out *real-like* test
images against their label maps:

* ``sim``: simulated images + their labels (the lower bound: the domain gap);
* ``sim+aug``: the same with ultrasound-like appearance augmentation (multiplicative speckle,
  blur, gain, gamma, additive noise: :data:`usdiff.data.augment.SPECKLE_APPEARANCE`): what users
  would try first, without a generative model;
* one set per translation method: translated simulated images + the *simulated* labels;
* ``real``: real-like images + labels (the upper bound; in practice the data one does not have).

The pairing of the built-in data set is used only to test (a real-like test image and its label
map); no training set contains both twins of a phantom unless it is built so on purpose.

Scores per test image: Dice of every tissue that occurs (:func:`usdiff.metrics.critics.dice_per_class`),
their mean over the foreground tissues of that image, and the aorta's Dice; each set's scores come
with a bootstrap 95 % interval over the test images and the ratio to the ``real`` set.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.augment import SPECKLE_APPEARANCE, augment_appearance
from .data.datasets import USImageFolder, check_fit, load_builtin_arrays, read_label_maps
from .data.phantom import AORTA, LABEL_NAMES, NUM_LABELS
from .metrics.critic_training import TrainSettings, train_segmenter
from .metrics.critics import dice_per_class
from .translate import METHODS, resolve_method, translate_batches
from .translate.base import as_model
from .translate.folder import DEFAULT_SIZE
from .utils import check_positive_ints, get_device

__all__ = ["TEST_TRAINING", "STUDY_TRAINING", "bootstrap_ci", "image_scores", "train_and_test", "downstream_study",
           "downstream_table", "StudySettings", "FolderStudy", "run_downstream"]

# the segmenters of the downstream test: no augmentation inside (a training set brings its own)
TEST_TRAINING = TrainSettings(train_steps=600, batch_size=32, width=16, augment=False)
STUDY_TRAINING = replace(TEST_TRAINING, width=8)     # about 4x cheaper than the critics' 16


def bootstrap_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (NaNs dropped), resampling them with replacement."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def image_scores(pred, target) -> dict:
    """Per test image: ``dice`` ``(N, C)`` (NaN: tissue absent from both), ``mean`` ``(N,)`` over the
    foreground tissues present, ``aorta`` ``(N,)`` (NaN where no aorta is in either map)."""
    per = dice_per_class(pred, target, NUM_LABELS)
    mean = _nanmean(per[:, 1:], axis=1)
    return {"dice": per, "mean": mean, "aorta": per[:, AORTA]}


def _nanmean(v, axis=None):
    """Mean over the finite entries (along `axis`); NaN, without a warning, where there are none."""
    v = np.asarray(v, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(np.where(np.isfinite(v), v, np.nan), axis=axis)
    return float(m) if axis is None else m


@torch.no_grad()
def _predict(model, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]).numpy()


def train_and_test(train_images, train_labels, test_images, test_labels, training: TrainSettings = TEST_TRAINING,
                   *, progress: bool = False, desc: str = "segmenter") -> dict:
    """Train one segmenter with `training` (never with appearance augmentation inside: a training
    set brings its own) and test it.

    Returns ``{"scores": image_scores(...), "pred": (N, H, W), "log": TrainLog, "model": ...}``.
    """
    train_images, test_images = torch.as_tensor(train_images).float(), torch.as_tensor(test_images).float()
    if train_images.shape[-2:] != test_images.shape[-2:]:
        raise ValueError(f"train and test images differ in size: {tuple(train_images.shape[-2:])} vs "
                         f"{tuple(test_images.shape[-2:])}")
    size = train_images.shape[-1]
    model, log = train_segmenter(train_images, torch.as_tensor(np.asarray(train_labels)), size,
                                 replace(training, augment=False), progress=progress, desc=desc)
    pred = _predict(model, test_images)
    return {"scores": image_scores(pred, np.asarray(test_labels)), "pred": pred, "log": log, "model": model}


def downstream_study(training_sets: Mapping[str, tuple], test_images, test_labels,
                     training: TrainSettings = STUDY_TRAINING, *, reference: str = "real", n_boot: int = 2000,
                     progress: bool = True) -> dict:
    """Train and test one segmenter per training set (each with `training`, the same seed); a report per set.

    Args:
        training_sets: name -> ``(images (N, 1, S, S) in [-1, 1], label maps (N, S, S))``.
        test_images, test_labels: the held-out real-like test set.
        training: the segmenters' budget (default :data:`STUDY_TRAINING`: 600 steps of 32, width 8).
        reference: the set whose mean Dice the others are divided by (``ratio_to_real``).

    Returns:
        name -> ``{"dice_mean", "dice_mean_ci", "dice_aorta", "dice_aorta_ci", "ratio_to_real",
        "dice" (per tissue), "n_train", "seconds", "per_image_mean", "pred"}``.
    """
    if not training_sets:
        raise ValueError("training_sets is empty")
    for name, pair in training_sets.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
            raise ValueError(f"training_sets[{name!r}] must be a non-empty (images, labels) pair of equal length")
    out = {}
    for name, (images, labels) in tqdm(list(training_sets.items()), desc="downstream", disable=not progress):
        res = train_and_test(images, labels, test_images, test_labels, training, desc=f"train on {name}",
                             progress=progress)
        s = res["scores"]
        per_class = _nanmean(s["dice"], axis=0)
        out[name] = {
            "dice_mean": _nanmean(s["mean"]), "dice_mean_ci": bootstrap_ci(s["mean"], n_boot, seed=training.seed),
            "dice_aorta": _nanmean(s["aorta"]), "dice_aorta_ci": bootstrap_ci(s["aorta"], n_boot, seed=training.seed),
            "dice": {LABEL_NAMES[c]: float(per_class[c]) for c in range(1, NUM_LABELS) if np.isfinite(per_class[c])},
            "n_train": len(images), "seconds": float(res["log"]["seconds"]),
            "per_image_mean": s["mean"], "pred": res["pred"],
        }
    if reference in out:
        ref = out[reference]["dice_mean"]
        for r in out.values():
            r["ratio_to_real"] = r["dice_mean"] / ref if ref > 0 else float("nan")
    return out


def _ratio(r: Mapping) -> str:
    v = r.get("ratio_to_real", float("nan"))
    return f"{v:>6.2f}" if np.isfinite(v) else f"{'-':>6s}"


def downstream_table(report: Mapping[str, dict]) -> str:
    """The report as aligned text: mean Dice [95 % CI], aorta Dice [CI], ratio to the reference set
    (``-`` where there is none, e.g. on your own folders, which have no labelled real training set)."""
    lines = [f"{'training set':<22s} {'mean Dice [95 % CI]':>24s} {'aorta Dice [95 % CI]':>24s} {'ratio':>6s}"]
    for name, r in report.items():
        lo, hi = r["dice_mean_ci"]
        alo, ahi = r["dice_aorta_ci"]
        lines.append(f"{name:<22s} {r['dice_mean']:>7.3f} [{lo:.3f}, {hi:.3f}]  {r['dice_aorta']:>7.3f} "
                     f"[{alo:.3f}, {ahi:.3f}]  {_ratio(r)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StudySettings:
    """The sizes and seed of :func:`run_downstream`.

    Args:
        n_train: phantoms of the train split per training set.
        n_test: phantoms of the test split (their real-like images) to test on.
        train_steps: training steps of every segmenter (batch 32; the methods' DDIM steps are
            their own knobs).
        seed: seed of the segmenters, the augmentation and the translation noise.
        augmentation: include the ``sim+aug`` set.
        width: channels of the segmenter's first level.
    """

    n_train: int = 200
    n_test: int = 300
    train_steps: int = 300
    seed: int = 0
    augmentation: bool = True
    width: int = 8

    def __post_init__(self):
        check_positive_ints(n_train=self.n_train, n_test=self.n_test, train_steps=self.train_steps, width=self.width)

    @property
    def training(self) -> TrainSettings:
        """The segmenters' :class:`~usdiff.metrics.critic_training.TrainSettings`."""
        return replace(STUDY_TRAINING, train_steps=self.train_steps, seed=self.seed, width=self.width)


@dataclass(frozen=True)
class FolderStudy:
    """Your own folders for :func:`run_downstream` (``usdiff downstream --data ROOT``).

    Args:
        root: ``root/sim`` (simulated images) and ``root/labels`` (their label maps, same names):
            the training simulation.
        test_real, test_labels: a labelled *real* test set (images and label maps, same names); the
            downstream Dice cannot be measured without one (refused, saying so).
        translated: folders of already translated ``root/sim`` images (named after their sources,
            as ``usdiff translate`` writes them), one training set each, with the sources' labels.
        fit: how frames reach the square training size: ``"pad"`` or ``"crop"``.
    """

    root: Path
    test_real: Path | None = None
    test_labels: Path | None = None
    translated: tuple[Path, ...] = ()
    fit: str = "pad"

    def __post_init__(self):
        check_fit(self.fit)
        if self.test_real is None or self.test_labels is None:
            raise ValueError(
                "the downstream Dice on real images cannot be measured without a labelled real test set: pass "
                "--test-real DIR and --test-labels DIR (API: test_real=, test_labels=). Without real labels you "
                "can still measure realism and kept structure: `usdiff evaluate --critics FILE --sources ROOT/sim` "
                "(nothing was trained)")
        for name in ("root", "test_real", "test_labels"):
            if not Path(getattr(self, name)).is_dir():
                raise FileNotFoundError(f"{name} folder {getattr(self, name)} does not exist")
        if not (Path(self.root) / "labels").is_dir():
            raise FileNotFoundError(f"{Path(self.root) / 'labels'} does not exist: the simulated training images "
                                    "need their label maps (labels/NAME for sim/NAME)")


def _labelled_images(images_dir, labels_dir, size: int, n: int, fit: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` images of `images_dir` ``(N, 1, size, size)`` in [-1, 1] and their label maps
    ``(N, size, size)`` from `labels_dir` (found by name), both brought to `size` with `fit`."""
    images = USImageFolder(images_dir, "real", size, fit=fit, n=n, what=what)
    return images.images(), torch.from_numpy(read_label_maps(labels_dir, images.files, size, fit))


def _folder_sets(folders: FolderStudy, size: int, n_train: int, n_test: int) -> tuple[dict, dict]:
    """Training arrays ``{"sim", "labels"}`` and test arrays ``{"real", "labels"}`` of `folders`."""
    root, fit = Path(folders.root), folders.fit
    sim, sim_labels = _labelled_images(root / "sim", root / "labels", size, n_train, fit, "simulated image folder")
    real, real_labels = _labelled_images(folders.test_real, folders.test_labels, size, n_test, fit, "real test folder")
    return {"sim": sim, "labels": sim_labels}, {"real": real, "labels": real_labels}


def run_downstream(data_dir, ckpt=None, methods=("classifier", "sdedit", "cyclegan"), *,
                   study: StudySettings | None = None, settings: Mapping[str, dict] | None = None, device=None,
                   progress: bool = True) -> dict:
    """The whole study on the built-in data set (what ``usdiff downstream`` runs), or on your own
    folders when `data_dir` is a :class:`FolderStudy`: ``sim``, ``sim+aug``, one set per method and
    per translated folder, tested on the labelled real test folder (there is no ``real`` training
    set, so no ratio to it).

    The first ``study.n_train`` phantoms of the train split give the ``sim`` and ``real`` sets (the
    same anatomy in both, so only the appearance differs), ``sim+aug``
    (:data:`~usdiff.data.augment.SPECKLE_APPEARANCE`, one draw per image) and one set per method in
    `methods` (the sim images translated by the fitted method kept beside `ckpt`, see
    :func:`usdiff.translate.resolve_method`, with the knobs ``settings[name]`` if given, and the
    *sim* labels). The first ``study.n_test`` phantoms of the test split give the real-like test
    images.
    """
    study = study if study is not None else StudySettings()
    device = get_device(device)
    model = as_model(ckpt, device) if ckpt is not None else None
    methods = [METHODS[name] if name in METHODS else name for name in methods]
    unknown = [m for m in methods if isinstance(m, str)]
    if unknown:
        raise ValueError(f"unknown translation method(s) {unknown}; choose from {sorted(METHODS)}")
    for cls in methods:
        if cls.needs_diffae and model is None:
            raise ValueError(f"method {cls.name!r} needs the DiffAE checkpoint (ckpt=, CLI --ckpt)")
    size = model.config.image_size if model is not None else DEFAULT_SIZE
    folders = data_dir if isinstance(data_dir, FolderStudy) else None
    if folders is not None:
        train, test = _folder_sets(folders, size, study.n_train, study.n_test)
    else:
        train = load_builtin_arrays(data_dir, "train", size, n=study.n_train, progress=progress)
        test = load_builtin_arrays(data_dir, "test", size, domains=("real",), n=study.n_test, progress=progress)
    sets = {"sim": (train["sim"], train["labels"])}
    if study.augmentation:
        augmented = augment_appearance(train["sim"], torch.Generator().manual_seed(study.seed), SPECKLE_APPEARANCE)
        sets["sim+aug"] = (augmented, train["labels"])
    for cls in methods:
        method = resolve_method(cls.name, ckpt, settings=(settings or {}).get(cls.name), seed=study.seed,
                                device=device, progress=progress)
        images = translate_batches(method, model, train["sim"], labels=train["labels"].numpy(), seed=study.seed,
                                   progress=progress)
        sets[f"translated ({cls.name})"] = (images, train["labels"])
    if folders is None:
        sets["real"] = (train["real"], train["labels"])
    else:
        for folder in folders.translated:
            sets[f"translated ({Path(folder).name})"] = _labelled_images(
                folder, Path(folders.root) / "labels", size, study.n_train, folders.fit, "translated image folder")
    return downstream_study(sets, test["real"], test["labels"].numpy(), study.training, progress=progress)
