"""The translation protocol: fit settings vs knobs, capabilities, one fit signature, one file format
with the checkpoint's fingerprint, and the command line that runs every method with every setting."""
import dataclasses
import inspect

import numpy as np
import pytest
import torch
from PIL import Image
from zmodels import tiny_z_model

from usdiff.cli import METHOD_SETTINGS, SETTING_FLAGS, main, method_settings
from usdiff.train import save_pretrained
from usdiff.translate import (
    METHODS,
    ClassifierTranslator,
    CycleGANTranslator,
    GuidedTranslator,
    SDEditTranslator,
    TransportTranslator,
    load_method,
    resolve_method,
    save_method,
    translate_batches,
)
from usdiff.translate.base import FORMAT

SIZE = 32


@pytest.fixture(scope="module")
def model():
    return tiny_z_model(SIZE)


@pytest.fixture(scope="module")
def codes():
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 128)) * 0.3, rng.standard_normal((200, 128)) * 0.5 + 0.5


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, SIZE, SIZE, generator=g) * 2 - 1) * 0.9


# ---- settings: declared, derived from the constructor, fit settings frozen ------------------------

@pytest.mark.parametrize("name", sorted(METHODS))
def test_get_params_is_the_constructor_signature_and_rebuilds_the_method(name):
    cls = METHODS[name]
    sig = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    m = cls()
    assert list(m.get_params()) == sig == list(cls.param_names())
    assert set(cls.fit_settings) <= set(sig) and set(cls.knob_names()) == set(sig) - set(cls.fit_settings)
    assert repr(cls(**m.get_params())) == repr(m)


def test_a_changed_fit_setting_is_refused_and_a_knob_is_applied(codes, model):
    fitted = TransportTranslator(reg=1e-3, encode_steps=2, decode_steps=2).fit_codes(*codes)
    with pytest.raises(ValueError, match=r"reg is a fit setting of the fitted 'transport' method \(fitted with "
                                         r"reg=0.001\).*--data.*strength, encode_steps, decode_steps"):
        fitted.with_knobs(reg=10.0)
    assert fitted.with_knobs(reg=1e-3).reg == 1e-3                  # the fitted value itself is fine
    z = torch.as_tensor(codes[0][:4], dtype=torch.float32)
    half = fitted.with_knobs(strength=0.5)
    assert half.strength == 0.5 and half.transport_ is fitted.transport_
    torch.testing.assert_close(half.move(z) - z, 0.5 * (fitted.move(z) - z), rtol=1e-5, atol=1e-6)
    refit = TransportTranslator(reg=10.0).fit_codes(*codes)          # a new fit with the new ridge differs
    assert not np.allclose(refit.transport_["A"], fitted.transport_["A"])
    assert TransportTranslator().with_knobs(reg=10.0).reg == 10.0    # unfitted: just rebuilt
    with pytest.raises(ValueError, match="method 'transport' has no setting t0"):
        fitted.with_knobs(t0=0.5)


def test_cyclegan_settings_are_fit_settings_and_its_file_loads(tmp_path):
    sim, real = images(6, seed=1), images(6, seed=2)
    m = CycleGANTranslator(train_steps=2, train_batch_size=2, width=4, blocks=1).fit(None, sim, real)
    with pytest.raises(ValueError, match="width is a fit setting of the fitted 'cyclegan' method"):
        m.with_knobs(width=8)
    path = save_method(tmp_path / "cg.pt", m)
    torch.testing.assert_close(load_method(path).translate(None, sim), m.translate(None, sim))
    with pytest.raises(ValueError, match="width is a fit setting"):
        load_method(path, width=8)
    assert m.with_knobs(width=4).generator_ is m.generator_


def test_cyclegan_fit_uses_its_training_batch_size_and_takes_no_other():
    sim, real = images(8, seed=1), images(8, seed=2)
    make = lambda b: CycleGANTranslator(train_steps=3, train_batch_size=b, width=4, blocks=1).fit(None, sim, real)  # noqa: E731
    a, b, again = make(2), make(4), make(2)
    torch.testing.assert_close(a.translate(None, sim), again.translate(None, sim))
    assert (a.translate(None, sim) - b.translate(None, sim)).abs().max() > 1e-4
    with pytest.raises(TypeError, match="batch_size"):
        CycleGANTranslator(train_steps=1).fit(None, sim, real, batch_size=64)


def test_every_method_has_the_same_fit_signature():
    sigs = {name: [(p.name, p.kind, p.default) for p in inspect.signature(cls.fit).parameters.values()]
            for name, cls in METHODS.items()}
    assert len({tuple(s) for s in sigs.values()}) == 1, sigs
    assert [p[0] for p in sigs["transport"]] == ["self", "model", "sim", "real", "sim_labels", "seed", "progress"]


def test_capabilities_replace_checks_on_the_name(model, codes):
    assert [n for n, c in sorted(METHODS.items()) if not c.needs_diffae] == ["cyclegan"]
    assert [n for n, c in sorted(METHODS.items()) if c.needs_labels] == ["guided"]
    assert GuidedTranslator(scale=1.0).reads_labels and not GuidedTranslator(scale=0.0).reads_labels
    assert not SDEditTranslator().reads_labels
    assert TransportTranslator().input_size(model) == SIZE
    cg = CycleGANTranslator(train_steps=1, train_batch_size=2, width=4, blocks=1).fit(None, images(4), images(4))
    assert cg.input_size() == SIZE

    class Labelled(SDEditTranslator):          # another name: translate_batches still hands it the labels
        name = "labelled"
        reads_labels = True
        seen = []

        def translate(self, model, x, generator=None, progress=False, labels=None):
            self.seen.append(None if labels is None else labels.shape)
            return x

    m = Labelled().fit_codes(*codes)
    translate_batches(m, model, images(3), labels=np.zeros((3, SIZE, SIZE), np.int64), batch_size=2)
    assert m.seen == [(2, SIZE, SIZE), (1, SIZE, SIZE)]


def test_guided_from_pure_noise_on_a_zero_terminal_snr_v_model_is_finite(codes):
    from usdiff.metrics.critics import AnatomySegmenter
    from usdiff.model import DiffAE, get_config

    cfg, _ = get_config("tiny")
    cfg = dataclasses.replace(cfg, image_size=SIZE, prediction="v", zero_terminal_snr=True, timestep_spacing="trailing")
    torch.manual_seed(0)
    v_model = DiffAE.from_config(cfg).eval()
    m = GuidedTranslator(scale=1.0, t0=1.0, steps=4).fit_codes(*codes)
    m.guide_ = AnatomySegmenter(SIZE, width=4).eval()
    x = images(2)
    labels = np.zeros((2, SIZE, SIZE), np.int64)
    out = m.translate(v_model, x, generator=torch.Generator().manual_seed(0), labels=labels)
    assert torch.isfinite(out).all()
    plain = m.with_knobs(scale=0.0).translate(v_model, x, generator=torch.Generator().manual_seed(0))
    assert (out - plain).abs().max() > 0                      # the later steps are guided


# ---- the file format and the checkpoint it belongs to --------------------------------------------

def test_a_method_file_records_its_checkpoint_and_refuses_another(tmp_path, model):
    other = tiny_z_model(SIZE, seed=1)
    assert model.fingerprint() == tiny_z_model(SIZE).fingerprint() != other.fingerprint()
    sim, real = images(6, seed=3), images(6, seed=4)
    m = TransportTranslator(encode_steps=2, decode_steps=2).fit(model, sim, real)
    assert m.checkpoint_ == model.fingerprint()
    path = save_method(tmp_path / "t.pt", m)
    state = torch.load(path, weights_only=True)
    assert state["format"] == FORMAT and state["checkpoint"] == model.fingerprint()
    loaded = load_method(path)
    torch.testing.assert_close(loaded.translate(model, sim[:1]), m.translate(model, sim[:1]))
    with pytest.raises(ValueError, match=f"fitted on the DiffAE with fingerprint {model.fingerprint()}, but the "
                                         f"model given has {other.fingerprint()}"):
        loaded.translate(other, sim[:1])
    ckpt = save_pretrained(other, tmp_path / "other.pt", half=False)
    with pytest.raises(ValueError, match="fingerprint"):
        resolve_method("transport", ckpt, fitted=path)
    # the same weights in a half-precision pretrained file are the same model
    mine = save_pretrained(model, tmp_path / "mine.pt", half=True)
    assert resolve_method("transport", mine, fitted=path).checkpoint_ == model.fingerprint()


def test_files_of_the_earlier_formats_still_load(tmp_path, codes):
    clf = ClassifierTranslator().fit_codes(*codes).classifier_
    torch.save({"format": "usdiff.direction/1", "classifier": clf.state_dict(), "meta": {"n_fit": 4}},
               tmp_path / "NAME_direction.pt")
    old = load_method(tmp_path / "NAME_direction.pt", alpha=0.5)
    assert isinstance(old, ClassifierTranslator) and old.loss == clf.loss and old.alpha == 0.5
    np.testing.assert_array_equal(old.classifier_.weight_, clf.weight_)
    assert old.meta["n_fit"] == 4 and old.checkpoint_ is None
    # an earlier method file: settings renamed since (scale -> alpha_unit, steps -> train_steps)
    torch.save({"format": "usdiff.method/1", "name": "classifier", "params": {"loss": "bce", "scale": "unit"},
                "state": {"classifier_": clf.state_dict()}, "meta": {}}, tmp_path / "m1.pt")
    assert load_method(tmp_path / "m1.pt").alpha_unit == "unit"
    from usdiff.translate import default_method_path

    assert default_method_path(tmp_path / "NAME.pt", "classifier") == tmp_path / "NAME_direction.pt"
    save_method(tmp_path / "NAME_classifier.pt", old)
    assert default_method_path(tmp_path / "NAME.pt", "classifier") == tmp_path / "NAME_classifier.pt"


# ---- the command line: every method, every setting ------------------------------------------------

def test_the_cli_table_matches_the_methods():
    assert list(METHOD_SETTINGS) == list(METHODS) or sorted(METHOD_SETTINGS) == sorted(METHODS)
    for name, cls in METHODS.items():
        assert method_settings(name) == cls.param_names(), name
        assert {k.rstrip("*") for k in METHOD_SETTINGS[name] if k.endswith("*")} == set(cls.fit_settings), name
    assert set(SETTING_FLAGS) == {k for cls in METHODS.values() for k in cls.param_names()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, model):
    from usdiff.data import generate_dataset

    root = tmp_path_factory.mktemp("protocol")
    data = generate_dataset(root / "data", n=12, size=SIZE, seed=0, workers=1, progress=False)
    ckpt = save_pretrained(model, root / "model.pt", half=False)
    sim = root / "sim"
    sim.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(sim / f"{k}.png")
    labels = root / "labels"
    labels.mkdir()
    for k in range(2):
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(labels / f"{k}.png")
    return {"data": data, "ckpt": ckpt, "sim": sim, "labels": labels, "root": root}


# small, non-default values for every setting (fit settings kept cheap)
VALUES = {"loss": "mse", "alpha": 0.7, "alpha_unit": "unit", "encode_steps": 3, "decode_steps": 2,
          "fixed_point_iters": 1, "strength": 0.6, "reg": 0.01, "t0": 0.4, "steps": 5, "ilvr": 4,
          "ilvr_until": 0.2, "scale": 2.0, "guide_steps": 2, "guide_width": 4, "train_steps": 2,
          "train_batch_size": 2, "width": 4, "blocks": 1, "lambda_cyc": 5.0, "lambda_id": 1.0, "minutes": 5.0}
CHEAP = {"encode_steps": 2, "decode_steps": 2, "steps": 4, "guide_steps": 2, "guide_width": 4,
         "train_steps": 2, "train_batch_size": 2, "width": 4, "blocks": 1}


def flags(settings: dict) -> list[str]:
    return [a for k, v in settings.items() for a in ("--" + k.replace("_", "-"), str(v))]


def translate(world, name, out, *extra):
    ckpt = [] if name == "cyclegan" else ["--ckpt", str(world["ckpt"])]
    return main(["translate", *ckpt, "--images", str(world["sim"]), "--out", str(world["root"] / out),
                 "--method", name, "--labels", str(world["labels"]), *map(str, extra)])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_translate_runs_every_method_with_every_setting(name, world, capsys):
    cls = METHODS[name]
    fit_values = {k: VALUES[k] for k in cls.fit_settings}
    cheap = {k: v for k, v in CHEAP.items() if k in cls.knob_names()}
    fitted = world["root"] / f"{name}.pt"
    # every fit setting: given with --data, it shapes the fit that is saved
    assert translate(world, name, f"{name}_fit", "--data", world["data"], "--n-fit", 8, "--save-fitted", fitted,
                     *flags({**fit_values, **cheap})) == 0, capsys.readouterr().err
    saved = load_method(fitted)
    assert all(saved.get_params()[k] == v for k, v in fit_values.items())
    # every knob: applied to the fitted method without a refit, and shown in the report
    for knob in cls.knob_names():
        settings = {**cheap, knob: VALUES[knob]}
        assert translate(world, name, f"{name}_{knob}", "--fitted", fitted, *flags(settings)) == 0, \
            capsys.readouterr().err
        assert f"{knob}={VALUES[knob]!r}" in capsys.readouterr().out
        assert len(list((world["root"] / f"{name}_{knob}").iterdir())) == 2
    # a fit setting with another value than the fitted one is refused, in one line
    for k in cls.fit_settings[:1]:
        other = {"loss": "bce"}.get(k, VALUES[k] * 2 if not isinstance(VALUES[k], str) else VALUES[k])
        assert translate(world, name, f"{name}_refused", "--fitted", fitted, f"--{k.replace('_', '-')}", other) == 2
        err = capsys.readouterr().err
        assert f"{k} is a fit setting" in err and "--data" in err


def test_classifier_loss_on_the_command_line(world, capsys):
    """--loss fits that loss with --data; with a fitted file it must match the file's loss."""
    mse = world["root"] / "mse.pt"
    assert translate(world, "classifier", "mse_out", "--data", world["data"], "--n-fit", 8, "--loss", "mse",
                     "--save-fitted", mse, *flags({"encode_steps": 2, "decode_steps": 2})) == 0
    assert load_method(mse).classifier_.loss == "mse"
    assert translate(world, "classifier", "mse_again", "--fitted", mse, "--loss", "mse",
                     *flags({"encode_steps": 2, "decode_steps": 2})) == 0
    capsys.readouterr()
    assert translate(world, "classifier", "bce_refused", "--fitted", mse, "--loss", "bce") == 2
    err = capsys.readouterr().err
    assert "loss is a fit setting of the fitted 'classifier' method (fitted with loss='mse')" in err


def test_the_cyclegan_needs_no_checkpoint_and_other_methods_say_they_need_one(world, capsys):
    fitted = world["root"] / "cg_only.pt"
    assert translate(world, "cyclegan", "cg_data", "--data", world["data"], "--n-fit", 8, "--save-fitted", fitted,
                     *flags({k: CHEAP[k] for k in ("train_steps", "train_batch_size", "width", "blocks")})) == 0
    assert translate(world, "cyclegan", "cg_file", "--fitted", fitted) == 0
    capsys.readouterr()
    assert translate(world, "cyclegan", "cg_none") == 2
    assert "no fitted 'cyclegan' method: give a fitted file (fitted=, CLI --fitted) or a" in capsys.readouterr().err
    assert main(["translate", "--images", str(world["sim"]), "--out", str(world["root"] / "x"),
                 "--method", "transport"]) == 2
    assert "method 'transport' works with a DiffAE: give its checkpoint" in capsys.readouterr().err


def test_a_checkpoint_that_is_not_a_diffae_is_named_as_such(world, tmp_path, capsys):
    critics = tmp_path / "critics.pt"
    torch.save({"format": "usdiff.critics/1", "size": SIZE}, critics)
    assert main(["translate", "--ckpt", str(critics), "--images", str(world["sim"]), "--out", str(tmp_path / "o"),
                 "--method", "transport"]) == 2
    err = capsys.readouterr().err
    assert "critics.pt is not a DiffAE checkpoint (it holds usdiff.critics/1)" in err and "no fitted" not in err


def test_alpha_zero_leaves_the_codes_exactly_as_they_are(codes):
    from usdiff.translate import manipulate_z

    clf = ClassifierTranslator().fit_codes(*codes).classifier_
    z = torch.as_tensor(codes[0][:5], dtype=torch.float32)
    assert torch.equal(manipulate_z(z, clf, 0.0), z) and manipulate_z(z, clf, 0.0) is not z
    assert not torch.equal(manipulate_z(z, clf, 1e-3), z)


def test_a_fitted_file_and_a_data_set_together_are_refused(world, capsys):
    assert translate(world, "transport", "both", "--fitted", world["root"] / "transport.pt",
                     "--data", world["data"]) == 2
    assert "either a fitted file (fitted=, CLI --fitted) or a data set" in capsys.readouterr().err


def test_guided_asks_for_the_label_maps_before_it_starts(world, tmp_path, capsys):
    ckpt = ["--ckpt", str(world["ckpt"])]
    assert main(["translate", *ckpt, "--images", str(world["sim"]), "--out", str(tmp_path / "o"), "--method",
                 "guided", "--fitted", str(world["root"] / "guided.pt")]) == 2
    assert "reads the label maps of its inputs" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["translate", *ckpt, "--images", str(world["sim"]), "--out", str(tmp_path / "o0"), "--method",
                 "guided", "--fitted", str(world["root"] / "guided.pt"), "--scale", "0", "--steps", "4"]) == 0
