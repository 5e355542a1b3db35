"""usdiff.experiments: reconstruction error, anatomy along strips, manipulation sweeps and their metrics,
where codes land, what z_sem carries; and the codes of data sets they start from (usdiff.latent)."""
import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from zmodels import tiny_z_model, toy_classifiers

from usdiff.data import TISSUES
from usdiff.experiments import (
    DDIMSteps,
    GoalSettings,
    Knob,
    anatomy_table,
    fine_texture,
    label_maps_at,
    manipulation_sweep,
    nearest_domain,
    reconstruction_error,
    strip_anatomy,
    sweep_metrics,
    z_swap_ratio,
)
from usdiff.latent import encode_dataset, encode_images
from usdiff.metrics.c2st import wilson_interval
from usdiff.model import DiffAE, get_config
from usdiff.translate import manipulate, manipulate_z

SIZE = 32
AORTA = TISSUES["aorta"]


@pytest.fixture(scope="module")
def model():
    """A tiny DiffAE whose decoder depends on z_sem (a fresh one ignores it: see tests/zmodels.py)."""
    return tiny_z_model(SIZE)


def images(n, seed=0, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def classifiers(model):
    """BCE and MSE classifiers on the random model's codes of two kinds of images."""
    return toy_classifiers(model, images)


class ListDataset:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


# ---- synthetic ultrasound-like frames -------------------------------------------------------------

def fan_frame(disks=(), size=64):
    """A bright fan (values in [-1, 1]) with anechoic disks ``(cy, cx, r)``."""
    yy, xx = np.indices((size, size), dtype=float)
    apex_y, cx = -0.15 * size, size / 2
    r = np.hypot(yy - apex_y, xx - cx)
    ang = np.degrees(np.arctan2(xx - cx, yy - apex_y))
    fan = (np.abs(ang) < 35) & (r > 0.25 * size) & (r < 1.1 * size)
    img = np.full((size, size), 0.45)
    for dy, dx, rad in disks:
        img[(yy - dy) ** 2 + (xx - dx) ** 2 <= rad**2] = 0.02
    return np.where(fan, img, 0.0) * 2 - 1


def label_map(cy, cx, rad, size=64):
    yy, xx = np.indices((size, size))
    lab = np.full((size, size), TISSUES["liver"], np.uint8)
    lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2] = AORTA
    return lab


# ---- encoding ---------------------------------------------------------------------------------------

def test_encode_images_matches_model_encode_in_any_batch_size(model):
    x = images(7)
    ref = model.encode(x).double().numpy()
    for bs in (1, 3, 64):
        z = encode_images(model, x, batch_size=bs)
        assert z.dtype == np.float64 and z.shape == (7, model.config.z_dim)
        np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode_images(model, x[:, 0]), ref, rtol=1e-5, atol=1e-6)  # (B, H, W)


def test_encode_dataset_returns_codes_and_labels_in_order(model):
    x = images(9, seed=3)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    ds = ListDataset(list(x), y)
    z, labels = encode_dataset(model, ds, batch_size=4, progress=False)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(z, model.encode(x).double().numpy(), rtol=1e-5, atol=1e-6)
    z_sub, y_sub = encode_dataset(model, ds, indices=[8, 0, 5], progress=False)
    np.testing.assert_allclose(z_sub, z[[8, 0, 5]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_sub, y[[8, 0, 5]])


@pytest.mark.parametrize("bad, message", [
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"indices": []}, r"nothing to encode: the dataset \(or the given indices\) is empty"),
])
def test_encode_dataset_rejects_bad_arguments(model, bad, message):
    with pytest.raises(ValueError, match=message):
        encode_dataset(model, ListDataset(list(images(2)), [0, 1]), progress=False, **bad)


def test_reconstruction_error_matches_the_closed_form_and_counts_unet_passes(model):
    x = images(5, seed=4)
    err = reconstruction_error(model, x, steps=3, batch_size=2)
    rec = torch.cat([model.reconstruct(c, steps=3) for c in x.split(2)])
    mse = (rec - x).square().flatten(1).mean(1)
    torch.testing.assert_close(err["mse"], mse)
    torch.testing.assert_close(err["psnr"], 10 * torch.log10(4 / mse))
    assert err["unet_calls"] == 2 * 3                     # plain inversion: one pass per step each way
    refined = reconstruction_error(model, x, steps=3, fixed_point_iters=2, batch_size=5)
    assert 2 * 3 < refined["unet_calls"] <= 3 + 3 * 3       # plus at most 2 refinements per step
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        reconstruction_error(model, x, batch_size=0)


# ---- anatomy ----------------------------------------------------------------------------------------

def test_strip_anatomy_finds_where_the_aorta_jumps():
    a, b = (30, 22, 5), (40, 42, 5)
    frames = np.stack([fan_frame([a])] * 3 + [fan_frame([b])] * 3)[:, None]
    res = strip_anatomy(frames, {"source": label_map(*a), "target": label_map(*b)})
    np.testing.assert_array_equal(res["aorta_count"], [1] * 6)
    assert res["jump"] == 2  # between frames 2 and 3
    assert res["mask_dice_next"][2] == 0.0
    np.testing.assert_allclose(res["mask_dice_next"][[0, 1, 3, 4]], 1.0)
    assert np.all(res["error_source"][:3] < 1) and np.all(res["error_target"][3:] < 1)
    dist = math.hypot(a[0] - b[0], a[1] - b[1])
    np.testing.assert_allclose(res["error_source"][3:], dist, atol=1)
    assert res["masks"].shape == (6, 64, 64) and res["masks"][0].sum() > 50


def test_strip_anatomy_counts_a_missing_aorta_as_nan():
    frames = np.stack([fan_frame([(30, 32, 5)]), fan_frame([])])
    res = strip_anatomy(frames, {"source": label_map(30, 32, 5)})
    np.testing.assert_array_equal(res["aorta_count"], [1, 0])
    assert res["error_source"][0] < 1 and np.isnan(res["error_source"][1])
    with pytest.raises(ValueError, match="a strip needs at least 2 frames, got 1"):
        strip_anatomy(frames[:1], {})


def test_anatomy_table_counts_and_locates_aortas():
    frames = np.stack([fan_frame([(30, 32, 5)]), fan_frame([(30, 32, 5), (45, 25, 4)]), fan_frame([])])[:, None]
    lab = label_map(30, 32, 5)
    table = anatomy_table(frames, lab)
    np.testing.assert_array_equal(table["aorta_count"], [1, 2, 0])
    np.testing.assert_array_equal(table["one_aorta"], [True, False, False])
    np.testing.assert_array_equal(table["aorta_found"], [True, True, False])
    np.testing.assert_array_equal(table["extra_blobs"], [0, 1, 0])
    same = anatomy_table(frames, np.stack([lab] * 3))
    np.testing.assert_array_equal(same["aorta_count"], table["aorta_count"])
    with pytest.raises(ValueError, match=r"label_maps must be \(H, W\) or \(B=3, H, W\), got shape \(2, "):
        anatomy_table(frames, np.stack([lab] * 2))


# ---- manipulation sweeps ------------------------------------------------------------------------

def test_manipulation_sweep_decodes_the_moved_codes_with_the_images_own_x_T(model, classifiers):
    x = images(3, seed=5)
    alphas = [0.0, 0.5]
    sweep = manipulation_sweep(model, x, classifiers, alphas, DDIMSteps(3, 3), batch_size=2, progress=False)
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, steps=3)
    torch.testing.assert_close(sweep["x_T"], x_T)
    recon = model.decode(x_T, z, steps=3)
    for name, clf in classifiers.items():
        assert sweep["images"][name].shape == (2, 3, 1, SIZE, SIZE)
        torch.testing.assert_close(sweep["images"][name][0], recon, atol=1e-4, rtol=1e-4)  # alpha 0: the reconstruction
        z_new = manipulate_z(z, clf, 0.5)
        torch.testing.assert_close(sweep["z_manip"][name][1], z_new)
        torch.testing.assert_close(sweep["images"][name][1], model.decode(x_T, z_new, steps=3), atol=1e-5, rtol=1e-5)
    # the two directions differ, and so do the decoded images (the test model uses z_sem)
    assert not torch.allclose(sweep["z_manip"]["bce"][1], sweep["z_manip"]["mse"][1])
    assert (sweep["images"]["bce"][1] - sweep["images"]["mse"][1]).abs().mean() > 1e-3
    assert (sweep["images"]["bce"][1] - sweep["images"]["bce"][0]).abs().mean() > 1e-3
    torch.testing.assert_close(sweep["z"], z)


def test_manipulation_sweep_is_translate_manipulate_per_classifier(model, classifiers):
    """The sweep runs the one manipulation protocol (usdiff.translate.manipulate), refinement included."""
    x = images(2, seed=6)
    ddim = DDIMSteps(3, 2, fixed_point_iters=1)
    sweep = manipulation_sweep(model, x, classifiers, [0.0, -0.4, 0.8], ddim, batch_size=None, progress=False)
    z = model.encode(x)
    torch.testing.assert_close(sweep["x_T"], model.encode_stochastic(x, z, steps=3, fixed_point_iters=1))
    for name, clf in classifiers.items():
        ref = manipulate(model, x, clf, [0.0, -0.4, 0.8], ddim=DDIMSteps(3, 2, 1), progress=False)
        torch.testing.assert_close(sweep["images"][name], ref["images"])
        torch.testing.assert_close(sweep["z_manip"][name], ref["z"])
    with pytest.raises(ValueError, match="alphas must contain at least one value"):
        manipulation_sweep(model, x, classifiers, [], progress=False)
    with pytest.raises(ValueError, match="classifiers must name at least one fitted LinearClassifier"):
        manipulation_sweep(model, x, {}, [0.5], progress=False)


def test_settings_values_refuse_what_cannot_run():
    assert DDIMSteps() == DDIMSteps(100, 100, 0)
    with pytest.raises(ValueError, match="decode must be a positive int, got 0"):
        DDIMSteps(10, 0)
    with pytest.raises(ValueError, match="fixed_point_iters must be an int >= 0, got -1"):
        DDIMSteps(fixed_point_iters=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DDIMSteps().encode = 3
    knob = Knob("t0", np.array([0.2, 0.4]))
    assert knob.values == (0.2, 0.4) and isinstance(knob.values, tuple)
    with pytest.raises(ValueError, match="knob 't0' needs at least one value"):
        Knob("t0", [])
    with pytest.raises(ValueError, match="a knob needs a name"):
        Knob("", [1.0])
    assert GoalSettings(n=24).n_swap == 64
    with pytest.raises(ValueError, match="n_swap must be a positive int, got 0"):
        GoalSettings(n_swap=0)


def test_label_maps_at_repeats_one_map_and_resizes_nearest():
    lab = label_map(30, 32, 5)
    out = label_maps_at(lab, 3, 32)
    assert out.shape == (3, 32, 32) and np.array_equal(out[0], out[2])
    assert set(np.unique(out)) == {TISSUES["liver"], AORTA}          # nearest resize: no blended labels
    assert label_maps_at(np.stack([lab, lab * 0]), 2, 64).shape == (2, 64, 64)


def test_measurements_load_neither_pyplot_nor_ipywidgets():
    code = ("import sys, usdiff.latent, usdiff.translate, usdiff.experiments; "
            "print(sorted(m for m in ('matplotlib.pyplot', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_sweep_metrics_realness_of_the_codes_grows_with_alpha(model, classifiers):
    x = torch.from_numpy(np.stack([fan_frame([(12, 16, 3)], size=SIZE)] * 3)[:, None]).float()
    sweep = manipulation_sweep(model, x, {"bce": classifiers["bce"]}, [-0.5, 0.0, 0.5, 1.0], DDIMSteps(2, 2),
                               progress=False)
    real_z = encode_images(model, images(10, seed=9))
    m = sweep_metrics(model, sweep, classifiers["bce"], label_map(12, 16, 3, size=SIZE), real_z=real_z)["bce"]
    assert set(m) >= {"p_code", "p_image", "fd_real", "aorta_count", "one_aorta", "aorta_found", "aorta_error_px"}
    assert np.all(np.diff(m["p_code"]) > 0)  # the logit grows linearly along the direction
    assert np.all((m["p_image"] >= 0) & (m["p_image"] <= 1))
    assert np.all(m["fd_real"] >= 0)
    assert np.all((m["one_aorta"] >= 0) & (m["one_aorta"] <= 1))
    for key in ("one_aorta", "aorta_found"):  # each rate over the 3 images carries its Wilson interval
        assert m[key + "_ci"].shape == (4, 2)
        for rate, (lo, hi) in zip(m[key], m[key + "_ci"]):
            assert (lo, hi) == pytest.approx(wilson_interval(round(rate * 3), 3))
            assert lo <= rate <= hi and hi - lo > 0.3  # three images cannot pin a rate down
    no_real = sweep_metrics(model, sweep, classifiers["bce"], label_map(12, 16, 3, size=SIZE))["bce"]
    assert np.all(np.isnan(no_real["fd_real"]))
    np.testing.assert_allclose(no_real["p_code"], m["p_code"])


# ---- where codes land, what z_sem carries ---------------------------------------------------------

def test_nearest_domain_places_codes_in_clusters_and_between_them():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((100, 8)) * 0.1
    real = rng.standard_normal((100, 8)) * 0.1 + np.r_[4.0, np.zeros(7)]
    z, y = np.concatenate([sim, real]), np.repeat([0, 1], 100)
    query = np.array([[0.0] * 8, [4.0] + [0.0] * 7, [2.0] + [0.0] * 7])   # in sim, in real, in the gap
    res = nearest_domain(z, y, query, k=5)
    np.testing.assert_allclose(res["real_fraction"], [0.0, 1.0, res["real_fraction"][2]])
    assert res["off_data"][0] < 3 and res["off_data"][1] < 3 and res["off_data"][2] > 5
    np.testing.assert_allclose(res["nn_distance"][2], np.linalg.norm(z - query[2], axis=1).min())
    with pytest.raises(ValueError, match=r"y_ref must hold one label 0 \(sim\) or 1 \(real\) per reference code"):
        nearest_domain(z, y[:-1], query)
    with pytest.raises(ValueError, match=r"z_ref and z_query must be \(N, D\) and \(M, D\), got \(200, 8\) and \(3, 4\)"):
        nearest_domain(z, y, query[:, :4])
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 199\], got 0"):
        nearest_domain(z, y, query, k=0)


def test_z_swap_ratio_is_zero_for_a_decoder_that_ignores_z_sem(model):
    cfg, _ = get_config("tiny")
    torch.manual_seed(0)
    fresh = DiffAE.from_config(dataclasses.replace(cfg, image_size=SIZE)).eval()   # zero output layers
    a, b = images(3, seed=1), images(3, seed=2)
    assert np.all(z_swap_ratio(fresh, a, b, steps=3) == 0)
    assert np.all(z_swap_ratio(model, a, b, steps=3) > 0)
    with pytest.raises(ValueError, match="same shape"):
        z_swap_ratio(model, a, b[:2])


def test_the_shipped_checkpoint_decodes_with_z_sem():
    """Fails if a shipped DiffAE's decoder nearly ignores z_sem: an earlier 3,000-step eps checkpoint moved a
    decoded image by only 2-7 % of the distance between the two images when their codes were swapped."""
    from pathlib import Path

    from usdiff.data import assign_splits, item_seed, render_item
    from usdiff.train import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "diffae_tiny_eps.pt", device="cpu")
    idx = [i for i, s in enumerate(assign_splits(12_000, 0)) if s == "test"][:8]
    x = torch.from_numpy(np.stack([render_item(item_seed(0, i), 128)[1] for i in idx])).float()[:, None] / 255
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True) * 2 - 1
    ratio = z_swap_ratio(model, x, torch.roll(x, 1, 0), steps=20)
    assert np.median(ratio) > 0.3, ratio


def test_fine_texture_closed_forms_and_mask():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert fine_texture(flat)[0] == pytest.approx(0.0, abs=1e-7)
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checker = (0.5 * (-1.0) ** (yy + xx)).float()[None, None]
    interior = np.zeros((8, 8), bool)
    interior[1:-1, 1:-1] = True
    # a 3x3 box around any interior pixel holds 5 of its sign and 4 of the other: |a - a/9| = 8a/9
    assert fine_texture(checker, interior)[0] == pytest.approx(8 * 0.5 / 9, rel=1e-6)
    noisy = flat + 0.2 * torch.randn((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert fine_texture(torch.cat([flat, noisy]))[1] > 0.05
    with pytest.raises(ValueError, match="mask must be a non-empty"):
        fine_texture(flat, np.zeros((8, 8), bool))
