"""Random appearance changes of ultrasound images: the one augmentation of the package.

:func:`augment_appearance` draws, per image, a contrast change (gamma, then gain), a Gaussian blur,
additive noise, optionally multiplicative speckle and a shift, with the ranges and the order of an
:class:`Appearance`. Two are used:

* :data:`CRITIC_APPEARANCE`: what the critics (and any segmenter of
  :func:`usdiff.metrics.critic_training.train_segmenter`) are trained with, so that they judge
  texture rather than one pixel statistic;
* :data:`SPECKLE_APPEARANCE`: ultrasound-like changes (Rayleigh speckle first), the ``sim+aug``
  training set of the downstream study: what users would try before a generative model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils import as_image_batch, from_model_range, to_model_range

__all__ = ["Appearance", "CRITIC_APPEARANCE", "SPECKLE_APPEARANCE", "augment_appearance"]


@dataclass(frozen=True)
class Appearance:
    """Ranges (uniform draws per image) and order of :func:`augment_appearance`.

    Args:
        gamma: exponent of the contrast change (pixels in [0, 1] raised to it).
        gain: factor applied after the gamma.
        blur_sigma: standard deviation (px) of the Gaussian blur; one value per batch.
        blur_share: share of the images blurred (drawn per image); 1 blurs all without a draw.
        blur_first: blur before the contrast change (after it otherwise).
        noise_std: standard deviation of the additive Gaussian noise.
        speckle: mixing strength of a unit-mean Rayleigh speckle field (the envelope statistics of
            fully developed speckle, low-passed to a grain of 1-2 px above 32 px), applied first;
            None: no speckle.
        shift: largest shift in pixels (one per batch, zero-filled); 0: none (labels stay aligned).
    """

    gamma: tuple[float, float] = (0.7, 1.4)
    gain: tuple[float, float] = (0.6, 1.4)
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    blur_share: float = 1 / 3
    blur_first: bool = False
    noise_std: tuple[float, float] = (0.0, 0.03)
    speckle: tuple[float, float] | None = None
    shift: int = 0


CRITIC_APPEARANCE = Appearance()
SPECKLE_APPEARANCE = Appearance(gain=(0.7, 1.3), blur_sigma=(0.3, 1.2), blur_share=1.0, blur_first=True,
                                noise_std=(0.0, 0.05), speckle=(0.2, 0.8))


def _blur(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (edges replicated) of ``(B, 1, H, W)``."""
    radius = max(1, math.ceil(2 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(y.dtype)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def augment_appearance(x, generator: torch.Generator, appearance: Appearance = CRITIC_APPEARANCE) -> torch.Tensor:
    """Random appearance changes of images ``(B, 1, H, W)`` in [-1, 1], drawn per image with
    `generator` (the same generator state gives the same images); the result is in [-1, 1].

    Order: speckle, [blur], gamma and gain, [blur], noise, shift (see :class:`Appearance`).

    Raises:
        ValueError: if `x` is not an image batch (:func:`usdiff.utils.as_image_batch`).
    """
    x = as_image_batch(x, "x")
    a = appearance
    b = len(x)

    def u(lo_hi, *shape):
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand((b, *shape), generator=generator)

    y = from_model_range(x)
    if a.speckle is not None:
        re, im = torch.randn(x.shape, generator=generator), torch.randn(x.shape, generator=generator)
        rayleigh = torch.sqrt(re ** 2 + im ** 2) / math.sqrt(math.pi / 2)   # |complex Gaussian|, unit mean
        if x.shape[-1] > 32:
            rayleigh = F.avg_pool2d(F.pad(rayleigh, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        rayleigh = rayleigh / rayleigh.mean(dim=(2, 3), keepdim=True)
        y = y * (1 + u(a.speckle, 1, 1, 1) * (rayleigh - 1))

    def blur(y):
        if a.blur_share >= 1:
            return _blur(y, float(u(a.blur_sigma)[0]))
        chosen = torch.rand(b, generator=generator) < a.blur_share
        if not chosen.any():
            return y
        z = _blur(y[chosen], float(u(a.blur_sigma)[0]))
        y = y.clone()
        y[chosen] = z
        return y

    if a.blur_first:
        y = blur(y)
    y = (y.clamp(0, 1) ** u(a.gamma, 1, 1, 1)) * u(a.gain, 1, 1, 1)
    if not a.blur_first:
        y = blur(y)
    y = y + torch.randn(y.shape, generator=generator) * u(a.noise_std, 1, 1, 1)
    if a.shift > 0:
        dy, dx = (torch.randint(-a.shift, a.shift + 1, (2,), generator=generator)).tolist()
        y = torch.roll(y, shifts=(dy, dx), dims=(2, 3))
        if dy > 0:
            y[:, :, :dy] = 0
        elif dy < 0:
            y[:, :, dy:] = 0
        if dx > 0:
            y[:, :, :, :dx] = 0
        elif dx < 0:
            y[:, :, :, dx:] = 0
    return to_model_range(y.clamp(0, 1))
