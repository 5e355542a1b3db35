"""The baseline users would pick instead of a diffusion model: a compact CycleGAN.

CycleGAN (Zhu et al., ICCV 2017, arXiv 1703.10593): two generators ``G: sim -> real`` and
``F: real -> sim`` and two PatchGAN discriminators, trained on *unpaired* images with

    L = L_GAN(G, D_real) + L_GAN(F, D_sim) + lambda_cyc (|F(G(s)) - s|_1 + |G(F(r)) - r|_1)
        + lambda_id (|G(r) - r|_1 + |F(s) - s|_1),

least-squares GAN losses (LSGAN, Mao et al. 2017), a history pool of 50 generated images for the
discriminators, Adam (lr 2e-4, betas 0.5/0.999) with a linear decay over the second half, as in
the paper; only the network widths are cut down (ResNet generator with 3 residual blocks at a
quarter of the input side, 3-layer PatchGAN) so that it trains on a CPU in under an hour.
Vitale et al. (IJCARS 2020) used CycleGAN for sim -> real abdominal ultrasound.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..utils import check_positive_ints
from .base import Translator, check_images, register

__all__ = ["ResnetGenerator", "PatchDiscriminator", "CycleGANSettings", "train_cyclegan", "CycleGANTranslator"]


def _conv(c_in, c_out, k, s=1, p=None, norm=True, act="relu"):
    p = k // 2 if p is None else p
    layers = [nn.Conv2d(c_in, c_out, k, s, p, padding_mode="reflect" if k > 3 else "zeros")]
    if norm:
        layers.append(nn.InstanceNorm2d(c_out, affine=True))
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "lrelu":
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class _ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c, 3), _conv(c, c, 3, act=None))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson-style generator: 7x7 conv, two stride-2 downs, residual blocks, two ups, 7x7 conv, tanh."""

    def __init__(self, width: int = 16, blocks: int = 3):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(1, w, 7), _conv(w, 2 * w, 3, 2), _conv(2 * w, 4 * w, 3, 2),
            *[_ResBlock(4 * w) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(4 * w, 2 * w, 3),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(2 * w, w, 3),
            nn.Conv2d(w, 1, 7, padding=3, padding_mode="reflect"), nn.Tanh())

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake scores, each seeing a patch of the image."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.net = nn.Sequential(_conv(1, w, 4, 2, 1, norm=False, act="lrelu"), _conv(w, 2 * w, 4, 2, 1, act="lrelu"),
                                 _conv(2 * w, 4 * w, 4, 1, 1, act="lrelu"), nn.Conv2d(4 * w, 1, 4, 1, 1))

    def forward(self, x):
        return self.net(x)


class _Pool:
    """The history of generated images the discriminator sees (half new, half from the pool)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.items, self.rng = size, [], rng

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for img in x.detach():
            if len(self.items) < self.size:
                self.items.append(img)
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.items[i])
                self.items[i] = img
            else:
                out.append(img)
        return torch.stack(out)


def _lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, target))


@dataclass(frozen=True)
class CycleGANSettings:
    """The training settings of :func:`train_cyclegan` (the paper's, with smaller networks).

    `minutes` stops early at that wall time (the learning-rate decay still assumes `steps`).
    """

    steps: int = 10_000
    batch_size: int = 4
    width: int = 16
    blocks: int = 3
    lr: float = 2e-4
    lambda_cyc: float = 10.0
    lambda_id: float = 5.0
    minutes: float | None = None


def train_cyclegan(sim: torch.Tensor, real: torch.Tensor, settings: CycleGANSettings | None = None,
                   seed: int = 0, device=None, progress: bool = True) -> tuple[ResnetGenerator, dict]:
    """Train a CycleGAN on unpaired ``sim`` and ``real`` images ``(N, 1, H, W)`` in [-1, 1].

    Each step draws independent random batches from the two sets (the pairing of a paired data set
    is never used).

    Args:
        settings: the training settings (default: :class:`CycleGANSettings`'s).

    Returns:
        the sim -> real generator (eval mode, CPU) and a log ``{"loss_g", "loss_d", "steps", "seconds"}``.
    """
    s = settings if settings is not None else CycleGANSettings()
    steps, batch_size, width, blocks, lr = s.steps, s.batch_size, s.width, s.blocks, s.lr
    lambda_cyc, lambda_id, minutes = s.lambda_cyc, s.lambda_id, s.minutes
    check_positive_ints(steps=steps, batch_size=batch_size, width=width, blocks=blocks)
    sim, real = check_images(sim, "sim"), check_images(real, "real")
    device = torch.device(device or "cpu")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    G, Fn = ResnetGenerator(width, blocks).to(device), ResnetGenerator(width, blocks).to(device)
    D_r, D_s = PatchDiscriminator(width).to(device), PatchDiscriminator(width).to(device)
    opt_g = torch.optim.Adam(list(G.parameters()) + list(Fn.parameters()), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(D_r.parameters()) + list(D_s.parameters()), lr=lr, betas=(0.5, 0.999))
    pool_r, pool_s = _Pool(50, random.Random(seed)), _Pool(50, random.Random(seed + 1))
    log, t_start = {"loss_g": [], "loss_d": []}, time.perf_counter()
    done = 0
    for step in tqdm(range(steps), desc="cyclegan", disable=not progress):
        if minutes is not None and time.perf_counter() - t_start > 60 * minutes:
            break
        scale = min(1.0, 2.0 * (1.0 - step / steps))       # constant, then linear decay to 0
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr * scale
        s = sim[torch.randint(len(sim), (batch_size,), generator=g)].to(device)
        r = real[torch.randint(len(real), (batch_size,), generator=g)].to(device)
        # generators
        fake_r, fake_s = G(s), Fn(r)
        loss_g = (_lsgan(D_r(fake_r), 1.0) + _lsgan(D_s(fake_s), 1.0)
                  + lambda_cyc * ((Fn(fake_r) - s).abs().mean() + (G(fake_s) - r).abs().mean())
                  + lambda_id * ((G(r) - r).abs().mean() + (Fn(s) - s).abs().mean()))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # discriminators, on a history of generated images
        loss_d = 0.5 * (_lsgan(D_r(r), 1.0) + _lsgan(D_r(pool_r(fake_r)), 0.0)
                        + _lsgan(D_s(s), 1.0) + _lsgan(D_s(pool_s(fake_s)), 0.0))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        log["loss_g"].append(float(loss_g.detach()))
        log["loss_d"].append(float(loss_d.detach()))
        done = step + 1
    log["steps"], log["seconds"] = done, time.perf_counter() - t_start
    return G.cpu().eval(), log


@register
class CycleGANTranslator(Translator):
    """The CycleGAN baseline as a translation method: ``translate`` runs the sim -> real generator.

    Every setting is a fit setting (the training of :func:`train_cyclegan`: `train_steps`,
    `train_batch_size`, `width`, `blocks`, `lambda_cyc`, `lambda_id`, `minutes`); the method has no
    knobs and needs no DiffAE. It works at the side of its training images (:meth:`input_size`).
    """

    name = "cyclegan"
    needs_diffae = False
    fit_settings = ("train_steps", "train_batch_size", "width", "blocks", "lambda_cyc", "lambda_id", "minutes")
    fitted_attrs = ("generator_", "size_")
    renamed_settings = {"steps": "train_steps", "batch_size": "train_batch_size"}

    def __init__(self, train_steps: int = 10_000, train_batch_size: int = 4, width: int = 16, blocks: int = 3,
                 lambda_cyc: float = 10.0, lambda_id: float = 5.0, minutes: float | None = None):
        check_positive_ints(train_steps=train_steps, train_batch_size=train_batch_size, width=width, blocks=blocks)
        if minutes is not None and not minutes > 0:
            raise ValueError(f"minutes must be None or > 0, got {minutes!r}")
        self.train_steps, self.train_batch_size, self.width, self.blocks = train_steps, train_batch_size, width, blocks
        self.lambda_cyc, self.lambda_id = float(lambda_cyc), float(lambda_id)
        self.minutes = None if minutes is None else float(minutes)
        self.generator_ = None
        self.size_ = None      # side of the training images: what inputs are resized to
        self.log_ = None

    def _fit_images(self, model, sim, real, sim_labels, seed, progress):
        """Train on unpaired images (`model` and `sim_labels` are unused: the baseline has no DiffAE)."""
        self.generator_, self.log_ = train_cyclegan(
            sim, real, CycleGANSettings(steps=self.train_steps, batch_size=self.train_batch_size, width=self.width,
                                        blocks=self.blocks, lambda_cyc=self.lambda_cyc, lambda_id=self.lambda_id,
                                        minutes=self.minutes), seed=seed, progress=progress)
        self.size_ = int(sim.shape[-1])
        self.checkpoint_ = None

    def state_dict(self) -> dict:
        self.check_fitted()
        return {"generator_": {k: v.detach().cpu().clone() for k, v in self.generator_.state_dict().items()},
                "size_": self.size_}

    def load_state_dict(self, state: dict) -> CycleGANTranslator:
        self.generator_ = ResnetGenerator(self.width, self.blocks)
        self.generator_.load_state_dict(state["generator_"])
        self.generator_.eval()
        self.size_ = int(state["size_"])
        return self

    @torch.no_grad()
    def translate(self, model, x, generator=None, progress: bool = False, labels=None) -> torch.Tensor:
        x = self._prepare(model, x)      # any size: the generator is fully convolutional
        return self.generator_.to(x.device)(x).clamp(-1, 1)
