"""How exactly a DiffAE gives an image back from its own ``(x_T, z_sem)``: :func:`reconstruction_error`."""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..utils import as_image_batch, model_device

__all__ = ["reconstruction_error"]


@torch.no_grad()
def reconstruction_error(model, images, steps: int = 100, fixed_point_iters: int = 0,
                         batch_size: int = 32, progress: bool = False) -> dict:
    """Error of the reconstructions ``decode(encode_stochastic(x), z_sem)``, `steps` DDIM steps each way.

    Args:
        images: ``(B, 1, H, W)`` in [-1, 1].
        fixed_point_iters: refinement of the inversion (see ``DiffAE.encode_stochastic``).
        progress: show a tqdm bar over the images.

    Returns:
        dict with per-image ``mse`` and ``psnr`` (dB, peak-to-peak 2: ``10 log10(4 / mse)``) as
        ``(B,)`` CPU tensors, ``unet_calls`` (mean UNet forward passes per batch, encode + decode) and
        ``seconds`` (wall time of the whole set).
    """
    x = as_image_batch(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = model_device(model)
    calls = []
    hook = model.unet.register_forward_hook(lambda *_: calls.append(1))
    start = time.perf_counter()
    batches = x.split(batch_size)
    mse = []
    try:
        with tqdm(total=len(x), desc="reconstruct", disable=not progress, leave=False) as bar:
            for chunk in batches:
                chunk = chunk.to(device)
                rec = model.reconstruct(chunk, steps=steps, fixed_point_iters=fixed_point_iters)
                mse.append((rec - chunk).square().flatten(1).mean(1).cpu())
                bar.update(len(chunk))
    finally:
        hook.remove()
    mse = torch.cat(mse)
    return {"mse": mse, "psnr": 10 * torch.log10(4.0 / mse), "unet_calls": len(calls) / len(batches),
            "seconds": time.perf_counter() - start}
