"""Translation methods: Gaussian transport in closed form, SDEdit/ILVR properties, guidance, CycleGAN, registry."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from zmodels import tiny_z_model

from usdiff.metrics.critics import AnatomySegmenter
from usdiff.translate import (
    METHODS,
    CycleGANSettings,
    CycleGANTranslator,
    GuidedTranslator,
    SDEditTranslator,
    TransportTranslator,
    apply_transport,
    gaussian_transport,
    get_method,
    load_method,
    low_pass,
    save_method,
    train_cyclegan,
)
from usdiff.translate.sdedit import start_grid

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return tiny_z_model(SIZE)


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, SIZE, SIZE, generator=g) * 2 - 1) * 0.9


@pytest.fixture(scope="module")
def codes():
    rng = np.random.default_rng(0)
    d = 128
    z_sim = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) * 0.1
    z_real = rng.standard_normal((300, d)) * 0.5 + 1.0
    return z_sim, z_real


# ---- Gaussian optimal transport ------------------------------------------------------------------

def test_transport_lands_on_the_target_mean_and_covariance():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((400, 5)) @ rng.standard_normal((5, 5))
    tgt = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5)) + 4.0
    t = gaussian_transport(src, tgt, reg=0.0)
    moved = apply_transport(src, t)
    np.testing.assert_allclose(moved.mean(0), tgt.mean(0), atol=1e-10)
    np.testing.assert_allclose(np.cov(moved, rowvar=False), np.cov(tgt, rowvar=False), atol=1e-8)
    # A is symmetric positive definite (the Monge map is the gradient of a convex function)
    np.testing.assert_allclose(t["A"], t["A"].T, atol=1e-12)
    assert np.linalg.eigvalsh(t["A"]).min() > 0


def test_transport_in_one_dimension_is_the_ratio_of_standard_deviations():
    rng = np.random.default_rng(2)
    src, tgt = rng.normal(1.0, 2.0, (500, 1)), rng.normal(-3.0, 0.5, (500, 1))
    t = gaussian_transport(src, tgt, reg=0.0)
    assert t["A"][0, 0] == pytest.approx(tgt.std(ddof=1) / src.std(ddof=1), rel=1e-10)
    # between a cloud and itself the map is the identity; strength 0 is always the identity
    same = gaussian_transport(src, src, reg=0.0)
    np.testing.assert_allclose(apply_transport(src, same), src, atol=1e-9)
    np.testing.assert_array_equal(apply_transport(src, t, strength=0.0), src)
    half = apply_transport(src, t, strength=0.5)
    np.testing.assert_allclose(half, (src + apply_transport(src, t)) / 2, atol=1e-12)


def test_transport_checks_its_inputs():
    with pytest.raises(ValueError, match="same D"):
        gaussian_transport(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 codes"):
        gaussian_transport(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="reg must be >= 0"):
        gaussian_transport(np.zeros((5, 3)), np.zeros((5, 3)), reg=-1)


def test_transport_translator_strength_zero_is_the_reconstruction(model, codes):
    x = images(2)
    z = model.encode(x)
    rec = model.decode(model.encode_stochastic(x, z, steps=3), z, steps=3)
    kw = dict(encode_steps=3, decode_steps=3)
    still = TransportTranslator(strength=0.0, **kw).fit_codes(*codes).translate(model, x)
    torch.testing.assert_close(still, rec, atol=1e-5, rtol=0)
    moved = TransportTranslator(strength=1.0, **kw).fit_codes(*codes)
    out = moved.translate(model, x)
    assert (out - rec).abs().mean() > 1e-3
    # the code it decodes is the transported one: its normalised mean is the real codes' mean
    zs = moved.move(torch.as_tensor(codes[0], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(zs.mean(0), codes[1].mean(0), atol=0.05)


# ---- SDEdit and ILVR -----------------------------------------------------------------------------

def test_low_pass_keeps_constants_and_removes_the_finest_pattern():
    const = torch.full((1, 1, 8, 8), 0.3)
    torch.testing.assert_close(low_pass(const, 4), const)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None]).remainder(2).float()[None, None] * 2 - 1
    assert low_pass(checker, 2).abs().max() < 1e-6
    torch.testing.assert_close(low_pass(checker, 1), checker)
    with pytest.raises(ValueError, match="dividing the image side"):
        low_pass(const, 3)


def test_start_grid_runs_only_the_steps_below_t0(model):
    full = start_grid(model.scheduler, 1.0, 10)
    assert full == model.scheduler.set_timesteps(10).tolist()
    half = start_grid(model.scheduler, 0.5, 10)
    assert max(half) <= 0.5 * 999 and half == [t for t in full if t <= 499.5]
    assert start_grid(model.scheduler, 0.001, 10) == [0]
    with pytest.raises(ValueError, match="t0 must be in"):
        start_grid(model.scheduler, 0.0, 10)


def test_sdedit_is_seeded_and_moves_further_from_the_source_as_t0_grows(model, codes):
    x = images(3)
    dist = {}
    for t0 in (0.05, 0.6):
        m = SDEditTranslator(t0=t0, steps=20, strength=0.0).fit_codes(*codes)
        a = m.translate(model, x, generator=torch.Generator().manual_seed(0))
        b = m.translate(model, x, generator=torch.Generator().manual_seed(0))
        c = m.translate(model, x, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(a, b)
        assert (a - c).abs().mean() > 0   # fresh noise, another result
        dist[t0] = float((a - x).abs().mean())
    assert dist[0.05] < dist[0.6]


def test_ilvr_pulls_the_low_frequencies_towards_the_source(model, codes):
    x = images(3, seed=4)
    kw = dict(t0=0.8, steps=20, strength=1.0)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    free = SDEditTranslator(**kw).fit_codes(*codes).translate(model, x, generator=g())
    anchored = SDEditTranslator(ilvr=4, **kw).fit_codes(*codes).translate(model, x, generator=g())
    err = lambda y: float((low_pass(y, 4) - low_pass(x, 4)).abs().mean())  # noqa: E731
    assert err(anchored) < 0.5 * err(free)
    with pytest.raises(ValueError, match="ilvr must be None or a positive int"):
        SDEditTranslator(ilvr=0)


def test_guidance_lowers_the_guides_energy(model, codes):
    x = images(2, seed=5)
    labels = torch.randint(0, 3, (2, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    guide = AnatomySegmenter(SIZE, width=4, num_classes=11).eval()

    def energy(y):
        with torch.no_grad():
            return float(F.cross_entropy(guide(y), labels))

    out = {}
    for scale in (0.0, 3.0):
        m = GuidedTranslator(scale=scale, t0=0.6, steps=10).fit_codes(*codes)
        m.guide_ = guide
        out[scale] = m.translate(model, x, generator=torch.Generator().manual_seed(0), labels=labels)
    assert energy(out[3.0]) < energy(out[0.0])
    m = GuidedTranslator(scale=1.0).fit_codes(*codes)
    m.guide_ = guide
    with pytest.raises(ValueError, match="needs the label maps"):
        m.translate(model, x)
    with pytest.raises(ValueError, match="labels must be"):
        m.translate(model, x, labels=labels[:1])


def test_guided_fit_checks_the_label_maps_before_encoding():
    class NoEncode:  # fails the test if fit got as far as encoding
        def __getattr__(self, name):
            raise AssertionError(f"fit used the model ({name}) before checking the labels")

    sim, real = images(4, seed=1), images(4, seed=2)
    m = GuidedTranslator(guide_steps=2)
    with pytest.raises(ValueError, match=r"sim_labels must have shape \(4, 32, 32\).*got \(3, 32, 32\)"):
        m.fit(NoEncode(), sim, real, sim_labels=np.zeros((3, SIZE, SIZE), np.int64))
    with pytest.raises(ValueError, match="pass sim_labels="):
        m.fit(NoEncode(), sim, real)
    with pytest.raises(ValueError, match="sim_labels must have shape"):
        m.fit_guide(sim, np.zeros((4, SIZE + 1, SIZE), np.int64))


# ---- CycleGAN ------------------------------------------------------------------------------------

def test_cyclegan_is_deterministic_per_seed_and_learns_the_cycle():
    sim = images(16, seed=1)
    real = (images(16, seed=2) * 0.5).clamp(-1, 1)
    settings = CycleGANSettings(steps=30, batch_size=4, width=4, blocks=1)
    g1, log1 = train_cyclegan(sim, real, settings, seed=0, progress=False)
    g2, _ = train_cyclegan(sim, real, settings, seed=0, progress=False)
    for a, b in zip(g1.state_dict().values(), g2.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert log1["steps"] == 30 and np.mean(log1["loss_g"][-5:]) < np.mean(log1["loss_g"][:5])


def test_cyclegan_translator_saves_and_loads(tmp_path):
    sim, real = images(8, seed=1), images(8, seed=2)
    m = CycleGANTranslator(train_steps=3, train_batch_size=2, width=4, blocks=1).fit(None, sim, real)
    out = m.translate(None, sim)
    assert out.shape == sim.shape and out.abs().max() <= 1
    path = save_method(tmp_path / "cg.pt", m)
    again = load_method(path)
    torch.testing.assert_close(again.translate(None, sim), out)


# ---- registry and persistence --------------------------------------------------------------------

def test_methods_are_chosen_by_name_with_their_knobs(codes, tmp_path, model):
    assert sorted(METHODS) == ["classifier", "cyclegan", "guided", "sdedit", "transport"]
    m = get_method("sdedit", t0=0.3, ilvr=8)
    assert isinstance(m, SDEditTranslator) and m.get_params()["t0"] == 0.3 and "t0=0.3" in repr(m)
    with pytest.raises(ValueError, match="unknown translation method 'gan'; choose one of"):
        get_method("gan")
    with pytest.raises(ValueError, match="method 'transport' has no setting t0; its settings are strength, reg"):
        get_method("transport", t0=0.5)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        get_method("transport").translate(model, images(1))
    fitted = get_method("sdedit", t0=0.3).fit_codes(*codes)
    path = save_method(tmp_path / "m.pt", fitted)
    loaded = load_method(path, t0=0.4)          # knobs can be overridden at load time
    assert loaded.t0 == 0.4 and loaded.fitted
    np.testing.assert_array_equal(loaded.transport_["A"], fitted.transport_["A"])
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a translation method saved by usdiff"):
        load_method(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"x is \(16, 16\) px but the model works at 32 px"):
        fitted.translate(model, torch.zeros(1, 1, 16, 16))


# ---- properties every method shares --------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted_methods(model, codes):
    sim, real = images(8, seed=11), images(8, seed=12)
    guide = AnatomySegmenter(SIZE, width=4, num_classes=11).eval()
    out = {
        "classifier": get_method("classifier", alpha=0.5, encode_steps=3, decode_steps=3),
        "transport": get_method("transport", encode_steps=3, decode_steps=3).fit_codes(*codes),
        "sdedit": get_method("sdedit", t0=0.4, steps=10).fit_codes(*codes),
        "guided": get_method("guided", t0=0.4, steps=10, scale=1.0).fit_codes(*codes),
        "cyclegan": get_method("cyclegan", train_steps=2, train_batch_size=2, width=4, blocks=1).fit(None, sim, real),
    }
    from usdiff.latent import LinearClassifier

    y = np.repeat([0, 1], [len(codes[0]), len(codes[1])])
    out["classifier"].classifier_ = LinearClassifier(lr=1e-2, epochs=2, device="cpu").fit(
        np.concatenate(codes), y, progress=False)
    out["guided"].guide_ = guide
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_keeps_shape_and_range_and_is_deterministic_per_seed(name, fitted_methods, model):
    m = fitted_methods[name]
    x = images(3, seed=7)
    labels = np.zeros((3, SIZE, SIZE), np.int64)
    run = lambda seed: m.translate(model, x, generator=torch.Generator().manual_seed(seed), labels=labels)  # noqa: E731
    a, b = run(0), run(0)
    assert a.shape == x.shape and a.dtype == torch.float32 and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    if name in ("sdedit", "guided"):          # stochastic: another seed, another image
        assert (run(1) - a).abs().mean() > 0


def test_sdedit_from_almost_no_noise_is_almost_the_identity(model, codes):
    x = images(2, seed=8)
    m = SDEditTranslator(t0=0.001, steps=50, strength=1.0).fit_codes(*codes)
    out = m.translate(model, x, generator=torch.Generator().manual_seed(0))
    assert float((out - x).abs().mean()) < 0.02


def test_transport_fit_ignores_the_order_of_the_sets(codes):
    """No pairing can leak into the fit: shuffling the real codes (or the sim codes) gives the same map."""
    z_sim, z_real = codes
    perm = np.random.default_rng(0).permutation(len(z_real))
    a = TransportTranslator().fit_codes(z_sim, z_real)
    b = TransportTranslator().fit_codes(z_sim[::-1], z_real[perm])
    np.testing.assert_allclose(a.transport_["A"], b.transport_["A"], atol=1e-9)
    np.testing.assert_allclose(a.move(z_sim), b.move(z_sim), atol=1e-9)


# ---- measuring and showing translations ----------------------------------------------------------

def test_liver_speckle_snr_is_mean_over_std_inside_the_eroded_liver():
    from usdiff.data.phantom import LIVER
    from usdiff.experiments import liver_speckle_snr

    labels = np.zeros((1, 32, 32), np.int64)
    labels[0, 4:28, 4:28] = LIVER
    img = np.full((1, 1, 32, 32), 0.9)
    checker = (np.arange(32)[:, None] + np.arange(32)[None]).reshape(1, 1, 32, 32) % 2
    img = np.where(labels[:, None] == LIVER, 0.5 + 0.1 * (2 * checker - 1), img)   # liver: 0.4 / 0.6
    assert liver_speckle_snr(torch.as_tensor(img), labels, value_range=(0.0, 1.0)) == pytest.approx(5.0)
    assert np.isnan(liver_speckle_snr(torch.as_tensor(img), np.zeros_like(labels), value_range=(0.0, 1.0)))


def test_translation_widget_follows_its_controls(model, fitted_methods):
    from usdiff.experiments import Knob
    from usdiff.widgets import translation_widget

    class FakeCritics:   # P(real) = mean brightness, Dice from the segmenter-free stand-in
        def p_real(self, y, value_range):
            return ((y + 1) / 2).mean(dim=(1, 2, 3)).numpy()

        def anatomy_scores(self, y, labels, value_range):
            return {"dice_aorta": 0.5}

    methods = {"sdedit": fitted_methods["sdedit"], "cyclegan": fitted_methods["cyclegan"]}
    x = images(2, seed=3)
    w = translation_widget(model, methods, {"sdedit": Knob("t0", [0.2, 0.6])}, x, np.zeros((2, SIZE, SIZE), np.int64),
                           FakeCritics())
    assert w.state["method"] == "sdedit" and w.controls["value"].description == "t0"
    first = w.state["translated"].clone()
    w.controls["value"].value = 0.6
    assert w.state["value"] == 0.6 and (w.state["translated"] - first).abs().mean() > 0
    expected = fitted_methods["sdedit"].with_knobs(t0=0.6).translate(model, x[:1], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.state["translated"], expected)
    w.controls["method"].value = "cyclegan"
    assert w.state["method"] == "cyclegan" and w.controls["value"].description == "(none)"
    w.controls["image"].value = 1
    torch.testing.assert_close(w.state["translated"], fitted_methods["cyclegan"].translate(None, x[1:2]))
    with pytest.raises(ValueError, match="at least one fitted method"):
        translation_widget(model, {}, {}, x, np.zeros((2, SIZE, SIZE)), FakeCritics())
    with pytest.raises(ValueError, match=r"knobs must map method names to Knob\(name, values\), got \{'sdedit': 'tuple'\}"):
        translation_widget(model, methods, {"sdedit": ("t0", [0.2])}, x, np.zeros((2, SIZE, SIZE)), FakeCritics())


def test_pareto_plot_draws_every_curve_and_point():
    import matplotlib

    matplotlib.use("Agg")
    from usdiff.viz import plot_pareto

    fig = plot_pareto({"a": {"p_real": [0.1, 0.5], "dice_rel": [1.0, 0.8], "values": [0.2, 0.5], "knob": "t0"},
                       "b": {"p_real": [0.0], "dice_rel": [0.9], "values": [0.3]}}, points={"test": (0.4, 0.95)})
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 1 + 2          # two curves, one point, two reference lines
    assert [t.get_text() for t in ax.texts] == ["0.2", "0.5", "0.3"]
