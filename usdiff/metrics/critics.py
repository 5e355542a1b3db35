"""Independent ultrasound critics: judges of images that do not depend on the model being judged.

Three small networks, trained once on the built-in data (``scripts/train_critics.py``) and shipped
in ``assets/critics_{64,128}.pt``:

* :class:`DomainCritic` -- a CNN that tells simulated from real-like images. ``p_real(images)``
  is its probability that each image is real-like. Trained with augmentations (gain, gamma
  contrast, blur, additive noise, shifts) so that it judges texture (speckle, noise) rather than
  one pixel statistic.
* :class:`AnatomySegmenter` -- a small UNet trained on *real-like* images and their label maps
  that predicts every tissue class of the phantom. Anatomy preservation of a generated or
  translated image is the Dice of its segmentation against the *source's* label map.
* :class:`USFeatures` -- the "US feature space" for Fréchet distance (FD-US) and KID: the
  global-average-pooled last stage of the domain critic (texture, what separates the domains;
  128-d in the 64-px critics, 64-d in the 128-px ones) concatenated with the pooled bottleneck of
  the segmenter (72-d: which anatomy is where). ImageNet Inception features are a weak judge of speckle; these are trained on
  ultrasound and judge both realism and content.

None of them sees the Diffusion Autoencoder, so they can grade its samples and translations.
Images are ``(B, 1, H, W)`` tensors in `value_range` (default ``[0, 1]`` as for the other
feature extractors); any size is resized (bilinear, antialiased) to the critic's size.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import resize_label_maps
from ..data.phantom import LABEL_NAMES, NUM_LABELS, count_components
from ..utils import as_image_batch, get_device, to_model_range, unit_images
from .anatomy import dice

__all__ = [
    "CRITIC_SIZES",
    "DomainCritic",
    "AnatomySegmenter",
    "Critics",
    "USFeatures",
    "FD_US_NAME",
    "BUILTIN_LABEL_NAMES",
    "assets_dir",
    "critics_path",
    "load_critics",
    "dice_per_class",
    "anatomy_report",
]

CRITIC_SIZES = (64, 128)
FORMAT = "usdiff-critics"
BUILTIN_LABEL_NAMES = tuple(LABEL_NAMES[c] for c in range(NUM_LABELS))   # the built-in tissues, class 0 first
FD_US_NAME = "FD-US (Fréchet distance in the ultrasound critics' features)"


# ---- networks -------------------------------------------------------------------------------------

def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    groups = math.gcd(8, c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                         nn.GroupNorm(groups, c_out), nn.SiLU())


def _to_input(x, value_range, size: int, device) -> torch.Tensor:
    """Images in `value_range` -> ``(B, 1, size, size)`` in [-1, 1] on `device`."""
    return to_model_range(unit_images(x, value_range, size, device))


class DomainCritic(nn.Module):
    """Sim vs real-like CNN: 5 stages (a stride-2 convolution and a 3x3 convolution each, GroupNorm,
    SiLU), global average pooling, one logit (> 0 = real-like).

    Args:
        size: the image side it is trained for (inputs of other sizes are resized to it).
        width: channels of the first stage (the stages have width x (1, 2, 4, 6, 8)).
    """

    def __init__(self, size: int = 64, width: int = 16):
        super().__init__()
        self.size, self.width = int(size), int(width)
        chans = [width, 2 * width, 4 * width, 6 * width, 8 * width]
        layers, c_prev = [_block(1, chans[0])], chans[0]
        for c in chans:
            layers += [_block(c_prev, c, stride=2), _block(c, c)]
            c_prev = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_prev, 1)
        self.feature_dim = c_prev

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` in [-1, 1] -> pooled last-stage features ``(B, feature_dim)``."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` in [-1, 1] -> logits ``(B,)``."""
        return self.head(self.features(x)).squeeze(1)


class AnatomySegmenter(nn.Module):
    """A small UNet: ``(B, 1, H, W)`` in [-1, 1] -> logits ``(B, num_classes, H, W)``.

    Four resolutions (channels ``width x (1, 2, 4, 6)``), two 3x3 convolutions per level,
    max-pool down, bilinear up with skip concatenation.
    """

    def __init__(self, size: int = 64, width: int = 16, num_classes: int = NUM_LABELS):
        super().__init__()
        self.size, self.width, self.num_classes = int(size), int(width), int(num_classes)
        chans = [width, 2 * width, 4 * width, 6 * width]
        self.down = nn.ModuleList()
        c_prev = 1
        for c in chans:
            self.down.append(nn.Sequential(_block(c_prev, c), _block(c, c)))
            c_prev = c
        self.up = nn.ModuleList()
        for c_skip in reversed(chans[:-1]):
            self.up.append(nn.Sequential(_block(c_prev + c_skip, c_skip), _block(c_skip, c_skip)))
            c_prev = c_skip
        self.out = nn.Conv2d(c_prev, num_classes, 1)
        self.feature_dim = chans[-1]

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for i, stage in enumerate(self.down):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return skips

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled bottleneck features ``(B, feature_dim)``."""
        return self._encode(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self._encode(x)
        h = skips[-1]
        for stage, skip in zip(self.up, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = stage(torch.cat([h, skip], dim=1))
        return self.out(h)


# ---- shipped weights ------------------------------------------------------------------------------

def assets_dir() -> Path:
    """Folder of the shipped weights: ``$USDIFF_ASSETS`` if set, else the repository's ``assets/``."""
    env = os.environ.get("USDIFF_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "assets"


def critics_path(size: int) -> Path:
    """Path of the shipped critics for images of side `size` (64 or 128)."""
    if size not in CRITIC_SIZES:
        raise ValueError(f"size must be one of {CRITIC_SIZES} (the sizes critics are trained at), got {size!r}")
    return assets_dir() / f"critics_{size}.pt"


def nearest_critic_size(side: int) -> int:
    """The critic size for images of side `side`: 64 up to 64 px, else 128."""
    return 64 if side <= 64 else 128


@dataclass
class Critics:
    """The domain critic and anatomy segmenter for one image size, ready to judge images.

    Attributes: ``size``, ``domain`` (:class:`DomainCritic`), ``anatomy`` (:class:`AnatomySegmenter`,
    or None for critics fitted on images without label maps: they judge realism and FD-US in the
    domain critic's features alone), ``report`` (the held-out report stored with the weights),
    ``path``, ``label_names`` (the name of each class the segmenter predicts).
    """

    size: int
    domain: DomainCritic
    anatomy: AnatomySegmenter | None
    report: dict = field(default_factory=dict)
    path: Path | None = None
    label_names: tuple[str, ...] = BUILTIN_LABEL_NAMES

    @property
    def shipped(self) -> bool:
        """Whether these are the shipped critics (trained on the built-in data set), judged by their file."""
        if self.path is None or self.size not in CRITIC_SIZES:
            return False
        return Path(self.path).resolve() == critics_path(self.size).resolve()

    def _segmenter(self) -> AnatomySegmenter:
        if self.anatomy is None:
            raise ValueError("these critics have no anatomy segmenter (they were fitted on images without label "
                             "maps): anatomy Dice needs critics fitted with labels (`usdiff critics fit` with "
                             "ROOT/labels), or use the label-free structure measures")
        return self.anatomy

    @property
    def device(self) -> torch.device:
        return next(self.domain.parameters()).device

    def to(self, device) -> Critics:
        self.domain.to(device)
        if self.anatomy is not None:
            self.anatomy.to(device)
        return self

    def _batches(self, x, value_range, batch_size, size=None):
        x = as_image_batch(x, "images", min_count=0)
        for i in range(0, len(x), batch_size):
            yield _to_input(x[i:i + batch_size], value_range, size or self.size, self.device)

    @torch.no_grad()
    def p_real(self, images, value_range=(0.0, 1.0), batch_size: int = 128) -> np.ndarray:
        """Probability that each image is real-like, ``(N,)`` float64."""
        self.domain.eval()
        out = [torch.sigmoid(self.domain(x)).double().cpu() for x in self._batches(images, value_range, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros(0)

    @torch.no_grad()
    def segment(self, images, value_range=(0.0, 1.0), batch_size: int = 64) -> np.ndarray:
        """Predicted tissue label maps ``(N, size, size)`` uint8 (values of ``usdiff.data.TISSUES``).

        The segmenter works at its own resolution (``anatomy.size``); its logits are resized
        (bilinear) to the critics' ``size`` before the arg-max.
        """
        anatomy = self._segmenter().eval()
        out = []
        for x in self._batches(images, value_range, batch_size, anatomy.size):
            logits = anatomy(x)
            if logits.shape[-1] != self.size:
                logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
            out.append(logits.argmax(1).to(torch.uint8).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.size, self.size), np.uint8)

    def anatomy_scores(self, images, label_maps, value_range=(0.0, 1.0)) -> dict:
        """Segment `images` and compare with the *source* `label_maps` (see :func:`anatomy_report`)."""
        return anatomy_report(self.segment(images, value_range), label_maps, names=self.label_names)

    @torch.no_grad()
    def features(self, images, value_range=(0.0, 1.0), batch_size: int = 128) -> np.ndarray:
        """US features ``(N, feature_dim)`` float64 (see :class:`USFeatures`; the domain critic's
        alone when there is no segmenter)."""
        self.domain.eval()
        anatomy = self.anatomy.eval() if self.anatomy is not None else None
        out = []
        for x in self._batches(images, value_range, batch_size):
            parts = [self.domain.features(x)]
            if anatomy is not None:
                xa = x if anatomy.size == self.size else F.interpolate(
                    x, size=(anatomy.size,) * 2, mode="bilinear", antialias=True, align_corners=False)
                parts.append(anatomy.features(xa))
            out.append(torch.cat(parts, 1).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim))

    @property
    def feature_dim(self) -> int:
        return self.domain.feature_dim + (self.anatomy.feature_dim if self.anatomy is not None else 0)

    def state(self, half: bool = True) -> dict:
        """A ``torch.save``-able dict (loads with ``weights_only=True``); `half` stores fp16 weights."""
        anatomy = None if self.anatomy is None else {
            "size": self.anatomy.size, "width": self.anatomy.width, "num_classes": self.anatomy.num_classes,
            "state": _sd(self.anatomy, half)}
        return {"format": FORMAT, "version": 1, "size": self.size,
                "domain": {"width": self.domain.width, "state": _sd(self.domain, half)},
                "anatomy": anatomy, "label_names": list(self.label_names), "report": self.report}

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)
        return path


def _sd(module: nn.Module, half: bool) -> dict:
    return {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in module.state_dict().items()}


def _read_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated, not a torch file, or holding arbitrary objects
        raise ValueError(f"{path} is not a usdiff critics file ({type(err).__name__}); "
                         "re-create it with scripts/train_critics.py") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a usdiff critics file (no format {FORMAT!r}); "
                         "re-create it with scripts/train_critics.py")
    return state


def load_critics(size: int = 64, path: str | Path | None = None, device=None) -> Critics:
    """Load the shipped critics for images of side `size` (64 or 128), or those saved at `path`.

    Raises:
        FileNotFoundError: the weights are missing (says where they belong and how to make them).
        ValueError: the file is not a critics file.
    """
    path = Path(path) if path is not None else critics_path(size)
    if not path.is_file():
        raise FileNotFoundError(f"critics weights {path} are missing: they ship in the repository's assets/ "
                                f"folder (set USDIFF_ASSETS to another folder that holds critics_{size}.pt), "
                                "or re-create them with `python scripts/train_critics.py`")
    state = _read_state(path)
    size = int(state["size"])
    domain = DomainCritic(size, state["domain"]["width"])
    domain.load_state_dict({k: v.float() for k, v in state["domain"]["state"].items()})
    anatomy, seg = None, state.get("anatomy")
    if seg is not None:
        anatomy = AnatomySegmenter(seg["size"], seg["width"], seg["num_classes"])
        anatomy.load_state_dict({k: v.float() for k, v in seg["state"].items()})
        anatomy.eval()
    names = tuple(state.get("label_names", BUILTIN_LABEL_NAMES))
    critics = Critics(size, domain.eval(), anatomy, dict(state.get("report", {})), path, names)
    return critics.to(get_device(device))


class USFeatures(nn.Module):
    """The US feature space as an extractor for :func:`usdiff.metrics.distance_report`.

    Features: pooled last stage of the domain critic (texture: what tells the domains apart) and
    pooled bottleneck of the anatomy segmenter (content: which organs are where): 200-d for the
    shipped 64-px critics, 136-d for the 128-px ones.
    """

    def __init__(self, critics: Critics, value_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.critics = critics
        self.value_range = value_range
        self.dim = critics.feature_dim
        self.metric = FD_US_NAME

    @property
    def name(self) -> str:
        return f"US critics at {self.critics.size} px: domain critic last stage + segmenter bottleneck ({self.dim}-d)"

    @property
    def device(self) -> torch.device:
        return self.critics.device

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.critics.features(x, self.value_range)).float()


# ---- anatomy scores -------------------------------------------------------------------------------

def _label_batch(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} must be label maps (N, H, W), got shape {x.shape}")
    return x.astype(np.int64)


def dice_per_class(pred, target, num_classes: int = NUM_LABELS) -> np.ndarray:
    """Dice of every class in every image, ``(N, num_classes)``: :func:`usdiff.metrics.anatomy.dice`
    of the class's masks, NaN where a class is absent from both the prediction and the target (it
    does not count in a mean over the classes that occur).

    Label maps of different sizes: `pred` is resized (:func:`usdiff.data.resize_label_maps`) to
    `target`'s size.
    """
    pred, target = _label_batch(pred, "pred"), _label_batch(target, "target")
    if len(pred) != len(target):
        raise ValueError(f"pred and target differ in number: {len(pred)} vs {len(target)}")
    if pred.shape[1:] != target.shape[1:]:
        pred = resize_label_maps(pred, target.shape[1:]).astype(np.int64)
    out = np.full((len(pred), num_classes), np.nan)
    for c in range(num_classes):
        out[:, c] = dice(pred == c, target == c)
    return out


def anatomy_report(pred, label_maps, min_aorta_area: int | None = None,
                   names: tuple[str, ...] = BUILTIN_LABEL_NAMES) -> dict:
    """Anatomy preservation of predicted label maps against the source label maps.

    Returns a dict: ``dice`` ``{class name: mean Dice}`` over images where the class occurs,
    ``dice_mean`` (mean of the per-class means over the foreground classes that occur),
    ``dice_aorta``, ``aorta_count`` ``(N,)`` (components of the predicted aorta mask of at least
    `min_aorta_area` pixels; default ``(H / 64)^2 * 4``), ``one_aorta_rate`` and
    ``per_image`` ``(N, num_classes)`` Dice. `names` names the classes (class 0 first, the
    background); the aorta entries are NaN (counts -1) when no class is called ``"aorta"``.
    """
    pred, label_maps = _label_batch(pred, "pred"), _label_batch(label_maps, "label_maps")
    names = tuple(names)
    if max(int(pred.max(initial=0)), int(label_maps.max(initial=0))) >= len(names):
        raise ValueError(f"label maps hold class {max(int(pred.max(initial=0)), int(label_maps.max(initial=0)))} "
                         f"but only {len(names)} classes are named")
    per_image = dice_per_class(pred, label_maps, len(names))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_class = np.nanmean(per_image, axis=0)
    dice = {names[c]: float(per_class[c]) for c in range(1, per_image.shape[1]) if np.isfinite(per_class[c])}
    side = pred.shape[-1]
    min_area = max(1, round((side / 64) ** 2 * 4)) if min_aorta_area is None else int(min_aorta_area)
    if "aorta" in names:
        aorta = names.index("aorta")
        counts = np.array([count_components(p == aorta, min_area) for p in pred])
        one = float(np.mean(counts == 1)) if len(counts) else float("nan")
    else:
        counts, one = np.full(len(pred), -1), float("nan")
    return {"dice": dice, "dice_mean": float(np.mean(list(dice.values()))) if dice else float("nan"),
            "dice_aorta": dice.get("aorta", float("nan")), "aorta_count": counts,
            "one_aorta_rate": one, "per_image": per_image}
