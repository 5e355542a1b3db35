"""Folder-to-folder jobs behind the CLI: reconstruct images, and generate samples.

Both load a checkpoint, run batched DDIM on `device`, and write 8-bit PNGs.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .io import announce_resize, check_outputs, open_image_folder, output_names, save_batch
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
                       device=None, progress: bool = True, fixed_point_iters: int = 0, fit: str = "pad",
                       keep_size: bool = False, overwrite: bool = False) -> list[Path]:
    """Encode every image of `images_dir` to ``(x_T, z_sem)`` and decode it back into `out_dir`.

    Images of any size and mode are brought to the model's size (`fit`: ``"pad"`` or ``"crop"``);
    `keep_size` writes each output back at its input's size. Outputs are named after the inputs
    (``stem.png``; ``name.png`` where two inputs share a stem). Returns the written paths.
    `fixed_point_iters` > 0 refines the inversion (see ``DiffAE.encode_stochastic``).

    Raises:
        ValueError: `out_dir` is `images_dir`. FileExistsError: outputs exist and not `overwrite`.
    """
    from .data.datasets import image_shape
    from .train import load_model

    device = get_device(device)
    model = load_model(ckpt, device=device)
    dataset = open_image_folder(images_dir, model.config.image_size, fit)
    names = output_names(dataset.files)
    check_outputs(out_dir, names, overwrite, inputs_dir=images_dir)
    announce_resize(dataset, model.config.image_size, fit, progress)
    shapes = [image_shape(f) for f in dataset.files] if keep_size else None
    written = []
    bar = tqdm(total=len(dataset), desc="reconstruct", disable=not progress)
    for start, x0 in _batches(dataset, batch_size):
        x0 = x0.to(device)
        z = model.encode(x0)
        x_t = model.encode_stochastic(x0, z, steps=encode_steps, fixed_point_iters=fixed_point_iters)
        x_hat = model.decode(x_t, z, steps=decode_steps)
        written += save_batch(x_hat, out_dir, names[start:start + len(x0)],
                              shapes=None if shapes is None else shapes[start:start + len(x0)], fit=fit)
        bar.update(len(x0))
    bar.close()
    return written


@torch.no_grad()
def sample_folder(ckpt: str | Path, out_dir: str | Path, *, n: int = 1200, data_dir: str | Path | None = None,
                  images_dir: str | Path | None = None, split: str = "test", steps: int = 20,
                  batch_size: int = 32, seed: int = 0, device=None, progress: bool = True,
                  domain: str = "both", fit: str = "pad", overwrite: bool = False,
                  prior: str = "gaussian") -> list[Path]:
    """Generate `n` images the way the original study did for FID.

    A DiffAE has no prior over ``z_sem``, so each sample decodes the ``z_sem`` of a held-out
    image (cycling through them if `n` exceeds their number) from a *random* ``x_T`` with
    `steps` DDIM steps (`prior`: ``"gaussian"``, the study's ``N(0, I)``, or ``"data"``; see
    ``DiffAE.random_x_T``). ``z_sem`` comes from `images_dir` (any folder) or from the `split`
    of the built-in data set at `data_dir` (`domain` ``"sim" | "real" | "both"``); a `data_dir`
    without a manifest is read as your own ``ROOT/sim`` + ``ROOT/real`` folders (all images).

    Each output is named after its source image (``ID.png``; ``ID_rK.png`` for the K-th repeat
    when `n` exceeds the sources), so that ``usdiff evaluate --labels DATA/labels`` can pair a
    sample with its source's label map. With ``domain="both"`` the sim and real images of a phantom
    share its id, so the names get a ``sim_`` / ``real_`` prefix (``sim_ID.png``).

    Raises:
        ValueError: if neither or both of `data_dir` and `images_dir` are given, or `n` < 1.
        FileExistsError: outputs exist and not `overwrite`.
    """
    from .data import BuiltinDataset, TwoDomainDataset
    from .metrics.evaluate import diffae_samples
    from .train import load_model

    if (data_dir is None) == (images_dir is None):
        raise ValueError("give exactly one of data_dir (built-in data set) or images_dir (a folder of images)")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device = get_device(device)
    model = load_model(ckpt, device=device)
    if prior == "data" and model.data_mean is None:
        raise ValueError(f"prior='data' needs a checkpoint with the training images' statistics; {ckpt} has "
                         "none (checkpoints written by the Trainer carry them; scripts/add_data_stats.py adds them "
                         "to others); use prior='gaussian'")
    size = model.config.image_size
    if domain not in ("sim", "real", "both"):
        raise ValueError(f"domain must be 'sim', 'real' or 'both', got {domain!r}")
    if data_dir is not None and (Path(data_dir) / "manifest.json").is_file():
        dataset = BuiltinDataset(data_dir, split=split, domain=domain, size=size)
        names = [f"{i}" for i in dataset.ids] if domain != "both" else \
            [f"{d}_{i}" for d in ("sim", "real") for i in dataset.ids]
    elif data_dir is not None:  # your own ROOT/sim + ROOT/real
        if domain == "both":
            dataset = TwoDomainDataset(data_dir, size=size, fit=fit)
            names = [f"{'sim' if d == 0 else 'real'}_{Path(f).stem}" for f, d in zip(dataset.files, dataset.domains)]
        else:
            dataset = open_image_folder(Path(data_dir) / domain, size, fit, domain=domain)
            names = [Path(f).stem for f in dataset.files]
    else:
        if domain != "both":
            raise ValueError("domain applies to the built-in data set (data_dir), not to images_dir")
        dataset = open_image_folder(images_dir, size, fit)
        announce_resize(dataset, size, fit, progress)
        names = [Path(f).stem for f in dataset.files]
    planned = [f"{names[i % len(names)]}.png" if i < len(names) else f"{names[i % len(names)]}_r{i // len(names)}.png"
               for i in range(n)]
    check_outputs(out_dir, planned, overwrite, inputs_dir=images_dir)
    written: list[Path] = []
    bar = tqdm(total=n, desc="sample", disable=not progress)
    while len(written) < n:
        for _, x0 in _batches(dataset, batch_size):
            x0 = x0[: n - len(written)]
            images = diffae_samples(model, x0, steps=steps, batch_size=batch_size, seed=seed + len(written),
                                    prior=prior)
            first = len(written) % len(dataset)
            repeat = len(written) // len(dataset)
            stems = names[first:first + len(x0)]
            names_out = [f"{s}.png" if repeat == 0 else f"{s}_r{repeat}.png" for s in stems]
            written += save_batch(images, out_dir, names_out, value_range=(0.0, 1.0))
            bar.update(len(x0))
            if len(written) >= n:
                break
    bar.close()
    return written
