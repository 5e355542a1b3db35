"""Paths between two images in ``(z_sem, x_T)`` space: lerp, slerp and :func:`interpolate`.

``z_sem`` moves linearly, ``x_T`` spherically (slerp; the Gaussian ``x_T`` lives near a sphere of
radius ``sqrt(H W)``, where a straight line would cut through the low-norm interior); every step is
DDIM-decoded.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model import DDIMSteps
from ..utils import model_device as _model_device

__all__ = ["lerp", "slerp", "interpolate", "as_one_image", "decode_in_batches"]


# ---- interpolation paths -----------------------------------------------------------------------

def _as_t(t, a: torch.Tensor) -> torch.Tensor:
    """`t` as a ``(B, 1)`` column (float or ``(B,)``) in `a`'s dtype and device."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.ndim == 0:
        return t.expand(len(a)).reshape(-1, 1)
    if t.ndim != 1 or len(t) != len(a):
        raise ValueError(f"t must be a number or a (B,) tensor with B={len(a)}, got shape {tuple(t.shape)}")
    return t.reshape(-1, 1)


def _pair(a: torch.Tensor, b: torch.Tensor):
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError("a and b must be torch tensors")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    single = a.ndim == 1
    return (a[None], b[None], single) if single else (a, b, single)


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """``(1 - t) a + t b`` row by row: ``a, b`` ``(B, ...)`` (or ``(D,)``), `t` a number or ``(B,)``."""
    a, b, single = _pair(a, b)
    tt = _as_t(t, a).reshape(-1, *([1] * (a.ndim - 1)))
    out = (1 - tt) * a + tt * b
    return out[0] if single else out


def slerp(a: torch.Tensor, b: torch.Tensor, t, eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation of each flattened row of ``a, b`` ``(B, ...)`` (or one ``(D,)``).

    ``slerp = sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b`` with
    ``theta = arccos(a . b / (|a| |b|))``. It gives `a` at ``t = 0`` and `b` at ``t = 1`` and keeps
    the norm when ``|a| = |b|``. Rows whose ``sin(theta) < eps`` (nearly parallel or opposite,
    where the great circle is ill-defined) fall back to :func:`lerp`.
    """
    a, b, single = _pair(a, b)
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    tt = _as_t(t, fa)
    cos = (fa * fb).sum(1, keepdim=True) / (fa.norm(dim=1, keepdim=True) * fb.norm(dim=1, keepdim=True)).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    ok = sin >= eps
    safe = torch.where(ok, sin, torch.ones_like(sin))
    c0 = torch.where(ok, torch.sin((1 - tt) * theta) / safe, 1 - tt)
    c1 = torch.where(ok, torch.sin(tt * theta) / safe, tt)
    out = (c0 * fa + c1 * fb).reshape(a.shape)
    return out[0] if single else out


# ---- helpers -----------------------------------------------------------------------------------

def as_one_image(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` -> ``(1, C, H, W)``; ValueError naming `name` otherwise."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise ValueError(f"{name} must be one image (H, W), (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x


def _chunks(n: int, size: int | None):
    size = n if not size else size
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def decode_in_batches(model, x_T, z, steps, batch_size, progress, desc):
    """``model.decode`` of ``(x_T, z)`` in chunks of `batch_size` (all at once when None)."""
    out = []
    chunks = list(_chunks(len(x_T), batch_size))
    for sl in tqdm(chunks, desc=desc, disable=not progress or len(chunks) == 1, leave=False):
        out.append(model.decode(x_T[sl], z[sl], steps=steps, progress=progress and len(chunks) == 1))
    return torch.cat(out)


# ---- interpolation -----------------------------------------------------------------------------

X_T_PATHS = ("slerp", "lerp", "fixed")


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, n_steps: int = 10, *, ddim: DDIMSteps | None = None,
                x_T: torch.Tensor | None = None, x_T_path: str = "slerp", progress: bool = True) -> dict:
    """Images along the path from `x_a` to `x_b` in ``(z_sem, x_T)`` space.

    ``z(alpha) = (1 - alpha) z_a + alpha z_b`` and ``x_T(alpha) = slerp(x_T_a, x_T_b, alpha)`` for
    ``alpha = linspace(0, 1, n_steps)`` (the study: 10 steps); the first and last images are
    the DDIM reconstructions of the inputs.

    Args:
        model: a :class:`usdiff.model.DiffAE`.
        x_a, x_b: one image each, ``(1, 1, H, W)`` / ``(1, H, W)`` / ``(H, W)`` in [-1, 1].
        n_steps: number of images on the path (>= 2).
        ddim: step counts of the inversion and the decoding (default :class:`~usdiff.model.DDIMSteps`:
            100 each way, plain inversion).
        x_T: None: DDIM inversion of each input with its own ``z_sem``; or a ``(2, 1, H, W)`` tensor,
            e.g. random codes ``model.random_x_T(2, steps=ddim.decode, prior=..., generator=...)``.
        x_T_path: how ``x_T`` moves: ``"slerp"`` (the study; keeps the norm of Gaussian noise),
            ``"lerp"`` (straight line: the midpoint's norm shrinks by up to sqrt(2), a blurrier image),
            or ``"fixed"`` (the source's ``x_T`` all along: only ``z_sem`` moves).

    Returns:
        dict with ``images`` ``(n_steps, 1, H, W)`` in [-1, 1], ``alphas`` ``(n_steps,)``,
        ``z`` ``(n_steps, D)`` and ``x_T`` ``(n_steps, 1, H, W)``.
    """
    ddim = ddim if ddim is not None else DDIMSteps()
    if not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an int >= 2, got {n_steps!r}")
    if x_T_path not in X_T_PATHS:
        raise ValueError(f"x_T_path must be one of {X_T_PATHS}, got {x_T_path!r}")
    device = _model_device(model)
    x = torch.cat([as_one_image(x_a, "x_a"), as_one_image(x_b, "x_b")]).to(device)
    z = model.encode(x)
    if x_T is None:
        xt = model.encode_stochastic(x, z, steps=ddim.encode, progress=progress,
                                     fixed_point_iters=ddim.fixed_point_iters)
    else:
        if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != tuple(x.shape):
            raise ValueError(f"x_T must be None or a tensor of shape {tuple(x.shape)}, got "
                             f"{tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else repr(x_T)}")
        xt = x_T.to(device=device, dtype=x.dtype)
    alphas = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    a = alphas.to(device=device, dtype=z.dtype)
    z_path = lerp(z[:1].expand(n_steps, -1), z[1:].expand(n_steps, -1), a)
    xt_a, xt_b = xt[:1].expand(n_steps, *xt.shape[1:]), xt[1:].expand(n_steps, *xt.shape[1:])
    xt_path = {"slerp": slerp, "lerp": lerp, "fixed": lambda p, q, s: p.clone()}[x_T_path](xt_a, xt_b, a)
    images = decode_in_batches(model, xt_path, z_path, ddim.decode, None, progress, "interpolate")
    return {"images": images, "alphas": alphas.float(), "z": z_path, "x_T": xt_path}
