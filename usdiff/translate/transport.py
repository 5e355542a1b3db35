"""Gaussian optimal transport of the semantic codes: the whole sim code cloud onto the real one.

Fit a Gaussian to the (normalised) codes of each domain, ``N(mu_s, S_s)`` and ``N(mu_r, S_r)``. The
optimal-transport (Monge) map between them for the squared Euclidean cost is affine,

    T(z) = mu_r + A (z - mu_s),   A = S_s^{-1/2} (S_s^{1/2} S_r S_s^{1/2})^{1/2} S_s^{-1/2},

with ``A`` symmetric positive definite and ``A S_s A = S_r``: transported sim codes have exactly the
real codes' mean and covariance, and the map is monotone (the gradient of a convex function):
``(T(a) - T(b)) . (a - b) >= 0`` for every two codes, so no pair of codes is moved past each other
along the line that joins them (in one dimension: the order of the codes is kept). The
squared 2-Wasserstein distance between the two Gaussians is the Fréchet distance of the codes.
A classifier direction, by contrast, shifts every code by the same vector along one axis.
"""
from __future__ import annotations

import numpy as np
import torch

from ..latent import ZNormalizer
from ..utils import check_positive_ints
from .base import Translator, register

__all__ = ["gaussian_transport", "apply_transport", "TransportFit", "TransportTranslator"]


def _sym_sqrt(m: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Square root (or inverse square root) of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    w = np.clip(w, 1e-12, None)
    return (v * (w ** (-0.5 if inverse else 0.5))) @ v.T


def gaussian_transport(z_src, z_tgt, reg: float = 1e-3) -> dict:
    """The Monge map between Gaussian fits of two code clouds ``(N, D)`` and ``(M, D)``.

    Args:
        reg: ridge added to each covariance, as a fraction of its mean variance (keeps the
            inverse square root finite when N is not much larger than D).

    Returns:
        ``{"mean_src", "mean_tgt", "A"}`` (float64 arrays): ``T(z) = mean_tgt + (z - mean_src) A``.
    """
    z_src, z_tgt = np.asarray(z_src, np.float64), np.asarray(z_tgt, np.float64)
    if z_src.ndim != 2 or z_tgt.ndim != 2 or z_src.shape[1] != z_tgt.shape[1]:
        raise ValueError(f"z_src and z_tgt must be (N, D) with the same D, got {z_src.shape} and {z_tgt.shape}")
    if min(len(z_src), len(z_tgt)) < 2:
        raise ValueError("z_src and z_tgt need at least 2 codes each")
    if not reg >= 0:
        raise ValueError(f"reg must be >= 0, got {reg}")

    def cov(z):
        c = np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
        return c + reg * np.trace(c) / len(c) * np.eye(len(c))

    s_src, s_tgt = cov(z_src), cov(z_tgt)
    root = _sym_sqrt(s_src)
    inv_root = _sym_sqrt(s_src, inverse=True)
    a = inv_root @ _sym_sqrt(root @ s_tgt @ root) @ inv_root
    return {"mean_src": z_src.mean(0), "mean_tgt": z_tgt.mean(0), "A": (a + a.T) / 2}


def apply_transport(z, transport: dict, strength: float = 1.0):
    """``z + strength (T(z) - z)`` for codes ``(B, D)`` (torch or numpy; the same type comes back)."""
    as_torch = isinstance(z, torch.Tensor)
    zn = z.detach().cpu().double().numpy() if as_torch else np.asarray(z, np.float64)
    moved = np.asarray(transport["mean_tgt"]) + (zn - np.asarray(transport["mean_src"])) @ np.asarray(transport["A"])
    out = zn + float(strength) * (moved - zn)
    return torch.as_tensor(out, dtype=z.dtype, device=z.device) if as_torch else out


class TransportFit(Translator):
    """Base of the methods that move ``z_sem`` with the Gaussian transport map (in normalised space).

    `reg` is a fit setting (it shapes the fitted map); `strength` a knob.
    """

    fit_settings = ("reg",)
    fitted_attrs = ("transport_", "normalizer_")

    def __init__(self, strength: float = 1.0, reg: float = 1e-3):
        if not np.isfinite(strength):
            raise ValueError(f"strength must be finite, got {strength}")
        if not reg >= 0:
            raise ValueError(f"reg must be >= 0, got {reg}")
        self.strength, self.reg = float(strength), float(reg)
        self.transport_ = None
        self.normalizer_ = None

    def _fit_codes(self, z_sim, z_real, seed, progress):
        self.normalizer_ = ZNormalizer().fit(np.concatenate([z_sim, z_real]))
        self.transport_ = gaussian_transport(self.normalizer_.transform(z_sim), self.normalizer_.transform(z_real),
                                             reg=self.reg)

    def move(self, z):
        """Transported codes ``(B, D)`` (torch or numpy), at this method's `strength`."""
        self.check_fitted()
        norm = self.normalizer_
        zn = z.detach().cpu().double().numpy() if isinstance(z, torch.Tensor) else z
        moved = norm.inverse_transform(apply_transport(norm.transform(zn), self.transport_, self.strength))
        if isinstance(z, torch.Tensor):
            return torch.as_tensor(moved, dtype=z.dtype, device=z.device)
        return moved

    def state_dict(self) -> dict:
        self.check_fitted()
        return {"transport_": {k: torch.from_numpy(np.asarray(v).copy()) for k, v in self.transport_.items()},
                "normalizer_": self.normalizer_.state_dict()}

    def load_state_dict(self, state: dict) -> TransportFit:
        self.transport_ = {k: np.asarray(v, np.float64) for k, v in state["transport_"].items()}
        self.normalizer_ = ZNormalizer.from_state_dict(state["normalizer_"])
        return self


@register
class TransportTranslator(TransportFit):
    """Move ``z_sem`` with the Gaussian optimal-transport map; decode with the image's own ``x_T``.

    Args:
        strength: 0 = the reconstruction, 1 = the full map ``T(z)``, in between along ``z -> T(z)``.
        reg: covariance ridge (see :func:`gaussian_transport`); a fit setting.
        encode_steps, decode_steps: DDIM steps of the inversion and of the decoding.
    """

    name = "transport"

    def __init__(self, strength: float = 1.0, reg: float = 1e-3, encode_steps: int = 100, decode_steps: int = 100):
        super().__init__(strength, reg)
        check_positive_ints(encode_steps=encode_steps, decode_steps=decode_steps)
        self.encode_steps, self.decode_steps = encode_steps, decode_steps

    @torch.no_grad()
    def translate(self, model, x, generator=None, progress: bool = False, labels=None) -> torch.Tensor:
        x = self._prepare(model, x)
        z = model.encode(x)
        x_T = model.encode_stochastic(x, z, steps=self.encode_steps, progress=progress)
        return model.decode(x_T, self.move(z), steps=self.decode_steps, progress=progress)
