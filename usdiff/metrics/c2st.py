"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, "Revisiting classifier two-sample tests", ICLR 2017).

Are two image sets drawn from the same distribution? Train a *fresh* classifier to tell them apart
on one half of each set and measure its accuracy on the other half. If the sets are
indistinguishable the held-out accuracy is 1/2 up to binomial noise: under the null hypothesis
``acc ~ N(1/2, 1/(4 n_test))``. An accuracy near 1 means the classifier found a difference.

This is the realism test a translation has to pass: translated simulation vs real images should
score about 50 %. Unlike the shipped domain critic, the classifier here is trained on the very two
sets compared, so it can find *any* difference, not only the sim/real one it was taught.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import as_image_batch, to_model_range, unit_images

__all__ = ["c2st", "C2STTraining", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class _SmallCNN(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        c = [width, 2 * width, 4 * width, 4 * width]
        layers, prev = [], 1
        for ch in c:
            layers += [nn.Conv2d(prev, ch, 3, stride=2, padding=1), nn.GroupNorm(min(8, ch), ch), nn.SiLU()]
            prev = ch
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, 1)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3))).squeeze(1)


def _prepare(x, name: str, value_range, size) -> torch.Tensor:
    x = as_image_batch(x, name, min_count=4)
    side = size or min(int(x.shape[-1]), 128)
    return to_model_range(unit_images(x, value_range, side, torch.device("cpu")))


@dataclass(frozen=True)
class C2STTraining:
    """How the fresh classifier of :func:`c2st` is trained: at least `epochs` passes and `min_steps`
    steps (Adam, BCE) in batches of `batch_size` at learning rate `lr`; `width` channels in its
    first layer."""

    epochs: int = 10
    min_steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def c2st(a, b, value_range: tuple[float, float] = (0.0, 1.0), size: int | None = None, *, seed: int = 0,
         training: C2STTraining | None = None) -> dict:
    """Classifier two-sample test between image sets `a` and `b` ``(N, 1, H, W)`` in `value_range`.

    Both sets are cut to the same size ``m = min(len(a), len(b))`` (a random subset), shuffled
    with `seed` and split in halves; a fresh 4-layer CNN is trained on the first halves as
    `training` says (default :class:`C2STTraining`: 10 passes, at least 300 steps, since small
    sets need more passes), and tested on the second ones. Images are resized to `size`
    (default: their side, at most 128).

    Returns:
        ``{"acc", "ci": (low, high) 95 % Wilson interval, "p_value": one-sided binomial test of
        acc > 1/2, "n_train", "n_test"}``.
    """
    t = training if training is not None else C2STTraining()
    a, b = _prepare(a, "a", value_range, size), _prepare(b, "b", value_range, size)
    if a.shape[-1] != b.shape[-1]:
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    rng = np.random.default_rng(seed)
    m = min(len(a), len(b))
    a = a[torch.from_numpy(rng.permutation(len(a))[:m])]
    b = b[torch.from_numpy(rng.permutation(len(b))[:m])]
    h = m // 2
    x_tr, y_tr = torch.cat([a[:h], b[:h]]), torch.cat([torch.zeros(h), torch.ones(h)])
    x_te, y_te = torch.cat([a[h:], b[h:]]), torch.cat([torch.zeros(m - h), torch.ones(m - h)])
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = _SmallCNN(t.width)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    model.train()
    per_epoch = math.ceil(len(x_tr) / t.batch_size)
    for _ in range(max(t.epochs, math.ceil(t.min_steps / per_epoch))):
        order = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(order), t.batch_size):
            idx = order[i:i + t.batch_size]
            loss = F.binary_cross_entropy_with_logits(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_te[i:i + 256]) for i in range(0, len(x_te), 256)]) > 0
    correct = int((pred.float() == y_te).sum())
    n_test = len(y_te)
    from scipy.stats import binomtest

    return {"acc": correct / n_test, "ci": wilson_interval(correct, n_test),
            "p_value": float(binomtest(correct, n_test, 0.5, alternative="greater").pvalue),
            "n_train": len(y_tr), "n_test": n_test}
