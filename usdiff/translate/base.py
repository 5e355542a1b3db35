"""The interface every translation method shares, and the registry that picks one by name.

A method is a small object in the style of a scikit-learn estimator: its knobs are constructor
arguments, :meth:`Translator.fit` learns what it needs from *unpaired* simulated and real images
(the pairing of the built-in data set is for evaluation only), :meth:`Translator.translate` turns a
batch of simulated images into real-looking ones. Fitted state (attributes ending in ``_``) goes to
a small file with :func:`save_method` and comes back with :func:`load_method`, so that no
translation has to re-encode the training images::

    method = get_method("transport", strength=1.0).fit(model, sim_images, real_images)
    real_looking = method.translate(model, sim_batch)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..latent import encode_images
from ..train import load_model
from ..utils import model_device

__all__ = ["Translator", "as_model", "METHODS", "register", "get_method", "save_method", "load_method", "check_images"]

METHODS: dict[str, type] = {}
FORMAT = "usdiff.method/1"


def as_model(model, device=None) -> torch.nn.Module:
    """`model` itself (moved to `device`) or, for a path, the checkpoint loaded from it.

    Raises:
        FileNotFoundError: naming the path, if there is no such file.
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


def get_method(name: str, **knobs) -> Translator:
    """A new, unfitted method by name (``usdiff translate --method NAME``), with its knobs.

    Raises:
        ValueError: for an unknown name (the message lists the choices) or an unknown knob.
    """
    if name not in METHODS:
        raise ValueError(f"unknown translation method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**knobs)
    except TypeError as err:
        raise ValueError(f"method {name!r}: {err}") from None


def check_images(x, name: str = "x") -> torch.Tensor:
    """`x` as a float ``(B, 1, H, W)`` tensor in [-1, 1]; a clear error otherwise."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty (B, 1, H, W) image batch, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all() or x.min() < -1.001 or x.max() > 1.001:
        raise ValueError(f"{name} must hold finite values in [-1, 1] (the model range)")
    return x.float()


class Translator:
    """Base class of the translation methods.

    Subclasses set ``name``, take their knobs as keyword arguments, and implement
    :meth:`fit_codes` (DiffAE methods: from ``z_sem`` of sim and real images) or override :meth:`fit`,
    and :meth:`translate`. ``uses_diffae`` says whether `translate` needs the DiffAE.
    """

    name = ""
    uses_diffae = True

    # ---- fitting ---------------------------------------------------------------------------------

    def fit(self, model, sim, real, batch_size: int = 64, progress: bool = False) -> Translator:
        """Learn from unpaired simulated and real images ``(N, 1, H, W)`` in [-1, 1]; returns self."""
        sim, real = check_images(sim, "sim"), check_images(real, "real")
        return self.fit_codes(encode_images(model, sim, batch_size, progress),
                              encode_images(model, real, batch_size, progress))

    def fit_codes(self, z_sim, z_real) -> Translator:
        """Learn from the semantic codes ``(N, D)`` of unpaired simulated and real images."""
        raise NotImplementedError(f"{type(self).__name__} fits on images, not codes; call fit()")

    @property
    def fitted(self) -> bool:
        return all(getattr(self, k, None) is not None for k in self._fitted_keys())

    def _fitted_keys(self) -> tuple[str, ...]:
        return ()

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit() or load_method()")

    # ---- translating -----------------------------------------------------------------------------

    def translate(self, model, x: torch.Tensor, generator: torch.Generator | None = None,
                  progress: bool = False, labels=None) -> torch.Tensor:
        """Simulated images ``(B, 1, H, W)`` in [-1, 1] -> translated images, same shape and range.

        `generator` draws the noise of stochastic methods; `labels` ``(B, H, W)`` are the inputs' label
        maps, read only by methods that use them (guided)."""
        raise NotImplementedError

    def _prepare(self, model, x) -> torch.Tensor:
        self._check_fitted()
        x = check_images(x)
        if self.uses_diffae:
            if model is None:
                raise ValueError(f"method {self.name!r} needs the DiffAE: pass model=")
            size = model.config.image_size
            if x.shape[-1] != size or x.shape[-2] != size:
                raise ValueError(f"x is {tuple(x.shape[-2:])} px but the model works at {size} px")
        return x.to(model_device(model) if model is not None else x.device)

    # ---- state -----------------------------------------------------------------------------------

    def get_params(self) -> dict:
        """The knobs given to the constructor."""
        return dict(self._params)

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({knobs})"

    def with_knobs(self, **knobs) -> Translator:
        """A copy of this (fitted) method with some knobs changed; the fitted state is shared, not refitted."""
        other = get_method(self.name, **{**self._params, **knobs})
        for k in self._fitted_keys():
            setattr(other, k, getattr(self, k))
        return other

    def state_dict(self) -> dict:
        """Fitted arrays (name -> tensor or plain value)."""
        return {k: getattr(self, k) for k in self._fitted_keys()}

    def load_state_dict(self, state: dict) -> Translator:
        missing = [k for k in self._fitted_keys() if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__} state lacks {missing}")
        for k in self._fitted_keys():
            setattr(self, k, state[k])
        return self


def save_method(path, method: Translator, overwrite: bool = False, **meta) -> Path:
    """Write a fitted method (its name, knobs and fitted state) to one ``.pt`` file."""
    if not isinstance(method, Translator):
        raise ValueError(f"method must be a Translator, got {type(method).__name__}")
    method._check_fitted()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass overwrite=True (CLI --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "name": method.name, "params": method.get_params(),
                "state": method.state_dict(), "meta": dict(meta)}, path)
    return path


def load_method(path, **knobs) -> Translator:
    """A fitted method from :func:`save_method`; `knobs` override the stored ones (e.g. ``t0=0.4``).

    Raises:
        FileNotFoundError: no such file. ValueError: not a saved method.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"method file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"{path} is not a translation method saved by usdiff ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a translation method saved by usdiff.translate.save_method")
    method = get_method(state["name"], **{**state["params"], **knobs})
    method.load_state_dict(state["state"])
    method.meta = state.get("meta", {})
    return method
