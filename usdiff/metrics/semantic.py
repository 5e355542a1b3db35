"""FSD (Fréchet semantic distance): a Fréchet distance that needs no downloaded network.

FID needs InceptionV3 weights trained on ImageNet, which cannot be fetched offline (and are
an odd fit for ultrasound anyway). The trained DiffAE already contains an image encoder: its
semantic encoder maps an image to ``z_sem``. FSD fits Gaussians to the ``z_sem`` of two image
sets and reports the Fréchet distance between them, exactly as FID does with Inception features.

Caveats, to keep the number honest:

* The encoder was trained on the same data it then judges, and jointly with the decoder whose
  samples are being scored: it is not an independent referee. A generator can look good in its
  own encoder's eyes while failing in ways that encoder ignores.
* Its scale is that of ``z_sem``, not of Inception features: FSD values are **not comparable to
  FID** (nor between two different DiffAE checkpoints). Use it to rank samples of one model
  against fixed real sets (real-vs-real floor, sim-vs-real gap), never next to published FID.
"""
from __future__ import annotations

import torch
from torch import nn

from ..utils import to_model_range, unit_images

__all__ = ["SemanticFeatures", "FSD_NAME"]

FSD_NAME = "FSD (Fréchet semantic distance)"


class SemanticFeatures(nn.Module):
    """Images ``(B, 1, H, W)`` -> DiffAE semantic codes ``z_sem`` ``(B, z_dim)`` for FSD/KSD.

    Args:
        diffae_model: a trained DiffAE; only ``encode(x0 in [-1, 1]) -> (B, z_dim)`` and
            ``config.image_size`` are used (inputs are resized to that size).
        value_range: pixel range of the inputs, ``(0, 1)`` (PNG convention) or ``(-1, 1)``.

    Attributes:
        metric: ``"FSD (Fréchet semantic distance)"`` -- never "FID", see the module docstring.
    """

    metric = FSD_NAME

    def __init__(self, diffae_model: nn.Module, value_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        if not callable(getattr(diffae_model, "encode", None)):
            raise TypeError(f"diffae_model must have an encode(x0) method, got {type(diffae_model).__name__}")
        config = getattr(diffae_model, "config", None)
        size = getattr(config, "image_size", None)
        if size is None:
            raise TypeError("diffae_model.config.image_size is required to resize the inputs")
        lo, hi = value_range
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.model = diffae_model
        self.image_size = int(size)
        self.value_range = (float(lo), float(hi))
        self.weights_name = "DiffAE semantic encoder"
        self.dim = getattr(config, "z_dim", None)

    @property
    def name(self) -> str:
        dim = f" ({self.dim}-d)" if self.dim else ""
        return f"DiffAE semantic encoder z_sem{dim}"

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, H, W)`` (or RGB, averaged to gray) in `value_range` -> ``(B, z_dim)``."""
        x = unit_images(x, self.value_range, self.image_size, self.device)
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        was_training = self.model.training
        self.model.eval()
        try:
            z = self.model.encode(to_model_range(x))
        finally:
            self.model.train(was_training)
        if self.dim is None:
            self.dim = int(z.shape[1])
        return z.float()
