"""Semantic encoder of the Diffusion Autoencoder: an image -> a semantic code z_sem."""
from __future__ import annotations

import torch
from torch import nn

from .unet import AttentionBlock, Downsample, ResBlock, group_norm


class SemanticEncoder(nn.Module):
    """Half a UNet: ``(B, C, H, W) -> (B, z_dim)``.

    conv in -> per level: `num_res_blocks` residual blocks (+ attention at `attn_resolutions`),
    then a stride-2 downsample (not after the last level) -> GroupNorm -> SiLU ->
    global average pool -> 1x1 conv to `z_dim`.

    Args:
        image_size: input side, used to place attention.
        in_channels: image channels.
        base_channels: width of the first level.
        channel_mult: one multiplier per level, e.g. (1, 2, 4, 8, 8) for 128 px in the study.
        num_res_blocks: residual blocks per level.
        attn_resolutions: feature-map sides with self-attention.
        dropout: dropout inside the residual blocks.
        z_dim: size of z_sem.
        num_heads: attention heads.
    """

    def __init__(self, *, image_size: int = 64, in_channels: int = 1, base_channels: int = 64,
                 channel_mult=(1, 2, 4, 8, 8), num_res_blocks: int = 2, attn_resolutions=(16,),
                 dropout: float = 0.0, z_dim: int = 512, num_heads: int = 1):
        super().__init__()
        self.z_dim = z_dim
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 3, padding=1)]
        ch, res = base_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(ch, base_channels * mult, dropout=dropout))
                ch = base_channels * mult
                if res in attn_resolutions:
                    layers.append(AttentionBlock(ch, num_heads=num_heads))
            if level < len(channel_mult) - 1:
                layers.append(Downsample(ch))
                res //= 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, z_dim, 1),
                                  nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
