"""Simulated -> real translation in the DiffAE's latent space: interpolation and manipulation.

Two ways of moving an image between the domains, as in the original study:

* **interpolation** between two images: ``z_sem`` linearly, ``x_T`` spherically (slerp; the
  Gaussian ``x_T`` lives near a sphere of radius ``sqrt(H W)``, where a straight line would
  cut through the low-norm interior), then DDIM-decode every step;
* **manipulation** along a linear classifier's "realness" direction ``w``: normalise ``z_sem``,
  add ``alpha * sqrt(D) * w / |w|``, de-normalise, and decode with the image's own ``x_T``.

:func:`translate_folder` runs the manipulation over a folder of images (what ``usdiff
translate`` calls). Decoding with as many DDIM steps as were used for encoding inverts the
encoding exactly (up to the network's error), so the defaults use the same count for both; a
mismatch (e.g. 20 to decode after 100 to encode) makes reconstructions about ten times worse.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .latent import LinearClassifier, ZNormalizer, train_linear_classifier
from .utils import get_device

__all__ = [
    "lerp",
    "slerp",
    "interpolate",
    "manipulate_z",
    "manipulate",
    "translate_folder",
    "save_direction",
    "load_direction",
]

SCALES = ("sqrt_dim", "unit")
METHODS = ("classifier",)


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

def _one_image(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` -> ``(1, C, H, W)``."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise ValueError(f"{name} must be one image (H, W), (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _chunks(n: int, size: int | None):
    size = n if not size else size
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _decode_batched(model, x_T, z, steps, batch_size, progress, desc):
    out = []
    chunks = list(_chunks(len(x_T), batch_size))
    for sl in tqdm(chunks, desc=desc, disable=not progress or len(chunks) == 1, leave=False):
        out.append(model.decode(x_T[sl], z[sl], steps=steps, progress=progress and len(chunks) == 1))
    return torch.cat(out)


# ---- interpolation -----------------------------------------------------------------------------

@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, n_steps: int = 10, encode_steps: int = 100,
                decode_steps: int = 100, x_T: str | torch.Tensor | None = None,
                generator: torch.Generator | None = None, batch_size: int | None = None,
                progress: bool = True, fixed_point_iters: int = 0) -> dict:
    """Images along the path from `x_a` to `x_b` in ``(z_sem, x_T)`` space.

    ``z(alpha) = (1 - alpha) z_a + alpha z_b`` and ``x_T(alpha) = slerp(x_T_a, x_T_b, alpha)`` for
    ``alpha = linspace(0, 1, n_steps)`` (the study: 10 steps); the first and last images are
    the DDIM reconstructions of the inputs.

    Args:
        model: a :class:`usdiff.model.DiffAE`.
        x_a, x_b: one image each, ``(1, 1, H, W)`` / ``(1, H, W)`` / ``(H, W)`` in [-1, 1].
        n_steps: number of images on the path (>= 2).
        x_T: None: DDIM inversion of each input with its own ``z_sem`` (`encode_steps`);
            ``"random"``: two Gaussian ``x_T`` (from `generator`); or a ``(2, 1, H, W)`` tensor.
        batch_size: decode this many at once (default: all).
        fixed_point_iters: refine the inversion (see ``DiffAE.encode_stochastic``; 0 = plain DDIM).

    Returns:
        dict with ``images`` ``(n_steps, 1, H, W)`` in [-1, 1], ``alphas`` ``(n_steps,)``,
        ``z`` ``(n_steps, D)`` and ``x_T`` ``(n_steps, 1, H, W)``.
    """
    if not isinstance(n_steps, int) or n_steps < 2:
        raise ValueError(f"n_steps must be an int >= 2, got {n_steps!r}")
    device = _model_device(model)
    x = torch.cat([_one_image(x_a, "x_a"), _one_image(x_b, "x_b")]).to(device)
    z = model.encode(x)
    if x_T is None:
        xt = model.encode_stochastic(x, z, steps=encode_steps, progress=progress,
                                     fixed_point_iters=fixed_point_iters)
    elif isinstance(x_T, str):
        if x_T != "random":
            raise ValueError(f"x_T must be None, 'random' or a (2, C, H, W) tensor, got {x_T!r}")
        xt = torch.randn(x.shape, generator=generator).to(device=device, dtype=x.dtype)
    else:
        if tuple(x_T.shape) != tuple(x.shape):
            raise ValueError(f"x_T must have shape {tuple(x.shape)}, got {tuple(x_T.shape)}")
        xt = x_T.to(device=device, dtype=x.dtype)
    alphas = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    a = alphas.to(device=device, dtype=z.dtype)
    z_path = lerp(z[:1].expand(n_steps, -1), z[1:].expand(n_steps, -1), a)
    xt_path = slerp(xt[:1].expand(n_steps, *xt.shape[1:]), xt[1:].expand(n_steps, *xt.shape[1:]), a)
    images = _decode_batched(model, xt_path, z_path, decode_steps, batch_size, progress, "interpolate")
    return {"images": images, "alphas": alphas.float(), "z": z_path, "x_T": xt_path}


# ---- manipulation ------------------------------------------------------------------------------

def _direction_and_normalizer(direction, normalizer):
    if isinstance(direction, LinearClassifier):
        normalizer = normalizer if normalizer is not None else direction.normalizer_
        direction = direction.direction
    direction = torch.as_tensor(np.asarray(direction) if not isinstance(direction, torch.Tensor) else direction)
    if direction.ndim != 1:
        raise ValueError(f"direction must be a (D,) vector, got shape {tuple(direction.shape)}")
    norm = float(direction.double().norm())
    if not norm > 0 or not math.isfinite(norm):
        raise ValueError("direction must be a finite, nonzero vector")
    return direction, normalizer


def manipulate_z(z, direction, alpha: float, normalizer: ZNormalizer | None = None,
                 scale: str = "sqrt_dim"):
    """``z' = denorm(norm(z) + alpha * s * w / |w|)`` for codes ``(B, D)`` (or ``(D,)``).

    Args:
        z: semantic codes (torch or numpy; the same type comes back).
        direction: ``w`` ``(D,)``, in *normalised* space, or a fitted
            :class:`~usdiff.latent.LinearClassifier` (its direction and normaliser).
        alpha: step; positive moves towards the classifier's class 1 (real). The study used 0.1,
            upstream DiffAE 0.3.
        normalizer: the :class:`~usdiff.latent.ZNormalizer` of the classifier (None: identity).
        scale: ``"sqrt_dim"`` (``s = sqrt(D)``, the study and upstream: a step of alpha standard
            deviations per dimension on average) or ``"unit"`` (``s = 1``).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    w, normalizer = _direction_and_normalizer(direction, normalizer)
    as_numpy = not isinstance(z, torch.Tensor)
    zt = torch.as_tensor(np.asarray(z, dtype=np.float64)) if as_numpy else z
    if zt.shape[-1] != len(w):
        raise ValueError(f"z has {zt.shape[-1]} dimensions but direction has {len(w)}")
    dtype = zt.dtype if zt.is_floating_point() else torch.float32
    w = w.to(device=zt.device, dtype=torch.float64)
    step = (float(alpha) * (math.sqrt(len(w)) if scale == "sqrt_dim" else 1.0)) * w / w.norm()
    zn = normalizer.transform(zt.to(dtype)) if normalizer is not None else zt.to(dtype)
    zn = zn + step.to(dtype)
    out = normalizer.inverse_transform(zn) if normalizer is not None else zn
    return out.numpy() if as_numpy else out


@torch.no_grad()
def manipulate(model, x: torch.Tensor, direction, alphas: Sequence[float] = (0.0, 0.1, 0.2, 0.3),
               normalizer: ZNormalizer | None = None, encode_steps: int = 100, decode_steps: int = 100,
               scale: str = "sqrt_dim", batch_size: int | None = None, progress: bool = True,
               fixed_point_iters: int = 0) -> dict:
    """Decode images ``(B, 1, H, W)`` after moving their ``z_sem`` along `direction` by each alpha.

    ``x_T`` comes from deterministic DDIM inversion of each image with its *own* ``z_sem``
    (`encode_steps`, refined by `fixed_point_iters`, see ``DiffAE.encode_stochastic``) and is
    kept fixed, so only the semantics change; see :func:`manipulate_z`.

    Returns:
        dict with ``images`` ``(K, B, 1, H, W)`` in [-1, 1] for the ``K = len(alphas)`` steps,
        ``alphas`` ``(K,)``, ``z`` ``(K, B, D)``, ``x_T`` ``(B, 1, H, W)`` and, when `direction`
        is a classifier, ``realness`` ``(K, B)``: its ``predict_proba(z')[:, 1]``.
    """
    if isinstance(x, torch.Tensor) and x.ndim in (2, 3):
        x = _one_image(x, "x")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    alphas = [float(a) for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64))]
    if not alphas:
        raise ValueError("alphas must contain at least one value")
    _, normalizer = _direction_and_normalizer(direction, normalizer)
    x = x.to(_model_device(model))
    z = model.encode(x)
    xt = model.encode_stochastic(x, z, steps=encode_steps, progress=progress,
                                 fixed_point_iters=fixed_point_iters)
    zs = torch.stack([manipulate_z(z, direction, a, normalizer, scale=scale) for a in alphas])  # (K, B, D)
    k, b = zs.shape[:2]
    flat_xt = xt[None].expand(k, *xt.shape).reshape(k * b, *xt.shape[1:])
    images = _decode_batched(model, flat_xt, zs.reshape(k * b, -1), decode_steps, batch_size, progress,
                             "manipulate").reshape(k, b, *xt.shape[1:])
    out = {"images": images, "alphas": torch.tensor(alphas), "z": zs, "x_T": xt}
    if isinstance(direction, LinearClassifier):
        proba = direction.predict_proba(zs.reshape(k * b, -1).cpu().double().numpy())[:, 1]
        out["realness"] = torch.from_numpy(proba.reshape(k, b))
    return out


# ---- saved directions --------------------------------------------------------------------------

def save_direction(path: str | Path, classifier: LinearClassifier, **meta) -> Path:
    """Write a fitted classifier and its normaliser to one small ``.pt`` file; returns its path.

    `meta` (numbers and strings, e.g. the checkpoint name) is stored alongside.
    """
    if not isinstance(classifier, LinearClassifier):
        raise ValueError(f"classifier must be a fitted LinearClassifier, got {type(classifier).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "usdiff.direction/1", "classifier": classifier.state_dict(), "meta": dict(meta)}, path)
    return path


def load_direction(path: str | Path) -> LinearClassifier:
    """Read a classifier written by :func:`save_direction` (its ``.meta`` holds the stored extras).

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file is not a saved direction.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != "usdiff.direction/1":
        raise ValueError(f"{path} is not a direction saved by usdiff.translate.save_direction")
    clf = LinearClassifier.from_state_dict(state["classifier"])
    clf.meta = state.get("meta", {})
    return clf


# ---- folders -----------------------------------------------------------------------------------

def default_direction_path(ckpt) -> Path:
    """Where the realness direction of a checkpoint is kept: ``NAME_direction.pt`` beside ``NAME.pt``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(f"{ckpt.stem}_direction.pt")


def _load_model(ckpt, device):
    if isinstance(ckpt, torch.nn.Module):
        return ckpt.to(device)
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from .train import load_model

    return load_model(path, device=device)


def _fit_direction(model, data_dir, loss: str, n_fit: int | None, batch_size: int, seed: int,
                   progress: bool, classifier_kwargs: dict | None) -> LinearClassifier:
    """Encode the built-in training split (both domains), or your own ``ROOT/sim`` + ``ROOT/real``
    folders (a `data_dir` without a manifest), and fit a sim-vs-real classifier."""
    from .analysis import encode_dataset
    from .data import BuiltinDataset, TwoDomainDataset

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data set folder not found: {data_dir}")
    if (data_dir / "manifest.json").is_file():
        dataset = BuiltinDataset(data_dir, split="train", domain="both", size=model.config.image_size)
    else:
        dataset = TwoDomainDataset(data_dir, size=model.config.image_size)
    indices = np.arange(len(dataset))
    if n_fit is not None and n_fit < len(indices):
        indices = np.sort(np.random.default_rng(seed).choice(indices, size=n_fit, replace=False))
    z, y = encode_dataset(model, dataset, batch_size=batch_size, indices=indices, progress=progress)
    clf, report = train_linear_classifier(z, y, loss=loss, seed=seed, progress=progress, **(classifier_kwargs or {}))
    clf.meta = {"test_accuracy": float(report["test_accuracy"])}
    return clf


def fit_direction(ckpt, data_dir, out, loss: str = "bce", n_fit: int | None = 4000, batch_size: int = 64,
                  seed: int = 0, device=None, progress: bool = True, overwrite: bool = False) -> Path:
    """Fit the sim-vs-real direction of a checkpoint once and save it (``usdiff direction fit``).

    Codes of at most `n_fit` training images of `data_dir` (built-in data set, or your own
    ``ROOT/sim`` + ``ROOT/real``) fit a `loss` (``"bce"``/``"mse"``) linear classifier, saved to
    `out` with :func:`save_direction` so that no translation has to re-encode them.

    Raises:
        FileExistsError: `out` exists and not `overwrite`. FileNotFoundError / ValueError: bad inputs.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
    device = get_device(device)
    model = _load_model(ckpt, device)
    clf = _fit_direction(model, data_dir, loss, n_fit, batch_size, seed, progress, None)
    return save_direction(out, clf, image_size=model.config.image_size, z_dim=model.config.z_dim, loss=loss,
                          checkpoint=Path(ckpt).name, data=str(data_dir), n_fit=-1 if n_fit is None else int(n_fit),
                          held_out_accuracy=clf.meta["test_accuracy"])


def translate_folder(ckpt, images_dir, out_dir, method: str = "classifier", loss: str = "bce",
                     alpha: float = 0.3, classifier=None, data_dir=None, encode_steps: int = 100,
                     decode_steps: int = 100, batch_size: int = 16, device=None, fit: str = "pad",
                     keep_size: bool = False, overwrite: bool = False,
                     scale: str = "sqrt_dim", n_fit: int | None = 4000, save_classifier=None, seed: int = 0,
                     classifier_kwargs: dict | None = None, progress: bool = True,
                     fixed_point_iters: int = 0) -> list[Path]:
    """Translate every image of `images_dir` (simulated) into a real-styled PNG in `out_dir`.

    Each image is encoded to ``(z_sem, x_T)``, ``z_sem`` is moved by `alpha` along the
    classifier's realness direction (:func:`manipulate_z`) and decoded with its own ``x_T``.

    Args:
        ckpt: checkpoint path (read with :func:`usdiff.train.load_model`) or a loaded DiffAE.
        images_dir: folder of images (``.png``, ``.jpg``, ...; not recursive), read with
            :class:`usdiff.data.USImageFolder` (grayscale, ``[-1, 1]``).
        out_dir: output folder; each output keeps its input's file name (with ``.png``).
        method: ``"classifier"`` (the only one; interpolation needs a target image per input).
        loss: ``"bce"`` or ``"mse"`` when the classifier is fitted here.
        alpha: manipulation strength (positive = towards real).
        classifier: a fitted :class:`~usdiff.latent.LinearClassifier` or a file written by
            :func:`save_direction`; None fits one on `data_dir`, or, without `data_dir`, uses the
            direction saved beside the checkpoint (:func:`default_direction_path`).
        data_dir: built-in data set (``usdiff data generate``) whose training split (both
            domains, at most `n_fit` images) gives the codes to fit the classifier on, or your
            own ``ROOT/sim`` + ``ROOT/real`` folders.
        encode_steps, decode_steps: DDIM steps of the inversion and of the decoding.
        fixed_point_iters: refine the inversion (see ``DiffAE.encode_stochastic``; 0 = plain DDIM).
        fit: how images of another size reach the model's: ``"pad"`` (zero-pad to a square, then
            resize: keeps the whole fan) or ``"crop"`` (shorter side, centre crop).
        keep_size: write each output back at its input's size.
        overwrite: replace existing output files (otherwise they are refused).
        save_classifier: also write the fitted direction to this path (not inside `out_dir`).
        classifier_kwargs: passed to :class:`~usdiff.latent.LinearClassifier` (e.g. ``lr``).

    Returns:
        the written paths, in the (sorted) order of the inputs; names are ``stem.png`` (``name.png``
        where two inputs share a stem, e.g. ``a.jpg.png`` beside ``a.png``).

    Raises:
        FileNotFoundError: missing checkpoint, image folder, classifier file or data set.
        ValueError: no images (or a corrupt one), wrong image size, unknown method/loss, `out_dir` equal to
            `images_dir`, neither `classifier` nor `data_dir`, or a direction of another z size.
    """
    from .io import announce_resize, check_outputs, open_image_folder, output_names, save_batch

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(ckpt, torch.nn.Module) and not Path(ckpt).is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if out_dir.resolve() == images_dir.resolve():
        raise ValueError(f"out_dir must differ from images_dir ({images_dir}): the inputs would be overwritten")
    if classifier is None and data_dir is None:
        if isinstance(ckpt, torch.nn.Module) or not default_direction_path(ckpt).is_file():
            where = "" if isinstance(ckpt, torch.nn.Module) else f" (none at {default_direction_path(ckpt)})"
            raise ValueError(f"no classifier{where}: give a saved direction (classifier=, CLI --classifier; "
                             "make one with `usdiff direction fit`) or a data set to fit one on (data_dir=, CLI --data)")
        classifier = default_direction_path(ckpt)

    from .data.datasets import image_shape

    device = get_device(device)
    model = _load_model(ckpt, device)
    size = model.config.image_size
    dataset = open_image_folder(images_dir, size, fit, domain="sim")  # lists, validates, [-1, 1]
    files = list(dataset.files)
    names = output_names(files)
    check_outputs(out_dir, names, overwrite, inputs_dir=images_dir)
    announce_resize(dataset, size, fit, progress)
    shapes = [image_shape(f) for f in files] if keep_size else None

    if classifier is None:
        clf = _fit_direction(model, data_dir, loss, n_fit, batch_size, seed, progress, classifier_kwargs)
        if save_classifier is not None:
            save_direction(save_classifier, clf, image_size=size, z_dim=model.config.z_dim)
    else:
        clf = classifier if isinstance(classifier, LinearClassifier) else load_direction(classifier)
    if len(clf.weight_) != model.config.z_dim:
        raise ValueError(f"the classifier works on {len(clf.weight_)}-d codes but the model's z_sem is "
                         f"{model.config.z_dim}-d; fit it on this model's codes")

    written: list[Path] = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    bar = tqdm(total=len(files), desc="translate", disable=not progress)
    for x, _ in loader:
        x = x.to(device)
        z = model.encode(x)
        x_T = model.encode_stochastic(x, z, steps=encode_steps, fixed_point_iters=fixed_point_iters)
        images = model.decode(x_T, manipulate_z(z, clf, alpha, scale=scale), steps=decode_steps)
        k = len(written)
        written += save_batch(images, out_dir, names[k:k + len(x)],
                              shapes=None if shapes is None else shapes[k:k + len(x)], fit=fit)
        bar.update(len(x))
    bar.close()
    return written
