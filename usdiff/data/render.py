"""Two ultrasound renderers for the same phantom: a clean simulator and a real-like one.

Both propagate along the scan lines of a convex (curvilinear) probe on a polar grid
``(depth, line)`` and scan-convert back into the Cartesian frame (black outside the fan):

* `render_sim` mimics CT-based simulators (ImFusion-like): per-tissue constant echogenicity,
  intensity reflection ``R = ((Z2 - Z1) / (Z2 + Z1))^2`` at interfaces with ``1 - R``
  transmitted, two-way attenuation ``alpha * f * depth`` (dB) with time-gain compensation,
  hence acoustic shadows behind bone and gas. Homogeneous, little fine detail.
* `render_real` adds what real scans have: fully developed speckle (random complex scatterers
  convolved with a Gaussian point-spread function, envelope = magnitude of the IQ signal), bright
  angle-dependent specular reflections and vessel/organ walls, reverberation bands below strong
  near-field interfaces, operator gain / TGC / dynamic range, electronic noise, log compression
  and a slight probe-pressure deformation of the anatomy.

Pixels of the returned images are float32 in ``[0, 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from .phantom import (
    AORTA,
    APEX_X_MM,
    APEX_Y_MM,
    BONE,
    DEPTH_MM,
    FRAME_MM,
    GAS,
    IVC,
    KIDNEY,
    LIVER,
    NUM_LABELS,
    OPENING_DEG,
    PROBE_RADIUS_MM,
    TISSUES,
    Phantom,
    frame_grid,
    tissue_table,
)

RAYLEIGH_SNR = 1.0 / np.sqrt(4.0 / np.pi - 1.0)   # mean / std of a Rayleigh envelope, ~1.913
AXIAL_OVERSAMPLING = 1                            # real-like renderer: depth samples per pixel
_WALLED = np.zeros(NUM_LABELS, bool)
_WALLED[[LIVER, KIDNEY, AORTA, IVC]] = True       # capsule or vessel wall: bright boundary in real US
WALL_IMPEDANCE = 1.99
_DB10 = np.log(10.0) / 10.0    # 10 ** (x / 10) == exp(x * _DB10)
_DB20 = np.log(10.0) / 20.0


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FanGeometry:
    """Polar sampling and scan conversion of a convex probe for a ``size`` x ``size`` frame.

    ``rows``, ``cols``: ``(n_depth, n_lines)`` float pixel coordinates of the polar samples;
    ``depth_mm``: ``(n_depth,)``; ``angle_rad``: ``(n_lines,)``; ``fan``: ``(size, size)`` bool;
    ``pix``: ``(M,)`` flat indices of the fan pixels, ``idx``/``weight``: ``(4, M)`` bilinear
    taps into the flattened polar grid.
    """

    size: int
    n_depth: int
    n_lines: int
    depth_mm: np.ndarray
    angle_rad: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    fan: np.ndarray
    pix: np.ndarray
    idx: np.ndarray
    weight: np.ndarray

    @property
    def dz_mm(self) -> float:
        """Axial sample spacing in mm."""
        return DEPTH_MM / self.n_depth

    def line_spacing_mm(self) -> np.ndarray:
        """Lateral distance between neighbouring lines at each depth, ``(n_depth,)`` mm."""
        return (PROBE_RADIUS_MM + self.depth_mm) * np.deg2rad(OPENING_DEG) / self.n_lines

    def sample(self, image: np.ndarray, drow: np.ndarray | None = None,
               dcol: np.ndarray | None = None) -> np.ndarray:
        """Nearest-neighbour samples of a Cartesian ``(size, size)`` map on the polar grid.

        Optional displacements ``drow``/``dcol`` ``(n_depth, n_lines)`` in pixels deform the map.
        Returns ``(n_depth, n_lines)``.
        """
        r, c = self.rows, self.cols
        if drow is not None:
            r = r + drow
        if dcol is not None:
            c = c + dcol
        r = np.clip(np.rint(r), 0, self.size - 1).astype(np.intp)
        c = np.clip(np.rint(c), 0, self.size - 1).astype(np.intp)
        return image[r, c]

    def scan_convert(self, polar: np.ndarray) -> np.ndarray:
        """Polar ``(n_depth, n_lines)`` (real or complex) -> Cartesian ``(size, size)``, 0 outside the fan."""
        flat = polar.reshape(-1)
        vals = (flat[self.idx] * self.weight).sum(0)
        out = np.zeros(self.size * self.size, dtype=vals.dtype)
        out[self.pix] = vals
        return out.reshape(self.size, self.size)


@lru_cache(maxsize=16)
def fan_geometry(size: int, n_depth: int | None = None, n_lines: int | None = None) -> FanGeometry:
    """The cached `FanGeometry` of a ``size`` frame: 40 degree fan, 150 mm depth.

    Defaults: ``n_depth = size`` samples per line and ``n_lines = size`` lines (128 at 128 px).
    """
    n_depth = int(n_depth or size)
    n_lines = int(n_lines or size)
    half = np.deg2rad(OPENING_DEG / 2)
    px = FRAME_MM / size
    depth = (np.arange(n_depth) + 0.5) * (DEPTH_MM / n_depth)
    angle = -half + (np.arange(n_lines) + 0.5) * (2 * half / n_lines)
    r = PROBE_RADIUS_MM + depth[:, None]
    rows = (APEX_Y_MM + r * np.cos(angle)[None, :]) / px - 0.5
    cols = (APEX_X_MM + r * np.sin(angle)[None, :]) / px - 0.5

    _, _, pdepth, pangle = frame_grid(size)
    fan = (pdepth >= 0) & (pdepth <= DEPTH_MM) & (np.abs(pangle) <= half)
    fd = np.clip(pdepth[fan] / DEPTH_MM * n_depth - 0.5, 0, n_depth - 1)
    fl = np.clip((pangle[fan] + half) / (2 * half) * n_lines - 0.5, 0, n_lines - 1)
    d0 = np.minimum(np.floor(fd).astype(np.intp), n_depth - 2)
    l0 = np.minimum(np.floor(fl).astype(np.intp), n_lines - 2)
    td, tl = fd - d0, fl - l0
    idx = np.stack([d0 * n_lines + l0, d0 * n_lines + l0 + 1, (d0 + 1) * n_lines + l0,
                    (d0 + 1) * n_lines + l0 + 1])
    weight = np.stack([(1 - td) * (1 - tl), (1 - td) * tl, td * (1 - tl), td * tl]).astype(np.float32)
    rows, cols = rows.astype(np.float32), cols.astype(np.float32)
    arrays = [depth, angle, rows, cols, fan, idx, weight]
    pix = np.flatnonzero(fan)
    for a in [*arrays, pix]:
        a.setflags(write=False)
    return FanGeometry(size, n_depth, n_lines, depth, angle, rows, cols, fan, pix, idx, weight)


# ---------------------------------------------------------------------------------------------
def _check_phantom(phantom) -> np.ndarray:
    labels = phantom.labels if isinstance(phantom, Phantom) else np.asarray(phantom)
    if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
        raise ValueError(f"phantom labels must be a square (H, W) map, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        labels = labels.astype(np.uint8)
    if labels.max() >= NUM_LABELS:
        raise ValueError(f"label map holds value {labels.max()}, valid labels are 0..{NUM_LABELS - 1}")
    return labels


def _interfaces(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intensity reflection ``R`` at each sample (interface with the sample above) and the
    one-way intensity transmission ``prod(1 - R)`` of all interfaces above it (squared for the
    round trip); both ``(n_depth, n_lines)`` float32."""
    z = np.take(tissue_table("impedance"), lab)
    refl = np.zeros_like(z)
    refl[1:] = ((z[1:] - z[:-1]) / (z[1:] + z[:-1])) ** 2
    trans = np.ones_like(z)
    trans[1:] = np.cumprod(1.0 - refl[:-1], axis=0)
    return refl, trans


def _attenuation_db(lab: np.ndarray, freq_mhz: float, dz_mm: float) -> np.ndarray:
    """Two-way attenuation (dB) from the probe to each sample, ``(n_depth, n_lines)``."""
    alpha = np.take(tissue_table("attenuation"), lab)
    per_sample = 2.0 * alpha * freq_mhz * (dz_mm / 10.0)
    cum = np.cumsum(per_sample, axis=0)
    return cum - 0.5 * per_sample   # to the middle of each sample


def _auto_tgc_db(att_db: np.ndarray) -> np.ndarray:
    """Automatic time-gain compensation (dB) ``(n_depth, 1)``: the median two-way attenuation
    over the scan lines at each depth, so that the image is on average equally bright at all
    depths while local differences (shadowing, enhancement behind vessels) remain."""
    return np.median(att_db[:, ::4], axis=1, keepdims=True)


def render_sim(phantom: Phantom | np.ndarray, *, freq_mhz: float = 2.0, interface_gain: float = 10.0,
               dynamic_range_db: float = 40.0, blur: float = 0.7) -> np.ndarray:
    """Clean simulated B-mode image ``(H, W)`` float32 in [0, 1] of a phantom (or label map).

    Intensity ``I = (e + interface_gain * R) * T^2 * A / TGC`` with ``e`` the tissue's backscatter
    (its `echogenicity` is the grey level of unattenuated tissue), ``T^2`` the two-way interface
    transmission and ``A`` the two-way attenuation; displayed as
    ``1 + 10 log10(I) / dynamic_range_db`` after light smoothing (`blur`, in polar samples).
    :func:`render_sim_with_envelope` also returns the amplitude ``sqrt(I)``.
    """
    knobs = {"freq_mhz": freq_mhz, "interface_gain": interface_gain, "dynamic_range_db": dynamic_range_db,
             "blur": blur}
    return _render_sim(phantom, envelope=False, **knobs)[0]


def render_sim_with_envelope(phantom: Phantom | np.ndarray, *, freq_mhz: float = 2.0, interface_gain: float = 10.0,
                             dynamic_range_db: float = 40.0, blur: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_sim`'s image and the amplitude ``sqrt(I)`` ``(H, W)`` float32 (before log compression)."""
    return _render_sim(phantom, envelope=True, freq_mhz=freq_mhz, interface_gain=interface_gain,
                       dynamic_range_db=dynamic_range_db, blur=blur)


def _render_sim(phantom, *, envelope: bool, freq_mhz: float, interface_gain: float, dynamic_range_db: float,
                blur: float) -> tuple[np.ndarray, np.ndarray | None]:
    labels = _check_phantom(phantom)
    geom = fan_geometry(labels.shape[0])
    lab = geom.sample(labels)
    refl, trans = _interfaces(lab)
    att_db = _attenuation_db(lab, freq_mhz, geom.dz_mm)
    loss = trans * trans * np.exp((_auto_tgc_db(att_db) - att_db) * np.float32(_DB10))
    backscatter = 10.0 ** ((tissue_table("echogenicity") - 1.0) * dynamic_range_db / 10.0)
    intensity = (np.take(backscatter, lab) + np.float32(interface_gain) * refl) * loss
    grey = 1.0 + np.log(np.maximum(intensity, np.float32(1e-12))) / np.float32(dynamic_range_db * _DB10)
    if blur > 0:
        grey = ndimage.gaussian_filter(grey, blur, mode="nearest")
    image = np.clip(geom.scan_convert(grey.astype(np.float32)), 0.0, 1.0)
    image[~geom.fan] = 0.0
    return image, (geom.scan_convert(np.sqrt(intensity).astype(np.float32)) if envelope else None)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatorSettings:
    """Per-scan machine settings of the real-like renderer (drawn from the render seed)."""

    gain_db: float
    dynamic_range_db: float
    tgc_db: tuple[float, ...]       # TGC deviation at equally spaced depths (dB)
    noise_db: float                 # electronic noise at full depth relative to liver speckle
    pressure_mm: float              # near-field compression by the probe
    shift_mm: float                 # lateral tissue shift

    @classmethod
    def draw(cls, rng: np.random.Generator) -> OperatorSettings:
        return cls(gain_db=float(rng.uniform(-4, 4)), dynamic_range_db=float(rng.uniform(50, 62)),
                   tgc_db=tuple(rng.uniform(-1.5, 1.5, 4).tolist()), noise_db=float(rng.uniform(-24, -14)),
                   pressure_mm=float(rng.uniform(0.0, 1.5)), shift_mm=float(rng.uniform(-0.75, 0.75)))


@lru_cache(maxsize=16)
def _lateral_psf(size: int, n_depth: int, n_lines: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth-dependent lateral Gaussian PSF: FFT transfer ``(n_depth, n_lines)`` with unit DC gain,
    and the per-depth gain ``(n_depth, 1)`` that gives filtered white noise unit power.

    The beam is narrowest at the 70 mm focus; widths grow with the pixel size beyond 1.2 mm so
    that speckle stays about a pixel or two wide at small image sizes.
    """
    geom = fan_geometry(size, n_depth, n_lines)
    sigma_mm = (1.1 + 0.012 * np.abs(geom.depth_mm - 70.0)) * _psf_scale(size)
    sigma_lines = sigma_mm / geom.line_spacing_mm()
    k = np.fft.fftfreq(n_lines)
    h = np.exp(-2.0 * (np.pi * sigma_lines[:, None] * k[None, :]) ** 2)
    gain = 1.0 / np.sqrt(np.mean(h * h, axis=1, keepdims=True))
    h, gain = h.astype(np.float32), gain.astype(np.float32)
    h.setflags(write=False)
    gain.setflags(write=False)
    return h, gain


@lru_cache(maxsize=16)
def _linear_upsampler(n: int, m: int) -> np.ndarray:
    """Matrix ``(n, m)`` that linearly interpolates m equally spaced knots onto n samples."""
    pos = np.linspace(0, m - 1, n)
    lo = np.minimum(np.floor(pos).astype(int), m - 2)
    t = pos - lo
    mat = np.zeros((n, m), np.float32)
    mat[np.arange(n), lo] = 1 - t
    mat[np.arange(n), lo + 1] = t
    mat.setflags(write=False)
    return mat


def _texture_field(rng: np.random.Generator, nd: int, nl: int) -> np.ndarray:
    """Smooth random field ``(nd, nl)`` float32 of about unit scale (tissue heterogeneity)."""
    coarse = rng.standard_normal((nd // 16 + 2, nl // 8 + 2), dtype=np.float32)
    return _linear_upsampler(nd, coarse.shape[0]) @ coarse @ _linear_upsampler(nl, coarse.shape[1]).T


def _psf_scale(size: int) -> float:
    return max(1.0, FRAME_MM / size / 1.2)


def _deformation(geom: FanGeometry, ops: OperatorSettings, rng: np.random.Generator):
    """Probe-pressure displacement (pixels) of the sampling points, two ``(n_depth, n_lines)``.

    The near field is compressed by up to ``ops.pressure_mm`` (most under the probe's centre)
    and deeper tissue shifted sideways by up to ``ops.shift_mm``.
    """
    px = FRAME_MM / geom.size
    d = (geom.depth_mm / DEPTH_MM).astype(np.float32)[:, None]
    t = (geom.angle_rad / np.deg2rad(OPENING_DEG / 2)).astype(np.float32)[None, :]
    bump = 1.0 - np.float32(0.5 * rng.uniform(0, 1)) * t * t
    drow = (np.float32(ops.pressure_mm / px) * (1.0 - np.exp(-d / np.float32(0.25)))) * bump
    dcol = (np.float32(ops.shift_mm / px) * np.sin(np.float32(np.pi) * d)) * (1.0 + np.float32(0.3) * t)
    return drow, dcol


@dataclass(frozen=True)
class RealPhysics:
    """The fixed physics of the real-like renderer (the same for every scan).

    Args:
        freq_mhz: transmit frequency (attenuation is ``alpha * f * depth``).
        specular_gain: brightness of specular reflections at interfaces facing the beam.
        reverb: amplitude ratio of successive reverberation echoes below shallow reflectors.
        axial_sigma_mm: axial width of the point-spread function.
        smooth: Gaussian display smoothing in pixels (0: none).
    """

    freq_mhz: float = 2.0
    specular_gain: float = 80.0
    reverb: float = 0.15
    axial_sigma_mm: float = 0.8
    smooth: float = 0.6


def render_real(phantom: Phantom | np.ndarray, seed: int, *, settings: OperatorSettings | None = None,
                deform: bool = True, physics: RealPhysics | None = None) -> np.ndarray:
    """Real-like B-mode image ``(H, W)`` float32 in [0, 1] of a phantom (or label map).

    `seed` draws the speckle, the operator `settings` (unless given) and the probe-pressure
    deformation (``deform=False`` renders the undeformed anatomy); `physics` holds the renderer's
    fixed knobs (default :class:`RealPhysics`). :func:`render_real_with_envelope` also returns the
    envelope.
    """
    return render_real_with_envelope(phantom, seed, settings=settings, deform=deform, physics=physics)[0]


def render_real_with_envelope(phantom: Phantom | np.ndarray, seed: int, *, settings: OperatorSettings | None = None,
                              deform: bool = True, physics: RealPhysics | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_real`'s image and its envelope ``(H, W)`` float32: the magnitude of the
    scan-converted IQ signal after TGC and before log compression, Rayleigh distributed in
    homogeneous tissue."""
    physics = physics if physics is not None else RealPhysics()
    freq_mhz, specular_gain, reverb = physics.freq_mhz, physics.specular_gain, physics.reverb
    axial_sigma_mm, smooth = physics.axial_sigma_mm, physics.smooth
    labels = _check_phantom(phantom)
    size = labels.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x4EA1]))
    ops = settings if settings is not None else OperatorSettings.draw(rng)
    geom = fan_geometry(size, AXIAL_OVERSAMPLING * size, size)
    nd, nl = geom.n_depth, geom.n_lines
    lab = geom.sample(labels, *_deformation(geom, ops, rng)) if deform else geom.sample(labels)

    # Path (amplitude, two-way): interface transmission and attenuation; TGC and operator gain.
    _, trans = _interfaces(lab)
    att_db = _attenuation_db(lab, freq_mhz, geom.dz_mm)
    tgc = _auto_tgc_db(att_db)
    op_db = np.interp(geom.depth_mm, np.linspace(0, DEPTH_MM, len(ops.tgc_db)), ops.tgc_db)[:, None]
    gain_db = (tgc + op_db + ops.gain_db).astype(np.float32)          # (nd, 1)
    path = trans * np.exp((gain_db - att_db) * np.float32(_DB20))   # (nd, nl)

    # Speckle: dense random scatterers, i.e. complex Gaussian with the tissue's mean backscatter
    # power density * (mu1^2 + sigma^2) (relative to liver), times a smooth heterogeneity.
    # Gains make the filtered speckle unit-power; electronic noise (before the TGC) adds in power.
    lat_h, lat_gain = _lateral_psf(size, nd, nl)
    ax_sigma = axial_sigma_mm * _psf_scale(size) / geom.dz_mm
    psf_gain = lat_gain * np.float32(np.sqrt(2.0 * np.sqrt(np.pi) * ax_sigma))   # (nd, 1)
    backscatter = _backscatter_power()
    power = np.take(backscatter, lab)
    texture = np.take(tissue_table("texture_db"), lab)
    if texture.any():
        power *= np.exp(texture * _texture_field(rng, nd, nl) * np.float32(_DB10))
    noise_power = 10.0 ** ((ops.noise_db - tgc[-1, 0] + gain_db) / 10.0)
    std = np.sqrt(power * path * path + noise_power) * (psf_gain * np.float32(np.sqrt(0.5)))
    iq = rng.standard_normal((nd, 2 * nl), dtype=np.float32).view(np.complex64)
    iq *= std

    # Specular reflections: bright where the interface faces the beam, through a thin bright wall
    # for organ capsules and vessels; coherent (slowly varying phase) along the interface.
    spec = specular_gain * _specular_amplitude(lab, geom)
    phase = np.cumsum(rng.normal(0.0, 0.25, nl)).astype(np.float32)
    carrier = np.exp(1j * phase).astype(np.complex64)
    iq += (spec * path) * carrier

    # Reverberation: echoes of strong shallow reflectors repeated at 2-4x their depth, not
    # shadowed (they never travel deeper), at the displayed (TGC-compensated) level.
    shallow = int(0.4 * nd)
    echo = spec[:shallow] * np.exp((tgc[:shallow] - att_db[:shallow] + ops.gain_db) * np.float32(_DB20))
    src = np.arange(shallow)
    for k in (2, 3, 4):
        dst = k * src
        ok = dst < nd
        iq[dst[ok]] += (reverb ** (k - 1) * echo[ok]) * (carrier * np.complex64(np.exp(0.7j * k)))

    # Point-spread function: Gaussian axially, depth-dependent Gaussian laterally (FFT).
    iq = _axial_filter(iq, ax_sigma)
    iq = sp_fft.ifft(sp_fft.fft(iq, axis=1) * lat_h, axis=1)

    # Scan conversion of the complex signal keeps the envelope statistics; then log compression.
    envelope = np.abs(geom.scan_convert(iq))
    db = np.log(np.maximum(envelope, np.float32(1e-6))) / np.float32(_DB20)
    image = (db - 0.45 * ops.dynamic_range_db) / ops.dynamic_range_db + 1.0
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    image[~geom.fan] = 0.0
    if smooth > 0:   # the scanner's display resampling, normalised inside the fan (no dark rim)
        image = ndimage.gaussian_filter(image, smooth, mode="constant") * _inverse_fan_weight(size, smooth)
    return image, envelope.astype(np.float32)


def _axial_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter (unit DC gain) of ``(n_depth, n_lines)`` along depth, edges held constant."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    padded = np.concatenate([np.repeat(x[:1], radius, 0), x, np.repeat(x[-1:], radius, 0)])
    out = taps[0] * padded[: len(x)]
    for k in range(1, 2 * radius + 1):
        out += taps[k] * padded[k: k + len(x)]
    return out


@lru_cache(maxsize=1)
def _backscatter_power() -> np.ndarray:
    """Mean speckle power per label relative to liver, ``(NUM_LABELS,)`` float32."""
    power = tissue_table("scatter_density") * (tissue_table("scatter_mean") ** 2
                                               + tissue_table("scatter_std") ** 2)
    return (power / power[LIVER]).astype(np.float32)


@lru_cache(maxsize=1)
def _wall_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label pair ``(NUM_LABELS, NUM_LABELS)`` float32: amplitude reflection coefficient of
    the interface ``|r|``; ``log Z`` per label ``(NUM_LABELS,)``; and whether a wall applies."""
    z = tissue_table("impedance").astype(np.float64)
    z0, z1 = z[:, None], z[None, :]
    direct = np.abs((z1 - z0) / (z1 + z0))
    wall = 0.5 * (np.abs((WALL_IMPEDANCE - z0) / (WALL_IMPEDANCE + z0))
                  + np.abs((z1 - WALL_IMPEDANCE) / (z1 + WALL_IMPEDANCE)))
    walled = _WALLED[:, None] | _WALLED[None, :]
    coef = np.where(walled, np.maximum(direct, wall), direct)
    np.fill_diagonal(coef, 0.0)
    return coef.astype(np.float32), np.log(z).astype(np.float32), walled


def _specular_amplitude(lab: np.ndarray, geom: FanGeometry) -> np.ndarray:
    """Amplitude reflection coefficient at each interface sample ``(n_depth, n_lines)`` float32,
    weighted by how squarely the interface faces the beam (0.1 parallel .. 1 normal); boundaries
    of walled tissues (capsules, vessels) reflect as through a thin layer of `WALL_IMPEDANCE`."""
    nd, nl = lab.shape
    coef, logz_table, _ = _wall_tables()
    ci, cj = np.nonzero(lab[1:] != lab[:-1])
    ci = ci + 1
    r = coef[lab[ci - 1, cj], lab[ci, cj]]
    # Orientation: central differences of the 3x3 box-smoothed log impedance at the interfaces.
    smooth = ndimage.uniform_filter(np.take(logz_table, lab), 3, mode="nearest")
    up, down = ci - 1, np.minimum(ci + 1, nd - 1)
    left, right = np.maximum(cj - 1, 0), np.minimum(cj + 1, nl - 1)
    gz = (smooth[down, cj] - smooth[up, cj]) / np.float32(2.0 * geom.dz_mm)
    gl = (smooth[ci, right] - smooth[ci, left]) / (2.0 * _line_spacing(geom)[ci])
    facing = gz * gz / (gz * gz + gl * gl + np.float32(1e-12))
    spec = np.zeros((nd, nl), np.float32)
    spec[ci, cj] = r * (0.1 + 0.9 * facing)
    return spec


@lru_cache(maxsize=16)
def _line_spacing(geom: FanGeometry) -> np.ndarray:
    spacing = geom.line_spacing_mm().astype(np.float32)
    spacing.setflags(write=False)
    return spacing


# ---------------------------------------------------------------------------------------------
def speckle_snr(envelope: np.ndarray, mask: np.ndarray) -> float:
    """Speckle SNR ``mean / std`` of `envelope` ``(H, W)`` over a boolean `mask` ``(H, W)``.

    Fully developed speckle (Rayleigh envelope) gives ``RAYLEIGH_SNR`` ~ 1.91; returns ``inf``
    for a constant region.

    Raises:
        ValueError: on shape mismatch or fewer than 2 masked pixels.
    """
    envelope, mask = np.asarray(envelope, dtype=np.float64), np.asarray(mask, bool)
    if envelope.shape != mask.shape:
        raise ValueError(f"envelope {envelope.shape} and mask {mask.shape} must have the same shape")
    values = envelope[mask]
    if values.size < 2:
        raise ValueError(f"mask selects {values.size} pixels; need at least 2")
    std = values.std()
    return float("inf") if std == 0 else float(values.mean() / std)


def local_snr_map(envelope: np.ndarray, window: int = 9, fan: np.ndarray | None = None) -> np.ndarray:
    """Local speckle SNR ``mean / std`` in a sliding ``window`` x ``window`` box, ``(H, W)`` float32.

    Pixels whose window leaves `fan` (when given) or whose std is 0 are NaN.
    """
    env = np.asarray(envelope, dtype=np.float64)
    mean = ndimage.uniform_filter(env, window, mode="nearest")
    sq = ndimage.uniform_filter(env * env, window, mode="nearest")
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(std > 1e-9 * np.maximum(mean, 1e-30), mean / std, np.nan)
    if fan is not None:
        inside = ndimage.minimum_filter(np.asarray(fan, np.uint8), window, mode="constant") > 0
        snr[~inside] = np.nan
    return snr.astype(np.float32)


@lru_cache(maxsize=16)
def _inverse_fan_weight(size: int, sigma: float) -> np.ndarray:
    """``1 / gaussian(fan)`` inside the fan and 0 outside, ``(size, size)`` float32."""
    fan = fan_geometry(size).fan
    weight = ndimage.gaussian_filter(fan.astype(np.float32), sigma, mode="constant")
    inv = np.where(fan, 1.0 / np.maximum(weight, 1e-6), 0.0).astype(np.float32)
    inv.setflags(write=False)
    return inv


def homogeneous_mask(phantom: Phantom | np.ndarray, tissue: str = "liver", margin: int = 4) -> np.ndarray:
    """Boolean ``(H, W)``: the interior of `tissue` inside the fan, at least `margin` pixels from
    its boundary and outside acoustic shadows, where speckle statistics are homogeneous."""
    labels = _check_phantom(phantom)
    if tissue not in TISSUES:
        raise ValueError(f"unknown tissue {tissue!r}; known: {sorted(TISSUES)}")
    inside = (labels == TISSUES[tissue]) & fan_geometry(labels.shape[0]).fan
    if margin > 0:
        inside = ndimage.binary_erosion(inside, iterations=int(margin))
    return inside & ~shadow_mask(labels)


def shadow_mask(phantom: Phantom | np.ndarray, occluders: tuple[int, ...] = (BONE, GAS)) -> np.ndarray:
    """Boolean ``(H, W)``: fan pixels whose scan line has already crossed an `occluders` label
    (bone, gas) above them, i.e. the acoustic shadow region (occluder pixels themselves excluded)."""
    labels = _check_phantom(phantom)
    geom = fan_geometry(labels.shape[0])
    lab = geom.sample(labels)
    hit = np.isin(lab, occluders)
    behind = np.zeros_like(hit)
    behind[1:] = np.logical_or.accumulate(hit, axis=0)[:-1]
    cart = geom.scan_convert(behind.astype(np.float32)) > 0.5
    return cart & geom.fan & ~np.isin(labels, occluders)
