"""The study's translation: move z_sem along a linear classifier's "realness" direction.

Normalise ``z_sem`` per dimension, add ``alpha * sqrt(D) * w / |w|`` (``w`` the weight vector of a
BCE or MSE sim-vs-real classifier, :mod:`usdiff.latent`), de-normalise, and decode with the image's
own ``x_T`` (deterministic DDIM inversion). Decoding with as many DDIM steps as were used for
encoding inverts the encoding exactly (up to the network's error), so the defaults use the same count
for both; a mismatch (e.g. 20 to decode after 100 to encode) makes reconstructions about ten times worse.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..latent import LinearClassifier, ZNormalizer, encode_dataset, train_linear_classifier
from ..utils import get_device
from ..utils import model_device as _model_device
from .base import Translator, as_model, register
from .paths import _decode_batched, _one_image

SCALES = ("sqrt_dim", "unit")


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


def _fit_direction(model, data_dir, loss: str, n_fit: int | None, batch_size: int, seed: int,
                   progress: bool, classifier_kwargs: dict | None) -> LinearClassifier:
    """Encode the built-in training split (both domains), or your own ``ROOT/sim`` + ``ROOT/real``
    folders (a `data_dir` without a manifest), and fit a sim-vs-real classifier."""
    from ..data import BuiltinDataset, TwoDomainDataset

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
    model = as_model(ckpt, device)
    clf = _fit_direction(model, data_dir, loss, n_fit, batch_size, seed, progress, None)
    return save_direction(out, clf, image_size=model.config.image_size, z_dim=model.config.z_dim, loss=loss,
                          checkpoint=Path(ckpt).name, data=str(data_dir), n_fit=-1 if n_fit is None else int(n_fit),
                          held_out_accuracy=clf.meta["test_accuracy"])




# ---- the study's method as a Translator ------------------------------------------------------------

def _steps(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@register
class ClassifierTranslator(Translator):
    """The study's method: ``z_sem`` moved by `alpha` along a linear classifier's realness direction.

    Args:
        loss: ``"bce"`` or ``"mse"`` classifier (the study tried both).
        alpha: step in normalised z space (see :func:`manipulate_z`); positive = towards real.
            The default 1.0 is the smallest step of ``scripts/calibrate_alpha.py``'s grid (0.1-1.5)
            at which the shipped checkpoint's images visibly change (mean ``|Δ|`` >= 0.05 on
            [-1, 1]) and the domain critic calls most of them real (0.96 of 48 held-out images, aorta
            Dice 0.85 as at alpha = 0); upstream DiffAE's 0.3 barely changes them (mean ``|Δ|`` 0.018).
        scale: ``"sqrt_dim"`` or ``"unit"`` (see :func:`manipulate_z`).
        encode_steps, decode_steps: DDIM steps of the inversion and of the decoding.
        fixed_point_iters: refinement of the inversion (``DiffAE.encode_stochastic``).

    Fitted: ``classifier_`` (a :class:`~usdiff.latent.LinearClassifier`).
    """

    name = "classifier"

    def __init__(self, loss: str = "bce", alpha: float = 1.0, scale: str = "sqrt_dim", encode_steps: int = 100,
                 decode_steps: int = 100, fixed_point_iters: int = 0):
        if loss not in ("bce", "mse"):
            raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.loss, self.alpha, self.scale = loss, float(alpha), scale
        self.encode_steps, self.decode_steps = _steps("encode_steps", encode_steps), _steps("decode_steps", decode_steps)
        self.fixed_point_iters = int(fixed_point_iters)
        self._params = dict(loss=loss, alpha=self.alpha, scale=scale, encode_steps=encode_steps,
                            decode_steps=decode_steps, fixed_point_iters=self.fixed_point_iters)
        self.classifier_ = None

    def _fitted_keys(self):
        return ("classifier_",)

    def fit_codes(self, z_sim, z_real, progress: bool = False) -> ClassifierTranslator:
        z = np.concatenate([np.asarray(z_sim), np.asarray(z_real)])
        y = np.r_[np.zeros(len(z_sim), np.int64), np.ones(len(z_real), np.int64)]
        self.classifier_, report = train_linear_classifier(z, y, loss=self.loss, progress=progress)
        self.classifier_.meta = {"test_accuracy": float(report["test_accuracy"])}
        return self

    @classmethod
    def from_direction(cls, classifier, **knobs) -> ClassifierTranslator:
        """Wrap a fitted classifier (or a file of :func:`save_direction`) without refitting."""
        clf = classifier if isinstance(classifier, LinearClassifier) else load_direction(classifier)
        method = cls(loss=clf.loss, **knobs)
        method.classifier_ = clf
        return method

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"classifier_": self.classifier_.state_dict()}

    def load_state_dict(self, state: dict) -> ClassifierTranslator:
        self.classifier_ = LinearClassifier.from_state_dict(state["classifier_"])
        return self

    @torch.no_grad()
    def translate(self, model, x, generator=None, progress: bool = False, labels=None) -> torch.Tensor:
        x = self._prepare(model, x)
        if len(self.classifier_.weight_) != model.config.z_dim:
            raise ValueError(f"the classifier works on {len(self.classifier_.weight_)}-d codes but the model's "
                             f"z_sem is {model.config.z_dim}-d; fit it on this model's codes")
        z = model.encode(x)
        x_T = model.encode_stochastic(x, z, steps=self.encode_steps, fixed_point_iters=self.fixed_point_iters,
                                      progress=progress)
        z_new = manipulate_z(z, self.classifier_, self.alpha, scale=self.scale)
        return model.decode(x_T, z_new, steps=self.decode_steps, progress=progress)
