"""A folder laid out like a user's own data, rendered as another scanner would.

A user brings simulated frames with their label maps (from a CT pipeline) and *unlabelled* frames
from a scanner, of other patients, at the scanner's frame size. :func:`generate_scanner_folder`
writes such a folder from the built-in phantoms, with renderer settings other than the built-in
data set's (:class:`ScannerSettings`: transmit frequency, point-spread function, display
smoothing, gain, dynamic range, specular brightness) and a non-square frame::

    ROOT/sim/sim_000000.png        simulated frames of phantoms A
    ROOT/labels/sim_000000.png     their label maps (values of usdiff.data.TISSUES)
    ROOT/real/real_000000.png      scanner-like frames of *other* phantoms B (unpaired, unlabelled)
    ROOT/test_real/test_000000.png scanner-like frames of phantoms C, held out
    ROOT/test_labels/test_000000.png  their label maps (a labelled real test set, which few users have)
    ROOT/scanner.json              the settings, sizes and seed (``"complete": true`` once every file is written)

As in the built-in data set, the label maps are the phantom's; the scanner-like frames include the
real-like renderer's probe-pressure deformation (up to 1.5 mm), which the label maps do not follow.
A frame of ``(height, width)`` is rendered on a square of side ``max(height, width)`` and cut to
the frame: a landscape frame keeps the shallow rows (the probe at the top, the deepest part cut
off), a portrait one the central columns. Every file depends only on the arguments.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .generate import item_seed
from .phantom import make_phantom
from .render import OperatorSettings, RealPhysics, render_real, render_sim

__all__ = ["ScannerSettings", "OTHER_SCANNER", "SCANNER_FILE", "generate_scanner_folder", "crop_to_frame"]

SCANNER_FILE = "scanner.json"
SCANNER_FORMAT = "usdiff-scanner-folder"
_FOLDERS = ("sim", "labels", "real", "test_real", "test_labels")


@dataclass(frozen=True)
class ScannerSettings:
    """Renderer settings of one scanner (the defaults are the built-in data set's).

    Args:
        freq_mhz: transmit frequency (attenuation ``alpha * f * depth`` of both renderers).
        axial_psf_mm: axial width (sigma) of the real-like renderer's point-spread function.
        smooth: the real-like renderer's display smoothing (Gaussian sigma, px).
        gain_db: added to every drawn operator gain.
        dynamic_range_db: centre of the drawn dynamic range (uniform within +-3 dB); None: the
            built-in range, 50-62 dB.
        specular_gain: brightness of specular reflections.
    """

    freq_mhz: float = 2.0
    axial_psf_mm: float = 0.8
    smooth: float = 0.6
    gain_db: float = 0.0
    dynamic_range_db: float | None = None
    specular_gain: float = 80.0

    def __post_init__(self):
        for name in ("freq_mhz", "axial_psf_mm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.smooth >= 0 or not self.specular_gain >= 0:
            raise ValueError(f"smooth and specular_gain must be >= 0, got {self.smooth!r}, {self.specular_gain!r}")
        if self.dynamic_range_db is not None and not self.dynamic_range_db > 10:
            raise ValueError(f"dynamic_range_db must be > 10 dB or None, got {self.dynamic_range_db!r}")

    @property
    def physics(self) -> RealPhysics:
        """The real-like renderer's fixed physics with these settings."""
        return RealPhysics(freq_mhz=self.freq_mhz, specular_gain=self.specular_gain,
                           axial_sigma_mm=self.axial_psf_mm, smooth=self.smooth)

    def operator(self, seed: int) -> OperatorSettings:
        """The per-scan operator settings of render seed `seed`: the built-in draw, shifted by
        `gain_db` and with the dynamic range drawn around `dynamic_range_db`."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5CA7]))
        ops = OperatorSettings.draw(rng)
        ops = replace(ops, gain_db=ops.gain_db + self.gain_db)
        if self.dynamic_range_db is not None:
            ops = replace(ops, dynamic_range_db=float(self.dynamic_range_db + rng.uniform(-3.0, 3.0)))
        return ops


# A scanner unlike the built-in renderer: higher frequency (more attenuation), a shorter pulse,
# more display smoothing, brighter and with less dynamic range, duller specular reflections.
OTHER_SCANNER = ScannerSettings(freq_mhz=3.5, axial_psf_mm=0.5, smooth=1.0, gain_db=4.0, dynamic_range_db=45.0,
                                specular_gain=40.0)


def crop_to_frame(square: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """Cut a ``(S, S)`` render (``S = max(frame)``) to ``frame = (height, width)``: the top rows of a
    landscape frame, the central columns of a portrait one."""
    h, w = frame
    side = square.shape[0]
    if square.shape != (side, side) or side != max(h, w):
        raise ValueError(f"expected a ({max(h, w)}, {max(h, w)}) render for a {h}x{w} frame, got {square.shape}")
    left = (side - w) // 2
    return square[:h, left:left + w]


def _check_frame(frame) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in frame)
    except (TypeError, ValueError):
        raise ValueError(f"frame must be (height, width), got {frame!r}") from None
    if min(h, w) < 16 or max(h, w) > 1024:
        raise ValueError(f"frame sides must be in 16..1024 px, got {h}x{w}")
    return h, w


def _check_target(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} exists and is not a directory")
    if not root.is_dir() or not any(root.iterdir()):
        return
    try:
        ours = json.loads((root / SCANNER_FILE).read_text()).get("format") == SCANNER_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(f"{root} is not empty and was not written by generate_scanner_folder (no "
                              f"{SCANNER_FILE}): nothing was written; choose a new or empty folder")
    if not overwrite:
        raise FileExistsError(f"{root} already holds a scanner folder: pass overwrite=True (`usdiff data scanner "
                              "--overwrite`) to replace it, or choose another folder")


def generate_scanner_folder(out, n: int = 200, *, frame: tuple[int, int] = (96, 128),
                            scanner: ScannerSettings = OTHER_SCANNER, n_test: int = 100, seed: int = 1,
                            progress: bool = True, overwrite: bool = False) -> Path:
    """Write `n` simulated frames with labels, `n` unpaired scanner-like frames and `n_test` labelled
    held-out scanner-like frames into `out` (see the module doc); returns `out`.

    Phantom ``i`` of the folder uses ``item_seed(seed, i)``: the simulated frames are phantoms
    ``0 .. n-1``, the scanner-like ones ``n .. 2n-1`` and the test frames ``2n .. 2n+n_test-1``, so no
    anatomy is in two sets. With ``overwrite=True`` an earlier scanner folder is replaced (its
    numbered PNGs are removed first); a folder holding anything else is never written into.

    Raises:
        ValueError: a bad `n`, `n_test` or `frame`. FileExistsError: `out` is not empty (see above).
    """
    for name, value in (("n", n), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    h, w = _check_frame(frame)
    root = Path(out)
    _check_target(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    record = {"format": SCANNER_FORMAT, "version": 1, "complete": False}
    (root / SCANNER_FILE).write_text(json.dumps(record) + "\n")     # written first: the folder is ours
    for folder in _FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for stale in (root / folder).glob("*_[0-9][0-9][0-9][0-9][0-9][0-9].png"):
            stale.unlink()
    side = max(h, w)
    physics = scanner.physics
    jobs = [("sim", i, i) for i in range(n)] + [("real", i, n + i) for i in range(n)] + \
           [("test", i, 2 * n + i) for i in range(n_test)]
    for kind, i, index in tqdm(jobs, desc=f"scanner folder {h}x{w}", unit="frame", disable=not progress):
        s = item_seed(seed, index)
        phantom = make_phantom(s, side)
        labels = crop_to_frame(phantom.labels, (h, w))
        if kind == "sim":
            image = render_sim(phantom, freq_mhz=scanner.freq_mhz)
        else:
            image = render_real(phantom, s, settings=scanner.operator(s), physics=physics)
        name = f"{kind}_{i:06d}.png"
        image = np.rint(crop_to_frame(image, (h, w)) * 255.0).astype(np.uint8)
        folder = {"sim": "sim", "real": "real", "test": "test_real"}[kind]
        Image.fromarray(image, mode="L").save(root / folder / name)
        if kind != "real":
            Image.fromarray(labels, mode="L").save(root / ("labels" if kind == "sim" else "test_labels") / name)
    record = {"format": SCANNER_FORMAT, "version": 1, "complete": True, "n": n, "n_test": n_test, "frame": [h, w], "seed": seed,
              "scanner": asdict(scanner),
              "note": "sim/ (+labels/) and real/ show different phantoms; test_real/ (+test_labels/) is held out"}
    (root / SCANNER_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return root
