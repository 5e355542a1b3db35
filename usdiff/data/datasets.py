"""Datasets: the built-in paired data set and folders of your own ultrasound images.

Every dataset yields ``(image, domain)``: ``image`` a float32 tensor ``(1, H, W)`` in ``[-1, 1]``
(or ``[0, 1]`` for a :class:`USImageFolder` read for the judges) and ``domain`` an int,
``SIM = 0`` or ``REAL = 1``. Problems with the data raise an error that names the path and what
is wrong; no file is ever skipped silently.

One reader per kind of file: :class:`USImageFolder` lists, validates and reads a folder of images,
:func:`read_image` one image, :func:`read_label_map` one label map; :func:`resize_label_maps`
brings label maps to a size (nearest neighbour) and :func:`load_builtin_arrays` holds a split of the
built-in data set in memory.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..utils import to_model_range
from .generate import FOLDERS, SPLITS, load_manifest

SIM, REAL = 0, 1
DOMAINS: dict[str, int] = {"sim": SIM, "real": REAL}
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_SIZE = 8
FITS = ("pad", "crop")


# ---- checks -------------------------------------------------------------------------------------

def check_size(size) -> int:
    """`size` as an int; raises ValueError unless it is an int >= `MIN_SIZE`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an int >= {MIN_SIZE} (pixels), got {size!r} ({type(size).__name__})")
    if size < MIN_SIZE:
        raise ValueError(f"size must be an int >= {MIN_SIZE} (pixels), got {size}")
    return int(size)


def check_domain(domain) -> int:
    """``"sim"``/``"real"`` (any case) or ``0``/``1`` -> 0/1; raises ValueError otherwise."""
    if isinstance(domain, str) and domain.lower() in DOMAINS:
        return DOMAINS[domain.lower()]
    if isinstance(domain, (int, np.integer)) and not isinstance(domain, bool) and int(domain) in (SIM, REAL):
        return int(domain)
    raise ValueError(f"domain must be 'sim', 'real', {SIM} or {REAL}, got {domain!r}")


def _check_extensions(extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    out = []
    for ext in extensions:
        if not isinstance(ext, str) or not ext.strip("."):
            raise ValueError(f"extensions must be strings such as '.png', got {extensions!r}")
        out.append("." + ext.lower().lstrip("."))
    if not out:
        raise ValueError("extensions must not be empty")
    return tuple(out)


def _check_folder(root, what: str = "image folder") -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{what} {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{what} {root} is a file, not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise PermissionError(f"{what} {root} cannot be listed: permission denied")
    return root


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                what: str = "image folder") -> list[Path]:
    """The image files directly inside `root`, sorted by name (hidden files and other extensions
    are not listed).

    Raises:
        FileNotFoundError: `root` does not exist. PermissionError: it cannot be listed.
        ValueError: `root` is a file, or it holds no file with one of the `extensions`.
    """
    extensions = _check_extensions(extensions)
    root = _check_folder(root, what)
    entries = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in entries if p.suffix.lower() in extensions]
    if not files:
        others = sorted({p.suffix.lower() or "(no extension)" for p in entries})
        found = f"; it holds {len(entries)} other files ({', '.join(others[:6])})" if entries else " (it is empty)"
        raise ValueError(f"no images with extensions {', '.join(extensions)} in {what} {root}{found}")
    return files


# ---- image loading ------------------------------------------------------------------------------

def _to_unit(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> grayscale float32 ``(H, W)`` in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / 65535.0
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def check_fit(fit) -> str:
    """``"pad"`` or ``"crop"``; raises ValueError naming the argument otherwise."""
    if fit not in FITS:
        raise ValueError(f"fit must be 'pad' or 'crop', got {fit!r}")
    return fit


def pad_to_square(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Zero-pad ``(H, W)`` to a square: top/bottom for landscape frames, left/right for portrait
    ones (centred). Returns the square image and the padding ``(top, bottom, left, right)``."""
    h, w = image.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = (top, side - h - top, left, side - w - left)
    return np.pad(image, ((pad[0], pad[1]), (pad[2], pad[3]))), pad


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float image to ``(height, width)`` (antialiased when shrinking)."""
    h, w = size
    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR),
                      dtype=np.float32)


def resize_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Float image ``(H, W)`` -> ``(size, size)``: zero-pad to a square (the whole fan is kept, as
    the original study prepared its frames), then bilinear resize."""
    if image.shape == (size, size):
        return image
    return _resize(pad_to_square(image)[0], (size, size))


def restore_size(image: np.ndarray, shape: tuple[int, int], fit: str = "pad") -> np.ndarray:
    """Undo :func:`resize_pad` / :func:`resize_center_crop` approximately: a ``(size, size)`` model
    output back to the input's ``(H, W)`` (for ``crop`` the cut-off sides are left black)."""
    h, w = shape
    if image.shape == (h, w):
        return image
    side = max(h, w)
    if check_fit(fit) == "pad":
        square = _resize(image, (side, side))
        top, left = (side - h) // 2, (side - w) // 2
        return square[top:top + h, left:left + w]
    short = min(h, w)
    out = np.zeros((h, w), np.float32)
    crop = _resize(image, (short, short))
    top, left = (h - short) // 2, (w - short) // 2
    out[top:top + short, left:left + short] = crop
    return out


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Float image ``(H, W)`` -> ``(size, size)``: bilinear resize of the shorter side, centre crop."""
    h, w = image.shape
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = Image.fromarray(image.astype(np.float32), mode="F").resize((new_w, new_h), Image.BILINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.asarray(img, dtype=np.float32)[top:top + size, left:left + size]


def read_image(path: str | Path, size: int | None = None, fit: str = "pad") -> torch.Tensor:
    """Read one image file (any mode: L, RGB, RGBA, palette, 16-bit) as a grayscale tensor
    ``(1, H, W)`` in ``[0, 1]``.

    `size` brings the image to ``(size, size)``: ``fit="pad"`` zero-pads it to a square first
    (the whole ultrasound fan is kept), ``fit="crop"`` resizes the shorter side and centre-crops
    (the fan's sides are cut off); None keeps the file's size.

    Raises:
        FileNotFoundError / PermissionError: the file is missing or not readable.
        ValueError: the file is not an image PIL can decode (names the file).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            unit = _to_unit(img)
    except (FileNotFoundError, PermissionError) as err:
        raise type(err)(f"cannot read image {path}: {err.strerror or err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None
    if size is not None:
        resize = resize_pad if check_fit(fit) == "pad" else resize_center_crop
        unit = np.clip(resize(unit, size), 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(unit)).unsqueeze(0)


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (raises like `read_image`)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (FileNotFoundError, PermissionError) as err:
        raise type(err)(f"cannot read image {path}: {err.strerror or err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None
    return h, w


def load_image(path: str | Path, size: int, fit: str = "pad") -> torch.Tensor:
    """Read one image file as a grayscale tensor ``(1, size, size)`` in ``[-1, 1]``.

    Raises the errors of `read_image`.
    """
    return to_model_range(read_image(path, size, fit))


_REPEAT = re.compile(r"_r\d+$")
_DOMAIN = re.compile(r"^(sim|real)_")


def find_source(folder: str | Path, image_file: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Path | None:
    """The file in `folder` that an output named after its source belongs to: ``ID`` itself, ``ID``
    without a repeat suffix ``_rK`` (``usdiff sample``), without a ``sim_`` / ``real_`` prefix, or
    without both, with any of `extensions` (None when there is none)."""
    folder, stem = Path(folder), Path(image_file).stem
    stems = dict.fromkeys([stem, _REPEAT.sub("", stem), _DOMAIN.sub("", stem), _DOMAIN.sub("", _REPEAT.sub("", stem))])
    for cand in stems:
        for ext in dict.fromkeys([Path(image_file).suffix.lower(), *extensions]):
            if ext and (folder / f"{cand}{ext}").is_file():
                return folder / f"{cand}{ext}"
    return None


def find_sources(folder: str | Path, image_files, what: str = "label map") -> list[Path]:
    """:func:`find_source` of every image in `image_files`, in order.

    Raises:
        FileNotFoundError: `folder` is missing, or naming the first image without its `what`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    out = []
    for f in image_files:
        path = find_source(folder, f)
        if path is None:
            raise FileNotFoundError(f"no {what} for {Path(f).name} in {folder} (looked for {Path(f).stem}.png and the "
                                    "names it is made from); images must be named after their source image")
        out.append(path)
    return out


def read_label_maps(labels_dir: str | Path, image_files, size: int, fit: str = "pad") -> np.ndarray:
    """The label map of every image in `image_files`, found by :func:`find_source` in `labels_dir`
    and brought to `size` with `fit` as the images are (:func:`fit_label_map`), ``(N, size, size)``.

    Raises:
        FileNotFoundError: `labels_dir` is missing, or naming the first image without a label map.
        ValueError: a label map that cannot be read.
    """
    maps = [read_label_map(p, size, fit) for p in find_sources(labels_dir, image_files, "label map")]
    return np.stack(maps) if maps else np.zeros((0, size, size), np.uint8)


def read_sources(sources_dir: str | Path, image_files, size: int, fit: str = "pad") -> torch.Tensor:
    """The source image of every (translated) image, found by :func:`find_source` in `sources_dir`,
    ``(N, 1, size, size)`` in [0, 1] (read by :func:`read_image` with `fit`)."""
    images = [read_image(p, size, fit) for p in find_sources(sources_dir, image_files, "source image")]
    return torch.stack(images) if images else torch.zeros(0, 1, size, size)


def fit_label_map(labels: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    """A label map ``(H, W)`` -> ``(size, size)`` uint8 the way :func:`read_image` brings its image
    there: ``fit="pad"`` pads a non-square map to a square with 0 (background, as the image's black)
    first, ``fit="crop"`` centre-crops the shorter side's square; then nearest-neighbour resize
    (:func:`resize_label_maps`), so that label map and image stay aligned."""
    labels = np.asarray(labels)
    check_fit(fit)
    if labels.ndim != 2:
        raise ValueError(f"a label map must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label maps must hold labels in 0..255, got {labels.min()}..{labels.max()}")
    h, w = labels.shape
    if h != w:
        if fit == "pad":
            labels = pad_to_square(labels.astype(np.uint8))[0]
        else:
            short = min(h, w)
            top, left = (h - short) // 2, (w - short) // 2
            labels = labels[top:top + short, left:left + short]
    return resize_label_maps(labels, size)


def read_label_map(path: str | Path, size: int | None = None, fit: str = "pad") -> np.ndarray:
    """Read one label map file as uint8 tissue labels ``(H, W)`` (``(size, size)`` with `size`,
    brought there by :func:`fit_label_map` with `fit`, as its image is by :func:`read_image`).

    Raises:
        ValueError: the file is missing or not an image PIL can decode (names the file).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            labels = np.asarray(img.convert("L") if img.mode != "L" else img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable label map ({type(err).__name__}: {err})") from None
    return labels if size is None else fit_label_map(labels, size, fit)


def resize_label_maps(labels, size: int | tuple[int, int]) -> np.ndarray:
    """Label maps ``(H, W)`` or ``(N, H, W)`` (array or tensor) -> uint8 ``(size, size)`` /
    ``(N, size, size)`` (`size` may also be ``(height, width)``), nearest neighbour: each output
    pixel takes the label under its centre (PIL's ``NEAREST``). Maps already at that size are
    returned as they are (as uint8).

    Raises:
        ValueError: `labels` is not 2-D or 3-D, or holds values outside 0..255.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"label maps must be (H, W) or (N, H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"label maps must hold labels in 0..255, got {labels.min()}..{labels.max()}")
    labels = labels.astype(np.uint8)
    h, w = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if labels.shape[-2:] == (h, w):
        return labels
    maps = labels[None] if labels.ndim == 2 else labels
    out = np.stack([np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST)) for m in maps]) \
        if len(maps) else np.zeros((0, h, w), np.uint8)
    return out[0] if labels.ndim == 2 else out


def verify_image(path: str | Path) -> None:
    """Cheap validity check of an image file (header and structure, no full decode).

    Raises the same errors as `load_image`.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.verify()
    except (FileNotFoundError, PermissionError) as err:
        raise type(err)(f"cannot read image {path}: {err.strerror or err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path} is not a readable image ({type(err).__name__}: {err})") from None


# ---- datasets -----------------------------------------------------------------------------------

class USImageFolder(torch.utils.data.Dataset):
    """All images directly inside `root` (sorted by name), as one domain: the one reader of a folder
    of images, for training, folder jobs and the judges alike.

    Images are converted to grayscale, brought to ``(size, size)`` (``fit="pad"``: zero-padded to a
    square, then resized, which keeps a whole ultrasound fan; ``fit="crop"``: shorter side resized,
    centre cropped; ``size=None`` keeps each file's size) and scaled to `value_range`: ``(-1, 1)``
    (the model's range, the default) or ``(0, 1)`` (the judges'). Files whose extension is not in
    `extensions` and hidden files (names starting with ``.``) are not part of the data set; `n`
    keeps the first `n` files. Every listed file is checked at construction, so a corrupt or
    unreadable image fails early; `what` names the folder in the error messages.

    Items: ``(image (1, size, size) float32, domain int)``; :meth:`images` stacks them all.
    Attributes ``files``, ``domain``.

    Raises:
        FileNotFoundError: `root` does not exist. ValueError: `root` is a file, holds no image
        with the listed extensions, an image is corrupt, or `size` / `domain` / `n` /
        `value_range` is invalid. PermissionError: `root` or an image cannot be read.
    """

    def __init__(self, root: str | Path, domain: str | int = "real", size: int | None = 128, *,
                 fit: str = "pad", n: int | None = None, value_range: tuple[float, float] = (-1.0, 1.0),
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, what: str = "image folder"):
        self.size = None if size is None else check_size(size)
        self.fit = check_fit(fit)
        self.domain = check_domain(domain)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"n must be an int >= 1 or None, got {n!r}")
        if tuple(value_range) not in ((-1.0, 1.0), (0.0, 1.0)):
            raise ValueError(f"value_range must be (-1, 1) or (0, 1), got {value_range!r}")
        self.value_range = tuple(float(v) for v in value_range)
        self.extensions = _check_extensions(extensions)
        self.root = _check_folder(root, what)
        self.files = list_images(self.root, self.extensions, what)[:n]
        for path in self.files:
            verify_image(path)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        unit = read_image(self.files[index], self.size, self.fit)
        return (unit if self.value_range == (0.0, 1.0) else to_model_range(unit)), self.domain

    def images(self) -> torch.Tensor:
        """Every image as one tensor ``(N, 1, H, W)`` in `value_range`.

        Raises:
            ValueError: with ``size=None``, when the images differ in size.
        """
        if self.size is None:
            shapes = sorted({image_shape(f) for f in self.files})
            if len(shapes) > 1:
                raise ValueError(f"images in {self.root} have different sizes {shapes[:4]}; pass size= "
                                 "to bring them to one size")
        return stack_images(self)

    @property
    def domains(self) -> np.ndarray:
        """Domain of every item, ``(N,)`` int64."""
        return np.full(len(self.files), self.domain, dtype=np.int64)

    def __repr__(self) -> str:
        name = {SIM: "sim", REAL: "real"}[self.domain]
        return f"USImageFolder({str(self.root)!r}, domain={name!r}, size={self.size}, n={len(self)})"


class TwoDomainDataset(torch.utils.data.ConcatDataset):
    """``root/sim`` (domain 0) followed by ``root/real`` (domain 1), each a `USImageFolder`.

    Attributes ``domains`` ``(N,)`` and ``files``. Raises FileNotFoundError naming a missing
    domain folder, and the errors of `USImageFolder`.
    """

    def __init__(self, root: str | Path, size: int = 128, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 fit: str = "pad"):
        size = check_size(size)
        self.root = _check_folder(root, "data folder")
        missing = [str(self.root / d) for d in DOMAINS if not (self.root / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.root} must hold the folders 'sim' and 'real'; missing: {', '.join(missing)}")
        parts = [USImageFolder(self.root / name, domain=d, size=size, extensions=extensions, fit=fit)
                 for name, d in DOMAINS.items()]
        super().__init__(parts)
        self.size = size
        self.files = [f for p in parts for f in p.files]
        self.domains = np.concatenate([p.domains for p in parts])


class BuiltinDataset(torch.utils.data.Dataset):
    """The generated paired data set (see `usdiff.data.generate_dataset`) read via its manifest.

    `split` selects ``"train" | "val" | "test" | "all"`` items; `domain` ``"sim" | "real" | "both"``
    (both = all sim images followed by all real ones). Dataset index ``k`` shows item
    ``ids[k % len(ids)]``; `label_map` and `pair` take the same index.

    Items: ``(image (1, size, size) float32 in [-1, 1], domain int)``.

    Raises:
        FileNotFoundError: missing folder, manifest or image files (names them).
        ValueError: bad `split`, `domain` or `size`, or an invalid manifest.
    """

    def __init__(self, root: str | Path, split: str = "train", domain: str = "both", size: int = 128):
        self.size = check_size(size)
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
        if domain not in ("sim", "real", "both"):
            raise ValueError(f"domain must be 'sim', 'real' or 'both', got {domain!r}")
        self.root, self.split, self.domain = Path(root), split, domain
        self.manifest = load_manifest(self.root)
        items = [it for it in self.manifest["items"] if split == "all" or it["split"] == split]
        if not items:
            raise ValueError(f"the {split!r} split of {self.root} is empty (n={self.manifest['n']})")
        self.ids = [it["id"] for it in items]
        self.seeds = [int(it["seed"]) for it in items]
        self._domain_list = [SIM, REAL] if domain == "both" else [DOMAINS[domain]]
        needed = FOLDERS if domain == "both" else (domain, "labels")
        for folder in needed:
            d = self.root / folder
            present = set(os.listdir(d)) if d.is_dir() else set()
            absent = [i for i in self.ids if f"{i}.png" not in present]
            if absent:
                raise FileNotFoundError(f"{d} lacks {len(absent)} of the {len(self.ids)} images of split "
                                        f"{split!r} (first: {absent[0]}.png); regenerate the data set")
        self.domains = np.repeat(np.array(self._domain_list, dtype=np.int64), len(self.ids))

    def __len__(self) -> int:
        return len(self.ids) * len(self._domain_list)

    def _item(self, index: int) -> tuple[str, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n}")
        index %= n
        return self.ids[index % len(self.ids)], self._domain_list[index // len(self.ids)]

    def _path(self, folder: str, item_id: str) -> Path:
        return self.root / folder / f"{item_id}.png"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item_id, dom = self._item(index)
        return load_image(self._path("sim" if dom == SIM else "real", item_id), self.size), dom

    def label_map(self, index: int) -> np.ndarray:
        """Tissue labels ``(size, size)`` uint8 of the phantom behind dataset index `index`."""
        item_id, _ = self._item(index)
        return read_label_map(self._path("labels", item_id), self.size)

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """``(sim (1, size, size), real (1, size, size), labels (size, size) uint8)`` of one phantom."""
        item_id, _ = self._item(index)
        return (load_image(self._path("sim", item_id), self.size),
                load_image(self._path("real", item_id), self.size), self.label_map(index))

    def __repr__(self) -> str:
        return (f"BuiltinDataset({str(self.root)!r}, split={self.split!r}, domain={self.domain!r}, "
                f"size={self.size}, n={len(self)})")


# ---- in memory ----------------------------------------------------------------------------------

def stack_images(dataset, indices: Sequence[int] | None = None) -> torch.Tensor:
    """The images of a map-style dataset's items (``image`` or ``(image, ...)``) at `indices`
    (default: all, in order) as one float32 tensor ``(N, C, H, W)``."""
    indices = range(len(dataset)) if indices is None else indices
    items = []
    for i in indices:
        item = dataset[int(i)]
        items.append(torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item))
    if not items:
        raise ValueError("no items to stack: the dataset (or the selection of it) is empty")
    return torch.stack(items).float()


def load_builtin_arrays(root, split: str, size: int, domains=("sim", "real"), n: int | None = None,
                        progress: bool = True) -> dict:
    """The `split` of the built-in data set in memory: ``{"sim": (N,1,S,S), "real": ..., "labels": (N,S,S)}``.

    Images are float32 tensors in [-1, 1] (read as :class:`BuiltinDataset` reads them), labels
    uint8 label maps (:meth:`BuiltinDataset.label_map`); index ``k`` of every entry is the same
    phantom; ``ids`` lists the item ids. `n` keeps the first `n` items of the split.
    """
    ds = {d: BuiltinDataset(root, split=split, domain=d, size=size) for d in domains}
    first = ds[domains[0]]
    count = len(first.ids) if n is None else min(int(n), len(first.ids))
    out = {d: torch.empty((count, 1, size, size)) for d in domains}
    labels = np.empty((count, size, size), np.uint8)
    for i in tqdm(range(count), desc=f"load {split} {size}px", disable=not progress, leave=False):
        for d in domains:
            out[d][i] = ds[d][i][0]
        labels[i] = first.label_map(i)
    out["labels"] = torch.from_numpy(labels)
    out["ids"] = list(first.ids[:count])
    return out
