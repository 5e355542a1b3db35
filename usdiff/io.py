"""Reading and writing 8-bit grayscale PNGs for model tensors."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


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
    lo, hi = value_range
    return np.round(np.clip((image - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(image, path: str | Path, value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save one image as an 8-bit grayscale PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image, value_range), mode="L").save(path)
    return path


def save_batch(images, out_dir: str | Path, names: Sequence[str],
               value_range: tuple[float, float] = (-1.0, 1.0)) -> list[Path]:
    """Save a batch ``(B, 1, H, W)`` as ``out_dir/name`` PNGs (``.png`` added when missing)."""
    if len(images) != len(names):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    out_dir = Path(out_dir)
    paths = []
    for image, name in zip(images, names):
        name = name if name.lower().endswith(".png") else f"{Path(name).stem}.png"
        paths.append(save_png(image, out_dir / name, value_range))
    return paths
