"""High-level evaluation: FID/KID between image folders, distance reports, FD bias vs n.

The CLI's ``usdiff fid`` calls :func:`fid_folders`; the notebooks call :func:`distance_report`,
:func:`diffae_samples` (the original study's sampling protocol) and :func:`fid_bias_curve`.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import IMAGE_EXTENSIONS, USImageFolder, image_shape, list_images, stack_images
from ..io import FolderOptions
from ..model.diffae import check_prior
from ..utils import (
    as_image_batch,
    from_model_range,
    to_model_range,
    to_unit_range,
    unit_images,
)
from .frechet import check_features, fd_from_features, kid
from .inception import InceptionFeatures, extract_features

__all__ = ["IMAGE_EXTENSIONS", "take_images", "distance_report", "report_table", "fid_folders", "fid_bias_curve",
           "diffae_samples"]


def take_images(dataset, n: int | None = None, seed: int | None = None,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """`n` images of a map-style dataset as one tensor ``(n, 1, H, W)`` in ``[0, 1]`` (CPU).

    Items may be ``image`` or ``(image, ...)`` (the usdiff datasets yield ``(image in [-1, 1],
    domain)``, hence the default `value_range`). The first `n` items, or a random subset
    (without replacement, in index order) when `seed` is given.

    Raises:
        ValueError: if `n` is not in ``[1, len(dataset)]``.
    """
    total = len(dataset)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise ValueError(f"n must be in [1, {total}] (the dataset size), got {n}")
    if seed is None:
        indices = range(n)
    else:
        indices = np.sort(np.random.default_rng(seed).choice(total, n, replace=False)).tolist()
    return to_unit_range(stack_images(dataset, indices), value_range)


def _features(x, extractor, n: int, argname: str) -> np.ndarray:
    """Features of images (4-D tensor/array, Dataset, loader), or `x` itself if it is 2-D features."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim == 2:
        return check_features(x[:n], argname)
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim != 4:
        raise ValueError(f"{argname} must be images (N, C, H, W) or features (N, D), got shape {tuple(x.shape)}")
    if extractor is None:
        raise ValueError(f"an extractor is needed to compute features of the {argname} images")
    return check_features(extract_features(extractor, x, progress=False, n=n), argname)


def distance_report(real, fake, extractor=None, n: int = 1200, kid_subsets: int = 100,
                    kid_subset_size: int | None = None, seed: int = 0) -> dict:
    """Fréchet distance and KID between two image sets in `extractor`'s feature space.

    Args:
        real, fake: images ``(N, 1, H, W)`` in the extractor's ``value_range``, Datasets, loaders,
            or already computed features ``(N, D)`` (then `extractor` may be None). Images are
            run through `extractor` in batches of 50 (:func:`extract_features` with its own batch
            size and progress bar, then the features here, for other choices).
        extractor: :class:`InceptionFeatures` (FID) or :class:`SemanticFeatures` (FSD).
        n: use at most `n` images of each set (the study used 1,200).
        kid_subsets, kid_subset_size: KID subsets and their size (default: 1,000 when both sets
            are larger, else half the smaller set; an explicit size not below the smaller set is
            halved with a warning: see :func:`~usdiff.metrics.frechet.kid`).

    Returns:
        A JSON-ready dict: ``metric`` (``"FID"``, ``"FSD (Fréchet semantic distance)"`` ...),
        ``fd``, ``kid_mean``, ``kid_std``, ``kid_subset_size``, ``n_real``, ``n_fake``,
        ``features`` (which network/layer/weights) and ``dim``.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    f_real = _features(real, extractor, n, "real")
    f_fake = _features(fake, extractor, n, "fake")
    if f_real.shape[1] != f_fake.shape[1]:
        raise ValueError(f"real and fake features differ in width: {f_real.shape[1]} vs {f_fake.shape[1]}")
    smaller = min(len(f_real), len(f_fake))
    if kid_subset_size is None:
        kid_subset_size = 1000 if smaller > 1000 else max(2, smaller // 2)
    kid_mean, kid_std = kid(f_real, f_fake, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    m = kid_subset_size if kid_subset_size < smaller else max(2, smaller // 2)
    return {
        "metric": getattr(extractor, "metric", "Fréchet distance"),
        "fd": fd_from_features(f_real, f_fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": int(m),
        "n_real": int(len(f_real)),
        "n_fake": int(len(f_fake)),
        "features": getattr(extractor, "name", "precomputed features"),
        "dim": int(f_real.shape[1]),
    }


def report_table(rows: dict[str, dict], kid_scale: float = 1e3) -> str:
    """Reports of :func:`distance_report` as an aligned text table (one line per named row)."""
    if not rows:
        raise ValueError("rows must contain at least one report")
    name_w = max(len(k) for k in rows) + 2
    metric = next(iter(rows.values()))["metric"].split(" (")[0]
    header = (f"{'':<{name_w}}{metric:>10}   {'KID x ' + format(kid_scale, 'g'):>18}   {'n real/fake':>11}")
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        kid_text = f"{r['kid_mean'] * kid_scale:.2f} ± {r['kid_std'] * kid_scale:.2f}"
        lines.append(f"{name:<{name_w}}{r['fd']:>10.3f}   {kid_text:>18}   {r['n_real']:>5}/{r['n_fake']:<5}")
    return "\n".join(lines)


def fid_folders(real_dir: str | Path, fake_dir: str | Path, layer: str = "pool2",
                weights: str | Path | None = None, n: int = 1200, *, kid_subsets: int = 100,
                options: FolderOptions | None = None, progress: bool = True) -> dict:
    """FID and KID between two image folders (the first `n` images of each, sorted by name).

    Uses :class:`InceptionFeatures` with local weights only; ``layer="pool2"`` (192-d) is the
    original study's protocol, ``"pool3"`` (2048-d) the standard FID.

    Images of any size and mode are read as grayscale and brought to the size of the first real
    image (its longer side, square; ``options.fit`` ``"pad"`` or ``"crop"`` as everywhere in the
    CLI). `options` (:class:`usdiff.io.FolderOptions`; default batches of 50) gives the feature
    batch size, the fit and the device.

    Returns:
        :func:`distance_report`'s dict plus ``real``, ``fake``, ``layer`` and ``weights``.

    Raises:
        FileNotFoundError: if a folder or the Inception weights are missing (with instructions).
        ValueError: if a folder has no images, or a file is not a readable image (names it).
    """
    options = options if options is not None else FolderOptions(batch_size=50)
    side = max(image_shape(list_images(real_dir, what="real_dir")[0]))
    real = USImageFolder(real_dir, size=side, fit=options.fit, n=n, value_range=(0.0, 1.0), what="real_dir")
    fake = USImageFolder(fake_dir, size=side, fit=options.fit, n=n, value_range=(0.0, 1.0), what="fake_dir")
    for ds in (real, fake):
        if len(ds) < n:
            warnings.warn(f"{ds.root} has only {len(ds)} images (n={n} asked); FID is biased upwards "
                          "for small sets, compare only scores computed with the same n.", stacklevel=2)
    extractor = InceptionFeatures(layer=layer, weights=weights, device=options.device, value_range=(0.0, 1.0))
    f_real, f_fake = (extract_features(extractor, ds, batch_size=options.batch_size, progress=progress, n=n)
                      for ds in (real, fake))
    report = distance_report(f_real, f_fake, extractor, n=n, kid_subsets=kid_subsets)
    report.update(real=str(real_dir), fake=str(fake_dir), layer=layer, weights=extractor.weights_name)
    return report


def fid_bias_curve(features_a, features_b, ns: Sequence[int], repeats: int = 5, seed: int = 0) -> dict:
    """How the Fréchet distance between samples of size n depends on n.

    FD estimated from n samples is biased upwards by roughly ``c / n`` (Chong & Forsyth, 2020):
    even two samples of the *same* distribution get FD > 0. For each n, `repeats` random
    subsets of n rows (without replacement) are drawn from each side.

    Args:
        features_a, features_b: ``(N_a, D)`` and ``(N_b, D)`` features. With ``features_b=None``
            both subsets are drawn, disjoint, from `features_a` (the same-distribution curve).
        ns: subset sizes, each in ``[2, min(N_a, N_b)]`` (``[2, N_a // 2]`` when `features_b` is None).

    Returns:
        dict with ``n`` (array), ``fd_mean``, ``fd_std`` (arrays over repeats), and the
        least-squares fit ``fd ~ fd_inf + slope / n``: ``fd_inf`` (extrapolated to n -> inf)
        and ``slope``.
    """
    fa = check_features(features_a, "features_a")
    fb = None if features_b is None else check_features(features_b, "features_b")
    if fb is not None and fa.shape[1] != fb.shape[1]:
        raise ValueError(f"features_a and features_b differ in width: {fa.shape[1]} vs {fb.shape[1]}")
    ns = np.asarray(sorted({int(v) for v in ns}))
    if ns.size == 0:
        raise ValueError("ns must contain at least one subset size")
    limit = len(fa) // 2 if fb is None else min(len(fa), len(fb))
    if ns[0] < 2 or ns[-1] > limit:
        what = "half of features_a" if fb is None else "the smaller feature set"
        raise ValueError(f"ns must lie in [2, {limit}] ({what}), got {ns.tolist()}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    values = np.empty((len(ns), repeats))
    for i, k in enumerate(ns):
        for r in range(repeats):
            if fb is None:
                perm = rng.permutation(len(fa))
                a, b = fa[perm[:k]], fa[perm[k:2 * k]]
            else:
                a, b = fa[rng.choice(len(fa), k, replace=False)], fb[rng.choice(len(fb), k, replace=False)]
            values[i, r] = fd_from_features(a, b)
    fd_mean = values.mean(axis=1)
    if len(ns) >= 2:
        design = np.stack([np.ones(len(ns)), 1.0 / ns], axis=1)
        (fd_inf, slope), *_ = np.linalg.lstsq(design, fd_mean, rcond=None)
    else:
        fd_inf, slope = float("nan"), float("nan")
    return {"n": ns, "fd_mean": fd_mean, "fd_std": values.std(axis=1), "fd_inf": float(fd_inf),
            "slope": float(slope)}


@torch.no_grad()
def diffae_samples(model, images, steps: int = 20, batch_size: int = 32, seed: int = 0,
                   value_range: tuple[float, float] = (-1.0, 1.0), progress: bool = False,
                   prior: str = "gaussian") -> torch.Tensor:
    """The original study's FID samples: each image's ``z_sem`` decoded from a *random* ``x_T``.

    Args:
        model: a DiffAE (``encode``, ``decode(x_T, z_sem, steps)``, ``config.image_size``).
        images: held-out images ``(N, 1, H, W)`` in `value_range` (resized to the model's size).
        steps: DDIM steps (the study used 20).
        prior: ``"gaussian"`` (``x_T ~ N(0, I)``, the study's) or ``"data"`` (the per-pixel
            Gaussian that x_t has at the first DDIM timestep; see ``DiffAE.random_x_T``).

    Returns:
        Generated images ``(N, 1, S, S)`` on the CPU, in ``[0, 1]``.
    """
    from tqdm.auto import tqdm

    images = as_image_batch(images, "images", min_count=0)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_prior(prior)
    size = int(model.config.image_size)
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    model.eval()
    bar = tqdm(total=len(images), desc="sample", unit="img", disable=not progress, leave=False)
    for i in range(0, len(images), batch_size):
        x = unit_images(images[i:i + batch_size], value_range, size, device)
        z = model.encode(to_model_range(x))
        if prior == "gaussian":   # N(0, I): any object with encode / decode / config will do
            x_t = torch.randn((len(x), 1, size, size), generator=generator).to(device)
        else:
            x_t = model.random_x_T(len(x), steps=steps, prior=prior, generator=generator).to(device)
        out.append(from_model_range(model.decode(x_t, z, steps=steps)).cpu())
        bar.update(len(x))
    bar.close()
    return torch.cat(out)
