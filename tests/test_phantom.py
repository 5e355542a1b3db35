import numpy as np
import pytest
from scipy import ndimage

from usdiff.data import (
    ACOUSTICS,
    AORTA,
    TISSUES,
    aorta_mask,
    count_components,
    hounsfield,
    make_phantom,
    tissue_colors,
    tissue_table,
)
from usdiff.data.phantom import APEX_X_MM, FRAME_MM, frame_grid


def test_same_seed_gives_identical_arrays_and_different_seeds_differ():
    a, b = make_phantom(7), make_phantom(7)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.hu, b.hu)
    assert a.aorta_center == b.aorta_center and a.aorta_radius == b.aorta_radius
    c = make_phantom(8)
    assert not np.array_equal(a.labels, c.labels)
    assert a.aorta_center != c.aorta_center


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_dtypes_and_label_values(size):
    p = make_phantom(3, size)
    assert p.labels.shape == (size, size) and p.labels.dtype == np.uint8
    assert p.hu.shape == (size, size) and p.hu.dtype == np.float32
    assert set(np.unique(p.labels)) <= set(TISSUES.values())
    assert p.size == size and p.meta["pixel_mm"] == pytest.approx(FRAME_MM / size)


def test_exactly_one_round_aorta_over_many_seeds():
    for size, seeds in ((128, range(60)), (64, range(60, 90))):
        for seed in seeds:
            p = make_phantom(seed, size)
            mask = aorta_mask(p.labels)
            assert count_components(mask) == 1, f"seed {seed}, size {size}"
            assert count_components(mask, min_area=int(mask.sum()) + 1) == 0
            # area close to pi r^2 and the recorded centre inside the lumen
            assert mask.sum() == pytest.approx(np.pi * p.aorta_radius ** 2, rel=0.3)
            cy, cx = (int(round(v)) for v in p.aorta_center)
            assert mask[cy, cx]


def test_anatomy_is_plausible():
    for seed in range(30):
        p = make_phantom(seed)
        labels = p.labels
        # IVC beside the aorta on the patient's right (image left), never touching it
        assert p.ivc_center[1] < p.aorta_center[1]
        near_aorta = ndimage.binary_dilation(aorta_mask(labels), iterations=2)
        assert not np.any(near_aorta & (labels == TISSUES["ivc"]))
        # vertebral body below the aorta; liver and IVC present
        assert p.vertebra_center[0] > p.aorta_center[0] + p.aorta_radius
        assert labels[int(p.vertebra_center[0]), int(p.vertebra_center[1])] == TISSUES["bone"]
        assert (labels == TISSUES["liver"]).sum() > 500
        assert (labels == TISSUES["ivc"]).sum() > 10


def test_wall_layers_follow_the_probe_in_order():
    for seed in range(10):
        p = make_phantom(seed)
        centre = p.labels[:, p.size // 2]
        # first labels under the probe along the central line: (gel) skin, fat, muscle
        runs = [int(v) for i, v in enumerate(centre) if i == 0 or v != centre[i - 1]]
        assert runs[:4] == [TISSUES[t] for t in ("background", "skin", "fat", "muscle")]
    # the probe face is an arc: background reaches deeper at the centre than at the fan edge
    _, x, depth, angle = frame_grid(128)
    assert np.all((depth < 0) == (make_phantom(0).labels == TISSUES["background"]))
    assert abs(x[0, 64] - APEX_X_MM) < FRAME_MM / 128


def test_tissue_table_and_hounsfield_values():
    z = tissue_table("impedance")
    assert z[TISSUES["bone"]] == pytest.approx(7.8) and z[TISSUES["liver"]] == pytest.approx(1.65)
    assert tissue_table("attenuation")[TISSUES["fat"]] == pytest.approx(0.63)
    assert ACOUSTICS[AORTA].scatter_density < 0.01        # anechoic blood
    with pytest.raises(ValueError, match="unknown tissue attribute"):
        tissue_table("colour")
    p = make_phantom(2)
    hu = p.hu
    assert np.median(hu[p.labels == TISSUES["bone"]]) > 300
    assert np.median(hu[p.labels == TISSUES["fat"]]) < -50
    assert np.all(hu[p.labels == TISSUES["background"]] == -1000)
    assert np.array_equal(hounsfield(p.labels, p.seed), hu)
    colors = tissue_colors()
    assert colors.shape == (len(TISSUES), 3) and len({tuple(c) for c in colors}) == len(TISSUES)


def test_bad_size_is_rejected():
    with pytest.raises(TypeError, match="size must be an int"):
        make_phantom(0, 64.0)
    with pytest.raises(ValueError, match=">= 16"):
        make_phantom(0, 8)
