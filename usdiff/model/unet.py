"""Conditional UNet eps_theta(x_t, t, z_sem) of the Diffusion Autoencoder (Preechakul et al. 2022).

Every residual block is conditioned with the DiffAE adaptive group norm

    h = (1 + z_s) * ((1 + t_s) * GroupNorm(h) + t_b)

where ``(t_s, t_b) = Linear(SiLU(t_emb))`` and ``z_s = Linear(SiLU(z_sem))`` (scale only).
The building blocks here are also used, without conditioning, by the semantic encoder.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import exists


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `max_groups` that divides `channels`."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place, so that a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SinusoidalEmbedding(nn.Module):
    """Timesteps ``(B,)`` -> ``(B, dim)`` sin/cos features (Vaswani et al. 2017, as in DDPM)."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.dim = dim
        self.max_period = max_period

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.cos(), args.sin()], dim=-1)


class ResBlock(nn.Module):
    """Residual block ``(B, C_in, H, W) -> (B, C_out, H, W)``, optionally conditioned on t and z.

    Without `time_dim` / `z_dim` it is a plain pre-activation residual block (the encoder's).
    """

    def __init__(self, in_channels: int, out_channels: int, *, time_dim: int | None = None,
                 z_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(in_channels), nn.SiLU(),
                                       nn.Conv2d(in_channels, out_channels, 3, padding=1))
        # t_s, t_b from the time embedding; z_s from z_sem (DiffAE: scale only)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * out_channels)) if exists(time_dim) else None
        self.z_proj = nn.Sequential(nn.SiLU(), nn.Linear(z_dim, out_channels)) if exists(z_dim) else None
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor | None = None,
                z_sem: torch.Tensor | None = None) -> torch.Tensor:
        h = self.in_layers(x)
        h = self.out_norm(h)
        scale, shift = self._modulation(t_emb, z_sem)
        if exists(scale):
            # (1 + z_s) * ((1 + t_s) * h + t_b) as one fused pass over h; the factors are (B, C, 1, 1)
            h = torch.addcmul(shift, h, scale) if exists(shift) else h * scale
        return self.skip(x) + self.out_layers(h)

    def _modulation(self, t_emb, z_sem):
        """Per-channel ``(scale, shift)`` of shape ``(B, C, 1, 1)``, or None where unconditioned."""
        scale = shift = None
        if exists(self.time_proj):
            t_s, shift = self.time_proj(t_emb)[:, :, None, None].chunk(2, dim=1)
            scale = 1 + t_s
        if exists(self.z_proj):
            z_s = 1 + self.z_proj(z_sem)[:, :, None, None]
            scale = z_s if scale is None else scale * z_s
            shift = None if shift is None else shift * z_s
        return scale, shift


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels, residual: ``(B, C, H, W) -> (B, C, H, W)``.

    The projections act on ``(B, H*W, C)`` tokens as linear layers (faster than 1x1 convolutions
    on the CPU); checkpoints that stored them as 1x1 convolution kernels still load.
    """

    def __init__(self, channels: int, *, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, *_) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        # (3, B, heads, HW, C/heads) for scaled_dot_product_attention
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("qkv.weight", "proj.weight"):
            weight = state_dict.get(prefix + name)
            if weight is not None and weight.dim() == 4:  # (out, in, 1, 1) kernel of a 1x1 convolution
                state_dict[prefix + name] = weight.flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, *_) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 convolution: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, *_) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class CondSequential(nn.Sequential):
    """Sequential that hands ``(t_emb, z_sem)`` to every layer (plain layers ignore them)."""

    def forward(self, x, t_emb=None, z_sem=None):
        for layer in self:
            x = layer(x, t_emb, z_sem)
        return x


class ConditionalUNet(nn.Module):
    """eps_theta(x_t, t, z_sem): ``(B, C, H, W), (B,), (B, z_dim) -> (B, C, H, W)``.

    Args:
        image_size: side of the square input, used to place attention at `attn_resolutions`.
        in_channels: image channels (1 for ultrasound); the output has the same number.
        base_channels: width of the first level; level i has ``base_channels * channel_mult[i]``.
        channel_mult: one multiplier per resolution level; the image halves between levels.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: feature-map sides with self-attention (the middle block always has it).
        dropout: dropout inside the residual blocks.
        z_dim: size of the semantic code z_sem.
        num_heads: attention heads.
        time_dim: time-embedding width (default ``4 * base_channels``).
    """

    def __init__(self, *, image_size: int = 64, in_channels: int = 1, base_channels: int = 64,
                 channel_mult=(1, 2, 4, 8), num_res_blocks: int = 2, attn_resolutions=(16,),
                 dropout: float = 0.0, z_dim: int = 512, num_heads: int = 1, time_dim: int | None = None):
        super().__init__()
        self.image_size = image_size
        self.in_channels = in_channels
        time_dim = time_dim or 4 * base_channels
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(base_channels), nn.Linear(base_channels, time_dim),
                                      nn.SiLU(), nn.Linear(time_dim, time_dim))
        block = dict(time_dim=time_dim, z_dim=z_dim, dropout=dropout)

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        ch, res = base_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, base_channels * mult, **block)]
                ch = base_channels * mult
                if res in attn_resolutions:
                    layers.append(AttentionBlock(ch, num_heads=num_heads))
                self.down.append(CondSequential(*layers))
                skip_channels.append(ch)
            if level < len(channel_mult) - 1:
                self.down.append(CondSequential(Downsample(ch)))
                skip_channels.append(ch)
                res //= 2

        self.middle = CondSequential(ResBlock(ch, ch, **block), AttentionBlock(ch, num_heads=num_heads),
                                     ResBlock(ch, ch, **block))

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), base_channels * mult, **block)]
                ch = base_channels * mult
                if res in attn_resolutions:
                    layers.append(AttentionBlock(ch, num_heads=num_heads))
                if level > 0 and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    res *= 2
                self.up.append(CondSequential(*layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_(nn.Conv2d(ch, in_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        t_emb = self.time_mlp(t)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, t_emb, z_sem)
            skips.append(h)
        h = self.middle(h, t_emb, z_sem)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), t_emb, z_sem)
        return self.out(h)
