"""Label-guided SDEdit: keep the simulated anatomy by steering the decoder towards the source's label map.

Simulated ultrasound comes with its label map (from the CT it was simulated from), at translation time
as well. This method uses that: SDEdit from ``t0`` with the transported ``z_sem``
(:class:`~usdiff.translate.sdedit.SDEditTranslator`), and at every reverse step an energy

    E(x_t) = CE(g(x0_hat(x_t)), labels),

the cross-entropy of a *guide* segmenter ``g`` on the current clean-image estimate against the
source's labels, pushes the noise prediction like classifier guidance (Dhariwal & Nichol 2021,
eps' = eps - sqrt(1 - abar_t) grad log p(y | x_t)) and like the energy-guided SDE of EGSDE (Zhao et
al., NeurIPS 2022, which keeps faithfulness with a low-pass energy instead):

    eps' = eps + scale * sqrt(1 - abar_t) * grad E / rms(grad E).

``x0_hat`` is read with the network's noise prediction held fixed (``DDIMScheduler.split`` gives
eps for an eps- or a v-model), so ``d x0_hat / d x_t = 1 / sqrt(abar_t)``. Where ``abar = 0`` (the
first step of a zero-terminal-SNR v-model) x_t is pure noise, x0_hat cannot be read from eps and
the step is left unguided.

The gradient goes through the segmenter only (the network output is held fixed), which costs one small segmenter pass per step instead of a UNet backward pass;
normalising it per image makes ``scale`` a step size in units of the noise. Segmentation-guided
translation of simulated ultrasound against hallucinated anatomy: Vitale et al. (2025, CycleGAN).

The guide is trained in :meth:`GuidedTranslator.fit` on the *simulated* training images and their
labels only (with appearance augmentation so that it reads real-looking texture too); it never
sees a real image or a real label, and it is a different network (own data, own seed) from the
anatomy segmenter of :mod:`usdiff.metrics.critics` that judges the results.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.critic_training import SEGMENTER_TRAINING, train_segmenter
from ..metrics.critics import AnatomySegmenter
from ..utils import check_positive_ints, model_device
from .base import check_images, register
from .sdedit import SDEditTranslator

__all__ = ["GuidedTranslator"]


@register
class GuidedTranslator(SDEditTranslator):
    """SDEdit + transported ``z_sem`` + guidance by a sim-trained segmenter towards the source labels.

    Args:
        scale: guidance step (0 = plain :class:`SDEditTranslator`: no guidance at all).
        guide_steps, guide_width: training steps and width of the guide segmenter trained in
            :meth:`fit` (fit settings, like `reg`).
        t0, steps, ilvr, ilvr_until, strength, reg: as :class:`SDEditTranslator`.

    ``fit`` needs ``sim_labels``; ``translate`` needs ``labels`` ``(B, H, W)`` (the label maps of the
    simulated inputs) when ``scale > 0``.
    """

    name = "guided"
    needs_labels = True
    fit_settings = ("reg", "guide_steps", "guide_width")
    fitted_attrs = SDEditTranslator.fitted_attrs + ("guide_",)

    def __init__(self, scale: float = 1.0, guide_steps: int = 600, guide_width: int = 8, t0: float = 0.5,
                 steps: int = 50, ilvr: int | None = None, ilvr_until: float = 0.0, strength: float = 1.0,
                 reg: float = 1e-3):
        super().__init__(t0=t0, steps=steps, ilvr=ilvr, ilvr_until=ilvr_until, strength=strength, reg=reg)
        if not np.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        check_positive_ints(guide_steps=guide_steps, guide_width=guide_width)
        self.scale, self.guide_steps, self.guide_width = float(scale), guide_steps, guide_width
        self.guide_ = None

    def _fit_images(self, model, sim, real, sim_labels, seed, progress):
        """The code transport (unpaired sim and real codes), then the guide trained on sim + `sim_labels`
        (seeded ``seed + 1``, so that it never shares an initialisation with a seed-`seed` network)."""
        labels = _check_labels(sim_labels, sim)       # before the (long) encoding, not after it
        super()._fit_images(model, sim, real, sim_labels, seed, progress)
        self._train_guide(sim, labels, seed + 1, progress)

    def fit_guide(self, sim, sim_labels, seed: int = 0, progress: bool = False) -> GuidedTranslator:
        """Train the guide segmenter alone on simulated images ``(N, 1, S, S)`` and their label maps
        ``(N, S, S)`` (seeded ``seed + 1`` as in :meth:`fit`)."""
        sim = check_images(sim, "sim")
        return self._train_guide(sim, _check_labels(sim_labels, sim), seed + 1, progress)

    def _train_guide(self, sim: torch.Tensor, labels: torch.Tensor, seed: int, progress: bool) -> GuidedTranslator:
        training = replace(SEGMENTER_TRAINING, train_steps=self.guide_steps, width=self.guide_width, seed=seed)
        self.guide_, _ = train_segmenter(sim, labels, sim.shape[-1], training, progress=progress,
                                         desc="guide segmenter")
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

    @property
    def reads_labels(self) -> bool:
        return self.scale > 0

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

        def guidance(x_t, t, out):
            ab = sched.alpha_bar(t, x_t)
            if (ab == 0).all():
                return out                            # pure noise: x0_hat does not depend on x_t
            eps = sched.split(out.detach(), t, x_t)[1]            # held fixed: d x0_hat / d x_t = 1 / sqrt(abar)
            x_in = x_t.detach().requires_grad_(True)
            x0 = sched.predict_x0(eps, t, x_in).clamp(-1, 1)
            energy = F.cross_entropy(guide(x0), labels, reduction="sum")
            (grad,) = torch.autograd.grad(energy, x_in)
            rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
            return sched.output_from_eps(eps + self.scale * (1 - ab).sqrt() * grad / rms, t, x_t)

        return guidance


def _check_labels(sim_labels, sim: torch.Tensor) -> torch.Tensor:
    """Label maps ``(N, S, S)`` matching the images ``(N, 1, S, S)``, as a long tensor."""
    labels = torch.as_tensor(np.asarray(sim_labels)).long()
    if labels.shape != (sim.shape[0], *sim.shape[2:]):
        raise ValueError(f"sim_labels must have shape {(sim.shape[0], *sim.shape[2:])} (one label map per sim "
                         f"image), got {tuple(labels.shape)}")
    return labels
