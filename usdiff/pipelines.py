"""Folder-to-folder jobs behind the CLI: reconstruct images, and generate samples.

Both load a checkpoint, run batched DDIM on the device of their :class:`usdiff.io.FolderOptions`,
and write 8-bit PNGs. :class:`SampleSource` says whose ``z_sem`` the samples decode and
:class:`Sampling` how each sample is drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data.datasets import USImageFolder, image_shape
from .io import FolderOptions, announce_resize, check_outputs, output_names, save_batch
from .model.io import load_model
from .utils import get_device

__all__ = ["reconstruct_folder", "SampleSource", "Sampling", "sample_folder"]

DOMAINS = ("sim", "real", "both")


def _batches(dataset, batch_size: int):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    start = 0
    for images, _ in loader:
        yield start, images
        start += len(images)


@torch.no_grad()
def reconstruct_folder(ckpt: str | Path, images_dir: str | Path, out_dir: str | Path, *,
                       encode_steps: int = 100, decode_steps: int = 100, fixed_point_iters: int = 0,
                       options: FolderOptions | None = None, progress: bool = True) -> list[Path]:
    """Encode every image of `images_dir` to ``(x_T, z_sem)`` and decode it back into `out_dir`.

    Images of any size and mode are brought to the model's size (``options.fit``: ``"pad"`` or
    ``"crop"``); ``options.keep_size`` writes each output back at its input's size (`options`:
    :class:`usdiff.io.FolderOptions`, default batches of 16). Outputs are named after the inputs
    (``stem.png``; ``name.png`` where two inputs share a stem). Returns the written paths.
    `fixed_point_iters` > 0 refines the inversion (see ``DiffAE.encode_stochastic``).

    Raises:
        ValueError: `out_dir` is `images_dir`. FileExistsError: outputs exist and not ``options.overwrite``.
    """
    opts = options if options is not None else FolderOptions()
    device = get_device(opts.device)
    model = load_model(ckpt, device=device)
    size = model.config.image_size
    dataset = USImageFolder(images_dir, size=size, fit=opts.fit)
    names = output_names(dataset.files)
    check_outputs(out_dir, names, opts.overwrite, inputs_dir=images_dir)
    announce_resize(dataset, size, opts.fit, progress)
    shapes = [image_shape(f) for f in dataset.files] if opts.keep_size else None
    written = []
    bar = tqdm(total=len(dataset), desc="reconstruct", disable=not progress)
    for start, x0 in _batches(dataset, opts.batch_size):
        x0 = x0.to(device)
        z = model.encode(x0)
        x_t = model.encode_stochastic(x0, z, steps=encode_steps, fixed_point_iters=fixed_point_iters)
        x_hat = model.decode(x_t, z, steps=decode_steps)
        written += save_batch(x_hat, out_dir, names[start:start + len(x0)],
                              shapes=None if shapes is None else shapes[start:start + len(x0)], fit=opts.fit)
        bar.update(len(x0))
    bar.close()
    return written


@dataclass(frozen=True)
class SampleSource:
    """The images whose ``z_sem`` :func:`sample_folder` decodes: exactly one of

    * `data_dir`: the built-in data set (its `split`; `domain` ``"sim" | "real" | "both"``), or,
      without a manifest, your own ``ROOT/sim`` + ``ROOT/real`` folders (all images);
    * `images_dir`: any folder of images (`domain` must stay ``"both"``).
    """

    data_dir: str | Path | None = None
    images_dir: str | Path | None = None
    split: str = "test"
    domain: str = "both"

    def __post_init__(self):
        if (self.data_dir is None) == (self.images_dir is None):
            raise ValueError("give exactly one of data_dir (built-in data set) or images_dir (a folder of images)")
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be 'sim', 'real' or 'both', got {self.domain!r}")
        if self.images_dir is not None and self.domain != "both":
            raise ValueError("domain applies to the built-in data set (data_dir), not to images_dir")


@dataclass(frozen=True)
class Sampling:
    """How each sample is drawn: `steps` DDIM steps from a random ``x_T`` of `prior` (``"gaussian"``,
    the study's ``N(0, I)``, or ``"data"``; see ``DiffAE.random_x_T``), seeded with `seed` plus the
    index of the batch's first sample."""

    steps: int = 20
    seed: int = 0
    prior: str = "gaussian"


def _source_dataset(source: SampleSource, size: int, fit: str, progress: bool):
    """The dataset of a :class:`SampleSource` at `size` and the output stem of each of its images."""
    from .data import BuiltinDataset, TwoDomainDataset

    if source.data_dir is not None and (Path(source.data_dir) / "manifest.json").is_file():
        dataset = BuiltinDataset(source.data_dir, split=source.split, domain=source.domain, size=size)
        names = [f"{i}" for i in dataset.ids] if source.domain != "both" else \
            [f"{d}_{i}" for d in ("sim", "real") for i in dataset.ids]
    elif source.data_dir is not None:  # your own ROOT/sim + ROOT/real
        if source.domain == "both":
            dataset = TwoDomainDataset(source.data_dir, size=size, fit=fit)
            names = [f"{'sim' if d == 0 else 'real'}_{Path(f).stem}" for f, d in zip(dataset.files, dataset.domains)]
        else:
            dataset = USImageFolder(Path(source.data_dir) / source.domain, domain=source.domain, size=size, fit=fit)
            names = [Path(f).stem for f in dataset.files]
    else:
        dataset = USImageFolder(source.images_dir, size=size, fit=fit)
        announce_resize(dataset, size, fit, progress)
        names = [Path(f).stem for f in dataset.files]
    return dataset, names


@torch.no_grad()
def sample_folder(ckpt: str | Path, out_dir: str | Path, source: SampleSource, *, n: int = 1200,
                  sampling: Sampling | None = None, options: FolderOptions | None = None,
                  progress: bool = True) -> list[Path]:
    """Generate `n` images the way the original study did for FID.

    A DiffAE has no prior over ``z_sem``, so each sample decodes the ``z_sem`` of a held-out
    image of `source` (cycling through them if `n` exceeds their number) from a *random* ``x_T``
    drawn as `sampling` says (default :class:`Sampling`: 20 DDIM steps, ``N(0, I)``, seed 0).
    `options` (:class:`usdiff.io.FolderOptions`, default batches of 32; the batch size is part of
    the seeding) gives the batch size, the fit of your own images, the device and whether outputs
    may be replaced (``keep_size`` does not apply: samples are at the model's size).

    Each output is named after its source image (``ID.png``; ``ID_rK.png`` for the K-th repeat
    when `n` exceeds the sources), so that ``usdiff evaluate --labels DATA/labels`` can pair a
    sample with its source's label map. With ``domain="both"`` the sim and real images of a phantom
    share its id, so the names get a ``sim_`` / ``real_`` prefix (``sim_ID.png``).

    Raises:
        ValueError: if `n` < 1, ``options.keep_size`` is set, or ``prior="data"`` with a checkpoint
            without data statistics. FileExistsError: outputs exist and not ``options.overwrite``.
    """
    from .metrics.evaluate import diffae_samples
    sampling = sampling if sampling is not None else Sampling()
    opts = options if options is not None else FolderOptions(batch_size=32)
    if not isinstance(source, SampleSource):
        raise TypeError(f"source must be a SampleSource, got {type(source).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if opts.keep_size:
        raise ValueError("keep_size does not apply to samples: they are generated at the model's size")
    device = get_device(opts.device)
    model = load_model(ckpt, device=device)
    if sampling.prior == "data" and model.data_mean is None:
        raise ValueError(f"prior='data' needs a checkpoint with the training images' statistics; {ckpt} has "
                         "none (checkpoints written by the Trainer carry them; scripts/add_data_stats.py adds them "
                         "to others); use prior='gaussian'")
    dataset, names = _source_dataset(source, model.config.image_size, opts.fit, progress)
    planned = [f"{names[i % len(names)]}.png" if i < len(names) else f"{names[i % len(names)]}_r{i // len(names)}.png"
               for i in range(n)]
    check_outputs(out_dir, planned, opts.overwrite, inputs_dir=source.images_dir)
    written: list[Path] = []
    bar = tqdm(total=n, desc="sample", disable=not progress)
    while len(written) < n:
        for _, x0 in _batches(dataset, opts.batch_size):
            x0 = x0[: n - len(written)]
            images = diffae_samples(model, x0, steps=sampling.steps, batch_size=opts.batch_size,
                                    seed=sampling.seed + len(written), prior=sampling.prior)
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
