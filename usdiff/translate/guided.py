"""Label-guided SDEdit: keep the simulated anatomy by steering the decoder towards the source's label map.

Simulated ultrasound comes with its label map (from the CT it was simulated from), at translation time
as well. This method uses that: SDEdit from ``t0`` with the transported ``z_sem``
(:class:`~usdiff.translate.sdedit.SDEditTranslator`), and at every reverse step an energy

    E(x_t) = CE(g(x0_hat(x_t)), labels),   x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),

the cross-entropy of a *guide* segmenter ``g`` on the current clean-image estimate against the
source's labels, pushes the noise prediction like classifier guidance (Dhariwal & Nichol 2021,
eps' = eps - sqrt(1 - abar_t) grad log p(y | x_t)) and like the energy-guided SDE of EGSDE (Zhao et
al., NeurIPS 2022, which keeps faithfulness with a low-pass energy instead):

    eps' = eps + scale * sqrt(1 - abar_t) * grad E / rms(grad E).

The gradient goes through the segmenter only (``eps`` is held fixed, so ``d x0_hat / d x_t =
1 / sqrt(abar_t)``), which costs one small segmenter pass per step instead of a UNet backward pass;
normalising it per image makes ``scale`` a step size in units of the noise. Segmentation-guided
translation of simulated ultrasound against hallucinated anatomy: Vitale et al. (2025, CycleGAN).

The guide is trained in :meth:`GuidedTranslator.fit` on the *simulated* training images and their
labels only (with appearance augmentation so that it reads real-looking texture too); it never
sees a real image or a real label, and it is a different network (own data, own seed) from the
anatomy segmenter of :mod:`usdiff.metrics.critics` that judges the results.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.critic_training import train_segmenter
from ..metrics.critics import AnatomySegmenter
from ..utils import model_device
from .base import check_images, register
from .sdedit import SDEditTranslator

__all__ = ["GuidedTranslator"]


@register
class GuidedTranslator(SDEditTranslator):
    """SDEdit + transported ``z_sem`` + guidance by a sim-trained segmenter towards the source labels.

    Args:
        scale: guidance step (0 = plain :class:`SDEditTranslator`).
        guide_steps, guide_width: training steps and width of the guide segmenter trained in :meth:`fit`.
        t0, steps, ilvr, ilvr_until, strength, reg: as :class:`SDEditTranslator`.

    ``translate`` needs ``labels`` ``(B, H, W)`` (the label maps of the simulated inputs).
    """

    name = "guided"

    def __init__(self, scale: float = 1.0, guide_steps: int = 600, guide_width: int = 8, t0: float = 0.5,
                 steps: int = 50,
                 ilvr: int | None = None, ilvr_until: float = 0.0, strength: float = 1.0, reg: float = 1e-3):
        super().__init__(t0=t0, steps=steps, ilvr=ilvr, ilvr_until=ilvr_until, strength=strength, reg=reg)
        if not np.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        if not isinstance(guide_steps, int) or guide_steps < 1:
            raise ValueError(f"guide_steps must be a positive int, got {guide_steps!r}")
        if not isinstance(guide_width, int) or guide_width < 1:
            raise ValueError(f"guide_width must be a positive int, got {guide_width!r}")
        self.scale, self.guide_steps, self.guide_width = float(scale), guide_steps, guide_width
        self._params.update(scale=self.scale, guide_steps=guide_steps, guide_width=guide_width)
        self.guide_ = None

    def _fitted_keys(self):
        return super()._fitted_keys() + ("guide_",)

    def fit(self, model, sim, real, sim_labels=None, batch_size: int = 64, progress: bool = False) -> GuidedTranslator:
        """Fit the code transport (unpaired sim and real codes) and train the guide on sim + `sim_labels`."""
        if sim_labels is None:
            raise ValueError("the guided method trains its guide on the simulated images' label maps: pass sim_labels=")
        sim = check_images(sim, "sim")
        labels = _check_labels(sim_labels, sim)       # before the (long) encoding, not after it
        super().fit(model, sim, real, batch_size=batch_size, progress=progress)
        return self._train_guide(sim, labels, progress)

    def fit_guide(self, sim, sim_labels, progress: bool = False) -> GuidedTranslator:
        """Train the guide segmenter on simulated images ``(N, 1, S, S)`` and their label maps ``(N, S, S)``."""
        sim = check_images(sim, "sim")
        return self._train_guide(sim, _check_labels(sim_labels, sim), progress)

    def _train_guide(self, sim: torch.Tensor, labels: torch.Tensor, progress: bool) -> GuidedTranslator:
        self.guide_, _ = train_segmenter(sim, labels, size=sim.shape[-1], steps=self.guide_steps, seed=1,
                                         width=self.guide_width, progress=progress, desc="guide segmenter")
        return self

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["guide_"] = {"size": self.guide_.size, "width": self.guide_.width,
                           "weights": {k: v.detach().cpu().clone() for k, v in self.guide_.state_dict().items()}}
        return state

    def load_state_dict(self, state: dict) -> GuidedTranslator:
        super().load_state_dict(state)
        g = state["guide_"]
        self.guide_ = AnatomySegmenter(int(g["size"]), int(g["width"]))
        self.guide_.load_state_dict(g["weights"])
        self.guide_.eval()
        return self

    def _guidance(self, model, x, labels):
        if self.scale == 0:
            return None
        if labels is None:
            raise ValueError("the guided method needs the label maps of the simulated inputs: pass labels= "
                             "(CLI: --labels)")
        labels = torch.as_tensor(np.asarray(labels)).long()
        if labels.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(f"labels must be (B, H, W) = {(x.shape[0], *x.shape[-2:])}, got {tuple(labels.shape)}")
        guide = self.guide_.to(model_device(model)).eval()
        labels = labels.to(x.device)
        sched = model.scheduler

        def guidance(x_t, t, eps):
            ab = sched.alpha_bar(t, x_t)
            with torch.enable_grad():
                x_in = x_t.detach().requires_grad_(True)
                x0 = ((x_in - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
                energy = F.cross_entropy(guide(x0), labels, reduction="sum")
                (grad,) = torch.autograd.grad(energy, x_in)
            rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
            return eps + self.scale * (1 - ab).sqrt() * grad / rms

        return guidance


def _check_labels(sim_labels, sim: torch.Tensor) -> torch.Tensor:
    """Label maps ``(N, S, S)`` matching the images ``(N, 1, S, S)``, as a long tensor."""
    labels = torch.as_tensor(np.asarray(sim_labels)).long()
    if labels.shape != (sim.shape[0], *sim.shape[2:]):
        raise ValueError(f"sim_labels must have shape {(sim.shape[0], *sim.shape[2:])} (one label map per sim "
                         f"image), got {tuple(labels.shape)}")
    return labels
