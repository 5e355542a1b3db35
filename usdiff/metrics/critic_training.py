"""Training the critics of :mod:`usdiff.metrics.critics` (and any small segmentation network).

``scripts/train_critics.py`` calls :func:`train_domain_critic` and :func:`train_segmenter` on the
built-in train split; the downstream study reuses :func:`train_segmenter`. Both are deterministic
per seed on the CPU (same seed, same weights) and show a progress bar.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.phantom import NUM_LABELS
from .critics import AnatomySegmenter, DomainCritic

__all__ = ["load_builtin_arrays", "augment", "train_domain_critic", "train_segmenter", "TrainLog"]


def load_builtin_arrays(root, split: str, size: int, domains=("sim", "real"), n: int | None = None,
                        progress: bool = True) -> dict:
    """The `split` of the built-in data set in memory: ``{"sim": (N,1,S,S), "real": ..., "labels": (N,S,S)}``.

    Images are float32 tensors in [-1, 1] (resized as :class:`usdiff.data.BuiltinDataset` does),
    labels uint8 label maps (nearest resize); index ``k`` of every entry is the same phantom;
    ``ids`` lists the item ids. `n` keeps the first `n` items of the split.
    """
    from ..data import BuiltinDataset

    ds = {d: BuiltinDataset(root, split=split, domain=d, size=size) for d in domains}
    first = ds[domains[0]]
    count = len(first.ids) if n is None else min(int(n), len(first.ids))
    out = {d: torch.empty((count, 1, size, size)) for d in domains}
    labels = np.empty((count, size, size), np.uint8)
    for i in tqdm(range(count), desc=f"load {split} {size}px", disable=not progress, leave=False):
        for d in domains:
            out[d][i] = ds[d][i][0]
        labels[i] = first.label_map(i)
    out["labels"] = torch.from_numpy(labels)
    out["ids"] = list(first.ids[:count])
    return out


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Random appearance changes of images ``(B, 1, H, W)`` in [-1, 1] (per image):

    gain x U(0.6, 1.4), gamma U(0.7, 1.4) (contrast), Gaussian blur (sigma U(0.3, 1.0)) on a
    random third, additive Gaussian noise (std U(0, 0.03)), and a shift of up to `shift` px
    (zero-filled). The critic must not separate domains by any one of these.
    """
    b = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand((b, *shape), generator=generator)

    y = (x + 1.0) / 2.0
    y = (y.clamp(0, 1) ** u(0.7, 1.4, 1, 1, 1)) * u(0.6, 1.4, 1, 1, 1)
    blur = torch.rand(b, generator=generator) < 1 / 3
    if blur.any():
        sigma = float(u(0.3, 1.0)[0])
        radius = max(1, math.ceil(2 * sigma))
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
        k = k / k.sum()
        z = y[blur]
        z = F.conv2d(F.pad(z, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        z = F.conv2d(F.pad(z, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
        y = y.clone()
        y[blur] = z
    y = y + torch.randn(y.shape, generator=generator) * u(0.0, 0.03, 1, 1, 1)
    if shift > 0:
        dy, dx = (torch.randint(-shift, shift + 1, (2,), generator=generator)).tolist()
        y = torch.roll(y, shifts=(dy, dx), dims=(2, 3))
        if dy > 0:
            y[:, :, :dy] = 0
        elif dy < 0:
            y[:, :, dy:] = 0
        if dx > 0:
            y[:, :, :, :dx] = 0
        elif dx < 0:
            y[:, :, :, dx:] = 0
    return (y.clamp(0, 1) * 2.0 - 1.0)


class TrainLog(dict):
    """``{"loss": [...per step...], "seconds": float, "steps": int}``."""


def _cosine_lr(opt, step: int, steps: int, lr: float, warmup: int) -> None:
    f = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr * f


def _step(opt, loss: torch.Tensor, log: TrainLog) -> None:
    """One optimiser step on `loss`, logged."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    log["loss"].append(float(loss.detach()))


def _check_train_args(steps, batch_size, lr):
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")


def train_domain_critic(sim: torch.Tensor, real: torch.Tensor, size: int, steps: int = 1500,
                        batch_size: int = 64, lr: float = 2e-3, width: int = 16, seed: int = 0,
                        augment_images: bool = True, progress: bool = True) -> tuple[DomainCritic, TrainLog]:
    """Train a :class:`DomainCritic` on sim (label 0) vs real (label 1) images ``(N, 1, S, S)`` in [-1, 1].

    Balanced batches (half sim, half real), AdamW with warm-up and cosine decay, BCE loss.
    Returns the model (eval mode, CPU) and its training log.
    """
    _check_train_args(steps, batch_size, lr)
    for name, x in (("sim", sim), ("real", real)):
        if x.ndim != 4 or x.shape[1] != 1 or len(x) < 1:
            raise ValueError(f"{name} must be images (N, 1, H, W) with N >= 1, got shape {tuple(x.shape)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = DomainCritic(size, width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    half = max(1, batch_size // 2)
    log, t0 = TrainLog(loss=[]), time.perf_counter()
    model.train()
    for step in tqdm(range(steps), desc=f"domain critic {size}px", disable=not progress, leave=False):
        _cosine_lr(opt, step, steps, lr, warmup=min(100, steps // 10 + 1))
        i = torch.randint(len(sim), (half,), generator=g)
        j = torch.randint(len(real), (half,), generator=g)
        x = torch.cat([sim[i], real[j]])
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if augment_images:
            x = augment(x, g, shift=max(1, size // 16))
        y = torch.cat([torch.zeros(half), torch.ones(half)])
        _step(opt, F.binary_cross_entropy_with_logits(model(x), y), log)
    log["seconds"], log["steps"] = time.perf_counter() - t0, steps
    return model.eval(), log


def _class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse square-root class frequency, normalised to mean 1 (small organs count more)."""
    counts = torch.bincount(labels.flatten().long(), minlength=num_classes).double() + 1.0
    w = (counts.sum() / counts).sqrt()
    return (w / w.mean()).float()


def train_segmenter(images: torch.Tensor, labels: torch.Tensor, size: int, steps: int = 2000,
                    batch_size: int = 32, lr: float = 3e-3, width: int = 16, seed: int = 0,
                    num_classes: int = NUM_LABELS, augment_images: bool = True,
                    progress: bool = True, desc: str = "segmenter") -> tuple[AnatomySegmenter, TrainLog]:
    """Train an :class:`AnatomySegmenter` on images ``(N, 1, S, S)`` in [-1, 1] and label maps ``(N, S, S)``.

    Loss: class-weighted cross-entropy (inverse sqrt frequency) + soft Dice over the classes;
    appearance augmentation (gain, gamma, blur, noise; no shift, which would move the labels).
    Returns the model (eval mode, CPU) and its training log.
    """
    _check_train_args(steps, batch_size, lr)
    if images.ndim != 4 or images.shape[1] != 1 or len(images) < 1:
        raise ValueError(f"images must be (N, 1, H, W) with N >= 1, got shape {tuple(images.shape)}")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must be (N, H, W) matching images {tuple(images.shape)}, got {tuple(labels.shape)}")
    if int(labels.max()) >= num_classes:
        raise ValueError(f"labels hold class {int(labels.max())} but num_classes is {num_classes}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = AnatomySegmenter(size, width, num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    weights = _class_weights(labels, num_classes)
    log, t0 = TrainLog(loss=[]), time.perf_counter()
    model.train()
    for step in tqdm(range(steps), desc=f"{desc} {size}px", disable=not progress, leave=False):
        _cosine_lr(opt, step, steps, lr, warmup=min(100, steps // 10 + 1))
        i = torch.randint(len(images), (batch_size,), generator=g)
        x, y = images[i], labels[i].long()
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            y = F.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        if augment_images:
            x = augment(x, g, shift=0)
        logits = model(x)
        ce = F.cross_entropy(logits, y, weight=weights)
        prob = logits.softmax(1)
        onehot = F.one_hot(y, num_classes).permute(0, 3, 1, 2).float()
        inter = (prob * onehot).sum((0, 2, 3))
        denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        present = onehot.sum((0, 2, 3)) > 0
        soft_dice = 1.0 - (2 * inter[present] + 1.0) / (denom[present] + 1.0)
        _step(opt, ce + soft_dice.mean(), log)
    log["seconds"], log["steps"] = time.perf_counter() - t0, steps
    return model.eval(), log
