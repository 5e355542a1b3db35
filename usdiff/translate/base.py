"""The protocol every translation method follows, its registry, and its one file format.

A method is a small object in the style of a scikit-learn estimator and a diffusers scheduler:

* **Settings** are its constructor arguments, read back by :meth:`Translator.get_params` (derived
  from the constructor's signature). They come in two declared sets: ``fit_settings`` are used by
  :meth:`Translator.fit` and frozen once it has run (the transport's ridge, the CycleGAN's width);
  the others are **knobs** read at translate time (alpha, t0, strength, guidance scale, DDIM steps),
  which :meth:`Translator.with_knobs` changes on a fitted method without refitting. Changing a fit
  setting of a fitted method is refused with a message, never silently ignored.
* **Capabilities** are class attributes that callers read instead of a method's name:
  ``needs_diffae`` (translate needs the DiffAE), ``needs_labels`` (fit needs the simulated images'
  label maps) and :meth:`Translator.input_size` (the side the inputs are resized to).
* :meth:`Translator.fit` learns from *unpaired* simulated and real images, with one signature for all
  methods; :meth:`Translator.translate` turns simulated images into real-looking ones.
* Fitted state (attributes ending in ``_``) goes to one file with :func:`save_method` and comes back
  with :func:`load_method`. The file records the fingerprint of the DiffAE it was fitted on
  (:meth:`usdiff.model.DiffAE.fingerprint`); translating with another model is refused.

::

    method = get_method("transport", strength=1.0).fit(model, sim_images, real_images)
    real_looking = method.translate(model, sim_batch)
    gentler = method.with_knobs(strength=0.5)          # a knob: no refit
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..latent import encode_images
from ..model.io import load_model
from ..utils import as_image_batch, model_device

__all__ = ["FitData", "Translator", "as_model", "METHODS", "register", "get_method", "save_method", "load_method",
           "check_images", "translate_batches"]

METHODS: dict[str, type] = {}
FORMAT = "usdiff.method/2"
METHOD_V1, DIRECTION_V1 = "usdiff.method/1", "usdiff.direction/1"   # earlier formats that still load
ENCODE_BATCH = 64          # images per encoder batch in fit (the result does not depend on it)


@dataclass(frozen=True)
class FitData:
    """What to fit a method on: a built-in data set or your own ``ROOT/sim`` + ``ROOT/real`` folders
    (:func:`usdiff.translate.unpaired_training_data`), at most `n` images in all (None: every one)."""

    root: Path
    n: int | None = 4000

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        if self.n is not None and (not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 2):
            raise ValueError(f"n must be None or an int >= 2, got {self.n!r}")


def as_model(model, device=None) -> torch.nn.Module:
    """`model` itself (moved to `device`) or, for a path, the DiffAE checkpoint loaded from it.

    Raises:
        FileNotFoundError: naming the path, if there is no such file. ValueError: the file is not
        a DiffAE checkpoint (the message names it).
    """
    if isinstance(model, torch.nn.Module):
        return model.to(device) if device is not None else model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return load_model(path, device=device)


def register(cls):
    """Class decorator: make `cls` available to :func:`get_method` under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **settings) -> Translator:
    """A new, unfitted method by name (``usdiff translate --method NAME``), with its settings.

    Raises:
        ValueError: for an unknown name (the message lists the choices) or an unknown setting
        (the message lists the method's settings).
    """
    if name not in METHODS:
        raise ValueError(f"unknown translation method {name!r}; choose one of {sorted(METHODS)}")
    cls = METHODS[name]
    unknown = sorted(set(settings) - set(cls.param_names()))
    if unknown:
        raise ValueError(f"method {name!r} has no setting {', '.join(unknown)}; its settings are "
                         f"{', '.join(cls.param_names()) or 'none'}")
    return cls(**settings)


def check_images(x, name: str = "x") -> torch.Tensor:
    """`x` as a float ``(B, 1, H, W)`` tensor in [-1, 1] (:func:`usdiff.utils.as_image_batch`); a clear error
    naming `name` otherwise."""
    return as_image_batch(x, name, value_range=(-1.0, 1.0))


class Translator:
    """Base class of the translation methods.

    Subclasses set ``name``, take their settings as keyword arguments stored under the same names,
    list in ``fit_settings`` those that :meth:`fit` uses and in ``fitted_attrs`` the fitted state,
    implement :meth:`_fit_codes` (DiffAE methods fitted on ``z_sem``) or override :meth:`fit`, and
    implement :meth:`translate`.
    """

    name = ""
    needs_diffae = True        # translate (and fit) need the DiffAE
    needs_labels = False       # fit needs the label maps of the simulated images
    fit_settings: tuple[str, ...] = ()
    fitted_attrs: tuple[str, ...] = ()
    renamed_settings: dict[str, str] = {}    # setting names of older method files -> today's

    # ---- settings --------------------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The constructor's keyword arguments: every setting of the method."""
        sig = inspect.signature(cls.__init__)
        return tuple(p.name for p in sig.parameters.values()
                     if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The settings read at translate time (every setting that is not a fit setting)."""
        return tuple(k for k in cls.param_names() if k not in cls.fit_settings)

    def get_params(self) -> dict:
        """Every setting, read from the attribute of the constructor argument's name."""
        return {k: getattr(self, k) for k in self.param_names()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def with_knobs(self, **knobs) -> Translator:
        """A copy of this method with some knobs changed; a fitted state is shared, not refitted.

        A fit setting may be passed only with the value it already has (a fitted method keeps the
        fit it was made with; an unfitted one is just rebuilt).

        Raises:
            ValueError: for an unknown setting, or a changed fit setting of a fitted method (the
            message says how to refit).
        """
        unknown = sorted(set(knobs) - set(self.param_names()))
        if unknown:
            raise ValueError(f"method {self.name!r} has no setting {', '.join(unknown)}; its knobs are "
                             f"{', '.join(self.knob_names()) or 'none'}")
        other = type(self)(**{**self.get_params(), **knobs})
        if not self.fitted:
            return other
        mine, theirs = self.get_params(), other.get_params()
        changed = [k for k in self.fit_settings if k in knobs and theirs[k] != mine[k]]
        if changed:
            was = ", ".join(f"{k}={mine[k]!r}" for k in changed)
            raise ValueError(f"{', '.join(changed)} {'is a fit setting' if len(changed) == 1 else 'are fit settings'}"
                             f" of the fitted {self.name!r} method (fitted with {was}): changing it needs a new "
                             f"fit, get_method({self.name!r}, ...).fit(...) (CLI: --data to fit); "
                             f"the knobs that apply without refitting are {', '.join(self.knob_names()) or 'none'}")
        for k in self.fitted_attrs + ("checkpoint_",):
            setattr(other, k, getattr(self, k, None))
        other.meta = dict(getattr(self, "meta", {}))
        return other

    # ---- fitting ---------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return all(getattr(self, k, None) is not None for k in self.fitted_attrs)

    def check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit() or load_method()")

    def fit(self, model, sim, real, *, sim_labels=None, seed: int = 0, progress: bool = False) -> Translator:
        """Learn from unpaired simulated and real images ``(N, 1, H, W)`` in [-1, 1]; returns self.

        Args:
            model: the DiffAE (None for methods with ``needs_diffae = False``).
            sim, real: the two image sets (no pairing is used).
            sim_labels: ``(N, H, W)`` label maps of `sim`, for methods with ``needs_labels``.
            seed: seed of whatever the fit draws (classifier split, network initialisation).
        """
        sim, real = check_images(sim, "sim"), check_images(real, "real")
        if self.needs_diffae and model is None:
            raise ValueError(f"method {self.name!r} is fitted on the DiffAE's codes: pass model=")
        if self.needs_labels and sim_labels is None:
            raise ValueError(f"method {self.name!r} is fitted with the label maps of the simulated images: "
                             "pass sim_labels=")
        self._fit_images(model, sim, real, sim_labels, seed, progress)
        return self

    def _fit_images(self, model, sim: torch.Tensor, real: torch.Tensor, sim_labels, seed: int,
                    progress: bool) -> None:
        """What :meth:`fit` does after checking its inputs: by default, fit on the codes."""
        z_sim = encode_images(model, sim, ENCODE_BATCH, progress)
        z_real = encode_images(model, real, ENCODE_BATCH, progress)
        self.fit_codes(z_sim, z_real, seed=seed, progress=progress, fingerprint=model.fingerprint())

    def fit_codes(self, z_sim, z_real, *, seed: int = 0, progress: bool = False,
                  fingerprint: str | None = None) -> Translator:
        """Learn from the semantic codes ``(N, D)`` of unpaired simulated and real images.

        `fingerprint` (:meth:`usdiff.model.DiffAE.fingerprint` of the model the codes come from) is
        recorded, so that translating with another model is refused; None records none.
        """
        self._fit_codes(np.asarray(z_sim, np.float64), np.asarray(z_real, np.float64), seed, progress)
        self.checkpoint_ = fingerprint
        return self

    def _fit_codes(self, z_sim: np.ndarray, z_real: np.ndarray, seed: int, progress: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} fits on images, not codes; call fit()")

    @property
    def reads_labels(self) -> bool:
        """Whether :meth:`translate` reads the inputs' label maps (``labels=``) with these knobs."""
        return False

    # ---- the model a method belongs to ------------------------------------------------------------

    def input_size(self, model=None) -> int:
        """The side (px) that inputs are resized to: the DiffAE's, or the fitted CycleGAN's."""
        if self.needs_diffae:
            if model is None:
                raise ValueError(f"method {self.name!r} needs the DiffAE: pass model=")
            return int(model.config.image_size)
        self.check_fitted()
        return int(self.size_)

    def check_model(self, model) -> None:
        """Refuse a DiffAE other than the one the method was fitted on (when the fit recorded it).

        Raises:
            ValueError: the fingerprints differ (the message names both).
        """
        recorded = getattr(self, "checkpoint_", None)
        if not self.needs_diffae or recorded is None or model is None:
            return
        if getattr(self, "_checked_model", None) is model:     # checked already (weights changed in place since
            return                                              # are not seen: call fingerprint() yourself)
        actual = model.fingerprint()
        if actual != recorded:
            raise ValueError(f"this {self.name!r} method was fitted on the DiffAE with fingerprint {recorded}, "
                             f"but the model given has {actual}: fit it on this model's codes "
                             "(get_method(...).fit(model, ...); CLI: usdiff translate --data DIR)")
        self._checked_model = model

    # ---- translating -----------------------------------------------------------------------------

    def translate(self, model, x: torch.Tensor, generator: torch.Generator | None = None,
                  progress: bool = False, labels=None) -> torch.Tensor:
        """Simulated images ``(B, 1, H, W)`` in [-1, 1] -> translated images, same shape and range.

        `generator` draws the noise of stochastic methods; `labels` ``(B, H, W)`` are the inputs' label
        maps, read only by methods that use them (guided)."""
        raise NotImplementedError

    def _prepare(self, model, x) -> torch.Tensor:
        self.check_fitted()
        x = check_images(x)
        if self.needs_diffae:
            size = self.input_size(model)
            if x.shape[-1] != size or x.shape[-2] != size:
                raise ValueError(f"x is {tuple(x.shape[-2:])} px but the model works at {size} px")
            self.check_model(model)
        return x.to(model_device(model) if model is not None else x.device)

    # ---- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Fitted state (name -> tensors and plain values) as saved by :func:`save_method`."""
        self.check_fitted()
        return {k: getattr(self, k) for k in self.fitted_attrs}

    def load_state_dict(self, state: dict) -> Translator:
        missing = [k for k in self.fitted_attrs if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__} state lacks {missing}")
        for k in self.fitted_attrs:
            setattr(self, k, state[k])
        return self


def translate_batches(method: Translator, model, x, *, labels=None, batch_size: int = 32, seed: int = 0,
                      progress: bool = False) -> torch.Tensor:
    """`x` ``(N, 1, H, W)`` translated by a fitted method in batches (CPU result).

    `labels` ``(N, H, W)`` go to the methods that read them (``reads_labels``); the noise of
    stochastic methods comes from one generator seeded `seed`, drawn batch after batch.
    """
    if not isinstance(method, Translator):
        raise ValueError(f"method must be a fitted Translator, got {type(method).__name__}")
    g = torch.Generator().manual_seed(seed)
    device = model_device(model) if model is not None else torch.device("cpu")
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=f"translate ({method.name})", disable=not progress, leave=False):
        extra = {"labels": np.asarray(labels[i:i + batch_size])} if method.reads_labels and labels is not None else {}
        out.append(method.translate(model, x[i:i + batch_size].to(device), generator=g, **extra).cpu())
    return torch.cat(out)


def save_method(path, method: Translator, overwrite: bool = False, **meta) -> Path:
    """Write a fitted method (name, settings, fitted state, the fingerprint of its DiffAE) to one file.

    Raises:
        FileExistsError: `path` exists and not `overwrite`. ValueError: not a Translator.
        RuntimeError: the method is not fitted.
    """
    if not isinstance(method, Translator):
        raise ValueError(f"method must be a Translator, got {type(method).__name__}")
    method.check_fitted()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass overwrite=True (CLI --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "name": method.name, "params": method.get_params(),
                "state": method.state_dict(), "checkpoint": getattr(method, "checkpoint_", None),
                "meta": dict(meta)}, path)
    return path


def load_method(path, **knobs) -> Translator:
    """A fitted method from :func:`save_method`; `knobs` change its translate-time knobs (e.g. ``t0=0.4``).

    Files of the earlier formats load too: a classifier direction file (``usdiff.direction/1``)
    becomes a fitted ``classifier`` method; settings renamed since are mapped; such files record no
    checkpoint fingerprint.

    Raises:
        FileNotFoundError: no such file. ValueError: not a saved method, or a knob that is a fit
        setting with another value than the fitted one (see :meth:`Translator.with_knobs`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"method file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"{path} is not a translation method saved by usdiff ({type(err).__name__})") from None
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt == DIRECTION_V1:
        state = {"name": "classifier", "params": {"loss": state["classifier"]["loss"]},
                 "state": {"classifier_": state["classifier"]}, "meta": state.get("meta", {})}
    elif fmt not in (FORMAT, METHOD_V1):
        raise ValueError(f"{path} is not a translation method saved by usdiff.translate.save_method")
    name = state["name"]
    if name not in METHODS:
        raise ValueError(f"{path} holds a method {name!r} that this usdiff does not know ({sorted(METHODS)})")
    cls = METHODS[name]
    params = {cls.renamed_settings.get(k, k): v for k, v in state["params"].items()}
    method = get_method(name, **params)
    method.load_state_dict(state["state"])
    method.checkpoint_ = state.get("checkpoint")
    method.meta = state.get("meta", {})
    return method.with_knobs(**knobs) if knobs else method
