"""Noise schedules: the variances beta_1..beta_T of the forward process q(x_t | x_{t-1}).

All schedules return ``float64`` tensors of shape ``(T,)``; index ``i`` holds beta_{i+1}, so
``alphas_cumprod(betas)[i]`` is alpha_bar at timestep ``i`` in the model's 0-based convention.
"""
from __future__ import annotations

import math

import torch


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020, "DDPM", sec. 4).

    Returns:
        ``(T,)`` float64 tensor.
    """
    _check_T(T)
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas from alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2).

    Nichol & Dhariwal 2021, "Improved DDPM", eq. 17; beta_t = 1 - alpha_bar(t) / alpha_bar(t-1),
    clipped at `max_beta` so that the last step stays finite.

    Returns:
        ``(T,)`` float64 tensor.
    """
    _check_T(T)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(0, max_beta)


SCHEDULES = {"linear": linear_beta_schedule, "cosine": cosine_beta_schedule}


def get_schedule(name: str, T: int = 1000) -> torch.Tensor:
    """Betas ``(T,)`` of the schedule called `name` ("linear" or "cosine").

    Raises:
        ValueError: for an unknown `name` (the message lists the choices) or `T` < 1.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](T)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas whose last alpha_bar is exactly 0 (zero terminal SNR), the first one unchanged.

    Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (WACV 2024),
    Algorithm 1: shift sqrt(alpha_bar) so that its last value is 0, scale it so that its first value
    is kept, and read the betas back. At t = T - 1 the forward process then leaves no trace of the
    image (x_{T-1} = noise), so a model cannot learn to read the image's brightness or domain from
    the noise it starts from; only its conditioning (z_sem) can say them. With alpha_bar = 0 the
    eps-parameterisation cannot give x_0 (it divides by sqrt(alpha_bar)): use v-prediction.

    Returns:
        ``(T,)`` float64 tensor; its last beta is 1.
    """
    sqrt_ab = alphas_cumprod(torch.as_tensor(betas, dtype=torch.float64)).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)      # Alg. 1: shift to 0 at T, keep the value at 1
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), same shape and dtype as `betas`."""
    return torch.cumprod(1.0 - betas, dim=0)


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (number of diffusion steps) must be a positive int, got {T!r}")
