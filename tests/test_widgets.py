import matplotlib

matplotlib.use("Agg")

import copy

import numpy as np
import pytest
import torch
from zmodels import tiny_z_model

from usdiff.model import alphas_cumprod, get_schedule
from usdiff.translate import interpolate
from usdiff.widgets import (
    embedding_widget,
    inversion_trajectories,
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
    kw = dict(n_steps=3, encode_steps=2, decode_steps=2, progress=False)
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
    short = interpolate(model, a, b, n_steps=2, encode_steps=2, decode_steps=2, progress=False)
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


def test_show_label_maps_colours_tissues_and_names_them():
    from usdiff.data.phantom import LABEL_NAMES, TISSUES, tissue_colors
    from usdiff.viz import show_label_maps

    lab = np.zeros((2, 8, 8), np.uint8)
    lab[0, 2:5, 2:5] = TISSUES["aorta"]
    lab[1, :4] = TISSUES["liver"]
    fig = show_label_maps(lab, titles=["a", "b"])
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == [LABEL_NAMES[k] for k in sorted({0, TISSUES["aorta"], TISSUES["liver"]})]
    shown = fig.axes[0].images[0]
    rgb = shown.cmap(shown.norm(TISSUES["aorta"]))[:3]
    np.testing.assert_allclose(rgb, tissue_colors()[TISSUES["aorta"]], atol=1e-6)
    with pytest.raises(ValueError, match="label_maps must be"):
        show_label_maps(np.full((1, 4, 4), 99))
