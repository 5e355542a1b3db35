"""SDEdit with the DiffAE decoder, the transported ``z_sem``, and an optional ILVR anchor.

SDEdit (Meng et al., ICLR 2022, arXiv 2108.01073): noise the simulated image *stochastically* to an
intermediate time ``t0``,

    x_{t0} = sqrt(abar_{t0}) x_sim + sqrt(1 - abar_{t0}) eps,   eps ~ N(0, I),

and run the reverse process from there, here the DiffAE's DDIM decoder conditioned on the sim code
moved onto the real code cloud (:mod:`usdiff.translate.transport`). Small ``t0`` keeps the structure
and changes little; large ``t0`` changes more and keeps less. Unlike a deterministically inverted
``x_T``, the fresh noise is not locked to the simulated texture, so the decoder can draw speckle.

ILVR (Choi et al., ICCV 2021, arXiv 2108.02938) anchors the coarse structure: after every reverse
step the low-pass part of ``x_{t-1}`` is replaced by that of the source noised to the same time,

    x_{t-1} <- x_{t-1} - phi_N(x_{t-1}) + phi_N(y_{t-1}),   y_{t-1} ~ q(y_{t-1} | x_sim),

with ``phi_N`` = average-pool by ``N``, then upsample: structure coarser than ``N`` pixels follows
the source. ``ilvr_until`` stops the anchor at that fraction of T so the last, fine-detail steps
are free (ILVR's "conditioning range").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils import check_positive_ints
from .base import register
from .transport import TransportFit

__all__ = ["low_pass", "start_grid", "noise_to", "ilvr_anchor", "SDEditTranslator"]


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``phi_N``: average-pool by `factor`, then bilinear upsampling back to the input size."""
    if not isinstance(factor, int) or factor < 1 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"factor must be a positive int dividing the image side {tuple(x.shape[-2:])}, got {factor!r}")
    if factor == 1:
        return x
    return F.interpolate(F.avg_pool2d(x, factor), size=x.shape[-2:], mode="bilinear", align_corners=False)


def start_grid(scheduler, t0: float, steps: int) -> list[int]:
    """The descending DDIM timesteps at or below ``t0 * T`` of the `steps`-point grid (at least one)."""
    if not 0.0 < t0 <= 1.0:
        raise ValueError(f"t0 must be in (0, 1], got {t0}")
    grid = scheduler.set_timesteps(steps).tolist()
    limit = t0 * (scheduler.num_train_timesteps - 1)
    kept = [t for t in grid if t <= limit]
    return kept or grid[-1:]


def noise_to(scheduler, x0: torch.Tensor, t: int, generator: torch.Generator | None) -> torch.Tensor:
    """A sample of ``q(x_t | x_0)`` with noise from `generator` (CPU), on `x0`'s device."""
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    return scheduler.add_noise(x0, noise, torch.full((len(x0),), t, dtype=torch.long))


def ilvr_anchor(scheduler, source: torch.Tensor, factor: int, until: float, generator):
    """The ILVR update as a :meth:`usdiff.model.DiffAE.denoise` ``on_step`` hook: after each step down
    to ``until * T`` the low-pass part of ``x_{t-1}`` is replaced by that of `source` noised to
    ``t - 1``; the last step (to x_0) and the steps below ``until * T`` are left free."""
    limit = until * (scheduler.num_train_timesteps - 1)

    def anchor(t_prev, x_prev, x0):
        if t_prev < 0 or t_prev < limit:
            return None
        y = noise_to(scheduler, source, t_prev, generator)
        return x_prev - low_pass(x_prev, factor) + low_pass(y, factor)

    return anchor


@register
class SDEditTranslator(TransportFit):
    """SDEdit from ``t0`` with the transported ``z_sem`` (and an optional ILVR anchor).

    Args:
        t0: noise level to start from, as a fraction of T (0.3-0.6 typical).
        steps: DDIM grid over the full [0, T) (only the steps below ``t0`` are run).
        ilvr: ILVR down-sampling factor N (None: no anchor); must divide the image side.
        ilvr_until: the anchor acts from ``t0`` down to this fraction of T.
        strength, reg: of the code transport (see :class:`~usdiff.translate.transport.TransportTranslator`);
            ``strength=0`` keeps the source's own code (plain SDEdit); `reg` is a fit setting.
    """

    name = "sdedit"

    def __init__(self, t0: float = 0.5, steps: int = 50, ilvr: int | None = None, ilvr_until: float = 0.0,
                 strength: float = 1.0, reg: float = 1e-3):
        super().__init__(strength, reg)
        if not 0.0 < float(t0) <= 1.0:
            raise ValueError(f"t0 must be in (0, 1], got {t0}")
        check_positive_ints(steps=steps)
        if ilvr is not None and (not isinstance(ilvr, int) or ilvr < 1):
            raise ValueError(f"ilvr must be None or a positive int (the down-sampling factor N), got {ilvr!r}")
        if not 0.0 <= float(ilvr_until) <= 1.0:
            raise ValueError(f"ilvr_until must be in [0, 1], got {ilvr_until}")
        self.t0, self.steps, self.ilvr, self.ilvr_until = float(t0), steps, ilvr, float(ilvr_until)

    def _guidance(self, model, x, labels):
        return None

    def translate(self, model, x, generator=None, progress: bool = False, labels=None) -> torch.Tensor:
        x = self._prepare(model, x)
        if self.ilvr and x.shape[-1] % self.ilvr:
            raise ValueError(f"ilvr={self.ilvr} must divide the image side {x.shape[-1]}")
        sched = model.scheduler
        with torch.no_grad():
            z = self.move(model.encode(x))
        grid = start_grid(sched, self.t0, self.steps)
        x_t = noise_to(sched, x, grid[0], generator)
        anchor = ilvr_anchor(sched, x, self.ilvr, self.ilvr_until, generator) if self.ilvr else None
        out = model.denoise(x_t, z, grid, guidance=self._guidance(model, x, labels), on_step=anchor,
                            progress=progress)
        return out.clamp(-1, 1)
