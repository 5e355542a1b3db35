"""slerp/lerp identities, interpolation endpoints, manipulation geometry, folder translation."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from zmodels import tiny_z_model

from usdiff.io import FolderOptions
from usdiff.latent import LinearClassifier, ZNormalizer
from usdiff.model import DDIMSteps
from usdiff.train import save_pretrained
from usdiff.translate import (
    ClassifierTranslator,
    interpolate,
    lerp,
    load_direction,
    manipulate,
    manipulate_z,
    resolve_method,
    save_direction,
    save_method,
    slerp,
    translate_folder,
    unpaired_training_data,
)

SIZE = 32
CPU = FolderOptions(device="cpu")
STEPS = 3


@pytest.fixture(scope="module")
def model():
    """A tiny DiffAE whose decoder depends on z_sem (a fresh one ignores it: see tests/zmodels.py)."""
    return tiny_z_model(SIZE)


def test_the_test_model_uses_z_sem(model):
    x_T = torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, model.config.z_dim, generator=torch.Generator().manual_seed(1))
    a, b = model.decode(x_T, z[:1], steps=STEPS), model.decode(x_T, z[1:], steps=STEPS)
    assert (a - b).abs().mean() > 1e-3


@pytest.fixture(scope="module")
def classifier(model):
    rng = np.random.default_rng(0)
    d = model.config.z_dim
    z = rng.standard_normal((80, d))
    y = np.repeat([0, 1], 40)
    z[y == 1, :4] += 2.0
    return LinearClassifier(lr=1e-2, epochs=3, device="cpu").fit(z, y, progress=False)


def images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, SIZE, SIZE, generator=g) * 2 - 1


# ---- lerp / slerp -------------------------------------------------------------------------------

def test_slerp_and_lerp_endpoints():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    for f in (slerp, lerp):
        torch.testing.assert_close(f(a, b, 0.0), a, rtol=0, atol=0)
        torch.testing.assert_close(f(a, b, 1.0), b, rtol=0, atol=1e-6)
    t = torch.tensor([0.0, 0.5, 1.0])
    out = slerp(a, b, t)
    torch.testing.assert_close(out[0], a[0], rtol=0, atol=0)
    torch.testing.assert_close(out[2], b[2], rtol=0, atol=1e-6)


def test_slerp_keeps_norm_and_follows_the_great_circle():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 50, generator=g, dtype=torch.float64)
    b = torch.randn(2, 50, generator=g, dtype=torch.float64)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms
    theta = torch.arccos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))
    for t in (0.1, 0.5, 0.8):
        s = slerp(a, b, t)
        torch.testing.assert_close(s.norm(dim=1), a.norm(dim=1))
        # the angle to a is t * theta
        ang = torch.arccos((s * a).sum(1) / (s.norm(dim=1) * a.norm(dim=1)))
        torch.testing.assert_close(ang, t * theta)
    # the straight line cuts inside the sphere: |lerp midpoint| = |a| cos(theta / 2) < |a|
    mid = lerp(a, b, 0.5)
    torch.testing.assert_close(mid.norm(dim=1), a.norm(dim=1) * torch.cos(theta / 2))
    assert torch.all(mid.norm(dim=1) < slerp(a, b, 0.5).norm(dim=1) - 1e-3)


def test_slerp_parallel_falls_back_to_lerp_and_validates():
    a = torch.tensor([1.0, 2.0, 3.0])
    out = slerp(a, 2 * a, 0.5)
    torch.testing.assert_close(out, 1.5 * a)
    assert torch.all(torch.isfinite(out))
    with pytest.raises(ValueError, match="same shape"):
        slerp(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="t must be a number"):
        lerp(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))


# ---- interpolation -----------------------------------------------------------------------------

def test_interpolation_endpoints_are_the_reconstructions(model):
    x = images(2, seed=3)
    out = interpolate(model, x[0], x[1:], n_steps=4, ddim=DDIMSteps(STEPS, STEPS), progress=False)
    assert out["images"].shape == (4, 1, SIZE, SIZE) and out["z"].shape == (4, model.config.z_dim)
    torch.testing.assert_close(out["alphas"], torch.linspace(0, 1, 4))
    for i, j in ((0, 0), (1, 3)):
        xi = x[i:i + 1]
        z = model.encode(xi)
        rec = model.decode(model.encode_stochastic(xi, z, steps=STEPS), z, steps=STEPS)
        torch.testing.assert_close(out["images"][j:j + 1], rec, rtol=1e-4, atol=1e-4)
    # z is linear in alpha; x_T follows the slerp closed form between the two end codes
    z = out["z"]
    torch.testing.assert_close(z[1] - z[0], z[2] - z[1], rtol=1e-4, atol=1e-5)
    xt = out["x_T"].flatten(1).double()
    a, b, alpha = xt[0], xt[-1], out["alphas"].double()[:, None]
    theta = torch.arccos(a @ b / (a.norm() * b.norm()))
    expected = (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / torch.sin(theta)
    torch.testing.assert_close(xt, expected, rtol=1e-4, atol=1e-5)


def test_interpolation_validation(model):
    x = images(1)
    with pytest.raises(ValueError, match="n_steps"):
        interpolate(model, x, x, n_steps=1, progress=False)
    with pytest.raises(ValueError, match="x_a must be one image"):
        interpolate(model, images(2), x, progress=False)
    with pytest.raises(ValueError, match="x_T must be None"):
        interpolate(model, x, x, x_T=torch.zeros(1, 1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="x_T_path must be one of"):
        interpolate(model, x, x, x_T_path="cubic", progress=False)


def test_interpolation_with_given_x_T_runs_between_them(model):
    x = images(2, seed=3)
    x_T = model.random_x_T(2, steps=STEPS, generator=torch.Generator().manual_seed(4))
    out = interpolate(model, x[0], x[1:], n_steps=3, ddim=DDIMSteps(STEPS + 2, STEPS), x_T=x_T, progress=False)
    torch.testing.assert_close(out["x_T"][[0, -1]], x_T)
    torch.testing.assert_close(out["images"][0:1], model.decode(x_T[:1], model.encode(x[:1]), steps=STEPS))
    with pytest.raises(ValueError, match=r"x_T must be None or a tensor of shape \(2, 1, 32, 32\), got 'random'"):
        interpolate(model, x[0], x[1:], x_T="random", progress=False)


def test_interpolation_x_T_paths(model):
    x = images(2, seed=3)
    kw = dict(n_steps=3, ddim=DDIMSteps(STEPS, STEPS), progress=False)
    out = {p: interpolate(model, x[0], x[1:], x_T_path=p, **kw) for p in ("slerp", "lerp", "fixed")}
    ends = out["slerp"]["x_T"][[0, -1]]
    for p in out:                       # every path joins the same two codes (fixed: stays at the first)
        torch.testing.assert_close(out[p]["x_T"][0], ends[0])
        torch.testing.assert_close(out[p]["z"], out["slerp"]["z"])
    torch.testing.assert_close(out["lerp"]["x_T"][1], ends.mean(0))
    torch.testing.assert_close(out["fixed"]["x_T"], ends[:1].expand(3, -1, -1, -1))
    # lerp shortens the midpoint; slerp keeps it near the norm of the end codes
    def norm(v):
        return float(v.norm())

    assert norm(out["lerp"]["x_T"][1]) < norm(out["slerp"]["x_T"][1])
    lo, hi = sorted(map(norm, ends))
    assert 0.9 * lo <= norm(out["slerp"]["x_T"][1]) <= 1.1 * hi


# ---- manipulation ------------------------------------------------------------------------------

def test_manipulate_z_geometry():
    rng = np.random.default_rng(0)
    d = 16
    z_all = rng.standard_normal((50, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    norm = ZNormalizer().fit(z_all)
    w = torch.from_numpy(rng.standard_normal(d))
    z = torch.from_numpy(z_all[:5])
    torch.testing.assert_close(manipulate_z(z, w, 0.0, norm), z)
    for alpha in (0.1, -0.3, 0.75):
        shift = norm.transform(manipulate_z(z, w, alpha, norm)) - norm.transform(z)
        torch.testing.assert_close(shift.norm(dim=1), torch.full((5,), abs(alpha) * math.sqrt(d), dtype=torch.float64))
        # every row moves along +-w / |w|
        torch.testing.assert_close(shift / (alpha * math.sqrt(d)), (w / w.norm()).expand(5, -1))
        unit = norm.transform(manipulate_z(z, w, alpha, norm, scale="unit")) - norm.transform(z)
        torch.testing.assert_close(unit.norm(dim=1), torch.full((5,), abs(alpha), dtype=torch.float64))
    # numpy in, numpy out; no normaliser = identity normalisation
    out = manipulate_z(z_all[:2], w.numpy(), 0.5)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out - z_all[:2], np.broadcast_to(0.5 * math.sqrt(d) * w.numpy() / np.linalg.norm(w), (2, d)))
    with pytest.raises(ValueError, match="scale must be"):
        manipulate_z(z, w, 0.1, norm, scale="cube")
    with pytest.raises(ValueError, match="nonzero"):
        manipulate_z(z, torch.zeros(d), 0.1, norm)


def test_manipulating_towards_real_raises_the_classifier_score(classifier):
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.standard_normal((6, len(classifier.weight_))))
    before = classifier.decision_function(z.numpy())
    after = classifier.decision_function(manipulate_z(z, classifier, 0.3).numpy())
    # the logit is linear in normalised z: it grows by exactly alpha * sqrt(D) * |w|
    np.testing.assert_allclose(after - before, 0.3 * math.sqrt(len(classifier.weight_))
                               * np.linalg.norm(classifier.weight_), rtol=1e-6)


def test_manipulate_alpha_zero_is_the_reconstruction(model, classifier):
    x = images(2, seed=5)
    out = manipulate(model, x, classifier, alphas=[0.0, 0.5], ddim=DDIMSteps(STEPS, STEPS), progress=False)
    assert out["images"].shape == (2, 2, 1, SIZE, SIZE) and out["z"].shape == (2, 2, model.config.z_dim)
    z = model.encode(x)
    torch.testing.assert_close(out["z"][0], z, rtol=1e-5, atol=1e-5)
    rec = model.decode(model.encode_stochastic(x, z, steps=STEPS), z, steps=STEPS)
    torch.testing.assert_close(out["images"][0], rec, rtol=1e-5, atol=1e-5)
    assert out["realness"].shape == (2, 2) and torch.all(out["realness"][1] > out["realness"][0])


# ---- saved directions and folders --------------------------------------------------------------

def test_direction_file_round_trip(tmp_path, classifier):
    path = save_direction(tmp_path / "dir.pt", classifier, ckpt="tiny")
    clf = load_direction(path)
    z = np.random.default_rng(0).standard_normal((3, len(classifier.weight_)))
    np.testing.assert_array_equal(clf.decision_function(z), classifier.decision_function(z))
    torch.testing.assert_close(clf.direction, classifier.direction)
    assert clf.meta == {"ckpt": "tiny"}
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_direction(tmp_path / "nothing.pt")
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a translation method saved by usdiff"):
        load_direction(tmp_path / "other.pt")


def write_pngs(folder, names, size=SIZE, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(folder / name)
    return folder


def method_for(clf, alpha=0.3):
    return ClassifierTranslator.from_direction(clf, alpha=alpha, encode_steps=STEPS, decode_steps=STEPS)


def test_translate_folder_one_output_per_input(tmp_path, model, classifier):
    names = ["b.png", "a.png", "c.png"]
    src = write_pngs(tmp_path / "sim", names)
    direction = save_direction(tmp_path / "dir.pt", classifier)
    ckpt = save_pretrained(model, tmp_path / "model.pt", half=False)
    out = translate_folder(method_for(load_direction(direction)), ckpt, src, tmp_path / "out",
                           options=FolderOptions(batch_size=2, device="cpu"), progress=False)
    assert [p.name for p in out] == sorted(names)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)
    for p in out:
        with Image.open(p) as im:
            assert im.size == (SIZE, SIZE) and im.mode == "L"
    # alpha = 0 reproduces the plain reconstruction of the image (model object instead of a file)
    out0 = translate_folder(method_for(classifier, 0.0), model, src, tmp_path / "out0", options=CPU, progress=False)
    x = torch.from_numpy(np.asarray(Image.open(src / "a.png"), dtype=np.float32) / 255.0)[None, None] * 2 - 1
    z = model.encode(x)
    rec = model.decode(model.encode_stochastic(x, z, steps=STEPS), z, steps=STEPS)
    expected = np.round((rec[0, 0].numpy() + 1) / 2 * 255)
    got = np.asarray(Image.open(out0[0]), dtype=np.float64)
    assert np.abs(got - expected).max() <= 1


def test_translate_folder_errors(tmp_path, model, classifier):
    src = write_pngs(tmp_path / "sim", ["a.png"])
    method = method_for(classifier)
    kw = dict(options=CPU, progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.pt"):
        translate_folder(method, tmp_path / "missing.pt", src, tmp_path / "out", **kw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in .*empty"):
        translate_folder(method, model, tmp_path / "empty", tmp_path / "out", **kw)
    with pytest.raises(FileNotFoundError, match="image folder .*nope does not exist"):
        translate_folder(method, model, tmp_path / "nope", tmp_path / "out", **kw)
    big = write_pngs(tmp_path / "big", ["x.png"], size=48)         # other sizes are resized by default
    out = translate_folder(method, model, big, tmp_path / "out_big", **kw)
    assert Image.open(out[0]).size == (SIZE, SIZE)
    kept = translate_folder(method, model, big, tmp_path / "out_kept", options=FolderOptions(keep_size=True, device="cpu"),
                            progress=False)
    assert Image.open(kept[0]).size == (48, 48)
    with pytest.raises(FileExistsError, match="exist in .*out_big"):
        translate_folder(method, model, big, tmp_path / "out_big", **kw)
    translate_folder(method, model, big, tmp_path / "out_big", options=FolderOptions(overwrite=True, device="cpu"),
                     progress=False)
    with pytest.raises(ValueError, match="out_dir must differ"):
        translate_folder(method, model, src, src, **kw)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        translate_folder(ClassifierTranslator(), model, src, tmp_path / "out", **kw)
    with pytest.raises(ValueError, match="method must be a fitted Translator"):
        translate_folder("classifier", model, src, tmp_path / "out", **kw)
    with pytest.raises(ValueError, match="needs the DiffAE"):
        translate_folder(method, None, src, tmp_path / "out", **kw)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nothing.pt"):
        resolve_method("classifier", tmp_path / "nothing.pt", progress=False)
    ckpt = save_pretrained(model, tmp_path / "model.pt", half=False)
    with pytest.raises(ValueError, match=r"no fitted 'classifier' method \(none at .*model_classifier.pt\)"):
        resolve_method("classifier", ckpt, progress=False)
    with pytest.raises(ValueError, match="unknown translation method 'pix2pix'; choose one of"):
        resolve_method("pix2pix", model)
    wrong = LinearClassifier(lr=1e-2, epochs=1, device="cpu").fit(np.random.default_rng(0).standard_normal((8, 5)),
                                                                  [0, 1] * 4, progress=False)
    with pytest.raises(ValueError, match="5-d codes but the model's z_sem is 128-d"):
        translate_folder(method_for(wrong), model, src, tmp_path / "out", **kw)


def test_resolve_method_fits_on_the_builtin_data_unpaired(tmp_path, model):
    from usdiff.data import generate_dataset

    data = generate_dataset(tmp_path / "data", n=12, size=SIZE, seed=0, workers=1, progress=False)
    parts = unpaired_training_data(data, SIZE, n=None)
    n_train = len(parts["sim"]) + len(parts["real"])
    assert len(parts["sim"]) == len(parts["sim_labels"]) and n_train >= 8
    # no phantom in both domains: sim from the first half of the train phantoms, real-like from the second
    from usdiff.data import BuiltinDataset

    sims = BuiltinDataset(data, split="train", domain="sim", size=SIZE)
    twins = BuiltinDataset(data, split="train", domain="real", size=SIZE)
    half = len(twins) // 2
    assert len(parts["sim"]) == half and len(parts["real"]) == len(twins) - half
    assert all(torch.equal(parts["sim"][k], sims[k][0]) for k in range(half))
    assert all(torch.equal(parts["real"][k], twins[half + k][0]) for k in range(len(parts["real"])))
    np.testing.assert_array_equal(parts["sim_labels"][0], sims.label_map(0))
    method = resolve_method("transport", model, fit_on=data, settings={"encode_steps": STEPS, "decode_steps": STEPS},
                            progress=False)
    assert method.fitted and method.transport_["A"].shape == (model.config.z_dim, model.config.z_dim)
    saved = save_method(tmp_path / "transport.pt", method)
    with pytest.raises(FileExistsError, match="exists"):
        save_method(saved, method)
    again = resolve_method("transport", model, fitted=saved)
    np.testing.assert_array_equal(again.transport_["A"], method.transport_["A"])
    assert again.get_params() == method.get_params()
    with pytest.raises(ValueError, match="holds a fitted 'transport' method, not 'sdedit'"):
        resolve_method("sdedit", model, fitted=saved)
    with pytest.raises(FileNotFoundError, match="data set folder not found"):
        resolve_method("transport", model, fit_on=tmp_path / "none", progress=False)


def test_translation_applies_the_manipulation_in_the_direction_asked(tmp_path, model, classifier):
    src = write_pngs(tmp_path / "sim", ["a.png", "b.png"])
    kw = dict(options=CPU, progress=False)
    read = lambda p: np.asarray(Image.open(p), dtype=np.float64)  # noqa: E731
    outs = {a: [read(p) for p in translate_folder(method_for(classifier, a), model, src, tmp_path / f"o{a}", **kw)]
            for a in (0.0, 1.0, -1.0)}
    # alpha changes the output, and +alpha and -alpha move it differently
    assert np.abs(outs[1.0][0] - outs[0.0][0]).mean() > 0.5
    assert np.abs(outs[1.0][0] - outs[-1.0][0]).mean() > 0.5
    # the +alpha output is exactly the decode of the code moved along the classifier's direction
    x = torch.from_numpy(read(src / "a.png").astype(np.float32) / 255.0)[None, None] * 2 - 1
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, steps=STEPS)
    expected = (model.decode(x_T, manipulate_z(z, classifier, 1.0), steps=STEPS)[0, 0].numpy() + 1) / 2 * 255
    assert np.abs(outs[1.0][0] - np.round(expected)).max() <= 1
