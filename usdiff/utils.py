"""Small helpers shared by every module: device choice, seeding, pixel ranges."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def exists(x) -> bool:
    return x is not None


def default(x, fallback):
    return x if x is not None else fallback


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


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map pixels from [0, 1] to the model range [-1, 1]."""
    return x * 2.0 - 1.0


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map model outputs from [-1, 1] back to [0, 1] (clamped)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def is_fast() -> bool:
    """True when ``USDIFF_FAST=1``: notebooks and CLIs then use small sizes for a quick CPU run."""
    return os.environ.get("USDIFF_FAST", "0") == "1"


def unit_images(x, value_range: tuple[float, float], size: int, device: torch.device) -> torch.Tensor:
    """Images ``(B, 1|3, H, W)`` in `value_range` -> float32 ``(B, 1|3, size, size)`` in [0, 1] on `device`.

    Values outside `value_range` are clamped; resizing is bilinear with antialiasing.

    Raises:
        ValueError: if `x` is not a batch of 1- or 3-channel images.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")
    lo, hi = value_range
    x = ((x.to(device, torch.float32) - lo) / (hi - lo)).clamp(0.0, 1.0)
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
