"""Reading and writing DiffAE checkpoints: training checkpoints (``RUN/ckpt.pt``) and small
pretrained files (config + EMA weights, e.g. ``assets/diffae_tiny.pt``)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..utils import get_device
from .config import DiffAEConfig
from .diffae import DiffAE

__all__ = ["PRETRAINED_FORMAT", "read_checkpoint", "load_model", "apply_data_stats", "save_model"]

PRETRAINED_FORMAT = "usdiff-pretrained-v1"


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint dict read safely (``weights_only``); one clear error for anything else.

    Raises:
        FileNotFoundError: no file at `path`. ValueError: the file is not a DiffAE checkpoint
        (truncated, another format, or holding arbitrary Python objects, which are never loaded);
        the message names the format it holds when it has one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        kind = "truncated or corrupt" if isinstance(err, (EOFError, RuntimeError)) else "not a torch file"
        raise ValueError(f"{path} is not a DiffAE checkpoint ({kind}: {type(err).__name__}); use a file written "
                         "by `usdiff train` (RUN/ckpt.pt) or save_pretrained (e.g. assets/diffae_tiny.pt)") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or not ({"weights", "ema", "model"} & set(ckpt)):
        fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
        holds = f"it holds {fmt}" if isinstance(fmt, str) else "no model config and weights in it"
        raise ValueError(f"{path} is not a DiffAE checkpoint ({holds}); use a file written by `usdiff train` "
                         "(RUN/ckpt.pt) or save_pretrained (e.g. assets/diffae_tiny.pt)")
    return ckpt


def load_model(ckpt_path: str | Path, device=None, use_ema: bool = True) -> DiffAE:
    """A ready-to-use :class:`DiffAE` (eval mode) from a training checkpoint or a pretrained file.

    Args:
        ckpt_path: ``ckpt.pt`` from :class:`usdiff.train.Trainer` or a file from :func:`save_model`
            (:func:`usdiff.train.save_pretrained`).
        device: where to put the model (default: CUDA when visible, else CPU).
        use_ema: take the EMA weights (training checkpoints hold both; pretrained files only EMA).

    Raises:
        FileNotFoundError: naming the path, if it does not exist. ValueError: not a DiffAE checkpoint.
    """
    ckpt = read_checkpoint(ckpt_path)
    model = DiffAE.from_config(DiffAEConfig.from_dict(ckpt["config"]))
    if "weights" in ckpt:
        state = ckpt["weights"]
    else:
        state = ckpt["ema"]["shadow"] if use_ema else ckpt["model"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    apply_data_stats(model, ckpt)
    return model.to(get_device(device)).eval()


def apply_data_stats(model: DiffAE, ckpt: dict) -> None:
    """Put a checkpoint's per-pixel data statistics (if it has them) on `model`."""
    stats = ckpt.get("data_stats")
    if stats is not None:
        model.data_mean = stats["mean"].float().to(model.device)
        model.data_std = stats["std"].float().to(model.device)


def save_model(model: DiffAE, path: str | Path, step: int | None = None, half: bool = True) -> Path:
    """Write a small pretrained file: the model's config, weights and data statistics.

    Args:
        model: a :class:`DiffAE` built from a config.
        path: output file, e.g. ``assets/diffae_tiny.pt``.
        step: the training step the weights come from (stored as information).
        half: store floating-point weights as fp16 (half the size; loaded back as fp32).

    Raises:
        TypeError: `model` is not a DiffAE with a config.
    """
    if not isinstance(model, DiffAE) or model.config is None:
        raise TypeError(f"expected a DiffAE built from a config, got {type(model).__name__}")
    weights = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
               for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": PRETRAINED_FORMAT, "config": model.config.to_dict(), "weights": weights, "step": step,
                "data_stats": model.data_stats()}, path)
    return path
