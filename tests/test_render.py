import numpy as np
import pytest
from scipy import ndimage

from usdiff.data import (
    RAYLEIGH_SNR,
    TISSUES,
    OperatorSettings,
    fan_geometry,
    homogeneous_mask,
    local_snr_map,
    make_phantom,
    render_real,
    render_real_with_envelope,
    render_sim,
    render_sim_with_envelope,
    shadow_mask,
    speckle_snr,
)
from usdiff.data.phantom import DEPTH_MM, FRAME_MM, OPENING_DEG, PROBE_RADIUS_MM
from usdiff.data.render import _attenuation_db, _interfaces

LIVER, MUSCLE, FAT, BONE = (TISSUES[t] for t in ("liver", "muscle", "fat", "bone"))
QUIET = OperatorSettings(gain_db=0.0, dynamic_range_db=55.0, tgc_db=(0.0, 0.0, 0.0, 0.0), noise_db=-200.0,
                         pressure_mm=0.0, shift_mm=0.0)


@pytest.fixture(scope="module")
def renders():
    out = []
    for seed in range(6):
        p = make_phantom(seed)
        out.append((p, *render_sim_with_envelope(p), *render_real_with_envelope(p, seed)))
    return out


def test_renderers_are_deterministic_per_seed():
    p = make_phantom(11)
    assert np.array_equal(render_sim(p), render_sim(make_phantom(11)))
    a = render_real(p, 5)
    assert np.array_equal(a, render_real(p, 5))
    assert not np.array_equal(a, render_real(p, 6))


def test_the_envelope_comes_from_its_own_function():
    p = make_phantom(2, 48)
    image, envelope = render_real_with_envelope(p, 3)
    assert np.array_equal(image, render_real(p, 3)) and envelope.shape == image.shape
    sim, sim_env = render_sim_with_envelope(p)
    assert np.array_equal(sim, render_sim(p)) and sim_env.shape == sim.shape
    assert not np.array_equal(envelope, image) and not np.array_equal(sim_env, sim)   # amplitude, not display
    with pytest.raises(TypeError, match="return_envelope"):
        render_real(p, 3, return_envelope=True)


@pytest.mark.parametrize("size", [48, 128])
def test_outputs_are_float_images_black_outside_the_fan(size):
    p = make_phantom(1, size)
    fan = fan_geometry(size).fan
    for img in (render_sim(p), render_real(p, 1)):
        assert img.shape == (size, size) and img.dtype == np.float32
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert np.all(img[~fan] == 0.0)
        assert img[fan].mean() > 0.15


def test_fan_geometry_closed_form():
    size = 128
    geom = fan_geometry(size)
    assert geom.n_lines == 128 and geom.n_depth == size
    assert fan_geometry(64).n_lines == 64             # lines scale with the image size
    fan = geom.fan
    assert np.array_equal(fan, fan[:, ::-1])          # symmetric about the probe axis
    rows = np.flatnonzero(fan.any(1))
    widths = fan.sum(1)
    assert widths.max() > 3 * widths[rows[2]]          # widens with depth
    # widest extent = 2 (R + D) sin(opening / 2), in pixels
    expected = 2 * (PROBE_RADIUS_MM + DEPTH_MM) * np.sin(np.deg2rad(OPENING_DEG / 2)) / (FRAME_MM / size)
    assert widths.max() == pytest.approx(expected, abs=2.5)
    # bilinear scan conversion reproduces a constant polar image exactly inside the fan
    conv = geom.scan_convert(np.full((geom.n_depth, geom.n_lines), 0.7, np.float32))
    assert np.allclose(conv[fan], 0.7, atol=1e-6) and np.all(conv[~fan] == 0)
    assert geom.weight.sum(0) == pytest.approx(np.ones(geom.weight.shape[1]), abs=1e-5)


def test_interface_reflection_and_attenuation_closed_forms():
    lab = np.array([[FAT], [FAT], [MUSCLE], [MUSCLE], [BONE], [BONE]], np.uint8)
    refl, trans = _interfaces(lab)
    r1 = ((1.70 - 1.38) / (1.70 + 1.38)) ** 2
    r2 = ((7.8 - 1.70) / (7.8 + 1.70)) ** 2
    assert refl[:, 0] == pytest.approx([0, 0, r1, 0, r2, 0], rel=1e-5)
    assert trans[:, 0] == pytest.approx([1, 1, 1, 1 - r1, 1 - r1, (1 - r1) * (1 - r2)], rel=1e-5)
    # two-way attenuation alpha * f * depth, to the middle of each 1 mm sample
    liver = np.full((5, 1), LIVER, np.uint8)
    att = _attenuation_db(liver, 3.0, 1.0)[:, 0]
    assert att == pytest.approx(2 * 0.7 * 3.0 * (np.arange(5) + 0.5) / 10.0, rel=1e-5)


def test_bone_casts_an_acoustic_shadow_in_both_renderers(renders):
    fan = ndimage.binary_erosion(fan_geometry(128).fan, iterations=2)
    ratios_sim, ratios_real = [], []
    for p, sim, _, real, _ in renders:
        behind = shadow_mask(p, occluders=(BONE,))
        assert behind.sum() > 100
        clear = fan & (p.labels == MUSCLE) & ~ndimage.binary_dilation(p.labels == BONE, iterations=3)
        clear &= ~shadow_mask(p)   # not behind bone or gas
        shadowed = fan & (p.labels == MUSCLE) & ndimage.binary_erosion(behind, iterations=2)
        shadowed &= ~ndimage.binary_dilation(p.labels == BONE, iterations=3)
        ratios_sim.append(sim[shadowed].mean() / sim[clear].mean())
        ratios_real.append(real[shadowed].mean() / real[clear].mean())
    assert max(ratios_sim) < 0.1
    assert max(ratios_real) < 0.6 and np.median(ratios_real) < 0.45


def _liver_interior(p):
    mask = homogeneous_mask(p, "liver", margin=4)
    inside = (p.labels == LIVER) & fan_geometry(p.size).fan
    assert np.array_equal(mask, ndimage.binary_erosion(inside, iterations=4) & ~shadow_mask(p))
    return mask


def test_speckle_snr_is_rayleigh_for_real_and_far_from_it_for_sim(renders):
    real_snr, sim_snr = [], []
    for p, _, sim_env, _, real_env in renders:
        mask = _liver_interior(p)
        assert mask.sum() > 300
        real_snr.append(speckle_snr(real_env, mask))
        sim_snr.append(speckle_snr(sim_env, mask))
    assert all(1.6 < s < 2.2 for s in real_snr), real_snr
    assert abs(np.median(real_snr) - RAYLEIGH_SNR) < 0.2
    assert min(sim_snr) > 5.0


def test_homogeneous_tissue_gives_the_rayleigh_envelope():
    labels = np.full((128, 128), LIVER, np.uint8)
    fan = ndimage.binary_erosion(fan_geometry(128).fan, iterations=3)
    snr = [speckle_snr(render_real_with_envelope(labels, s, settings=QUIET, deform=False)[1], fan)
           for s in range(3)]
    assert np.mean(snr) == pytest.approx(RAYLEIGH_SNR, abs=0.1)
    _, sim_env = render_sim_with_envelope(labels)
    assert speckle_snr(sim_env, fan) > 50


def test_speckle_statistics_helpers():
    rng = np.random.default_rng(0)
    env = rng.rayleigh(2.0, (200, 200))
    full = np.ones(env.shape, bool)
    assert RAYLEIGH_SNR == pytest.approx(1.913, abs=1e-3)
    assert speckle_snr(env, full) == pytest.approx(RAYLEIGH_SNR, rel=0.02)
    assert speckle_snr(np.full((4, 4), 3.0), np.ones((4, 4), bool)) == float("inf")
    with pytest.raises(ValueError, match="same shape"):
        speckle_snr(env, full[:10])
    with pytest.raises(ValueError, match="at least 2"):
        speckle_snr(env, np.zeros(env.shape, bool))
    local = local_snr_map(env, window=15)
    assert np.nanmedian(local) == pytest.approx(RAYLEIGH_SNR, rel=0.05)
    fan = np.zeros(env.shape, bool)
    fan[50:150, 50:150] = True
    local = local_snr_map(env, window=9, fan=fan)
    assert np.isnan(local[0, 0]) and np.isnan(local[50, 50]) and np.isfinite(local[100, 100])


def test_real_differs_visibly_from_sim_and_vessels_are_dark(renders):
    for p, sim, _, real, _ in renders:
        liver = _liver_interior(p)
        # fine detail: the Laplacian is much stronger in the speckled image
        lap_sim = np.abs(ndimage.laplace(sim))[liver].mean()
        lap_real = np.abs(ndimage.laplace(real))[liver].mean()
        assert lap_real > 5 * lap_sim
        aorta = ndimage.binary_erosion(p.labels == TISSUES["aorta"], iterations=3)
        assert real[aorta].mean() < 0.6 * real[liver].mean()
        assert sim[aorta].mean() < 0.3 * sim[liver].mean()


def test_label_maps_are_validated():
    with pytest.raises(ValueError, match="square"):
        render_sim(np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="valid labels"):
        render_real(np.full((32, 32), 99, np.uint8), 0)
    with pytest.raises(ValueError, match="unknown tissue 'spleen'"):
        homogeneous_mask(make_phantom(0, 32), "spleen")
