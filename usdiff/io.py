"""Folder jobs' input and output: 8-bit grayscale PNGs of model tensors, output names, the
refusal to overwrite, and :class:`FolderOptions` (how a job reads and writes its images).

Folders are read by the one folder reader, :class:`usdiff.data.USImageFolder`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .utils import to_unit_range


def to_uint8(image, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """One image ``(1, H, W)`` or ``(H, W)`` (tensor or array) -> uint8 array ``(H, W)``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        if image.shape[0] != 1:
            raise ValueError(f"image must have 1 channel, got shape {image.shape}")
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W) or (1, H, W), got shape {image.shape}")
    return np.round(to_unit_range(image, value_range) * 255.0).astype(np.uint8)


def save_png(image, path: str | Path, value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save one image as an 8-bit grayscale PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image, value_range), mode="L").save(path)
    return path


def save_batch(images, out_dir: str | Path, names: Sequence[str],
               value_range: tuple[float, float] = (-1.0, 1.0), shapes: Sequence | None = None,
               fit: str = "pad") -> list[Path]:
    """Save a batch ``(B, 1, H, W)`` as ``out_dir/name`` PNGs (``.png`` added when missing).

    `shapes` (one ``(H, W)`` per image, or None) writes each image back at that size, undoing the
    `fit` (``"pad"`` / ``"crop"``) that brought it to the model's size.
    """
    from .data.datasets import restore_size

    if len(images) != len(names):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    out_dir = Path(out_dir)
    paths = []
    for k, (image, name) in enumerate(zip(images, names)):
        name = name if name.lower().endswith(".png") else f"{Path(name).stem}.png"
        if shapes is not None:
            unit = (to_uint8(image, value_range).astype(np.float32) / 255.0)
            image, value_range_k = restore_size(unit, tuple(shapes[k]), fit), (0.0, 1.0)
            paths.append(save_png(image, out_dir / name, value_range_k))
            continue
        paths.append(save_png(image, out_dir / name, value_range))
    return paths


def output_names(files: Sequence[str | Path]) -> list[str]:
    """A unique ``.png`` output name for every input file: ``stem.png``, or ``name.png`` (the
    extension kept in the stem, e.g. ``a.jpg.png``) where two inputs share a stem (``a.png`` and
    ``a.jpg``), so that no output overwrites another."""
    stems = [Path(f).stem.lower() for f in files]
    counts = {s: stems.count(s) for s in stems}
    names = [f"{Path(f).stem}.png" if counts[s] == 1 or Path(f).suffix.lower() == ".png" else f"{Path(f).name}.png"
             for f, s in zip(files, stems)]
    if len({n.lower() for n in names}) != len(names):  # e.g. a.png, a.jpg and a.jpg.png together
        names = [f"{Path(f).name}.png" for f in files]
    return names


def check_outputs(out_dir: str | Path, names: Sequence[str], overwrite: bool = False,
                  inputs_dir: str | Path | None = None) -> None:
    """Refuse to write where data would be lost: `out_dir` equal to `inputs_dir`, or existing
    output files (unless `overwrite`).

    Raises:
        ValueError: `out_dir` is the input folder. FileExistsError: outputs exist (names the first).
    """
    out_dir = Path(out_dir)
    if inputs_dir is not None and out_dir.resolve() == Path(inputs_dir).resolve():
        raise ValueError(f"the output folder must differ from the input folder {inputs_dir}: the inputs would be "
                         "overwritten")
    if overwrite or not out_dir.exists():
        return
    existing = [n for n in names if (out_dir / n).exists()]
    if existing:
        raise FileExistsError(f"{len(existing)} of the {len(names)} output files exist in {out_dir} (first: "
                              f"{existing[0]}); choose another output folder or pass --overwrite (overwrite=True)")


def resize_note(files, size: int, fit: str) -> str | None:
    """One line saying how many images are resized (None when all are ``size x size``)."""
    from .data.datasets import image_shape

    other = sum(image_shape(f) != (size, size) for f in files)
    if not other:
        return None
    how = "zero-padded to a square, then resized" if fit == "pad" else "resized (shorter side) and centre-cropped"
    return f"usdiff: {other} of {len(files)} images are not {size}x{size}: {how} to the model's size (--fit {fit})"


def announce_resize(dataset, size: int, fit: str, progress: bool = True) -> None:
    """Say once (on stderr) how many images of a job are resized to the model's size."""
    import sys

    note = resize_note(dataset.files, size, fit)
    if note and progress:
        print(note, file=sys.stderr)


@dataclass(frozen=True)
class FolderOptions:
    """How a folder-to-folder job reads and writes its images.

    Args:
        batch_size: images per batch.
        fit: ``"pad"`` (zero-pad to a square, then resize: keeps the whole fan) or ``"crop"``.
        keep_size: write each output back at its input's size.
        overwrite: replace existing output files (otherwise the job refuses to start).
        device: where the networks run (default: CUDA when visible, else CPU).
    """

    batch_size: int = 16
    fit: str = "pad"
    keep_size: bool = False
    overwrite: bool = False
    device: str | None = None

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.fit not in ("pad", "crop"):
            raise ValueError(f"fit must be 'pad' or 'crop', got {self.fit!r}")
