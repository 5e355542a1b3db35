"""Random 2-D abdominal phantoms: CT-like transverse label maps under a convex probe.

A phantom is a square frame of ``FRAME_MM`` millimetres (``size`` pixels a side) seen from a
convex probe whose face touches the skin at the top. The probe's virtual apex lies above the
frame; depth is measured from the probe face along rays from the apex, so the abdominal wall
layers (skin, fat, muscle) follow the probe's arc as in real convex images.

Image left is the patient's right (radiological convention): liver and IVC on the left, the
aorta slightly right of the midline in front of the vertebral body.

Every organ is a star-shaped blob: an ellipse whose polar radius is perturbed by a few low
harmonics, evaluated with vectorised numpy on its bounding box.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache

import numpy as np
from scipy import ndimage

# ---------------------------------------------------------------------------------------------
# Probe and frame geometry (millimetres), shared with the renderers.
DEPTH_MM = 150.0          # imaging depth below the probe face
PROBE_RADIUS_MM = 60.0    # radius of curvature of the convex probe face
OPENING_DEG = 40.0        # fan opening angle
PAD_MM = 2.0              # margin between the fan and the frame's top edge
_HALF = np.deg2rad(OPENING_DEG / 2)
FRAME_MM = DEPTH_MM + PROBE_RADIUS_MM * (1 - np.cos(_HALF)) + 2 * PAD_MM   # square frame side
APEX_Y_MM = PAD_MM - PROBE_RADIUS_MM * np.cos(_HALF)                       # apex row (above frame)
APEX_X_MM = FRAME_MM / 2

# ---------------------------------------------------------------------------------------------
# Tissues: label values stored in the label maps.
TISSUES: dict[str, int] = {
    "background": 0,  # outside the body (above the probe face); coupling gel
    "skin": 1,
    "fat": 2,
    "muscle": 3,
    "liver": 4,
    "kidney": 5,
    "aorta": 6,
    "ivc": 7,
    "bone": 8,
    "bowel": 9,
    "gas": 10,
}
LABEL_NAMES: dict[int, str] = {v: k for k, v in TISSUES.items()}
NUM_LABELS = len(TISSUES)
BACKGROUND, SKIN, FAT, MUSCLE, LIVER, KIDNEY, AORTA, IVC, BONE, BOWEL, GAS = range(NUM_LABELS)


@dataclass(frozen=True)
class TissueProperties:
    """Acoustic and CT properties of one tissue.

    impedance in MRayl, attenuation in dB/cm/MHz, speed in m/s, hu in Hounsfield units.
    ``echogenicity`` is the constant brightness used by the clean simulator (0..1);
    ``scatter_density`` / ``scatter_mean`` / ``scatter_std`` are the speckle scatterer
    parameters used by the real-like renderer (Burger et al. mu0 / mu1 / sigma): the fraction
    of fine sub-cells holding a scatterer and the mean / std of its amplitude; ``texture_db``
    the strength of smooth heterogeneity of the real-like backscatter (0 = homogeneous).
    """

    name: str
    label: int
    hu: float
    impedance: float
    attenuation: float
    speed: float
    echogenicity: float
    scatter_density: float
    scatter_mean: float
    scatter_std: float
    texture_db: float = 0.0


# Values from docs (reference facts): impedance, attenuation, speed, scattering; HU typical
# unenhanced CT values. Muscle and bowel scattering are not tabulated there and are chosen here.
_P = TissueProperties
ACOUSTICS: dict[int, TissueProperties] = {p.label: p for p in [
    _P("background", BACKGROUND, -1000.0, 1.48, 0.0, 1480.0, 0.00, 0.000, 0.00, 0.00),
    _P("skin", SKIN, 40.0, 1.99, 1.0, 1730.0, 0.55, 0.200, 0.10, 0.20),
    _P("fat", FAT, -100.0, 1.38, 0.63, 1450.0, 0.22, 0.500, 0.50, 0.00, 4.0),
    _P("muscle", MUSCLE, 50.0, 1.70, 1.09, 1580.0, 0.30, 0.200, 0.35, 0.10, 3.0),
    _P("liver", LIVER, 60.0, 1.65, 0.70, 1550.0, 0.50, 0.190, 1.00, 0.24),
    _P("kidney", KIDNEY, 35.0, 1.62, 1.00, 1560.0, 0.38, 0.400, 0.60, 0.30, 3.0),
    _P("aorta", AORTA, 40.0, 1.61, 0.18, 1584.0, 0.02, 0.001, 0.00, 0.01),
    _P("ivc", IVC, 40.0, 1.61, 0.18, 1584.0, 0.03, 0.001, 0.00, 0.01),
    _P("bone", BONE, 700.0, 7.80, 5.00, 4080.0, 0.30, 0.780, 0.56, 0.10),
    _P("bowel", BOWEL, 20.0, 1.64, 0.90, 1560.0, 0.42, 0.300, 0.70, 0.30, 7.0),
    _P("gas", GAS, -900.0, 0.0004, 1.64, 330.0, 0.30, 0.780, 0.56, 0.10),
]}


@cache
def tissue_table(attribute: str) -> np.ndarray:
    """Lookup table ``(NUM_LABELS,)`` float32 (read-only) of one `TissueProperties` attribute,
    indexed by label."""
    if attribute not in TissueProperties.__dataclass_fields__ or attribute in ("name", "label"):
        raise ValueError(f"unknown tissue attribute {attribute!r}")
    table = np.array([getattr(ACOUSTICS[i], attribute) for i in range(NUM_LABELS)], dtype=np.float32)
    table.setflags(write=False)
    return table


_COLORS = {
    "background": (0.0, 0.0, 0.0), "skin": (0.96, 0.80, 0.69), "fat": (0.99, 0.91, 0.45),
    "muscle": (0.80, 0.30, 0.30), "liver": (0.55, 0.27, 0.07), "kidney": (0.85, 0.55, 0.75),
    "aorta": (0.90, 0.05, 0.05), "ivc": (0.20, 0.35, 0.90), "bone": (0.95, 0.95, 0.95),
    "bowel": (0.55, 0.70, 0.45), "gas": (0.45, 0.85, 0.95),
}


def tissue_colors() -> np.ndarray:
    """RGB colour per label ``(NUM_LABELS, 3)`` in [0, 1], for plotting label maps."""
    return np.array([_COLORS[LABEL_NAMES[i]] for i in range(NUM_LABELS)], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
@dataclass
class Phantom:
    """One random abdominal cross-section.

    labels: ``(H, W)`` uint8 tissue labels (values of `TISSUES`); hu: ``(H, W)`` float32 HU.
    Centres are ``(row, col)`` in pixels, radii in pixels.
    """

    labels: np.ndarray
    seed: int
    size: int
    aorta_center: tuple[float, float]
    aorta_radius: float
    ivc_center: tuple[float, float]
    vertebra_center: tuple[float, float]
    meta: dict = field(default_factory=dict)

    @cached_property
    def hu(self) -> np.ndarray:
        """CT-like Hounsfield map ``(H, W)`` float32: tissue values plus mild smooth texture."""
        return hounsfield(self.labels, self.seed)


def hounsfield(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Label map ``(H, W)`` -> HU map ``(H, W)`` float32 with smooth CT-like noise (std ~ 8 HU)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC7]))
    noise = rng.standard_normal((h // 4 + 2, w // 4 + 2)).astype(np.float32)
    noise = ndimage.zoom(noise, (h / (h // 4 + 2), w / (w // 4 + 2)), order=1, grid_mode=True, mode="nearest")
    hu = tissue_table("hu")[labels] + 8.0 * noise[:h, :w] * (labels != BACKGROUND)
    return hu.astype(np.float32)


def aorta_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the aorta label, same shape as `labels` (any ``(..., H, W)``)."""
    return np.asarray(labels) == AORTA


def count_components(mask: np.ndarray, min_area: int = 1) -> int:
    """Number of 8-connected components of a 2-D boolean mask ``(H, W)`` with at least `min_area`
    pixels (the aorta count of a label map or of a segmentation is ``count_components(aorta_mask(labels))``)."""
    labels, n = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    if n == 0 or min_area <= 1:
        return int(n)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    return int((sizes >= min_area).sum())


@lru_cache(maxsize=8)
def frame_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a ``size`` frame: ``(y_mm, x_mm, depth_mm, angle_rad)``, each (H, W).

    depth is the distance below the probe face along the ray from the apex, angle is the ray's
    angle from vertical (positive to the right).
    """
    c = (np.arange(size, dtype=np.float64) + 0.5) * (FRAME_MM / size)
    y, x = np.meshgrid(c, c, indexing="ij")
    dy, dx = y - APEX_Y_MM, x - APEX_X_MM
    depth = np.hypot(dy, dx) - PROBE_RADIUS_MM
    angle = np.arctan2(dx, dy)
    for a in (y, x, depth, angle):
        a.setflags(write=False)
    return y, x, depth, angle


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    return int(size)


class _Painter:
    """Paints star-shaped blobs (in mm) into a label map, vectorised on each bounding box."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator):
        self.labels = labels
        self.rng = rng
        self.size = labels.shape[0]
        self.px = FRAME_MM / self.size
        self.centres = ((np.arange(self.size) + 0.5) * self.px).astype(np.float32)

    def harmonics(self, amplitude: float, kmax: int = 4) -> list[tuple[float, float]]:
        """Random contour coefficients ``(amplitude, phase)`` for harmonics k = 2..kmax."""
        k = np.arange(2, kmax + 1)
        amp = amplitude * self.rng.uniform(0.3, 1.0, len(k)) / (k - 1)
        phase = self.rng.uniform(0, 2 * np.pi, len(k))
        return list(zip(amp.tolist(), phase.tolist()))

    def blob(self, label: int, cy: float, cx: float, a: float, b: float, angle: float = 0.0,
             wobble: list[tuple[float, float]] | None = None) -> None:
        """Paint an ellipse (semi-axes `a` along x, `b` along y, mm, rotated by `angle`) whose
        polar radius is ``1 + sum_k amp_k cos(k phi + phase_k)`` times the ellipse's."""
        a, b, cy, cx = float(a), float(b), float(cy), float(cx)
        extent = sum(w[0] for w in wobble) if wobble else 0.0
        rmax = max(a, b) * (1.0 + extent)
        px, n = self.px, self.size
        r0, r1 = max(0, math.floor((cy - rmax) / px - 0.5)), min(n, math.ceil((cy + rmax) / px + 0.5) + 1)
        c0, c1 = max(0, math.floor((cx - rmax) / px - 0.5)), min(n, math.ceil((cx + rmax) / px + 0.5) + 1)
        if r1 <= r0 or c1 <= c0:
            return
        dy = (self.centres[r0:r1] - np.float32(cy))[:, None]
        dx = (self.centres[c0:c1] - np.float32(cx))[None, :]
        c, s = math.cos(angle), math.sin(angle)
        u = np.float32(c / a) * dx + np.float32(s / a) * dy
        v = np.float32(c / b) * dy - np.float32(s / b) * dx
        r2 = u * u + v * v
        inside = r2 <= (1.0 - extent) ** 2
        if wobble:
            # only the annulus the contour can cross needs rho(phi); cos/sin(k phi) by recurrence
            amb = ~inside & (r2 < (1.0 + extent) ** 2)
            ua, va, ra = u[amb], v[amb], r2[amb]
            inv = 1.0 / np.sqrt(np.maximum(ra, np.float32(1e-12)))
            c1_, s1_ = ua * inv, va * inv
            ck, sk, rho = c1_, s1_, 1.0
            for amp, ph in wobble:
                ck, sk = ck * c1_ - sk * s1_, sk * c1_ + ck * s1_
                rho = rho + np.float32(amp * math.cos(ph)) * ck - np.float32(amp * math.sin(ph)) * sk
            inside[amb] = ra <= rho * rho
        self.labels[r0:r1, c0:c1][inside] = label


_PROFILE_T = np.linspace(-np.pi, np.pi, 1441)


@lru_cache(maxsize=8)
def _angle_index(size: int) -> np.ndarray:
    """Index ``(H, W)`` of each pixel's ray angle in `_PROFILE_T` (nearest)."""
    angle = frame_grid(size)[3]
    idx = np.rint((angle + np.pi) / (2 * np.pi) * (len(_PROFILE_T) - 1)).astype(np.intp)
    idx.setflags(write=False)
    return idx


def _smooth_profile(rng: np.random.Generator, angle_index: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random function (mm) of the ray angle, looked up at `angle_index` (any shape)."""
    k = np.array([1.0, 2.0, 3.0])[:, None]
    amp = amplitude * rng.uniform(0.2, 1.0, 3)[:, None] / k
    ph = rng.uniform(0, 2 * np.pi, 3)[:, None]
    table = (amp * np.sin(k * _PROFILE_T / _HALF * np.pi / 2 + ph)).sum(0)   # about -pi/2..pi/2 per fan
    return table.astype(np.float32)[angle_index]


def make_phantom(seed: int, size: int = 128) -> Phantom:
    """A random abdominal transverse cross-section; same `seed` and `size` -> identical arrays.

    Returns a `Phantom` with ``labels`` (size, size) uint8 and ``hu`` (size, size) float32
    (computed on first access).
    Exactly one aorta (a round blob, painted last so nothing covers it), an IVC beside it,
    the vertebral body below, liver, kidneys, psoas and abdominal wall layers.
    """
    size = _check_size(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED]))
    y_mm, _, depth, _ = frame_grid(size)
    aidx = _angle_index(size)
    labels = np.full((size, size), BOWEL, np.uint8)
    paint = _Painter(labels, rng)
    u = rng.uniform
    top = PAD_MM + PROBE_RADIUS_MM * (1 - np.cos(_HALF))  # frame row (mm) of the probe face at the centre

    # Abdominal wall thickness (mm) varies per person, and smoothly along the probe face.
    skin_t = u(1.5, 3.0)
    fat_t = u(6.0, 28.0)
    muscle_t = u(7.0, 14.0)
    wall = skin_t + fat_t + muscle_t

    # Vertebral body: anchors the deep anatomy.
    vx = APEX_X_MM + rng.normal(0.0, 7.0)
    vy = top + u(108.0, 124.0)
    va, vb = u(17.0, 22.0), u(13.0, 16.5)

    # Liver (image left), under the wall.
    lx = vx - u(30.0, 50.0)
    ly = top + wall + u(30.0, 48.0)
    paint.blob(LIVER, ly, lx, u(50.0, 72.0), u(34.0, 50.0), u(-0.35, 0.2), paint.harmonics(0.12))

    # Posterior muscles behind the vertebral level, psoas beside the vertebra.
    back = depth > (vy - top) + u(0.0, 8.0) + _smooth_profile(rng, aidx, 6.0)
    labels[back] = MUSCLE
    for side in (-1, 1):
        paint.blob(MUSCLE, vy + u(-4.0, 4.0), vx + side * (va + u(10.0, 16.0)), u(13.0, 18.0),
                   u(12.0, 16.0), side * u(0.0, 0.4), paint.harmonics(0.08))

    # Kidneys posterolateral (each present with probability 0.85).
    for side in (-1, 1):
        if u() < 0.85:
            paint.blob(KIDNEY, vy + u(-14.0, 6.0), vx + side * u(55.0, 72.0), u(22.0, 30.0),
                       u(16.0, 22.0), side * u(0.1, 0.6), paint.harmonics(0.1))

    # Vertebral body and posterior elements.
    paint.blob(BONE, vy, vx, va, vb, u(-0.1, 0.1), paint.harmonics(0.05))
    paint.blob(BONE, vy + vb + u(10.0, 14.0), vx, u(8.0, 13.0), u(4.0, 7.0), 0.0)

    # Aorta: round, anterior and slightly to the patient's left of the vertebral body.
    ar = u(8.5, 12.5)
    ax = vx + u(4.0, 14.0)
    ay = vy - vb - ar - u(2.0, 7.0)

    # IVC: flatter, to the patient's right of the aorta, never touching it.
    ia, ib = u(10.0, 15.0), u(4.5, 8.0)
    ix = ax - ar - ia - u(6.0, 16.0)
    iy = ay + u(-8.0, 4.0)
    paint.blob(IVC, iy, ix, ia, ib, u(-0.25, 0.25), paint.harmonics(0.1, 3))

    # Bowel gas pockets: anterior, to the patient's left, away from the aorta's rays.
    n_gas = rng.choice(3, p=[0.5, 0.35, 0.15])
    for _ in range(n_gas):
        gx = ax + u(28.0, 60.0)
        gy = top + wall + u(6.0, 35.0)
        paint.blob(GAS, gy, gx, u(4.0, 9.0), u(2.0, 4.0), u(-0.4, 0.4), paint.harmonics(0.15, 3))

    # Abdominal wall layers follow the probe face (depth from the probe along the rays).
    # Only rows above the deepest possible wall can hold wall pixels (depth >= y - top).
    rows = int(np.searchsorted(y_mm[:, 0], top + wall + 0.25 * fat_t + 4.0)) + 1
    d, ai = depth[:rows], aidx[:rows]
    d1 = skin_t + _smooth_profile(rng, ai, 0.5)
    d2 = d1 + fat_t + _smooth_profile(rng, ai, 0.25 * fat_t)
    d3 = d2 + muscle_t + _smooth_profile(rng, ai, 2.5)
    layer = np.select([d < 0, d < d1, d < d2, d < d3], [BACKGROUND, SKIN, FAT, MUSCLE], default=255)
    np.copyto(labels[:rows], layer.astype(np.uint8), where=layer != 255)

    # Aorta last: one connected, unbroken lumen.
    paint.blob(AORTA, ay, ax, ar, ar * u(0.92, 1.0), 0.0, paint.harmonics(0.04, 3))

    px = FRAME_MM / size
    return Phantom(
        labels=labels, seed=int(seed), size=size,
        aorta_center=(ay / px - 0.5, ax / px - 0.5), aorta_radius=ar / px,
        ivc_center=(iy / px - 0.5, ix / px - 0.5), vertebra_center=(vy / px - 0.5, vx / px - 0.5),
        meta={"wall_mm": {"skin": skin_t, "fat": fat_t, "muscle": muscle_t}, "n_gas": int(n_gas),
              "pixel_mm": px},
    )
