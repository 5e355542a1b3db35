"""Folder-to-folder jobs behind the CLI: reconstruct images, and generate samples.

Both load a checkpoint, run batched DDIM on `device`, and write 8-bit PNGs.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .io import save_batch
from .utils import get_device


def _batches(dataset, batch_size: int):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    start = 0
    for images, _ in loader:
        yield start, images
        start += len(images)


@torch.no_grad()
def reconstruct_folder(ckpt: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                       encode_steps: int = 100, decode_steps: int = 100, batch_size: int = 16,
                       device=None, progress: bool = True, fixed_point_iters: int = 0) -> list[Path]:
    """Encode every image of `images_dir` to ``(x_T, z_sem)`` and decode it back into `out_dir`.

    Output files keep the input names (as ``.png``). Returns the written paths.
    `fixed_point_iters` > 0 refines the inversion (see ``DiffAE.encode_stochastic``).
    """
    from .data import USImageFolder
    from .train import load_model

    device = get_device(device)
    model = load_model(ckpt, device=device)
    dataset = USImageFolder(images_dir, domain="real", size=model.config.image_size)
    names = [Path(p).name for p in dataset.files]
    written = []
    bar = tqdm(total=len(dataset), desc="reconstruct", disable=not progress)
    for start, x0 in _batches(dataset, batch_size):
        x0 = x0.to(device)
        z = model.encode(x0)
        x_t = model.encode_stochastic(x0, z, steps=encode_steps, fixed_point_iters=fixed_point_iters)
        x_hat = model.decode(x_t, z, steps=decode_steps)
        written += save_batch(x_hat, out_dir, names[start:start + len(x0)])
        bar.update(len(x0))
    bar.close()
    return written


@torch.no_grad()
def sample_folder(ckpt: str | Path, out_dir: str | Path, *, n: int = 1200, data_dir: str | Path | None = None,
                  images_dir: str | Path | None = None, split: str = "test", steps: int = 20,
                  batch_size: int = 32, seed: int = 0, device=None, progress: bool = True) -> list[Path]:
    """Generate `n` images the way the original study did for FID.

    A DiffAE has no prior over ``z_sem``, so each sample decodes the ``z_sem`` of a held-out
    image (cycling through them if `n` exceeds their number) from a *random* ``x_T`` with
    `steps` DDIM steps. ``z_sem`` comes from `images_dir` (any folder) or from the `split`
    of the built-in data set at `data_dir` (both domains).

    Raises:
        ValueError: if neither or both of `data_dir` and `images_dir` are given, or `n` < 1.
    """
    from .data import BuiltinDataset, USImageFolder
    from .metrics.evaluate import diffae_samples
    from .train import load_model

    if (data_dir is None) == (images_dir is None):
        raise ValueError("give exactly one of data_dir (built-in data set) or images_dir (a folder of images)")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device = get_device(device)
    model = load_model(ckpt, device=device)
    size = model.config.image_size
    if data_dir is not None:
        dataset = BuiltinDataset(data_dir, split=split, domain="both", size=size)
    else:
        dataset = USImageFolder(images_dir, domain="real", size=size)
    written: list[Path] = []
    bar = tqdm(total=n, desc="sample", disable=not progress)
    while len(written) < n:
        for _, x0 in _batches(dataset, batch_size):
            x0 = x0[: n - len(written)]
            images = diffae_samples(model, x0, steps=steps, batch_size=batch_size, seed=seed + len(written))
            names = [f"{i:06d}.png" for i in range(len(written), len(written) + len(x0))]
            written += save_batch(images, out_dir, names, value_range=(0.0, 1.0))
            bar.update(len(x0))
            if len(written) >= n:
                break
    bar.close()
    return written
