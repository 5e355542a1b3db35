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
