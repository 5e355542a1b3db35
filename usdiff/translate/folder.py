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

from ..data import BuiltinDataset, USImageFolder
from ..data.datasets import image_shape, read_label_maps
from ..io import (
    FolderOptions,
    announce_resize,
    check_outputs,
    output_names,
    save_batch,
)
from ..utils import get_device
from .base import METHODS, FitData, Translator, as_model, get_method, load_method

__all__ = ["unpaired_training_data", "default_method_path", "FitData", "resolve_method", "translate_folder"]

DEFAULT_SIZE = 64     # the side a method without a DiffAE is fitted at when nothing else says


def unpaired_training_data(data_dir, size: int, n: int | None = 4000, seed: int = 0, fit: str = "pad",
                           progress: bool = False) -> dict:
    """``{"sim", "real", "sim_labels"}`` for fitting a method: at most `n` images in all, half per domain.

    From a built-in data set (a folder with ``manifest.json``): its train split, sim images of the
    first half of the phantoms, real-like images of the second half, label maps of the sim images.
    From your own ``ROOT/sim`` and ``ROOT/real`` folders: the images themselves (no labels:
    ``sim_labels`` is None).
    """
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
        ds = USImageFolder(root / domain, domain=domain, size=size, fit=fit)
        idx = np.arange(len(ds))
        if per is not None and per < len(idx):
            idx = np.sort(rng.choice(idx, size=per, replace=False))
        out[domain] = torch.stack([ds[int(i)][0] for i in idx]).float()
    out["sim_labels"] = None
    return out


def default_method_path(ckpt, name: str) -> Path:
    """Where a fitted method for a checkpoint is kept: ``NAME_<method>.pt`` beside ``NAME.pt``.

    For ``classifier`` an older ``NAME_direction.pt`` is used when only that file exists.
    """
    ckpt = Path(ckpt)
    path = ckpt.with_name(f"{ckpt.stem}_{name}.pt")
    legacy = ckpt.with_name(f"{ckpt.stem}_direction.pt")
    if name == "classifier" and not path.is_file() and legacy.is_file():
        return legacy
    return path


def resolve_method(name: str, ckpt=None, *, fitted=None, fit_on: FitData | str | Path | None = None,
                   settings: dict | None = None, seed: int = 0, device=None, progress: bool = True) -> Translator:
    """A fitted method by name, ready for `ckpt`.

    From `fitted` (a file of :func:`save_method`, or an older direction file), else fitted on
    `fit_on` (a :class:`FitData` or its root folder), else the file kept beside the checkpoint
    (:func:`default_method_path`). `settings` are passed to a new fit; on a loaded method they may
    change knobs only (:meth:`Translator.with_knobs`). A loaded method is checked against the
    checkpoint (:meth:`Translator.check_model`).

    Args:
        name: a method of :data:`METHODS`.
        ckpt: the DiffAE checkpoint (path or loaded model); needed by methods with ``needs_diffae``,
            and where a fitted file is looked up otherwise.

    Raises:
        ValueError: unknown method, a checkpoint that is not a DiffAE checkpoint, a missing
        checkpoint, nothing to fit from (the message says what to pass), a changed fit setting of
        a loaded method, a fitted file of another method or another checkpoint.
    """
    if name not in METHODS:
        raise ValueError(f"unknown translation method {name!r}; choose one of {sorted(METHODS)}")
    if fitted is not None and fit_on is not None:
        raise ValueError("give either a fitted file (fitted=, CLI --fitted) or a data set to fit on (fit_on=, CLI "
                         "--data), not both")
    cls = METHODS[name]
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    if ckpt is None and cls.needs_diffae:
        raise ValueError(f"method {name!r} works with a DiffAE: give its checkpoint (ckpt=, CLI --ckpt)")
    model = as_model(ckpt, get_device(device)) if ckpt is not None else None
    if fitted is None and fit_on is None and ckpt is not None and not isinstance(ckpt, torch.nn.Module):
        candidate = default_method_path(ckpt, name)
        fitted = candidate if candidate.is_file() else None
    if fitted is not None:
        method = load_method(fitted)
        if method.name != name:
            raise ValueError(f"{fitted} holds a fitted {method.name!r} method, not {name!r}")
        method = method.with_knobs(**settings)
        method.check_model(model)
        return method
    if fit_on is None:
        where = "" if ckpt is None or isinstance(ckpt, torch.nn.Module) else f" (none at {default_method_path(ckpt, name)})"
        raise ValueError(f"no fitted {name!r} method{where}: give a fitted file (fitted=, CLI --fitted) or a "
                         "data set to fit it on (fit_on=, CLI --data)")
    fit_on = fit_on if isinstance(fit_on, FitData) else FitData(Path(fit_on))
    method = get_method(name, **settings)
    size = model.config.image_size if model is not None else DEFAULT_SIZE
    data = unpaired_training_data(fit_on.root, size, n=fit_on.n, seed=seed, progress=progress)
    if method.needs_labels and data["sim_labels"] is None:
        raise ValueError(f"the {name!r} method is fitted with label maps of the simulated training images, which "
                         f"{fit_on.root} does not have: fit it on a built-in data set")
    return method.fit(model if method.needs_diffae else None, data["sim"], data["real"],
                      sim_labels=data["sim_labels"], seed=seed, progress=progress)


def translate_folder(method: Translator, model, images_dir, out_dir, *, labels_dir=None,
                     options: FolderOptions | None = None, seed: int = 0, progress: bool = True) -> list[Path]:
    """Translate every image of `images_dir` (simulated) with a fitted `method`; one PNG per input in `out_dir`.

    Args:
        method: a fitted :class:`~usdiff.translate.base.Translator` (see :func:`resolve_method`).
        model: the DiffAE (a loaded model or a checkpoint path); None for methods without one (cyclegan).
        images_dir: folder of images (``.png``, ``.jpg``, ...; not recursive), any size and mode.
        labels_dir: label maps of the inputs (same names), for methods that use them (guided).
        options: batch size, fit, keep_size, overwrite, device (:class:`usdiff.io.FolderOptions`).
        seed: seed of the noise of stochastic methods (sdedit, guided).

    Returns:
        the written paths, in the (sorted) order of the inputs; names are ``stem.png`` (``name.png``
        where two inputs share a stem, e.g. ``a.jpg.png`` beside ``a.png``).

    Raises:
        FileNotFoundError: missing checkpoint or folder. ValueError: no images (or a corrupt one),
        `out_dir` equal to `images_dir`, an unfitted method, labels missing where needed, a model
        other than the one the method was fitted on.
    """
    opts = options if options is not None else FolderOptions()
    if not isinstance(method, Translator):
        raise ValueError(f"method must be a fitted Translator (see resolve_method), got {type(method).__name__}")
    method.check_fitted()
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if out_dir.resolve() == images_dir.resolve():
        raise ValueError(f"out_dir must differ from images_dir ({images_dir}): the inputs would be overwritten")
    device = get_device(opts.device)
    if method.needs_diffae:
        if model is None:
            raise ValueError(f"method {method.name!r} needs the DiffAE checkpoint")
        model = as_model(model, device)
        method.check_model(model)
    else:
        model = None
    if method.reads_labels and labels_dir is None:
        raise ValueError(f"{method!r} reads the label maps of its inputs: give their folder (labels_dir=, CLI "
                         "--labels)")
    size = method.input_size(model)
    dataset = USImageFolder(images_dir, domain="sim", size=size, fit=opts.fit)   # lists, validates, [-1, 1]
    files = list(dataset.files)
    names = output_names(files)
    check_outputs(out_dir, names, opts.overwrite, inputs_dir=images_dir)
    announce_resize(dataset, size, opts.fit, progress)
    shapes = [image_shape(f) for f in files] if opts.keep_size else None
    labels = read_label_maps(labels_dir, files, size, opts.fit) if labels_dir is not None else None

    generator = torch.Generator().manual_seed(seed)
    written: list[Path] = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=opts.batch_size, shuffle=False)
    bar = tqdm(total=len(files), desc=f"translate ({method.name})", disable=not progress)
    for x, _ in loader:
        k = len(written)
        extra = {} if labels is None else {"labels": labels[k:k + len(x)]}
        images = method.translate(model, x.to(device), generator=generator, **extra)
        written += save_batch(images, out_dir, names[k:k + len(x)],
                              shapes=None if shapes is None else shapes[k:k + len(x)], fit=opts.fit)
        bar.update(len(x))
    bar.close()
    return written
