"""Translate a folder of simulated images with a fitted method (what ``usdiff translate`` calls).

:func:`unpaired_training_data` gives the images a method is fitted on: the built-in train split with
the simulated images of one half of its phantoms and the real-like images of the *other* half (so no
phantom is seen in both domains), or your own ``ROOT/sim`` + ``ROOT/real`` folders.
:func:`resolve_method` finds a fitted method for a checkpoint (a file given, the file shipped beside
the checkpoint, or a fit on a data set), and :func:`translate_folder` runs it over a folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..utils import get_device
from .base import METHODS, Translator, as_model, get_method, load_method
from .classifier import ClassifierTranslator, default_direction_path

__all__ = ["unpaired_training_data", "default_method_path", "resolve_method", "translate_folder"]


def unpaired_training_data(data_dir, size: int, n: int | None = 4000, seed: int = 0, fit: str = "pad",
                           progress: bool = False) -> dict:
    """``{"sim", "real", "sim_labels"}`` for fitting a method: at most `n` images in all, half per domain.

    From a built-in data set (a folder with ``manifest.json``): its train split, sim images of the
    first half of the phantoms, real-like images of the second half, label maps of the sim images.
    From your own ``ROOT/sim`` and ``ROOT/real`` folders: the images themselves (no labels:
    ``sim_labels`` is None).
    """
    from ..data import BuiltinDataset
    from ..io import open_image_folder

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data set folder not found: {root}")
    rng = np.random.default_rng(seed)
    per = None if n is None else max(1, int(n) // 2)
    if (root / "manifest.json").is_file():
        sim_ds = BuiltinDataset(root, split="train", domain="sim", size=size)
        real_ds = BuiltinDataset(root, split="train", domain="real", size=size)
        half = len(sim_ds) // 2
        pick = {"sim": np.arange(half), "real": np.arange(half, len(real_ds))}
        for key in pick:
            if per is not None and per < len(pick[key]):
                pick[key] = np.sort(rng.choice(pick[key], size=per, replace=False))
        sim = torch.stack([sim_ds[int(i)][0] for i in tqdm(pick["sim"], desc="load sim", disable=not progress)])
        real = torch.stack([real_ds[int(i)][0] for i in tqdm(pick["real"], desc="load real", disable=not progress)])
        labels = np.stack([sim_ds.label_map(int(i)) for i in pick["sim"]])
        return {"sim": sim.float(), "real": real.float(), "sim_labels": labels}
    out = {}
    for domain in ("sim", "real"):
        if not (root / domain).is_dir():
            raise FileNotFoundError(f"{root} holds neither a built-in data set (manifest.json) nor the folders "
                                    f"{root / 'sim'} and {root / 'real'} of your own images")
        ds = open_image_folder(root / domain, size, fit, domain=domain)
        idx = np.arange(len(ds))
        if per is not None and per < len(idx):
            idx = np.sort(rng.choice(idx, size=per, replace=False))
        out[domain] = torch.stack([ds[int(i)][0] for i in idx]).float()
    out["sim_labels"] = None
    return out


def default_method_path(ckpt, name: str) -> Path:
    """Where a fitted method for a checkpoint is kept: ``NAME_direction.pt`` (classifier) or ``NAME_<method>.pt``."""
    ckpt = Path(ckpt)
    return default_direction_path(ckpt) if name == "classifier" else ckpt.with_name(f"{ckpt.stem}_{name}.pt")


def resolve_method(name: str, ckpt=None, *, fitted=None, data_dir=None, n_fit: int | None = 4000, knobs=None,
                   seed: int = 0, device=None, progress: bool = True) -> Translator:
    """A fitted method by name: from `fitted` (a file of :func:`save_method`, or for ``classifier`` of
    :func:`save_direction`), else fitted on `data_dir`, else the file kept beside the checkpoint
    (:func:`default_method_path`). `knobs` override the method's settings.

    Raises:
        ValueError: unknown method, or nothing to fit from (the message says what to pass).
    """
    if name not in METHODS:
        raise ValueError(f"unknown translation method {name!r}; choose one of {sorted(METHODS)}")
    knobs = {k: v for k, v in (knobs or {}).items() if v is not None}
    if fitted is None and data_dir is None and ckpt is not None and not isinstance(ckpt, torch.nn.Module):
        candidate = default_method_path(ckpt, name)
        fitted = candidate if candidate.is_file() else None
    if fitted is not None:
        fitted = Path(fitted)
        if name == "classifier":
            try:
                return ClassifierTranslator.from_direction(fitted, **knobs)
            except ValueError:
                pass   # not a direction file: maybe a saved method
        method = load_method(fitted, **knobs)
        if method.name != name:
            raise ValueError(f"{fitted} holds a fitted {method.name!r} method, not {name!r}")
        return method
    if data_dir is None:
        where = "" if ckpt is None or isinstance(ckpt, torch.nn.Module) else f" (none at {default_method_path(ckpt, name)})"
        raise ValueError(f"no fitted {name!r} method{where}: give a fitted file (--fitted) or a data set "
                         "to fit it on (--data)")
    method = get_method(name, **knobs)
    model = None
    size = 64
    if method.uses_diffae:
        model = as_model(ckpt, get_device(device))
        size = model.config.image_size
    data = unpaired_training_data(data_dir, size, n=n_fit, seed=seed, progress=progress)
    if name == "guided":
        if data["sim_labels"] is None:
            raise ValueError("the guided method needs label maps of the simulated training images: "
                             "fit it on a built-in data set")
        return method.fit(model, data["sim"], data["real"], sim_labels=data["sim_labels"], progress=progress)
    return method.fit(model, data["sim"], data["real"], progress=progress)


def translate_folder(method: Translator, model, images_dir, out_dir, *, labels_dir=None, batch_size: int = 16,
                     device=None, fit: str = "pad", keep_size: bool = False, overwrite: bool = False,
                     seed: int = 0, progress: bool = True) -> list[Path]:
    """Translate every image of `images_dir` (simulated) with a fitted `method`; one PNG per input in `out_dir`.

    Args:
        method: a fitted :class:`~usdiff.translate.base.Translator` (see :func:`resolve_method`).
        model: the DiffAE (a loaded model or a checkpoint path); None for methods without one (cyclegan).
        images_dir: folder of images (``.png``, ``.jpg``, ...; not recursive), any size and mode.
        labels_dir: label maps of the inputs (same names), for methods that use them (guided).
        fit: ``"pad"`` (zero-pad to a square, then resize: keeps the whole fan) or ``"crop"``.
        keep_size: write each output back at its input's size.
        overwrite: replace existing output files (otherwise they are refused).
        seed: seed of the noise of stochastic methods (sdedit, guided).

    Returns:
        the written paths, in the (sorted) order of the inputs; names are ``stem.png`` (``name.png``
        where two inputs share a stem, e.g. ``a.jpg.png`` beside ``a.png``).

    Raises:
        FileNotFoundError: missing checkpoint or folder. ValueError: no images (or a corrupt one),
        `out_dir` equal to `images_dir`, an unfitted method, labels missing where needed.
    """
    from ..data.datasets import image_shape
    from ..io import announce_resize, check_outputs, open_image_folder, output_names, save_batch

    if not isinstance(method, Translator):
        raise ValueError(f"method must be a fitted Translator (see resolve_method), got {type(method).__name__}")
    method._check_fitted()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if out_dir.resolve() == images_dir.resolve():
        raise ValueError(f"out_dir must differ from images_dir ({images_dir}): the inputs would be overwritten")
    device = get_device(device)
    if method.uses_diffae:
        if model is None:
            raise ValueError(f"method {method.name!r} needs the DiffAE checkpoint")
        model = as_model(model, device)
        size = model.config.image_size
    else:
        model, size = None, method.size_
    dataset = open_image_folder(images_dir, size, fit, domain="sim")   # lists, validates, [-1, 1]
    files = list(dataset.files)
    names = output_names(files)
    check_outputs(out_dir, names, overwrite, inputs_dir=images_dir)
    announce_resize(dataset, size, fit, progress)
    shapes = [image_shape(f) for f in files] if keep_size else None
    labels = _read_labels(labels_dir, files, size) if labels_dir is not None else None

    generator = torch.Generator().manual_seed(seed)
    written: list[Path] = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    bar = tqdm(total=len(files), desc=f"translate ({method.name})", disable=not progress)
    for x, _ in loader:
        k = len(written)
        extra = {} if labels is None else {"labels": labels[k:k + len(x)]}
        images = method.translate(model, x.to(device), generator=generator, **extra)
        written += save_batch(images, out_dir, names[k:k + len(x)],
                              shapes=None if shapes is None else shapes[k:k + len(x)], fit=fit)
        bar.update(len(x))
    bar.close()
    return written


def _read_labels(labels_dir, files, size: int) -> np.ndarray:
    from ..metrics.judge import read_label_maps, resize_label_maps

    maps = read_label_maps(labels_dir, [Path(f).stem for f in files])
    return resize_label_maps(maps, size)
