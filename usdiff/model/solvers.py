"""DPM-Solver++(2M) (Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided
Sampling of Diffusion Probabilistic Models", arXiv 2211.01095, Algorithm 2): a second-order
multistep solver of the probability-flow ODE that DDIM solves to first order, so that fewer network
passes reach the same image.

The solver holds no schedule of its own: it reads alpha_bar and the network's output through a
:class:`~usdiff.model.ddim.DDIMScheduler` (``split`` gives x0_hat for eps and v models alike), and each
of its updates is DDIM's update plus a correction, so a first-order step *is* ``DDIMScheduler.step``.

Legend (paper symbol -> name here):

    alpha_t, sigma_t      sqrt(abar_t), sqrt(1 - abar_t)     (abar = scheduler.alphas_cumprod; 1 at t = -1)
    lambda_t              log(alpha_t / sigma_t), the half log-SNR: -inf where abar = 0, +inf at x_0
    x_theta(x_t, t)       x0_hat, the data prediction (``DDIMStep.pred_original_sample``)
    h_i                   lambda_{t_i} - lambda_{t_{i-1}}, the step in lambda (< 0 when inverting)
    r_i                   h_{i-1} / h_i
    D_i                   (1 + 1/(2 r_i)) x_theta(t_{i-1}) - 1/(2 r_i) x_theta(t_{i-2})

Algorithm 2 (here t = t_{i-1} is the current point, t_next = t_i the next one, t_last = t_{i-2}):

    first step:  x_next = (sigma_next / sigma_t) x_t - alpha_next (e^{-h} - 1) x_theta(x_t, t)       (DPM-Solver++1)
    later steps: x_next = (sigma_next / sigma_t) x_t - alpha_next (e^{-h} - 1) D

DPM-Solver++1 is DDIM: with ``alpha_next e^{-h} = sigma_next alpha_t / sigma_t``
it reads ``x_next = alpha_next x0_hat + sigma_next (x_t - alpha_t x0_hat) / sigma_t =
alpha_next x0_hat + sigma_next eps_hat``. Writing ``D = x0_hat + (1/(2r)) (x0_hat - x0_last)``, the
second-order update is that DDIM update plus

    correction = K * (1 / (2 r)) * (x0_hat - x0_last),   K = alpha_next (1 - e^{-h}) = alpha_next - sigma_next alpha_t / sigma_t

which is how it is computed (:meth:`DPMSolverPP2M.correct`).

The ends of the schedule, exactly (no clamping of abar):

* abar_t = 0 (zero terminal SNR, the first step from pure noise; lambda_t = -inf): a first step is
  first order, i.e. DDIM, ``x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next) x_t`` since
  sigma_t = 1, alpha_t = 0 and eps_hat = x_t there (``split`` of a v output at abar = 0 gives
  x0_hat = -v, eps_hat = x_t). At the step after it ``h_last = +inf``, so ``1/(2r) = h / (2 h_last) = 0``:
  the limit of Algorithm 2 is the first-order update, and it is taken as such.
* abar_next = 1 (the last step, to x_0; lambda_next = +inf): ``h = +inf`` and the linear
  extrapolation of x_theta in lambda to lambda = +inf diverges, so the step is first order (as
  diffusers' ``DPMSolverMultistepScheduler`` does with ``final_sigmas_type="zero"``): DDIM with
  abar_prev = 1 returns x0_hat itself.
* abar_next = 0 (inversion up to pure noise) is the mirror image: ``h = -inf``, first order.

So: second order wherever both log-SNR steps h and h_last are finite, first order otherwise.

One guard that Algorithm 2 does not have (``DPMSolverConfig.min_r``, 0 turns it off): a step with
``r = h_last / h < 1/2`` is first order. D_i extrapolates x_theta linearly in lambda from the
previous interval to the middle of this one; with r < 1/2 that reaches farther than the interval the
slope was measured on. The "leading" grid has such a step at its end, into t = 0 (abar_0 = 0.99996
for the cosine schedule, lambda_0 = 5.0): at 10 / 20 steps h = 3.3 / 2.6 after h_last = 0.68 /
0.63 (r = 0.21 / 0.24), and x_theta, which saturates as lambda grows, is overshot: with the exact
Gaussian denoiser the unguarded 2M lands farther from the exact solution than DDIM. "Trailing"
grids (the shipped checkpoint's) have r >= 0.62 everywhere, so the guard never acts there. (Lu et
al.'s convergence analysis, like any multistep method's, assumes bounded step ratios.)

Inversion: Algorithm 2 never asks for the sign of h, so the same multistep update run upwards in
time (x_0 -> x_T, h < 0, :meth:`DPMSolverPP2M.inverse_step`) is a second-order solver of the same
ODE, as in DPM-Solver-based inversions (diffusers' ``DPMSolverMultistepInverseScheduler``). Like
plain DDIM inversion it is not the exact inverse of the decoding steps (each step uses the
prediction at its start); unlike DDIM's fixed-point refinement there is no exact inverse to refine
towards, because a decoding step from x_next also needs x0_hat at the point *above* x_next,
which is not known when walking upwards.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .ddim import DDIMScheduler, DDIMStep

SOLVER_CHOICES = ("ddim", "dpmpp2m")


def check_solver(solver: str) -> str:
    """`solver` if it names a sampler of :meth:`DiffAE.decode`; ValueError listing the choices otherwise."""
    if solver not in SOLVER_CHOICES:
        raise ValueError(f"solver must be one of {SOLVER_CHOICES}, got {solver!r}")
    return solver


@dataclass(frozen=True)
class DPMSolverConfig:
    """Settings of :class:`DPMSolverPP2M`, fixed at construction.

    Args:
        order: 2 = DPM-Solver++(2M) (Algorithm 2); 1 = DPM-Solver++1, which is DDIM (for comparisons).
        min_r: a step whose ratio ``r = h_last / h`` of log-SNR steps is below this is taken at first
            order (module docstring); 0 = Algorithm 2 as published.
    """

    order: int = 2
    min_r: float = 0.5

    def __post_init__(self):
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 (DDIM) or 2 (DPM-Solver++(2M)), got {self.order!r}")
        if not self.min_r >= 0:
            raise ValueError(f"min_r must be >= 0 (0 = Algorithm 2 unguarded), got {self.min_r!r}")


class DPMSolverPP2M:
    """DPM-Solver++(2M): the multistep second-order data-prediction solver (Algorithm 2).

    It keeps the previous step's x0_hat (a multistep method), so use one solver per trajectory or
    call :meth:`reset` between trajectories. A step continues the trajectory only if its ``t`` is
    the previous step's ``t_prev``; otherwise it starts a new one (first order).

    Args:
        scheduler: the schedule and the reading of the network's output (eps or v).
        order, min_r: see :class:`DPMSolverConfig` (kept as ``self.config``).
    """

    def __init__(self, scheduler: DDIMScheduler, order: int = 2, min_r: float = 0.5):
        self.config = DPMSolverConfig(order=order, min_r=min_r)
        self.scheduler = scheduler
        self._last: tuple | None = None    # the previous step's (t, lambda_t, x0_hat, t_prev)

    def reset(self) -> DPMSolverPP2M:
        """Forget the previous step: the next step is a first (first-order) step."""
        self._last = None
        return self

    # ---- coefficients -------------------------------------------------------------------------

    def _abar(self, t, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at `t` in float64, shaped ``(B|1, 1, ...)`` for `like`."""
        return self.scheduler.alpha_bar(t, like.new_empty((1,) * like.ndim, dtype=torch.float64))

    @staticmethod
    def log_snr(abar: torch.Tensor) -> torch.Tensor:
        """lambda = log(alpha / sigma) = (log abar - log(1 - abar)) / 2: -inf at abar = 0, +inf at abar = 1."""
        abar = abar.double()
        return 0.5 * (torch.log(abar) - torch.log1p(-abar))

    @staticmethod
    def _same(a, b) -> bool:
        return torch.equal(torch.as_tensor(a).cpu().reshape(-1), torch.as_tensor(b).cpu().reshape(-1))

    # ---- updates ------------------------------------------------------------------------------

    def correct(self, t, t_prev, x_first: torch.Tensor, x0_hat: torch.Tensor) -> torch.Tensor:
        """The 2M update from the first-order (DDIM) update `x_first` of the same step t -> t_prev.

        ``x_first + K (1/(2r)) (x0_hat - x0_last)`` with ``K = alpha_next - sigma_next alpha_t / sigma_t``
        and ``1/(2r) = h / (2 h_last)`` (module docstring); `x_first` itself where the step is first
        order (a first step, an infinite h or h_last, or r < ``config.min_r``). Records
        ``(t, x0_hat)`` for the next step. Works in either direction of time.

        Args:
            t, t_prev: this step's start and end (ints or ``(B,)`` tensors; -1 = x_0).
            x_first: ``(B, C, H, W)`` the DDIM update (``DDIMScheduler.step`` or ``inverse_step``).
            x0_hat: ``(B, C, H, W)`` x_theta(x_t, t).
        """
        last = self._last
        cont = last is not None and self._same(last[3], t)
        if cont and last[2].shape != x0_hat.shape:
            raise ValueError(f"x0_hat has shape {tuple(x0_hat.shape)} but the trajectory's previous step had "
                             f"{tuple(last[2].shape)}: call reset() before a new trajectory")
        ab_t, ab_next = self._abar(t, x0_hat), self._abar(t_prev, x0_hat)
        lam_t, lam_next = self.log_snr(ab_t), self.log_snr(ab_next)   # lambda_{t_{i-1}}, lambda_{t_i}
        self._last = (t, lam_t, x0_hat, t_prev)
        if self.config.order == 1 or not cont:
            return x_first                                          # first step: DPM-Solver++1 = DDIM
        h, h_last = lam_next - lam_t, lam_t - last[1]               # h_i, h_{i-1}
        second = torch.isfinite(h) & torch.isfinite(h_last)         # both steps between finite log-SNRs
        second &= h_last.abs() >= self.config.min_r * h.abs()       # r_i >= min_r (the guard, module docstring)
        if not second.any():
            return x_first                                          # to x_0, from or to pure noise: DDIM
        half_inv_r = torch.where(second, h / (2 * torch.where(second, h_last, 1.0)), 0.0)  # 1 / (2 r_i)
        # K = -alpha_{t_i} (e^{-h_i} - 1) = alpha_next - sigma_next alpha_t / sigma_t (sigma_t > 0 here)
        k = torch.where(second, ab_next.sqrt() - (1 - ab_next).sqrt() * ab_t.sqrt() / (1 - ab_t).sqrt(), 0.0)
        # Algorithm 2: x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i,
        # D_i = x0_hat + (1 / (2 r_i)) (x0_hat - x0_last): the DDIM update (D_i = x0_hat) plus K (1/(2 r_i)) (...)
        coef = (k * half_inv_r).to(x_first.dtype)
        return x_first + coef * (x0_hat - last[2])

    def step(self, model_output: torch.Tensor, t, t_prev, x_t: torch.Tensor) -> DDIMStep:
        """One DPM-Solver++(2M) update x_t -> x_{t_prev} (``t_prev < t``; -1 = x_0).

        Args:
            model_output: ``(B, C, H, W)`` the network's eps or v (by the scheduler's ``prediction``) at (x_t, t).
            t, t_prev: current and next timestep (ints or ``(B,)`` tensors).
            x_t: ``(B, C, H, W)`` current sample.

        Returns:
            :class:`DDIMStep` ``(prev_sample, pred_original_sample)``: the next sample and x0_hat(x_t, t);
            at ``t_prev = -1`` the next sample is x0_hat.
        """
        first = self.scheduler.step(model_output, t, t_prev, x_t)  # DPM-Solver++1 = DDIM (eta = 0)
        return DDIMStep(self.correct(t, t_prev, first.prev_sample, first.pred_original_sample),
                        first.pred_original_sample)

    def inverse_step(self, model_output: torch.Tensor, t, t_next, x_t: torch.Tensor) -> torch.Tensor:
        """One DPM-Solver++(2M) update upwards, x_t -> x_{t_next} (``t_next > t``; ``t = -1``: x_t is x_0),
        with `model_output` evaluated at (x_t, t): DDIM inversion (``DDIMScheduler.inverse_step``)
        plus the same second-order correction (h < 0)."""
        first = self.scheduler.inverse_step(model_output, t, t_next, x_t)
        return self.correct(t, t_next, first, self.scheduler.split(model_output, t, x_t)[0])

    def on_step(self, timesteps: Sequence[int]) -> Callable:
        """A hook for :meth:`DiffAE.denoise` (``on_step=``) that turns its DDIM loop over the descending
        `timesteps` (then to -1) into DPM-Solver++(2M): each DDIM update ``x_prev`` of step k is
        replaced by :meth:`correct` of it. Resets the solver."""
        grid = [int(t) for t in timesteps]
        pairs = iter(zip(grid, grid[1:] + [-1]))
        self.reset()

        def hook(t_prev, x_prev, x0_hat):
            t, expected = next(pairs)
            if int(t_prev) != expected:
                raise RuntimeError(f"the loop stepped to t={t_prev}, the solver expected {expected}")
            return self.correct(t, t_prev, x_prev, x0_hat)
        return hook

    def __repr__(self) -> str:
        return f"DPMSolverPP2M(order={self.config.order}, min_r={self.config.min_r}, {self.scheduler!r})"
