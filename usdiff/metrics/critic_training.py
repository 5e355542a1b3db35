"""Training the critics of :mod:`usdiff.metrics.critics` (and any small segmentation network).

``scripts/train_critics.py`` calls :func:`train_domain_critic` and :func:`train_segmenter` on the
built-in train split; the downstream study and the guided translation reuse :func:`train_segmenter`.
Both take their budget and optimiser as one :class:`TrainSettings`, are deterministic per seed on
the CPU (same seed, same weights) and show a progress bar. Appearance augmentation is
:func:`usdiff.data.augment.augment_appearance` with :data:`~usdiff.data.augment.CRITIC_APPEARANCE`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.augment import CRITIC_APPEARANCE, Appearance, augment_appearance
from ..data.datasets import resize_label_maps
from ..data.phantom import NUM_LABELS
from ..utils import as_image_batch, check_positive_ints
from .critics import AnatomySegmenter, DomainCritic

__all__ = ["TrainSettings", "CRITIC_TRAINING", "SEGMENTER_TRAINING", "train_domain_critic",
           "train_segmenter", "TrainLog"]


@dataclass(frozen=True)
class TrainSettings:
    """Budget and optimiser of one small network's training.

    Args:
        train_steps: optimiser steps (AdamW, warm-up then cosine decay).
        batch_size: images per step (the domain critic: half sim, half real).
        lr: peak learning rate.
        width: channels of the network's first level.
        seed: seed of the initial weights, the batches and the augmentation.
        augment: random appearance changes of every batch (:data:`usdiff.data.augment.CRITIC_APPEARANCE`).
    """

    train_steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-3
    width: int = 16
    seed: int = 0
    augment: bool = True

    def __post_init__(self):
        check_positive_ints(train_steps=self.train_steps, batch_size=self.batch_size, width=self.width)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


CRITIC_TRAINING = TrainSettings(train_steps=1500, batch_size=64, lr=2e-3)
SEGMENTER_TRAINING = TrainSettings()


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


def train_domain_critic(sim: torch.Tensor, real: torch.Tensor, size: int,
                        training: TrainSettings = CRITIC_TRAINING, *, progress: bool = True
                        ) -> tuple[DomainCritic, TrainLog]:
    """Train a :class:`DomainCritic` on sim (label 0) vs real (label 1) images ``(N, 1, S, S)`` in [-1, 1].

    Balanced batches (half sim, half real), AdamW with warm-up and cosine decay, BCE loss; the
    augmentation shifts by up to ``size / 16`` px. Returns the model (eval mode, CPU) and its training log.
    """
    t = training
    sim, real = as_image_batch(sim, "sim"), as_image_batch(real, "real")
    torch.manual_seed(t.seed)
    g = torch.Generator().manual_seed(t.seed)
    model = DomainCritic(size, t.width)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=1e-4)
    half = max(1, t.batch_size // 2)
    appearance = replace(CRITIC_APPEARANCE, shift=max(1, size // 16))
    log, t0 = TrainLog(loss=[]), time.perf_counter()
    model.train()
    for step in tqdm(range(t.train_steps), desc=f"domain critic {size}px", disable=not progress, leave=False):
        _cosine_lr(opt, step, t.train_steps, t.lr, warmup=min(100, t.train_steps // 10 + 1))
        i = torch.randint(len(sim), (half,), generator=g)
        j = torch.randint(len(real), (half,), generator=g)
        x = torch.cat([sim[i], real[j]])
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if t.augment:
            x = augment_appearance(x, g, appearance)
        y = torch.cat([torch.zeros(half), torch.ones(half)])
        _step(opt, F.binary_cross_entropy_with_logits(model(x), y), log)
    log["seconds"], log["steps"] = time.perf_counter() - t0, t.train_steps
    return model.eval(), log


def _class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse square-root class frequency, normalised to mean 1 (small organs count more)."""
    counts = torch.bincount(labels.flatten().long(), minlength=num_classes).double() + 1.0
    w = (counts.sum() / counts).sqrt()
    return (w / w.mean()).float()


def train_segmenter(images: torch.Tensor, labels, size: int, training: TrainSettings = SEGMENTER_TRAINING, *,
                    num_classes: int = NUM_LABELS, appearance: Appearance = CRITIC_APPEARANCE, progress: bool = True,
                    desc: str = "segmenter") -> tuple[AnatomySegmenter, TrainLog]:
    """Train an :class:`AnatomySegmenter` on images ``(N, 1, S, S)`` in [-1, 1] and label maps ``(N, S, S)``.

    Loss: class-weighted cross-entropy (inverse sqrt frequency) + soft Dice over the classes;
    with ``training.augment``, `appearance` augmentation of every batch (default: gain, gamma, blur,
    noise; :data:`~usdiff.data.augment.SPECKLE_APPEARANCE` adds speckle for a segmenter trained on
    simulation that has to work on real images; a shift would move the labels and is refused).
    Images and label maps of another side than `size` are resized to it (bilinear; labels by
    :func:`usdiff.data.resize_label_maps`). Returns the model (eval mode, CPU) and its training log.
    """
    t = training
    images = as_image_batch(images, "images")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"labels must be (N, H, W) matching images {tuple(images.shape)}, got {tuple(labels.shape)}")
    if int(labels.max()) >= num_classes:
        raise ValueError(f"labels hold class {int(labels.max())} but num_classes is {num_classes}")
    if appearance.shift:
        raise ValueError(f"appearance.shift must be 0 for a segmenter (it would move the labels), got {appearance.shift}")
    torch.manual_seed(t.seed)
    g = torch.Generator().manual_seed(t.seed)
    model = AnatomySegmenter(size, t.width, num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=1e-4)
    weights = _class_weights(labels, num_classes)
    if labels.shape[-1] != size:
        labels = torch.from_numpy(resize_label_maps(labels, size))
    log, t0 = TrainLog(loss=[]), time.perf_counter()
    model.train()
    for step in tqdm(range(t.train_steps), desc=f"{desc} {size}px", disable=not progress, leave=False):
        _cosine_lr(opt, step, t.train_steps, t.lr, warmup=min(100, t.train_steps // 10 + 1))
        i = torch.randint(len(images), (t.batch_size,), generator=g)
        x, y = images[i], labels[i].long()
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if t.augment:
            x = augment_appearance(x, g, appearance)
        logits = model(x)
        ce = F.cross_entropy(logits, y, weight=weights)
        prob = logits.softmax(1)
        onehot = F.one_hot(y, num_classes).permute(0, 3, 1, 2).float()
        inter = (prob * onehot).sum((0, 2, 3))
        denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        present = onehot.sum((0, 2, 3)) > 0
        soft_dice = 1.0 - (2 * inter[present] + 1.0) / (denom[present] + 1.0)
        _step(opt, ce + soft_dice.mean(), log)
    log["seconds"], log["steps"] = time.perf_counter() - t0, t.train_steps
    return model.eval(), log
