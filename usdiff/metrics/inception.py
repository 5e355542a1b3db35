"""InceptionV3 features for FID/KID, from local weight files only (nothing is downloaded).

Two weight files are understood, told apart by their state-dict keys:

* ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid): the TensorFlow 2015-12-05 FID network
  (1008 classes, average pools that ignore padding, a max pool in the last block). Scores
  computed with it are comparable to published FID.
* ``inception_v3_google-0cc3c7bd.pth`` (torchvision ImageNet weights): a different network; its
  scores are **not** comparable to published FID, and a warning says so.

``layer="pool2"`` is the output of the second max pool (192 channels, the original study's
choice for small sets), ``layer="pool3"`` the final average pool (2048-d, the standard FID).
Both weight sets expect RGB input in ``[-1, 1]`` at 299 x 299.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE
from tqdm.auto import tqdm

from ..utils import get_device, to_model_range, unit_images

__all__ = ["InceptionFeatures", "extract_features", "find_inception_weights", "build_inception",
           "FID_WEIGHTS_NAME", "TORCHVISION_WEIGHTS_NAME", "FID_WEIGHTS_URL", "TORCHVISION_WEIGHTS_URL",
           "WEIGHTS_ENV"]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_NAME)
TORCHVISION_WEIGHTS_NAME = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_WEIGHTS_URL = "https://download.pytorch.org/models/" + TORCHVISION_WEIGHTS_NAME
WEIGHTS_ENV = "USDIFF_INCEPTION_WEIGHTS"
LAYERS = {"pool2": 192, "pool3": 2048}
INPUT_SIZE = 299


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 average pool does not count the zero padding.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _FIDInceptionA(InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))]


class _FIDInceptionC(InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        return [self.branch1x1(x), b7, bd, self.branch_pool(_tf_avg_pool(x))]


class _FIDInceptionE(InceptionE):
    """Last-stage block of the FID network: `max_pool` selects the pool of the pooling branch."""

    def __init__(self, in_channels: int, max_pool: bool = False):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        # The FID network (unlike the paper) uses a max pool in its very last block.
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return [self.branch1x1(x), b3, bd, self.branch_pool(pooled)]


def build_inception(kind: str = "fid", aux_logits: bool = False) -> Inception3:
    """An InceptionV3 with PyTorch's default initialisation (no weights are loaded).

    Args:
        kind: ``"fid"`` (the TF-ported FID network, 1008 classes) or ``"torchvision"``
            (torchvision's ImageNet architecture, 1000 classes).
        aux_logits: keep the auxiliary classifier (only torchvision's weight file has one).
    """
    if kind not in ("fid", "torchvision"):
        raise ValueError(f"kind must be 'fid' or 'torchvision', got {kind!r}")
    net = Inception3(num_classes=1008 if kind == "fid" else 1000, aux_logits=aux_logits,
                     transform_input=False, init_weights=False)
    if kind == "fid":
        net.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _FIDInceptionE(1280, max_pool=False)
        net.Mixed_7c = _FIDInceptionE(2048, max_pool=True)
    return net


# The FID network is recognised by its content, not by its key layout (random weights share the
# layout): the pytorch-fid file's SHA-256 begins with the hex digits in its name.
FID_SHA256_PREFIX = "6726825d"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _missing_weights_message() -> str:
    d = _checkpoint_dir()
    return (
        "No InceptionV3 weights found, and usdiff never downloads them. Place one of these files:\n"
        f"  {FID_WEIGHTS_NAME}  (the FID network; comparable to published FID)\n"
        f"      from {FID_WEIGHTS_URL}\n"
        f"  {TORCHVISION_WEIGHTS_NAME}  (torchvision ImageNet weights; NOT comparable to published FID)\n"
        f"      from {TORCHVISION_WEIGHTS_URL}\n"
        f"into the directory {d}/ (that is $TORCH_HOME/hub/checkpoints), or set the environment "
        f"variable {WEIGHTS_ENV}=/path/to/file, or pass weights='/path/to/file' (command line: --weights PATH). "
        "Fetch the file on a machine with internet access, e.g.\n"
        f"  mkdir -p {d} && curl -L -o {d / FID_WEIGHTS_NAME} {FID_WEIGHTS_URL}\n"
        "Without Inception weights: `usdiff fid --features us` (or `usdiff evaluate`) reports the offline FD-US "
        "in the shipped ultrasound critics' features, which is not FID."
    )


def find_inception_weights(weights: str | Path | None = None) -> Path:
    """Locate a weights file: `weights`, then ``$USDIFF_INCEPTION_WEIGHTS``, then
    ``$TORCH_HOME/hub/checkpoints/`` (the FID file first, then torchvision's).

    Raises:
        FileNotFoundError: if an explicit path or the environment variable names a missing file,
            or nothing is found; the message says which file to put where.
    """
    for source, value in (("weights", weights), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{source}={str(value)!r} is not a file.\n" + _missing_weights_message())
            return path
    for name in (FID_WEIGHTS_NAME, TORCHVISION_WEIGHTS_NAME):
        path = _checkpoint_dir() / name
        if path.is_file():
            return path
    raise FileNotFoundError(_missing_weights_message())


def _load_state_dict(path: Path) -> tuple[dict, str]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or arbitrary objects (never loaded)
        raise ValueError(f"{path} is not a readable InceptionV3 weights file ({type(err).__name__}); "
                         f"expected {FID_WEIGHTS_NAME} or {TORCHVISION_WEIGHTS_NAME}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state or "Conv2d_1a_3x3.conv.weight" not in state:
        raise ValueError(f"{path} is not an InceptionV3 state dict (pytorch-fid or torchvision key layout)")
    n_classes = state["fc.weight"].shape[0]
    if n_classes == 1008:
        return state, "fid"
    if n_classes == 1000:
        return {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}, "torchvision"
    raise ValueError(f"{path}: unrecognised InceptionV3 weights (fc has {n_classes} outputs, "
                     "expected 1008 for the FID network or 1000 for torchvision's)")


class InceptionFeatures(nn.Module):
    """InceptionV3 feature extractor: images ``(B, 1|3, H, W)`` -> features ``(B, 192|2048)``.

    Args:
        layer: ``"pool2"`` (second max pool, 192-d, global-average-pooled; the original
            study's choice) or ``"pool3"`` (final average pool, 2048-d; standard FID).
        weights: path to a weight file, ``None`` to look it up (see
            :func:`find_inception_weights`), or ``"random"`` for untrained weights -- **for shape
            tests only**: distances from random weights are not FID.
        device: where to run; default :func:`usdiff.utils.get_device`.
        value_range: pixel range of the inputs, ``(0, 1)`` (PNG convention) or ``(-1, 1)``
            (model outputs).

    Attributes:
        dim: feature size; kind: ``"fid"``, ``"torchvision"`` or ``"random"``;
        weights_name: which weights were used; metric: ``"FID"`` or a warning label.

    Images are mapped to ``[0, 1]``, grayscale is replicated to RGB, bilinearly resized to
    299 x 299 (antialiased, which only matters when shrinking) and scaled to ``[-1, 1]``.

    Raises:
        FileNotFoundError: if no weight file is found (the message says what to place where).
    """

    def __init__(self, layer: str = "pool2", weights: str | Path | None = None, device=None,
                 value_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {sorted(LAYERS)}, got {layer!r}")
        lo, hi = value_range
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.layer, self.dim, self.value_range = layer, LAYERS[layer], (float(lo), float(hi))
        if isinstance(weights, str) and weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = build_inception("fid")
            self.kind, self.weights_path = "random", None
            self.weights_name = "random (for shape tests only)"
            self.metric = "FD on random Inception weights (shape tests only; not FID)"
        else:
            path = find_inception_weights(weights)
            state, self.kind = _load_state_dict(path)
            net = build_inception(self.kind)
            net.load_state_dict(state)
            self.weights_path = path
            if self.kind == "fid" and file_sha256(path).startswith(FID_SHA256_PREFIX):
                self.weights_name = f"FID InceptionV3 ({path.name})"
                self.metric = "FID"
            elif self.kind == "fid":
                self.weights_name = f"InceptionV3 with the FID layout but other weights ({path.name})"
                self.metric = "FD on Inception features (not FID-comparable)"
                warnings.warn(
                    f"{path.name} has the FID network's layout but not its content (SHA-256 does not begin "
                    f"with {FID_SHA256_PREFIX}): distances are not comparable to published FID.", stacklevel=2)
            else:
                self.weights_name = f"torchvision ImageNet InceptionV3 ({path.name})"
                self.metric = "FID (torchvision weights; not comparable to published FID)"
                warnings.warn(
                    f"Using torchvision's ImageNet InceptionV3 weights ({path.name}): FID values are not "
                    f"comparable to published FID, which uses {FID_WEIGHTS_NAME}.", stacklevel=2)
        stem = [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
                net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2]
        if layer == "pool3":
            stem += [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                     net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c]
        self.blocks = nn.Sequential(*stem)  # only the layers needed; the rest is dropped
        self.requires_grad_(False)
        self.eval()
        self.to(get_device(device))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def name(self) -> str:
        return f"InceptionV3 {self.layer} ({self.dim}-d), {self.weights_name}"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1|3, H, W)`` in `value_range` -> ``(B, 3, 299, 299)`` in ``[-1, 1]``."""
        x = unit_images(x, self.value_range, INPUT_SIZE, self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return to_model_range(x)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1|3, H, W)`` -> features ``(B, dim)`` (float32)."""
        h = self.blocks(self.preprocess(x))
        return h.mean(dim=(2, 3))

    def train(self, mode: bool = True):
        # Batch norm must keep its running statistics: the extractor stays in eval mode.
        return super().train(False)


def _iter_batches(images, batch_size: int):
    """Yield image tensors from a tensor/array, a Dataset, or an iterable of batches."""
    if isinstance(images, torch.Tensor) or hasattr(images, "__array__"):
        images = torch.as_tensor(images)
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
        return
    if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__") \
            and not isinstance(images, torch.utils.data.IterableDataset):
        images = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False)
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        elif isinstance(batch, dict):
            batch = batch.get("image", batch.get("images"))
            if batch is None:
                raise ValueError("dict batches must hold the images under 'image' or 'images'")
        yield torch.as_tensor(batch)


def extract_features(extractor, images, batch_size: int = 50, progress: bool = True,
                     n: int | None = None):
    """Run `extractor` over all images and stack the features.

    Args:
        extractor: a module mapping ``(B, C, H, W)`` -> ``(B, D)``, e.g. :class:`InceptionFeatures`
            or :class:`usdiff.metrics.SemanticFeatures`.
        images: a tensor/array ``(N, C, H, W)``, a map-style Dataset (items ``image`` or
            ``(image, ...)``) or an iterable of batches (e.g. a DataLoader).
        batch_size: batch size for tensors and datasets (loaders keep their own).
        n: stop after this many images (default: all).

    Returns:
        ``np.ndarray`` of shape ``(N, D)``, float64.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    total = n
    if total is None:
        try:
            total = len(images)
            if isinstance(images, torch.utils.data.DataLoader):
                total = len(images.dataset)
        except TypeError:
            total = None
    feats, seen = [], 0
    bar = tqdm(total=total, desc="features", disable=not progress, leave=False)
    for batch in _iter_batches(images, batch_size):
        if n is not None:
            batch = batch[: n - seen]
        f = extractor(batch)
        feats.append(f.detach().to("cpu", torch.float64).numpy())
        seen += len(batch)
        bar.update(len(batch))
        if n is not None and seen >= n:
            break
    bar.close()
    if not feats:
        raise ValueError("images is empty: no features were extracted")
    return np.concatenate(feats, axis=0)
