"""Test models whose output depends on z_sem.

A fresh DiffAE's zero-initialised output layers (the UNet's last convolution and every residual
block's last convolution) make it ignore z_sem entirely: every manipulation would decode to the
same image, and a test of it could not fail. `z_dependent` re-draws those layers.
"""
import torch
from torch import nn


def z_dependent(model: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Re-initialise every all-zero weight tensor of `model` with N(0, std^2) (in place); returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def tiny_z_model(size: int = 32, seed: int = 0) -> nn.Module:
    """The `tiny` DiffAE at `size` px, seeded, with its zero layers re-drawn (`z_dependent`): eval mode."""
    import dataclasses

    from usdiff.model import DiffAE, get_config

    cfg, _ = get_config("tiny")
    torch.manual_seed(seed)
    return z_dependent(DiffAE.from_config(dataclasses.replace(cfg, image_size=size)))


def toy_classifiers(model, images) -> dict:
    """BCE and MSE sim-vs-real classifiers on `model`'s codes of 24 dark (class 0) and 24 bright
    (class 1) images drawn by ``images(n, seed)``."""
    import numpy as np

    from usdiff.latent import encode_images, train_linear_classifier

    dark, bright = images(24, 1) * 0.2 - 0.6, images(24, 2) * 0.2 + 0.6
    z = encode_images(model, torch.cat([dark, bright]))
    y = np.repeat([0, 1], 24)
    return {loss: train_linear_classifier(z, y, loss=loss, lr=1e-2, epochs=5, progress=False, device="cpu")[0]
            for loss in ("bce", "mse")}
