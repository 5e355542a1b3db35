"""Dark-blob (aorta) detector on synthetic fans with drawn disks, and on the built-in phantoms."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from usdiff.metrics.anatomy import (
    anatomy_score,
    aorta_centroid,
    aorta_position_error,
    count_aortas,
    detect_dark_blobs,
    dice,
    fan_mask,
)

SIZE = 128


def sector(size=SIZE, half_angle=35.0):
    """Boolean convex-probe fan: apex above the top edge, opening 2 x half_angle degrees."""
    yy, xx = np.indices((size, size), dtype=float)
    apex_y, cx = -0.15 * size, size / 2
    r = np.hypot(yy - apex_y, xx - cx)
    ang = np.degrees(np.arctan2(xx - cx, yy - apex_y))
    return (np.abs(ang) < half_angle) & (r > 0.25 * size) & (r < 1.1 * size)


def fake_us(disks=(), ellipses=(), size=SIZE, seed=0, speckle=True, noise=0.0, attenuation=0.6):
    """A speckled fan getting darker with depth, with anechoic disks ``(cy, cx, r)``."""
    rng = np.random.default_rng(seed)
    fan = sector(size)
    if speckle:
        env = np.hypot(rng.standard_normal((size, size)), rng.standard_normal((size, size)))
        tissue = ndimage.gaussian_filter(env, 0.7) * 0.35
    else:
        tissue = np.full((size, size), 0.45)
    depth = np.linspace(0, 1, size)[:, None]
    img = tissue * (1 - attenuation * depth)
    yy, xx = np.indices((size, size))
    for cy, cx, r in disks:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 0.02
    for cy, cx, ry, rx in ellipses:
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 0.02
    img = img + noise * rng.standard_normal((size, size))
    return np.clip(np.where(fan, img, 0.0), 0, 1)


def test_fan_mask_fills_vessels_but_not_the_outside():
    img = fake_us(disks=[(60, 64, 8)])
    fan = fan_mask(img)
    assert fan[60, 64]  # the anechoic disk is a hole inside the fan: filled
    assert not fan[2, 2] and not fan[5, 64]
    assert abs(fan.sum() - sector().sum()) < 0.03 * sector().sum()


@pytest.mark.parametrize("seed", range(4))
def test_counts_drawn_disks_at_their_positions(seed):
    disks = [(50, 50, 7), (80, 78, 6)]
    img = fake_us(disks=disks, seed=seed)
    blobs = detect_dark_blobs(img)
    assert len(blobs) == 2 and count_aortas(img) == 2
    for cy, cx, r in disks:
        best = min(blobs, key=lambda b: math.hypot(b.cy - cy, b.cx - cx))
        assert math.hypot(best.cy - cy, best.cx - cx) < 1.0
        assert abs(best.radius - r) < 1.5
        assert best.circularity > 0.8


@pytest.mark.parametrize("seed", range(3))
def test_no_disk_gives_zero(seed):
    assert count_aortas(fake_us(seed=seed)) == 0
    assert count_aortas(fake_us(seed=seed, speckle=False)) == 0


@pytest.mark.parametrize("noise", [0.03, 0.08])
def test_robust_to_additive_noise(noise):
    img = fake_us(disks=[(64, 64, 7)], noise=noise, seed=1)
    blobs = detect_dark_blobs(img)
    assert len(blobs) == 1
    assert math.hypot(blobs[0].cy - 64, blobs[0].cx - 64) < 1.5


def test_rejects_elongated_tiny_and_border_structures():
    img = fake_us(ellipses=[(60, 64, 2.5, 14)], disks=[(90, 50, 1)], seed=2)
    assert count_aortas(img) == 0  # an elongated band and a 1-px dot are not vessels
    # a dark notch cut into the fan edge (a shadow opening to the outside) is not a vessel either
    img = fake_us(seed=2)
    yy, xx = np.indices(img.shape)
    img[(yy > 100) & (np.abs(xx - 64) < 6)] = 0.0
    assert count_aortas(img) == 0


def test_batches_tensors_and_model_range():
    a = fake_us(disks=[(60, 64, 7)], seed=0)
    b = fake_us(disks=[(50, 50, 7), (80, 78, 6)], seed=1)
    batch = torch.tensor(np.stack([a, b]), dtype=torch.float32)[:, None]  # (B, 1, H, W)
    np.testing.assert_array_equal(count_aortas(batch), [1, 2])
    assert len(detect_dark_blobs(batch)) == 2
    # (1, H, W) is one image; [-1, 1] inputs give the same result with value_range
    assert count_aortas(batch[1]) == 2
    assert count_aortas(batch[1] * 2 - 1, value_range=(-1, 1)) == 2


def test_position_error_and_score_against_a_label_map():
    aorta, ivc = 7, 8
    lab = np.zeros((SIZE, SIZE), dtype=np.uint8)
    yy, xx = np.indices(lab.shape)
    lab[(yy - 60) ** 2 + (xx - 64) ** 2 <= 49] = aorta
    img = fake_us(disks=[(62, 65, 7)], seed=3)
    cy, cx = aorta_centroid(lab, aorta)
    assert (cy, cx) == (60.0, 64.0)
    err = aorta_position_error(img, lab, aorta_label=aorta)
    assert abs(err - math.hypot(2, 1)) < 1.0
    score = anatomy_score(img, lab, aorta_label=aorta, vessel_labels=[aorta, ivc])
    assert score["aorta_count"] == 1 and score["aorta_found"] and score["extra_blobs"] == 0
    assert 0.6 < score["dice_vessels"] < 1.0
    # a second (hallucinated) aorta is an extra blob; no blob at all -> NaN error, not found
    two = anatomy_score(fake_us(disks=[(62, 65, 7), (95, 50, 6)], seed=3), lab, aorta_label=aorta,
                        vessel_labels=[aorta])
    assert two["aorta_count"] == 2 and two["extra_blobs"] == 1 and two["aorta_found"]
    none = anatomy_score(fake_us(seed=3), lab, aorta_label=aorta, vessel_labels=[aorta])
    assert none["aorta_count"] == 0 and not none["aorta_found"] and math.isnan(none["aorta_error_px"])
    assert none["dice_vessels"] == 0.0


def test_dice_closed_form_and_validation():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b[1:3] = True  # 8 px, 4 shared
    assert dice(a, b) == 0.5 and dice(a, a) == 1.0 and dice(~a & ~a, np.zeros_like(a)) == 0.0
    empty = np.zeros_like(a)
    assert math.isnan(dice(empty, empty))                  # absent from both: nothing to overlap
    np.testing.assert_array_equal(dice(np.stack([a, empty]), np.stack([b, empty])), [0.5, np.nan])
    with pytest.raises(ValueError, match="same shape"):
        dice(a, b[:2])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\)"):
        dice(a[0], b[0])
    with pytest.raises(ValueError, match="image must be"):
        detect_dark_blobs(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="label_map must have"):
        anatomy_score(np.zeros((8, 8)), np.zeros((4, 4)), aorta_label=1, vessel_labels=[1])


# ---- the built-in phantoms: simulated renders of known label maps -------------------

@pytest.fixture(scope="module", params=[64, 128])
def phantoms(request):
    from usdiff.data import make_phantom, render_sim

    return [(p, render_sim(p)) for p in (make_phantom(seed, request.param) for seed in range(20))]


def test_finds_the_single_aorta_in_simulated_phantoms(phantoms):
    from usdiff.data import TISSUES

    scores = [anatomy_score(sim, p.labels) for p, sim in phantoms]
    assert np.mean([s["aorta_count"] == 1 for s in scores]) >= 0.8
    assert all(s["aorta_found"] for s in scores)
    assert np.nanmax([s["aorta_error_px"] for s in scores]) < 2.0
    assert sum(s["extra_blobs"] for s in scores) == 0
    assert np.mean([s["dice_aorta"] for s in scores]) > 0.7
    # the label-map default is TISSUES["aorta"]; the phantom records the painted aorta centre
    p = phantoms[0][0]
    cy, cx = aorta_centroid(p.labels)
    assert TISSUES["aorta"] in np.unique(p.labels)
    assert math.hypot(cy - p.aorta_center[0], cx - p.aorta_center[1]) < 1.0


def test_a_copied_aorta_is_counted_as_an_extra_blob(phantoms):
    p, sim = phantoms[1]
    assert count_aortas(sim) == 1
    # paste the aorta patch somewhere else inside the liver: two aortas, one of them extra
    cy, cx = (int(round(v)) for v in p.aorta_center)
    r = int(math.ceil(p.aorta_radius)) + 2
    patch = sim[cy - r:cy + r + 1, cx - r:cx + r + 1].copy()
    fake = sim.copy()
    ty, tx = cy - 28 * p.size // 128, cx - 10 * p.size // 128
    fake[ty - r:ty + r + 1, tx - r:tx + r + 1] = patch
    score = anatomy_score(fake, p.labels)
    assert score["aorta_count"] == 2 and score["extra_blobs"] == 1 and score["aorta_found"]


def test_finds_the_aorta_in_real_like_renders_at_128px():
    from usdiff.data import make_phantom, render_real

    scores = []
    for seed in range(20):
        p = make_phantom(seed, 128)
        scores.append(anatomy_score(render_real(p, seed=seed), p.labels))
    assert np.mean([s["aorta_found"] for s in scores]) >= 0.75
    assert np.median([s["aorta_error_px"] for s in scores if s["aorta_found"]]) < 2.0
    assert np.mean([s["extra_blobs"] for s in scores]) <= 0.3
