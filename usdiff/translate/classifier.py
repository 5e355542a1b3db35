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

from ..data import BuiltinDataset, TwoDomainDataset
from ..latent import LOSSES, LinearClassifier, ZNormalizer, encode_dataset, train_linear_classifier
from ..model import DDIMSteps
from ..utils import check_positive_ints, get_device
from ..utils import model_device as _model_device
from .base import ENCODE_BATCH, FitData, Translator, as_model, load_method, register, save_method
from .paths import as_one_image, decode_in_batches

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
    if float(alpha) == 0.0:          # exactly the codes themselves (no normalise / restore round trip)
        return np.array(zt.numpy(), copy=True) if as_numpy else z.clone()
    dtype = zt.dtype if zt.is_floating_point() else torch.float32
    w = w.to(device=zt.device, dtype=torch.float64)
    step = (float(alpha) * (math.sqrt(len(w)) if scale == "sqrt_dim" else 1.0)) * w / w.norm()
    zn = normalizer.transform(zt.to(dtype)) if normalizer is not None else zt.to(dtype)
    zn = zn + step.to(dtype)
    out = normalizer.inverse_transform(zn) if normalizer is not None else zn
    return out.numpy() if as_numpy else out


@torch.no_grad()
def manipulate(model, x: torch.Tensor, direction, alphas: Sequence[float] = (0.0, 0.1, 0.2, 0.3), *,
               ddim: DDIMSteps | None = None, scale: str = "sqrt_dim", batch_size: int | None = None,
               progress: bool = True) -> dict:
    """The manipulation protocol: decode images ``(B, 1, H, W)`` after moving their ``z_sem`` along
    `direction` by each alpha.

    ``x_T`` comes from deterministic DDIM inversion of each image with its *own* ``z_sem``
    (``ddim.encode`` steps, refined by ``ddim.fixed_point_iters``, see ``DiffAE.encode_stochastic``)
    and is kept fixed, so only the semantics change; the moved codes (:func:`manipulate_z`; alpha 0
    gives the codes themselves) are decoded with ``ddim.decode`` steps, alpha by alpha, `batch_size`
    images at a time (all of an alpha's at once when None).

    Args:
        direction: a fitted :class:`~usdiff.latent.LinearClassifier` (its direction in its
            normalised space, and its normaliser) or a ``(D,)`` vector in z space.
        ddim: the step counts (default :class:`~usdiff.model.DDIMSteps`: 100 each way, plain inversion).
        scale: the unit of alpha (see :func:`manipulate_z`).

    Returns:
        dict with ``images`` ``(K, B, 1, H, W)`` in [-1, 1] for the ``K = len(alphas)`` steps,
        ``alphas`` ``(K,)``, ``z`` ``(K, B, D)``, ``x_T`` ``(B, 1, H, W)`` and, when `direction`
        is a classifier, ``realness`` ``(K, B)``: its ``predict_proba(z')[:, 1]``.
    """
    ddim = ddim if ddim is not None else DDIMSteps()
    if isinstance(x, torch.Tensor) and x.ndim in (2, 3):
        x = as_one_image(x, "x")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    alphas = [float(a) for a in np.atleast_1d(np.asarray(alphas, dtype=np.float64))]
    if not alphas:
        raise ValueError("alphas must contain at least one value")
    _direction_and_normalizer(direction, None)
    x = x.to(_model_device(model))
    z = model.encode(x)
    xt = model.encode_stochastic(x, z, steps=ddim.encode, progress=progress, fixed_point_iters=ddim.fixed_point_iters)
    zs = torch.stack([manipulate_z(z, direction, a, scale=scale) for a in alphas])  # (K, B, D)
    k, b = zs.shape[:2]
    images = torch.stack([decode_in_batches(model, xt, zs[i], ddim.decode, batch_size, progress, "manipulate")
                          for i in range(k)])     # (K, B, 1, H, W): each alpha decoded in chunks of `batch_size`
    out = {"images": images, "alphas": torch.tensor(alphas), "z": zs, "x_T": xt}
    if isinstance(direction, LinearClassifier):
        proba = direction.predict_proba(zs.reshape(k * b, -1).cpu().double().numpy())[:, 1]
        out["realness"] = torch.from_numpy(proba.reshape(k, b))
    return out


# ---- saved directions --------------------------------------------------------------------------

def save_direction(path: str | Path, classifier: LinearClassifier, overwrite: bool = False, **meta) -> Path:
    """Write a fitted classifier as a fitted ``classifier`` method (:func:`~usdiff.translate.save_method`).

    The file is an ordinary method file: ``usdiff translate --method classifier --fitted PATH`` and
    :func:`~usdiff.translate.load_method` read it; `meta` (numbers and strings) is stored alongside.
    It records no checkpoint fingerprint (fit the method with a model to have one).
    """
    if not isinstance(classifier, LinearClassifier):
        raise ValueError(f"classifier must be a fitted LinearClassifier, got {type(classifier).__name__}")
    return save_method(path, ClassifierTranslator.from_direction(classifier), overwrite=overwrite, **meta)


def load_direction(path: str | Path) -> LinearClassifier:
    """The classifier of a fitted ``classifier`` method file (or of an older direction file); its
    ``.meta`` holds the stored extras.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file holds no fitted classifier method.
    """
    method = load_method(path)
    if not isinstance(method, ClassifierTranslator):
        raise ValueError(f"{path} holds a fitted {method.name!r} method, not a classifier direction")
    clf = method.classifier_
    clf.meta = {**getattr(clf, "meta", {}), **method.meta}
    return clf


# ---- folders -----------------------------------------------------------------------------------

def _fit_direction(model, data_dir, loss: str, n_fit: int | None, seed: int, progress: bool) -> LinearClassifier:
    """Encode the built-in training split (both domains), or your own ``ROOT/sim`` + ``ROOT/real``
    folders (a `data_dir` without a manifest), and fit a sim-vs-real classifier."""
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
    z, y = encode_dataset(model, dataset, batch_size=ENCODE_BATCH, indices=indices, progress=progress)
    clf, report = train_linear_classifier(z, y, loss=loss, seed=seed, progress=progress)
    clf.meta = {"test_accuracy": float(report["test_accuracy"])}
    return clf


def fit_direction(ckpt, fit_on: FitData | str | Path, out, *, loss: str = "bce", seed: int = 0, device=None,
                  progress: bool = True, overwrite: bool = False) -> Path:
    """Fit the sim-vs-real direction of a checkpoint once and save it (``usdiff direction fit``).

    Codes of at most ``fit_on.n`` training images of ``fit_on.root`` (a :class:`FitData`, or the
    folder itself with the default ``n``: a built-in data set, or your own ``ROOT/sim`` +
    ``ROOT/real``) of both domains fit a `loss` (``"bce"``/``"mse"``) linear classifier, saved to
    `out` as a fitted ``classifier`` method (with the checkpoint's fingerprint) so that no
    translation has to re-encode them.

    Raises:
        FileExistsError: `out` exists and not `overwrite`. FileNotFoundError / ValueError: bad inputs.
    """
    fit_on = fit_on if isinstance(fit_on, FitData) else FitData(fit_on)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    model = as_model(ckpt, get_device(device))
    clf = _fit_direction(model, fit_on.root, loss, fit_on.n, seed, progress)
    method = ClassifierTranslator.from_direction(clf, fingerprint=model.fingerprint())
    return save_method(out, method, overwrite=overwrite, image_size=model.config.image_size,
                       z_dim=model.config.z_dim, checkpoint_name=Path(ckpt).name, data=str(fit_on.root),
                       n_fit=-1 if fit_on.n is None else int(fit_on.n), held_out_accuracy=clf.meta["test_accuracy"])


# ---- the study's method as a Translator ------------------------------------------------------------


@register
class ClassifierTranslator(Translator):
    """The study's method: ``z_sem`` moved by `alpha` along a linear classifier's realness direction.

    Args:
        loss: ``"bce"`` or ``"mse"`` classifier (the study tried both); a fit setting.
        alpha: step in normalised z space (see :func:`manipulate_z`); positive = towards real.
            ``scripts/calibrate_alpha.py`` measures how much the images change and how real the
            critics find them along alpha; upstream DiffAE used 0.3.
        alpha_unit: ``"sqrt_dim"`` or ``"unit"``, the unit of alpha (`scale` of :func:`manipulate_z`).
        encode_steps, decode_steps: DDIM steps of the inversion and of the decoding.
        fixed_point_iters: refinement of the inversion (``DiffAE.encode_stochastic``).

    Fitted: ``classifier_`` (a :class:`~usdiff.latent.LinearClassifier`).
    """

    name = "classifier"
    fit_settings = ("loss",)
    fitted_attrs = ("classifier_",)
    renamed_settings = {"scale": "alpha_unit"}

    def __init__(self, loss: str = "bce", alpha: float = 1.0, alpha_unit: str = "sqrt_dim", encode_steps: int = 100,
                 decode_steps: int = 100, fixed_point_iters: int = 0):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if alpha_unit not in SCALES:
            raise ValueError(f"alpha_unit must be one of {SCALES}, got {alpha_unit!r}")
        if not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
            raise ValueError(f"fixed_point_iters must be an int >= 0, got {fixed_point_iters!r}")
        self.loss, self.alpha, self.alpha_unit = loss, float(alpha), alpha_unit
        check_positive_ints(encode_steps=encode_steps, decode_steps=decode_steps)
        self.encode_steps, self.decode_steps = encode_steps, decode_steps
        self.fixed_point_iters = fixed_point_iters
        self.classifier_ = None

    def _fit_codes(self, z_sim, z_real, seed, progress):
        z = np.concatenate([z_sim, z_real])
        y = np.r_[np.zeros(len(z_sim), np.int64), np.ones(len(z_real), np.int64)]
        self.classifier_, report = train_linear_classifier(z, y, loss=self.loss, seed=seed, progress=progress)
        self.classifier_.meta = {"test_accuracy": float(report["test_accuracy"])}

    @classmethod
    def from_direction(cls, classifier: LinearClassifier, fingerprint: str | None = None,
                       **knobs) -> ClassifierTranslator:
        """A fitted method around a fitted classifier (its loss is the method's), without refitting.

        `fingerprint` is that of the DiffAE whose codes the classifier was fitted on (None: unknown).

        Raises:
            ValueError: `knobs` hold a `loss` other than the classifier's, or an unknown knob.
        """
        if not isinstance(classifier, LinearClassifier):
            raise ValueError(f"classifier must be a fitted LinearClassifier, got {type(classifier).__name__}")
        method = cls(loss=classifier.loss)
        method.classifier_ = classifier
        method.checkpoint_ = fingerprint
        return method.with_knobs(**knobs) if knobs else method

    def state_dict(self) -> dict:
        self.check_fitted()
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
        ddim = DDIMSteps(self.encode_steps, self.decode_steps, self.fixed_point_iters)
        return manipulate(model, x, self.classifier_, [self.alpha], ddim=ddim, scale=self.alpha_unit,
                          progress=progress)["images"][0]
