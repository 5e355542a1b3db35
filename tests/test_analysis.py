"""Encoding data sets, anatomy along strips, manipulation sweeps and their metrics, widgets."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from zmodels import tiny_z_model

from usdiff.analysis import (
    anatomy_table,
    encode_dataset,
    encode_images,
    interpolation_widget,
    manipulation_sweep,
    manipulation_widget,
    nearest_domain,
    plot_strip,
    reconstruction_error,
    strip_anatomy,
    sweep_metrics,
)
from usdiff.data import TISSUES
from usdiff.latent import LinearClassifier, train_linear_classifier
from usdiff.metrics.c2st import wilson_interval
from usdiff.model import DiffAE, get_config
from usdiff.translate import interpolate, manipulate_z

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
    dark, bright = images(24, 1) * 0.2 - 0.6, images(24, 2) * 0.2 + 0.6
    z = encode_images(model, torch.cat([dark, bright]))
    y = np.repeat([0, 1], 24)
    return {loss: train_linear_classifier(z, y, loss=loss, lr=1e-2, epochs=5, progress=False, device="cpu")[0]
            for loss in ("bce", "mse")}


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


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"indices": []}])
def test_encode_dataset_rejects_bad_arguments(model, bad):
    with pytest.raises(ValueError):
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
    with pytest.raises(ValueError):
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
    with pytest.raises(ValueError):
        anatomy_table(frames, np.stack([lab] * 2))


# ---- manipulation sweeps ------------------------------------------------------------------------

def test_manipulation_sweep_decodes_the_moved_codes_with_the_images_own_x_T(model, classifiers):
    x = images(3, seed=5)
    alphas = [0.0, 0.5]
    sweep = manipulation_sweep(model, x, classifiers, alphas, encode_steps=3, decode_steps=3, batch_size=2,
                               progress=False)
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


def test_sweep_metrics_realness_of_the_codes_grows_with_alpha(model, classifiers):
    x = torch.from_numpy(np.stack([fan_frame([(12, 16, 3)], size=SIZE)] * 3)[:, None]).float()
    sweep = manipulation_sweep(model, x, {"bce": classifiers["bce"]}, [-0.5, 0.0, 0.5, 1.0], encode_steps=2,
                               decode_steps=2, progress=False)
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


# ---- widgets ----------------------------------------------------------------------------------------

def test_interpolation_widget_runs_the_chosen_pair_with_the_chosen_steps(model):
    src = {"a": images(1, seed=1)[0], "b": images(1, seed=2)[0]}
    dst = {"c": images(1, seed=3)[0]}
    w = interpolation_widget(model, src, dst, n_steps=4, encode_steps=2, decode_steps=2)
    assert w.state == {}  # nothing decoded before the button is pressed
    w.controls["source"].value = "b"
    w.controls["n_steps"].value = 3
    seen = []
    w.controls["run"].observe(lambda change: seen.append(change["new"]), names="disabled")
    w.controls["run"].click()
    assert seen == [True, False] and w.controls["run"].description == "interpolate"  # disabled while computing
    assert w.state["images"].shape == (3, 1, SIZE, SIZE)
    np.testing.assert_allclose(w.state["alphas"].numpy(), [0, 0.5, 1])
    ref = interpolate(model, src["b"], dst["c"], n_steps=3, encode_steps=2, decode_steps=2, progress=False)
    torch.testing.assert_close(w.state["images"], ref["images"])


def test_manipulation_widget_redraws_on_every_control(model, classifiers):
    ims = {"one": images(1, seed=4)[0], "two": images(1, seed=6)[0]}
    clfs = {"BCE": classifiers["bce"], "MSE": classifiers["mse"]}
    w = manipulation_widget(model, ims, clfs, alpha=0.2, encode_steps=2, decode_steps=2)
    assert w.state["image"] == "one" and w.state["classifier"] == "BCE" and w.state["alpha"] == pytest.approx(0.2)
    p_low = w.state["p_real"]
    w.controls["alpha"].value = 0.6
    assert w.state["alpha"] == pytest.approx(0.6) and w.state["p_real"] > p_low
    x = ims["one"][None]
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, steps=2)
    z_new = manipulate_z(z, clfs["BCE"], 0.6)
    torch.testing.assert_close(w.state["z"], z_new)
    torch.testing.assert_close(w.state["manipulated"], model.decode(x_T, z_new, steps=2), atol=1e-5, rtol=1e-5)
    assert (w.state["manipulated"] - w.state["recon"]).abs().mean() > 1e-3   # the slider changes the image
    w.controls["classifier"].value = "MSE"
    torch.testing.assert_close(w.state["z"], manipulate_z(z, clfs["MSE"], 0.6))
    w.controls["image"].value = "two"
    assert w.state["image"] == "two"
    torch.testing.assert_close(w.state["recon"], model.decode(*reversed(_codes(model, ims["two"][None])), steps=2))
    lazy = manipulation_widget(model, ims, clfs, draw=False)
    assert lazy.state == {}
    # the toggle's label sits beside it in its own Label (a toggle description floats above wrapped buttons)
    row = w.children[0].children[1]
    assert w.controls["classifier"].description == "" and row.children[0].value == "classifier"
    assert row.children[1] is w.controls["classifier"]


def test_manipulation_widget_decodes_each_view_once(model, classifiers, monkeypatch):
    ims = {"one": images(1, seed=4)[0]}
    w = manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, alpha=0.6, encode_steps=2, decode_steps=2)
    first = w.state["manipulated"]
    calls = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda *a, **k: calls.append(1) or decode(*a, **k))
    w.controls["alpha"].value = 0.2
    assert len(calls) == 1                                    # a new alpha decodes
    w.controls["alpha"].value = 0.6
    assert len(calls) == 1                                    # going back does not
    torch.testing.assert_close(w.state["manipulated"], first)
    assert w.state["alpha"] == pytest.approx(0.6)


def test_manipulation_widget_shows_change_twin_and_anatomy(model, classifiers):
    ims = {"one": images(1, seed=4)[0]}
    labels = {"one": label_map(12, 16, 3, size=SIZE)}
    w = manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, alpha=0.0, encode_steps=2, decode_steps=2,
                            twins={"one": images(1, seed=5)[0]}, label_maps=labels)
    assert w.state["change"] == pytest.approx(0.0, abs=1e-6)          # alpha 0 decodes the reconstruction
    assert isinstance(w.state["aorta_count"], int) and w.state["dice_aorta"] is None   # no critics given
    w.controls["alpha"].value = 0.7
    assert w.state["change"] == pytest.approx(float((w.state["manipulated"] - w.state["recon"]).abs().mean()))
    assert w.state["change"] > 1e-3
    with pytest.raises(ValueError, match=r"twins must have an entry for every image; missing: \['one'\]"):
        manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, twins={"two": images(1)[0]})
    with pytest.raises(ValueError, match="label_maps must have an entry"):
        manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, label_maps={})


def _codes(model, x):
    z = model.encode(x)
    return z, model.encode_stochastic(x, z, steps=2)


def test_widgets_reject_empty_choices(model, classifiers):
    with pytest.raises(ValueError):
        interpolation_widget(model, {}, {"a": images(1)[0]})
    with pytest.raises(ValueError):
        manipulation_widget(model, {"a": images(1)[0]}, {})
    assert isinstance(classifiers["bce"], LinearClassifier)


def test_plot_strip_puts_the_inputs_above_the_ends():
    import matplotlib.pyplot as plt

    frames = torch.linspace(-1, 1, 4).reshape(4, 1, 1, 1).expand(4, 1, 8, 8)
    a, b = torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)
    fig = plot_strip(frames, inputs=(a, b), titles=list("wxyz"), marks={1: "red"})
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 8 and len(visible) == 6  # 4 frames + 2 inputs; the 2 middle top cells hidden
    shown = [ax.images[0].get_array() for ax in fig.axes[4:]]
    np.testing.assert_allclose([s.mean() for s in shown], [0, 1 / 3, 2 / 3, 1], atol=1e-6)  # [-1, 1] -> [0, 1]
    assert fig.axes[0].images[0].get_array().max() == 0 and fig.axes[3].images[0].get_array().min() == 1
    assert fig.axes[5].spines["left"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)
    assert [ax.get_title() for ax in fig.axes[4:]] == list("wxyz")
    plt.close(fig)
    fig = plot_strip(frames)
    assert len(fig.axes) == 4
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_strip(frames, inputs=(a,))


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
    with pytest.raises(ValueError):
        nearest_domain(z, y[:-1], query)
    with pytest.raises(ValueError):
        nearest_domain(z, y, query[:, :4])
    with pytest.raises(ValueError):
        nearest_domain(z, y, query, k=0)


def test_z_swap_ratio_is_zero_for_a_decoder_that_ignores_z_sem(model):
    from usdiff.analysis import z_swap_ratio

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

    from usdiff.analysis import z_swap_ratio
    from usdiff.data import assign_splits, item_seed, render_item
    from usdiff.train import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "diffae_tiny_eps.pt", device="cpu")
    idx = [i for i, s in enumerate(assign_splits(12_000, 0)) if s == "test"][:8]
    x = torch.from_numpy(np.stack([render_item(item_seed(0, i), 128)[1] for i in idx])).float()[:, None] / 255
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True) * 2 - 1
    ratio = z_swap_ratio(model, x, torch.roll(x, 1, 0), steps=20)
    assert np.median(ratio) > 0.3, ratio


def test_fine_texture_closed_forms_and_mask():
    from usdiff.analysis import fine_texture

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
