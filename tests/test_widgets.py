import matplotlib

matplotlib.use("Agg")

import copy

import numpy as np
import pytest
import torch
from zmodels import tiny_z_model, toy_classifiers

from usdiff.data import TISSUES
from usdiff.experiments import DDIMSteps
from usdiff.model import alphas_cumprod, get_schedule
from usdiff.translate import interpolate, manipulate_z
from usdiff.widgets import (
    AlphaSlider,
    Scoring,
    embedding_widget,
    interpolation_widget,
    inversion_trajectories,
    manipulation_figure,
    manipulation_widget,
    noising_figure,
    schedule_widget,
    snr,
    strip_figure,
    strip_widget,
    trajectory_figure,
    trajectory_widget,
)

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return tiny_z_model(SIZE)


def image(seed=0):
    return torch.rand(1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIZE, SIZE, generator=g) * 2 - 1


def label_map(cy, cx, rad):
    yy, xx = np.indices((SIZE, SIZE))
    lab = np.full((SIZE, SIZE), TISSUES["liver"], np.uint8)
    lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2] = TISSUES["aorta"]
    return lab


@pytest.fixture(scope="module")
def classifiers(model):
    """BCE and MSE classifiers on the test model's codes of dark and bright images."""
    return toy_classifiers(model, images)


def test_snr_closed_form_and_schedules():
    assert float(snr(0.5)) == pytest.approx(1.0)
    assert float(snr(0.8)) == pytest.approx(4.0)
    for name in ("linear", "cosine"):
        s = snr(alphas_cumprod(get_schedule(name, 1000)))
        assert torch.all(torch.diff(s) < 0)          # noise only grows with t
    # the cosine schedule keeps more signal in the middle (Nichol & Dhariwal 2021)
    ab = {n: alphas_cumprod(get_schedule(n, 1000)) for n in ("linear", "cosine")}
    assert ab["cosine"][500] > 2 * ab["linear"][500]


def test_schedule_widget_state_follows_t():
    w = schedule_widget(image(), t=100)
    ab = {n: float(alphas_cumprod(get_schedule(n, 1000))[100]) for n in ("linear", "cosine")}
    assert w.state["t"] == 100 and w.state["alpha_bar"] == pytest.approx(ab)
    snr_100 = dict(w.state["snr"])
    w.controls["t"].value = 700
    assert w.state["t"] == 700
    assert all(w.state["snr"][n] < snr_100[n] for n in snr_100)
    assert w.state["snr"]["linear"] == pytest.approx(float(snr(alphas_cumprod(get_schedule("linear", 1000))[700])))
    with pytest.raises(ValueError, match=r"t must be in \[0, 999\]"):
        noising_figure(image(), 1000)
    with pytest.raises(ValueError, match="one grey image"):
        schedule_widget(torch.zeros(3, SIZE, SIZE))


def test_inversion_trajectories_end_at_the_reconstruction(model):
    x = image(1)
    tr = inversion_trajectories(model, x, steps=4, seed=0)
    assert list(tr) == ["inverted x_T", "random x_T"]
    z = model.encode(x[None])
    rec = model.decode(model.encode_stochastic(x[None], z, steps=4), z, steps=4)
    torch.testing.assert_close(tr["inverted x_T"]["x_t"][-1].clamp(-1, 1), rec, rtol=1e-4, atol=1e-4)
    assert (tr["inverted x_T"]["x_t"][0] - tr["random x_T"]["x_t"][0]).abs().mean() > 0.1
    assert (tr["inverted x_T"]["x0"][-1] - tr["random x_T"]["x0"][-1]).abs().mean() > 1e-3
    fig = trajectory_figure(tr, 3, image=x)
    assert len(fig.axes) == 6
    with_stats = copy.deepcopy(model).set_data_stats(torch.stack([image(s) for s in range(4)]))
    tr = inversion_trajectories(with_stats, x, steps=4, seed=2, prior="data")
    want = with_stats.random_x_T(1, steps=4, prior="data", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(tr["random x_T"]["x_t"][0], want)      # the trajectory starts at the prior's draw
    with pytest.raises(ValueError, match=r"step must be in \[0, 3\]"):
        trajectory_figure(tr, 4)


def test_trajectory_widget_slider_moves_along_the_timesteps(model):
    w = trajectory_widget(model, image(2), steps=4)
    t0 = w.state["t"]
    w.controls["step"].value = 3
    assert w.state["step"] == 3 and w.state["t"] < t0
    assert int(w.state["trajectories"]["random x_T"]["t"][3]) == w.state["t"]


def test_strip_widget_shows_the_precomputed_frames(model):
    a, b = image(3), image(4)
    kw = dict(n_steps=3, ddim=DDIMSteps(2, 2), progress=False)
    strips = {p: interpolate(model, a, b, x_T_path=p, **kw) for p in ("slerp", "fixed")}
    scores = {p: {"P(real)": [0.1, 0.5, 0.9]} for p in strips}
    w = strip_widget(strips, scores)
    assert w.state["mode"] == "slerp" and w.state["alpha"] == 0.0
    w.controls["alpha"].value = 2
    w.controls["mode"].value = "fixed"
    assert w.state["alpha"] == 1.0 and w.state["scores"] == {"P(real)": 0.9}
    torch.testing.assert_close(w.state["image"], strips["fixed"]["images"][2])
    assert not torch.equal(strips["fixed"]["images"][1], strips["slerp"]["images"][1])
    label, toggle = w.children[0].children                   # the x_T label beside its toggle, not above it
    assert label.value == "x_T" and toggle is w.controls["mode"] and toggle.description == ""
    short = interpolate(model, a, b, n_steps=2, ddim=DDIMSteps(2, 2), progress=False)
    with pytest.raises(ValueError, match="other alphas"):
        strip_widget({"slerp": strips["slerp"], "short": short})
    with pytest.raises(ValueError, match=r"index must be in \[0, 2\]"):
        strip_figure(strips["slerp"]["images"], strips["slerp"]["alphas"], 3)


def test_embedding_widget_switches_settings():
    rng = np.random.default_rng(0)
    emb = {5: rng.normal(size=(10, 2)), 30: rng.normal(size=(10, 2))}
    domain = np.r_[np.zeros(5), np.ones(5)]
    w = embedding_widget(emb, domain)
    assert w.state["setting"] == 5
    w.controls["setting"].value = 30
    np.testing.assert_array_equal(w.state["points"], emb[30])
    with pytest.raises(ValueError, match=r"emb must be \(N, 2\)"):
        embedding_widget({5: rng.normal(size=(10, 3))}, domain)
    with pytest.raises(ValueError, match="at least one setting"):
        embedding_widget({}, domain)


# ---- interpolation, manipulation ----------------------------------------------------------------------------------------

def test_interpolation_widget_runs_the_chosen_pair_with_the_chosen_steps(model):
    src = {"a": images(1, seed=1)[0], "b": images(1, seed=2)[0]}
    dst = {"c": images(1, seed=3)[0]}
    w = interpolation_widget(model, src, dst, n_steps=4, ddim=DDIMSteps(2, 2))
    assert w.state == {}  # nothing decoded before the button is pressed
    w.controls["source"].value = "b"
    w.controls["n_steps"].value = 3
    seen = []
    w.controls["run"].observe(lambda change: seen.append(change["new"]), names="disabled")
    w.controls["run"].click()
    assert seen == [True, False] and w.controls["run"].description == "interpolate"  # disabled while computing
    assert w.state["images"].shape == (3, 1, SIZE, SIZE)
    np.testing.assert_allclose(w.state["alphas"].numpy(), [0, 0.5, 1])
    ref = interpolate(model, src["b"], dst["c"], n_steps=3, ddim=DDIMSteps(2, 2), progress=False)
    torch.testing.assert_close(w.state["images"], ref["images"])
    drawn = interpolation_widget(model, src, dst, n_steps=3, ddim=DDIMSteps(2, 2), draw=True)   # the first pair now
    ref = interpolate(model, src["a"], dst["c"], n_steps=3, ddim=DDIMSteps(2, 2), progress=False)
    torch.testing.assert_close(drawn.state["images"], ref["images"])
    assert drawn.controls["run"].disabled is False


def test_manipulation_widget_redraws_on_every_control(model, classifiers):
    ims = {"one": images(1, seed=4)[0], "two": images(1, seed=6)[0]}
    clfs = {"BCE": classifiers["bce"], "MSE": classifiers["mse"]}
    w = manipulation_widget(model, ims, clfs, alpha=AlphaSlider(0.2), ddim=DDIMSteps(2, 2))
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
    w = manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, alpha=AlphaSlider(0.6), ddim=DDIMSteps(2, 2))
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
    labels = {"one": label_map(12, 16, 3)}
    w = manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, alpha=AlphaSlider(0.0), ddim=DDIMSteps(2, 2),
                            scoring=Scoring(label_maps=labels), twins={"one": images(1, seed=5)[0]})
    assert w.state["change"] == pytest.approx(0.0, abs=1e-6)          # alpha 0 decodes the reconstruction
    assert isinstance(w.state["aorta_count"], int) and w.state["dice_aorta"] is None   # no critics given
    w.controls["alpha"].value = 0.7
    assert w.state["change"] == pytest.approx(float((w.state["manipulated"] - w.state["recon"]).abs().mean()))
    assert w.state["change"] > 1e-3
    with pytest.raises(ValueError, match=r"twins must have an entry for every image; missing: \['one'\]"):
        manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, twins={"two": images(1)[0]})
    with pytest.raises(ValueError, match="label_maps must have an entry"):
        manipulation_widget(model, ims, {"BCE": classifiers["bce"]}, scoring=Scoring(label_maps={}))


def _codes(model, x):
    z = model.encode(x)
    return z, model.encode_stochastic(x, z, steps=2)


def test_widgets_reject_empty_choices_and_take_single_ones(model, classifiers):
    one, clf = {"a": images(1)[0]}, classifiers["bce"]
    for sources, targets in (({}, one), (one, {})):
        with pytest.raises(ValueError, match="sources and targets must each hold at least one named image"):
            interpolation_widget(model, sources, targets)
    for ims, clfs in (({}, {"BCE": clf}), (one, {})):
        with pytest.raises(ValueError, match="images and classifiers must each hold at least one entry"):
            manipulation_widget(model, ims, clfs)
    w = manipulation_widget(model, one, {"BCE": clf}, draw=False)
    assert list(w.controls["image"].options) == ["a"]
    assert w.controls["classifier"].value == "BCE"
    assert w.state == {}


def test_manipulation_widget_scores_with_the_judge_and_the_critics(model, classifiers):
    class FakeCritics:   # P(real) = mean brightness; the segmenter finds the aorta in half of its pixels
        def p_real(self, y, value_range):
            return ((y + 1) / 2).mean(dim=(1, 2, 3)).numpy()

        def anatomy_scores(self, y, labels, value_range):
            per_image = np.zeros((len(y), len(TISSUES) + 1))
            per_image[:, TISSUES["aorta"]] = 0.5
            return {"per_image": per_image}

    ims = {"one": images(1, seed=4)[0]}
    clfs = {"BCE": classifiers["bce"], "MSE": classifiers["mse"]}
    scoring = Scoring(judge=classifiers["bce"], critics=FakeCritics(), label_maps={"one": label_map(12, 16, 3)})
    w = manipulation_widget(model, ims, clfs, alpha=AlphaSlider(0.4, bounds=(-0.5, 0.5), step=0.1),
                            ddim=DDIMSteps(2, 2), scoring=scoring)
    assert (w.controls["alpha"].min, w.controls["alpha"].max, w.controls["alpha"].step) == (-0.5, 0.5, 0.1)
    w.controls["classifier"].value = "MSE"                 # the judge, not the selected classifier, scores the code
    assert w.state["p_real"] == pytest.approx(float(classifiers["bce"].predict_proba(w.state["z"].double().numpy())[0, 1]))
    assert w.state["p_critic"] == pytest.approx(float(((w.state["manipulated"] + 1) / 2).mean()))
    assert w.state["dice_aorta"] == 0.5 and isinstance(w.state["aorta_count"], int)
    fig = manipulation_figure(w.state, images(1, seed=5)[0])
    assert len(fig.axes) == 5                              # 4 panels and the colour bar of the difference
    title = " ".join(t.get_text() for t in fig.texts)      # the suptitle names the view's scores
    assert "aorta Dice 0.50" in title and "critic P(real) of the image" in title
