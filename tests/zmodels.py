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
