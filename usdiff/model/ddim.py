"""DDIM scheduler (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

The scheduler only holds the schedule and does single updates; the loops that call the network
live in :class:`usdiff.model.diffae.DiffAE`.

Legend (paper symbol -> name here). The DDIM paper writes alpha_t for what DDPM calls alpha_bar_t:

    alpha_t (DDIM)        alpha_bar_t = alphas_cumprod[t]
    alpha_{t-1} (DDIM)    alpha_bar_prev = alphas_cumprod[t_prev]   (1.0 when t_prev < 0, i.e. x_0)
    epsilon_theta(x_t)    eps           the network's noise prediction
    sigma_t               sigma         eq. 16, scaled by eta (eta=0: deterministic DDIM, eta=1: DDPM)

Timesteps are 0-based: ``t`` in ``[0, T-1]``; ``t = -1`` stands for the clean image x_0.
"""
from __future__ import annotations

import torch

from .schedules import alphas_cumprod, get_schedule


class DDIMScheduler:
    """Schedule plus DDIM updates.

    Args:
        betas: a ``(T,)`` tensor of betas, or a schedule name ("linear" | "cosine").
        num_train_timesteps: T, used when `betas` is a name.
    """

    def __init__(self, betas: torch.Tensor | str = "cosine", num_train_timesteps: int = 1000):
        if isinstance(betas, str):
            betas = get_schedule(betas, num_train_timesteps)
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        self.betas = betas
        self.alphas_cumprod = alphas_cumprod(betas)  # (T,) float64, on the CPU
        self.num_train_timesteps = len(betas)
        self.timesteps: torch.Tensor | None = None

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The descending grid of `num_inference_steps` timesteps used for sampling.

        Evenly spaced from 0 ("leading" spacing of DDIM and DiffAE): for T=1000 and 20 steps
        ``[950, 900, ..., 50, 0]``. Encoding walks the same grid upwards.

        Raises:
            ValueError: if `num_inference_steps` is < 1 or > T.
        """
        T = self.num_train_timesteps
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps must be an int in [1, {T}] (the trained T), "
                             f"got {num_inference_steps!r}")
        grid = torch.arange(num_inference_steps, dtype=torch.float64) * (T / num_inference_steps)
        self.timesteps = grid.floor().long().flip(0)
        return self.timesteps

    # ---- coefficients -------------------------------------------------------------------------

    def alpha_bar(self, t, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at `t` (int or ``(B,)`` tensor; -1 means 1.0), shaped ``(B|1, 1, 1, 1)`` like `like`."""
        t = torch.as_tensor(t, dtype=torch.long).cpu().reshape(-1)
        if (t >= self.num_train_timesteps).any() or (t < -1).any():
            raise ValueError(f"timesteps must be in [-1, {self.num_train_timesteps - 1}], got {t.tolist()}")
        ab = torch.where(t < 0, torch.ones_like(t, dtype=torch.float64), self.alphas_cumprod[t.clamp(min=0)])
        return ab.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def predict_x0(self, eps: torch.Tensor, t, x_t: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_bar_t)  (DDIM eq. 9 solved for x_0)."""
        ab = self.alpha_bar(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def predict_eps(self, x0: torch.Tensor, t, x_t: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) * x_0) / sqrt(1 - alpha_bar_t)."""
        ab = self.alpha_bar(t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    # ---- training -----------------------------------------------------------------------------

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) with the given `noise`.

        Args:
            x0: ``(B, C, H, W)`` clean images; noise: same shape; t: ``(B,)`` timesteps in [0, T-1].
        """
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # ---- sampling and inversion ---------------------------------------------------------------

    def step(self, eps: torch.Tensor, t, t_prev, x_t: torch.Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None, clip_x0: bool = False) -> torch.Tensor:
        """One DDIM update x_t -> x_{t_prev} (DDIM eq. 12).

        Args:
            eps: ``(B, C, H, W)`` predicted noise at (x_t, t).
            t, t_prev: current and next (smaller) timestep; ints or ``(B,)`` tensors; ``t_prev=-1`` gives x_0.
            x_t: ``(B, C, H, W)`` current sample.
            eta: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise.
            generator: CPU generator for the noise when ``eta > 0``.
            clip_x0: clamp the predicted x_0 to [-1, 1] (and re-derive eps from it).

        Returns:
            ``(B, C, H, W)`` x_{t_prev}.
        """
        ab_t = self.alpha_bar(t, x_t)
        ab_prev = self.alpha_bar(t_prev, x_t)

        # 1. "predicted x_0" term of eq. 12: (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t)
        x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()

        # 2. sigma_t of eq. 16: eta * sqrt((1 - alpha_{t-1}) / (1 - alpha_t)) * sqrt(1 - alpha_t / alpha_{t-1})
        sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()

        # 3. "direction pointing to x_t" term of eq. 12: sqrt(1 - alpha_{t-1} - sigma_t^2) eps
        direction = (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps

        # 4. eq. 12: x_{t-1} = sqrt(alpha_{t-1}) x_0 + direction + sigma_t * noise
        x_prev = ab_prev.sqrt() * x0 + direction
        if eta > 0:
            noise = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype).to(x_t.device)
            x_prev = x_prev + sigma * noise
        return x_prev

    def inverse_step(self, eps: torch.Tensor, t, t_next, x_t: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM inversion update x_t -> x_{t_next}, ``t_next > t``.

        Eq. 12 with eta = 0 run backwards (the ODE view of DDIM, sec. 4.3):
        x_{t_next} = sqrt(alpha_next) * x_0(x_t, eps) + sqrt(1 - alpha_next) * eps.
        ``t = -1`` means `x_t` is the clean image.
        """
        ab_next = self.alpha_bar(t_next, x_t)
        x0 = self.predict_x0(eps, t, x_t)                  # 1. predicted x_0 at the current step
        return ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps  # 2. re-noise it with the same eps

    def __repr__(self) -> str:
        return f"DDIMScheduler(T={self.num_train_timesteps})"
