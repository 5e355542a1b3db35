"""Does a DiffAE's ``z_sem`` carry the image, and where do codes land?

* :func:`diffae_goals`: the model's goals on held-out data, judged by the independent critics
  (settings in :class:`GoalSettings`);
* :func:`z_swap_ratio`: how much decoding depends on ``z_sem`` (swap the codes of two images);
* :func:`fine_texture`: a hand-made judge of pixel-scale texture, knowing nothing of any model;
* :func:`nearest_domain`: where moved or interpolated codes land among the codes of the data: the
  share of real codes among their nearest neighbours, and how far off the data they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..utils import (
    as_image_batch,
    check_positive_ints,
    from_model_range,
    model_device,
    to_model_range,
)
from .anatomy import label_maps_at
from .reconstruction import reconstruction_error

__all__ = ["fine_texture", "z_swap_ratio", "GoalSettings", "diffae_goals", "nearest_domain"]


@torch.no_grad()
def fine_texture(images, mask=None) -> np.ndarray:
    """Per image, the mean ``|x - box3(x)|`` (the image minus its 3x3 box blur; borders replicated) over
    the pixels where `mask` ``(H, W)`` is true (all pixels when None): how much pixel-scale texture
    (speckle, noise) an image has, in its own intensity units. A hand-made judge that knows nothing of
    any model; on the built-in data it separates every held-out real-like image from every simulated
    one (benchmarks/README.md). Returns ``(N,)``.

    Raises:
        ValueError: if `mask` is not ``(H, W)`` or selects no pixel.
    """
    x = as_image_batch(images).float()
    m = torch.ones(x.shape[-2:]) if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if m.shape != x.shape[-2:] or m.sum() == 0:
        raise ValueError(f"mask must be a non-empty {tuple(x.shape[-2:])} array, got shape {tuple(m.shape)}")
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (((x - blur).abs() * m).sum((1, 2, 3)) / (m.sum() * x.shape[1])).numpy()


@torch.no_grad()
def z_swap_ratio(model, x_a, x_b, steps: int = 50, batch_size: int = 32) -> np.ndarray:
    """How much decoding depends on ``z_sem``: per pair, mean ``|decode(x_T^A, z^B) - decode(x_T^A, z^A)|``
    over mean ``|A - B|`` (0: ``z_sem`` ignored, about 1: ``z_sem`` decides the image).

    ``x_T^A`` is A's DDIM inversion (`steps` steps) with its own code; images ``(N, 1, H, W)`` in [-1, 1].
    """
    x_a, x_b = as_image_batch(x_a), as_image_batch(x_b)
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_a and x_b must have the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}")
    device = model_device(model)
    out = []
    for s in range(0, len(x_a), batch_size):
        a, b = x_a[s:s + batch_size].to(device), x_b[s:s + batch_size].to(device)
        z_a, z_b = model.encode(a), model.encode(b)
        x_t = model.encode_stochastic(a, z_a, steps=steps)
        own, swapped = model.decode(x_t, z_a, steps=steps), model.decode(x_t, z_b, steps=steps)
        out.append(((swapped - own).abs().flatten(1).mean(1) / (a - b).abs().flatten(1).mean(1).clamp(min=1e-8)).cpu())
    return torch.cat(out).double().numpy()


@dataclass(frozen=True)
class GoalSettings:
    """What :func:`diffae_goals` measures on.

    Attributes:
        n: held-out images, half simulated and half real-like (at most twice the test split).
        steps: DDIM steps that decode the codes from random ``x_T`` (the study's protocol).
        prior: the random ``x_T``'s prior (``DiffAE.random_x_T``; ``"gaussian"``: the study's ``N(0, I)``).
        seed: seed of the random ``x_T``.
        n_swap: images of the reconstruction and z-swap measurements.
        recon_steps: plain DDIM steps each way of the reconstruction (the goal: 100).
        swap_steps: inversion and decoding steps of the z-swap ratio.
    """

    n: int = 400
    steps: int = 20
    prior: str = "gaussian"
    seed: int = 0
    n_swap: int = 64
    recon_steps: int = 100
    swap_steps: int = 50

    def __post_init__(self):
        check_positive_ints(n=self.n, steps=self.steps, n_swap=self.n_swap, recon_steps=self.recon_steps,
                            swap_steps=self.swap_steps)


def diffae_goals(model, data_dir, critics, settings: GoalSettings = GoalSettings(), progress: bool = True) -> dict:
    """Does this DiffAE's ``z_sem`` carry the image? Measured on the held-out test split with the
    independent critics (never the model itself), with the sizes and step counts of `settings`:

    * ``domain_kept_sim`` / ``domain_kept_real``: held-out codes decoded from *random* ``x_T``
      (``settings.steps`` DDIM steps, ``settings.prior``) that the domain critic puts in their
      source's domain;
    * ``dice_aorta`` / ``one_aorta_rate`` of those samples against the *source* label maps, beside
      ``dice_aorta_data`` (the held-out images themselves);
    * ``fd_samples`` (FD-US of the samples vs the held-out images), ``fd_gap`` (sim vs real-like,
      same n) and their ratio ``fd_ratio``;
    * ``texture_kept_sim`` / ``texture_kept_real``: samples whose :func:`fine_texture` inside the
      sector lies on their source's side of the midpoint between the held-out sim and real-like
      medians (a second, hand-made judge of the domain: the critic may decide by other cues);
    * ``psnr_100``: reconstruction PSNR (dB) with ``settings.recon_steps`` plain DDIM steps each way
      (``settings.n_swap`` images);
    * ``z_swap``: median :func:`z_swap_ratio` (``settings.swap_steps`` steps) over ``settings.n_swap``
      pairs of different phantoms.
    """
    from ..data import BuiltinDataset
    from ..metrics.evaluate import diffae_samples
    from ..metrics.frechet import fd_from_features

    size = model.config.image_size
    half = settings.n // 2
    sims = BuiltinDataset(data_dir, split="test", domain="sim", size=size)
    reals = BuiltinDataset(data_dir, split="test", domain="real", size=size)
    half = min(half, len(sims))
    x = torch.stack([sims[i][0] for i in range(half)] + [reals[i][0] for i in range(half)])   # [-1, 1]
    labels = np.stack([sims.label_map(i) for i in range(half)] * 2)
    fake = diffae_samples(model, x, steps=settings.steps, seed=settings.seed, progress=progress,
                          prior=settings.prior)   # [0, 1]
    data = from_model_range(x)
    p = critics.p_real(fake)
    src_real = np.r_[np.zeros(half, bool), np.ones(half, bool)]
    seg_fake = critics.anatomy_scores(fake, label_maps_at(labels, len(labels), critics.size))
    seg_data = critics.anatomy_scores(data, label_maps_at(labels, len(labels), critics.size))
    f_data, f_fake = critics.features(data), critics.features(fake)
    fd_samples = fd_from_features(f_fake, f_data)
    fd_gap = fd_from_features(f_data[:half], f_data[half:])   # sim vs real-like of the same phantoms
    sector = x.mean(0)[0] > -0.9                                  # pixels inside the scan sector
    tex_data, tex_fake = fine_texture(x, sector), fine_texture(to_model_range(fake), sector)
    cut = (np.median(tex_data[:half]) + np.median(tex_data[half:])) / 2
    k = min(settings.n_swap, half)
    rec = reconstruction_error(model, x[:k], steps=settings.recon_steps, progress=progress)
    perm = np.roll(np.arange(k), 1)                              # B = another phantom, same domain mix
    swap = z_swap_ratio(model, x[:k], x[perm], steps=settings.swap_steps)
    return {"n": 2 * half, "prior": settings.prior, "domain_kept_sim": float(np.mean(p[~src_real] < 0.5)),
            "domain_kept_real": float(np.mean(p[src_real] > 0.5)), "dice_aorta": seg_fake["dice_aorta"],
            "one_aorta_rate": seg_fake["one_aorta_rate"], "dice_aorta_data": seg_data["dice_aorta"],
            "fd_samples": fd_samples, "fd_gap": fd_gap, "fd_ratio": fd_samples / fd_gap,
            "texture_kept_sim": float(np.mean(tex_fake[~src_real] < cut)),
            "texture_kept_real": float(np.mean(tex_fake[src_real] > cut)), "texture_cut": float(cut),
            "psnr_100": float(rec["psnr"].mean()), "z_swap": float(np.median(swap))}


def nearest_domain(z_ref, y_ref, z_query, k: int = 5) -> dict[str, np.ndarray]:
    """Where query codes ``(M, D)`` land among reference codes ``(N, D)`` with domains ``y_ref``.

    Args:
        z_ref, y_ref: the data's codes and labels (0 = sim, 1 = real).
        z_query: codes to place, e.g. manipulated or interpolated ones.
        k: neighbours to vote.

    Returns:
        dict of ``(M,)`` arrays: ``real_fraction`` (share of real codes among the `k` nearest
        reference codes, Euclidean), ``nn_distance`` (distance to the nearest reference code) and
        ``off_data`` (that distance divided by the median nearest-neighbour distance *within* the
        reference codes: about 1 or below for a code among the data, much larger in empty space).
    """
    from sklearn.neighbors import NearestNeighbors

    ref = np.asarray(z_ref, dtype=np.float64)
    query = np.asarray(z_query, dtype=np.float64)
    y = np.asarray(y_ref).reshape(-1)
    if ref.ndim != 2 or query.ndim != 2 or ref.shape[1] != query.shape[1]:
        raise ValueError(f"z_ref and z_query must be (N, D) and (M, D), got {ref.shape} and {query.shape}")
    if len(y) != len(ref) or not np.isin(y, (0, 1)).all():
        raise ValueError("y_ref must hold one label 0 (sim) or 1 (real) per reference code")
    if not isinstance(k, (int, np.integer)) or not 1 <= k < len(ref):
        raise ValueError(f"k must be an int in [1, {len(ref) - 1}], got {k!r}")
    nn = NearestNeighbors(n_neighbors=k + 1).fit(ref)
    d_ref, _ = nn.kneighbors(ref, n_neighbors=2)            # column 0 is the point itself
    scale = float(np.median(d_ref[:, 1]))
    dist, ind = nn.kneighbors(query, n_neighbors=k)
    return {"real_fraction": y[ind].mean(axis=1), "nn_distance": dist[:, 0],
            "off_data": dist[:, 0] / max(scale, 1e-12)}
