"""DDIM scheduler (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

The scheduler only holds the schedule and does single updates; the loops that call the network
live in :class:`usdiff.model.diffae.DiffAE`.

Legend (paper symbol -> name here). The DDIM paper writes alpha_t for what DDPM calls alpha_bar_t:

    alpha_t (DDIM)        alpha_bar_t = alphas_cumprod[t]
    alpha_{t-1} (DDIM)    alpha_bar_prev = alphas_cumprod[t_prev]   (1.0 when t_prev < 0, i.e. x_0)
    epsilon_theta(x_t)    eps           the noise the network predicts (or that follows from its v)
    v_theta(x_t)          v             v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)
    sigma_t               sigma         eq. 16, scaled by eta (eta=0: deterministic DDIM, eta=1: DDPM)

Timesteps are 0-based: ``t`` in ``[0, T-1]``; ``t = -1`` stands for the clean image x_0.

The network's output ("model output") is read by ``prediction``: the noise eps (DDPM, DDIM, DiffAE,
the study) or the velocity v (Salimans & Ho, "Progressive Distillation", ICLR 2022, sec. 4), which
stays well defined at alpha_bar = 0, where x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)
is not. A schedule rescaled to zero terminal SNR (Lin et al., WACV 2024) needs v.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .config import PREDICTION_CHOICES, SPACING_CHOICES
from .schedules import alphas_cumprod, get_schedule, rescale_zero_terminal_snr


class DDIMStep(NamedTuple):
    """What one DDIM update returns: the next sample and the clean image it was aimed at."""

    prev_sample: torch.Tensor           # x_{t_prev}
    pred_original_sample: torch.Tensor  # x0_hat(x_t, t), the "predicted x_0" of eq. 12


class DDIMScheduler:
    """Schedule plus DDIM updates.

    Args:
        betas: a ``(T,)`` tensor of betas, or a schedule name ("linear" | "cosine").
        num_train_timesteps: T, used when `betas` is a name.
        prediction: what the network outputs, "eps" (noise) or "v" (velocity).
        zero_terminal_snr: rescale the betas so that alpha_bar at T - 1 is 0
            (:func:`~usdiff.model.schedules.rescale_zero_terminal_snr`); needs ``prediction="v"``.
        spacing: the sampling grid, "leading" (DDIM, DiffAE: starts at T - T/steps) or "trailing"
            (Lin et al. 2024, table 2: starts at T - 1, so sampling starts where training's noisiest
            step is).

    Raises:
        ValueError: for an unknown `prediction` or `spacing`, or zero terminal SNR with eps.
    """

    def __init__(self, betas: torch.Tensor | str = "cosine", num_train_timesteps: int = 1000,
                 prediction: str = "eps", zero_terminal_snr: bool = False, spacing: str = "leading"):
        if prediction not in PREDICTION_CHOICES:
            raise ValueError(f"prediction must be one of {PREDICTION_CHOICES}, got {prediction!r}")
        if spacing not in SPACING_CHOICES:
            raise ValueError(f"spacing must be one of {SPACING_CHOICES}, got {spacing!r}")
        if zero_terminal_snr and prediction == "eps":
            raise ValueError("zero_terminal_snr=True needs prediction='v': with alpha_bar = 0 at the last step "
                             "x_0 cannot be computed from an eps prediction")
        if isinstance(betas, str):
            betas = get_schedule(betas, num_train_timesteps)
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas_cumprod = alphas_cumprod(betas)  # (T,) float64, on the CPU
        self.num_train_timesteps = len(betas)
        self.prediction, self.zero_terminal_snr, self.spacing = prediction, bool(zero_terminal_snr), spacing

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The descending grid of `num_inference_steps` timesteps used for sampling.

        "leading" spacing (DDIM and DiffAE) is evenly spaced from 0: for T=1000 and 20 steps
        ``[950, 900, ..., 50, 0]``. "trailing" spacing is evenly spaced down from T - 1:
        ``[999, 949, ..., 99, 49]``. Encoding walks the same grid upwards.

        Raises:
            ValueError: if `num_inference_steps` is < 1 or > T.
        """
        T = self.num_train_timesteps
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= T:
            raise ValueError(f"num_inference_steps must be an int in [1, {T}] (the trained T), "
                             f"got {num_inference_steps!r}")
        k = torch.arange(num_inference_steps, dtype=torch.long)
        if self.spacing == "leading":
            grid = (k * T // num_inference_steps).flip(0)     # ..., floor(2T/n), floor(T/n), 0 (exact integers)
        else:
            step = k.double() * (T / num_inference_steps)
            grid = (T - step).round() - 1                     # T - 1, T - 1 - T/n, ...
        return grid.long()

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

    def split(self, model_output: torch.Tensor, t, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, eps)`` that the network's output at (x_t, t) stands for, by ``self.prediction``.

        eps: x_0 by :meth:`predict_x0`. v (Salimans & Ho 2022, eq. in sec. 4 with alpha = sqrt(abar),
        sigma = sqrt(1 - abar)): x_0 = sqrt(abar) x_t - sqrt(1 - abar) v, eps = sqrt(1 - abar) x_t + sqrt(abar) v.
        """
        if self.prediction == "eps":
            return self.predict_x0(model_output, t, x_t), model_output
        ab = self.alpha_bar(t, x_t)
        return ab.sqrt() * x_t - (1 - ab).sqrt() * model_output, (1 - ab).sqrt() * x_t + ab.sqrt() * model_output

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """What the network is trained to output for ``x_t = add_noise(x0, noise, t)``: eps, or
        ``v = sqrt(abar) eps - sqrt(1 - abar) x0``."""
        if self.prediction == "eps":
            return noise
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def output_from_eps(self, eps: torch.Tensor, t, x_t: torch.Tensor) -> torch.Tensor:
        """The model output that stands for noise `eps` at (x_t, t) (inverse of :meth:`split`'s eps),
        for guidance that edits eps.

        For v: the target of the x_0 that `eps` implies, ``v = sqrt(abar) eps - sqrt(1 - abar) x0(eps)``,
        which needs ``alpha_bar_t > 0``: at abar = 0, x_t is pure noise and eps = x_t whatever v is.

        Raises:
            ValueError: for v at a timestep where alpha_bar is 0.
        """
        if self.prediction == "eps":
            return eps
        if (self.alpha_bar(t, x_t) == 0).any():
            raise ValueError(f"at t={t} alpha_bar is 0: eps = x_t there, so no v output stands for another eps")
        return self.target(self.predict_x0(eps, t, x_t), eps, t)

    # ---- training -----------------------------------------------------------------------------

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) with the given `noise`.

        Args:
            x0: ``(B, C, H, W)`` clean images; noise: same shape; t: ``(B,)`` timesteps in [0, T-1].
        """
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # ---- sampling and inversion ---------------------------------------------------------------

    def step(self, model_output: torch.Tensor, t, t_prev, x_t: torch.Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None, clip_x0: bool = False) -> DDIMStep:
        """One DDIM update x_t -> x_{t_prev} (DDIM eq. 12).

        Args:
            model_output: ``(B, C, H, W)`` the network's eps (or v, by ``self.prediction``) at (x_t, t).
            t, t_prev: current and next (smaller) timestep; ints or ``(B,)`` tensors; ``t_prev=-1`` gives x_0.
            x_t: ``(B, C, H, W)`` current sample.
            eta: 0 = deterministic DDIM, 1 = DDPM-like ancestral noise.
            generator: CPU generator for the noise when ``eta > 0``.
            clip_x0: clamp the predicted x_0 to [-1, 1] (and re-derive eps from it).

        Returns:
            :class:`DDIMStep`: ``prev_sample`` x_{t_prev} and ``pred_original_sample`` x0_hat
            (after `clip_x0`), each ``(B, C, H, W)``; it unpacks as ``x_prev, x0 = step(...)``.
        """
        ab_t = self.alpha_bar(t, x_t)
        ab_prev = self.alpha_bar(t_prev, x_t)

        # 1. "predicted x_0" term of eq. 12: (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t) (or from v)
        x0, eps = self.split(model_output, t, x_t)
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
        return DDIMStep(x_prev, x0)

    def inverse_step(self, model_output: torch.Tensor, t, t_next, x_t: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM inversion update x_t -> x_{t_next}, ``t_next > t``.

        Eq. 12 with eta = 0 run backwards (the ODE view of DDIM, sec. 4.3):
        x_{t_next} = sqrt(alpha_next) * x_0(x_t, eps) + sqrt(1 - alpha_next) * eps.
        ``t = -1`` means `x_t` is the clean image; `model_output` is eps (or v) at (x_t, t).
        """
        ab_next = self.alpha_bar(t_next, x_t)
        x0, eps = self.split(model_output, t, x_t)         # 1. predicted x_0 at the current step
        return ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps  # 2. re-noise it with the same eps

    def exact_inverse_step(self, model_output: torch.Tensor, t, t_next, x_t: torch.Tensor) -> torch.Tensor:
        """The x_{t_next} whose deterministic :meth:`step` to `t` lands on `x_t`, given the model
        output *at* (x_{t_next}, t_next): one update of fixed-point inversion.

        eps: x_next = sqrt(abar_next / abar_t) (x_t - sqrt(1 - abar_t) eps) + sqrt(1 - abar_next) eps
        (this is :meth:`inverse_step`). v: eq. 12 with x_0 and eps from v is linear in x_next,
        x_t = c_x x_next + c_v v with c_x = sqrt(abar_t abar_next) + sqrt((1 - abar_t)(1 - abar_next))
        and c_v = sqrt((1 - abar_t) abar_next) - sqrt(abar_t (1 - abar_next)), so
        x_next = (x_t - c_v v) / c_x, which holds at abar_next = 0 too.
        """
        if self.prediction == "eps":
            return self.inverse_step(model_output, t, t_next, x_t)
        ab, ab_next = self.alpha_bar(t, x_t), self.alpha_bar(t_next, x_t)
        c_x = (ab * ab_next).sqrt() + ((1 - ab) * (1 - ab_next)).sqrt()
        c_v = ((1 - ab) * ab_next).sqrt() - (ab * (1 - ab_next)).sqrt()
        return (x_t - c_v * model_output) / c_x

    def __repr__(self) -> str:
        extra = "" if self.prediction == "eps" else f", prediction={self.prediction!r}"
        extra += ", zero_terminal_snr=True" if self.zero_terminal_snr else ""
        extra += "" if self.spacing == "leading" else f", spacing={self.spacing!r}"
        return f"DDIMScheduler(T={self.num_train_timesteps}{extra})"
