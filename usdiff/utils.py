"""Small helpers shared by every module: device choice, seeding, pixel ranges, image batches.

Pixel ranges: the model works in ``[-1, 1]`` (:func:`to_model_range`), the judges (critics,
feature extractors, PNGs) in ``[0, 1]`` (:func:`from_model_range`, :func:`to_unit_range`).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def exists(x) -> bool:
    return x is not None


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: `device` if given, else CUDA when visible, else CPU.

    The environment variable ``USDIFF_DEVICE`` overrides the automatic choice.

    Raises:
        ValueError: if `device` asks for CUDA and none is visible.
    """
    device = device or os.environ.get("USDIFF_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but no CUDA device is visible; use 'cpu'.")
    return device


def model_device(model) -> torch.device:
    """The device of `model`'s parameters (CPU for a module without any)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_model_range(x):
    """Map pixels from [0, 1] to the model range [-1, 1] (tensor or array; not clamped)."""
    return x * 2.0 - 1.0


def to_unit_range(x, value_range: tuple[float, float]):
    """Map pixels from `value_range` ``(low, high)`` to [0, 1], clamped (tensor or array)."""
    lo, hi = value_range
    y = (x - lo) / (hi - lo)
    return y.clamp(0.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, 0.0, 1.0)


def from_model_range(x):
    """Map model outputs from [-1, 1] back to [0, 1], clamped (tensor or array)."""
    return to_unit_range(x, (-1.0, 1.0))


def is_fast() -> bool:
    """True when ``USDIFF_FAST=1``: notebooks and CLIs then use small sizes for a quick CPU run."""
    return os.environ.get("USDIFF_FAST", "0") == "1"


def as_image_batch(images, name: str = "images", *, channels: tuple[int, ...] = (1,), min_count: int = 1,
                   value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Images (tensor, array or nested lists) as a float32 ``(B, C, H, W)`` tensor, ``C`` in `channels`.

    A ``(B, H, W)`` batch gains the channel axis. Tensors keep their device (a float32 tensor is
    returned as it is); anything else becomes a CPU tensor.

    Args:
        name: what the images are called in the error messages.
        min_count: the fewest images the batch may hold.
        value_range: if given, every value must be finite and lie in this range (a tolerance of
            0.05 % of its width allows round-off).

    Raises:
        ValueError: naming `name`, if `images` is not a batch of that shape, holds fewer than
            `min_count` images, or leaves `value_range`.
    """
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in channels:
        shapes = " or ".join(f"(B, {c}, H, W)" for c in channels)
        raise ValueError(f"{name} must be an image batch {shapes}, got shape {tuple(x.shape)}")
    if len(x) < min_count:
        raise ValueError(f"{name} needs at least {min_count} images, got {len(x)}")
    x = x.float()
    if value_range is not None and len(x):
        lo, hi = value_range
        tol = 5e-4 * (hi - lo)
        if not torch.isfinite(x).all() or x.min() < lo - tol or x.max() > hi + tol:
            what = " (the model range)" if (lo, hi) == (-1.0, 1.0) else ""
            raise ValueError(f"{name} must hold finite values in [{lo:g}, {hi:g}]{what}")
    return x


def unit_images(x, value_range: tuple[float, float], size: int, device: torch.device) -> torch.Tensor:
    """Images ``(B, 1|3, H, W)`` in `value_range` -> float32 ``(B, 1|3, size, size)`` in [0, 1] on `device`.

    Values outside `value_range` are clamped; resizing is bilinear with antialiasing.

    Raises:
        ValueError: if `x` is not a batch of 1- or 3-channel images (:func:`as_image_batch`).
    """
    x = to_unit_range(as_image_batch(x, channels=(1, 3), min_count=0).to(device), value_range)
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    return x


def to_numpy(x, name: str, dtype=np.float64) -> np.ndarray:
    """`x` (array-like or tensor) as a numpy array of `dtype`; ``ValueError`` naming `name` if it is not numeric."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from err


def as_float64(x, name: str) -> np.ndarray:
    """`x` (array-like or tensor) as a finite float64 numpy array; ``ValueError`` naming `name` otherwise."""
    x = to_numpy(x, name)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_matrix(x, name: str, min_rows: int = 1) -> np.ndarray:
    """A finite float64 ``(N, D)`` matrix with ``N >= min_rows`` and ``D >= 1`` (features, codes).

    Raises:
        ValueError: naming `name`, if `x` is not numeric, not 2-D, too short, empty or not finite.
    """
    x = as_float64(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples (rows), got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {x.shape}")
    return x


def check_positive_ints(**values) -> None:
    """Raise ValueError naming the first keyword whose value is not a positive int (bools are not ints here)."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}")

