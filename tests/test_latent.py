"""Normaliser, linear sim-vs-real classifiers, embeddings and separation scores."""
import numpy as np
import pytest
import torch

from usdiff.latent import (
    LinearClassifier,
    ZNormalizer,
    classifier_loss,
    domain_separation,
    embed_pca,
    embed_tsne,
    train_linear_classifier,
)


def two_gaussians(n=200, d=8, shift=3.0, seed=0):
    """Two Gaussian clouds with different means and scales; label 1 is shifted along a random axis."""
    rng = np.random.default_rng(seed)
    axis = rng.standard_normal(d)
    axis /= np.linalg.norm(axis)
    scale = rng.uniform(0.5, 3.0, d)
    offset = rng.uniform(-5, 5, d)
    y = np.repeat([0, 1], n // 2)
    z = rng.standard_normal((n, d)) * scale + offset + np.outer(y, axis * shift * scale)
    return z, y


# ---- ZNormalizer --------------------------------------------------------------------------------

def test_normalizer_standardises_and_round_trips_numpy_and_torch():
    z, _ = two_gaussians()
    norm = ZNormalizer().fit(z)
    zn = norm.transform(z)
    assert isinstance(zn, np.ndarray)
    np.testing.assert_allclose(zn.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(zn.std(0, ddof=1), 1, atol=1e-12)
    np.testing.assert_allclose(norm.inverse_transform(zn), z, atol=1e-12)
    zt = torch.tensor(z, dtype=torch.float32)
    out = norm.transform(zt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(norm.inverse_transform(out), zt, atol=1e-4, rtol=1e-5)


def test_normalizer_zero_std_dimension_maps_to_zero_and_round_trips():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((20, 3))
    z[:, 1] = 7.0
    norm = ZNormalizer().fit(z)
    assert norm.zero_std_.tolist() == [False, True, False]
    zn = norm.transform(z)
    assert np.all(np.isfinite(zn)) and np.all(zn[:, 1] == 0)
    np.testing.assert_allclose(norm.inverse_transform(zn), z, atol=1e-12)


def test_normalizer_is_differentiable_and_save_load(tmp_path):
    z = torch.randn(30, 4, dtype=torch.float64)
    norm = ZNormalizer().fit(z)
    q = z.clone().requires_grad_(True)
    norm.transform(q).sum().backward()
    torch.testing.assert_close(q.grad[0], torch.from_numpy(1 / norm.std_))
    loaded = ZNormalizer.load(norm.save(tmp_path / "n.pt"))
    np.testing.assert_array_equal(loaded.mean_, norm.mean_)
    np.testing.assert_array_equal(loaded.std_, norm.std_)


def test_normalizer_validation():
    with pytest.raises(RuntimeError, match="not fitted"):
        ZNormalizer().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="z must be a 2-D"):
        ZNormalizer().fit(np.zeros(5))
    norm = ZNormalizer().fit(np.random.default_rng(0).standard_normal((5, 3)))
    with pytest.raises(ValueError, match="3 columns"):
        norm.transform(np.zeros((2, 4)))


# ---- losses: autograd equals the closed forms -------------------------------------------------

@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_loss_gradient_matches_closed_form(loss):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(12, generator=g) > 0.5).double()
    w = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True)
    s = x @ w + b
    classifier_loss(s, y, loss).backward()
    residual = torch.sigmoid(s) - y if loss == "bce" else 2 * (s - y)
    residual = residual.detach()
    torch.testing.assert_close(w.grad, x.T @ residual / len(x))
    torch.testing.assert_close(b.grad, residual.mean().reshape(1))


def test_loss_values_closed_form():
    s = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    bce = (torch.log1p(torch.exp(s)) - y * s).mean()
    torch.testing.assert_close(classifier_loss(s, y, "bce"), bce)
    torch.testing.assert_close(classifier_loss(s, y, "mse"), ((s - y) ** 2).mean())
    with pytest.raises(ValueError, match="loss must be one of"):
        classifier_loss(s, y, "hinge")


# ---- classifiers -------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_classifiers_separate_gaussians(loss):
    z, y = two_gaussians(n=300, d=8, shift=4.0)
    clf, report = train_linear_classifier(z, y, loss=loss, lr=1e-2, epochs=20, progress=False, device="cpu")
    assert report["n_train"] == 240 and report["n_test"] == 60
    assert report["train_accuracy"] > 0.9 and report["test_accuracy"] > 0.9
    proba = clf.predict_proba(z)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    assert len(clf.history) == 20 and clf.history[-1]["loss"] < clf.history[0]["loss"]
    d = clf.direction
    assert d.shape == (8,) and abs(float(d.norm()) - 1) < 1e-6
    # the direction points towards the real class: it increases the logit, in normalised space
    zn = clf.normalizer_.transform(z)
    shift_n = zn[y == 1].mean(0) - zn[y == 0].mean(0)
    assert float(d.double() @ torch.from_numpy(shift_n)) > 0


def test_study_settings_are_the_defaults():
    clf = LinearClassifier()
    s = LinearClassifier.study_settings()
    assert (clf.lr, clf.epochs, clf.batch_size, clf.loss) == (s["lr"], s["epochs"], s["batch_size"], "bce")


def test_mse_classifier_converges_to_least_squares():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((48, 3)) * [1.0, 2.0, 0.5] + [1.0, -2.0, 0.0]
    y = (z @ [1.0, 0.5, -1.0] + 0.8 * rng.standard_normal(48) > 0).astype(int)
    clf = LinearClassifier(loss="mse", lr=1e-2, epochs=600, batch_size=48, device="cpu").fit(z, y, progress=False)
    a = np.c_[clf.normalizer_.transform(z), np.ones(len(z))]
    coef, *_ = np.linalg.lstsq(a, y.astype(float), rcond=None)
    np.testing.assert_allclose(clf.weight_, coef[:3], atol=2e-3)
    assert abs(clf.bias_ - coef[3]) < 2e-3


def test_bce_predict_proba_is_sigmoid_of_logit_and_mse_is_clipped():
    z, y = two_gaussians(n=60, d=3)
    bce = LinearClassifier("bce", lr=1e-2, epochs=3, device="cpu").fit(z, y, progress=False)
    s = bce.decision_function(z)
    np.testing.assert_allclose(bce.predict_proba(z)[:, 1], 1 / (1 + np.exp(-s)))
    np.testing.assert_array_equal(bce.predict(z), (s > 0).astype(int))
    mse = LinearClassifier("mse", lr=1e-2, epochs=3, device="cpu").fit(z, y, progress=False)
    s = mse.decision_function(z)
    np.testing.assert_allclose(mse.predict_proba(z)[:, 1], np.clip(s, 0, 1))
    np.testing.assert_array_equal(mse.predict(z), (s > 0.5).astype(int))


def test_classifier_is_reproducible_and_state_round_trips():
    z, y = two_gaussians(n=64, d=4)
    a = LinearClassifier(lr=1e-3, epochs=2, seed=5, device="cpu").fit(z, y, progress=False)
    b = LinearClassifier(lr=1e-3, epochs=2, seed=5, device="cpu").fit(z, y, progress=False)
    np.testing.assert_array_equal(a.weight_, b.weight_)
    with torch.no_grad():  # training still works (and is the same) inside a no-grad block
        c = LinearClassifier(lr=1e-3, epochs=2, seed=5, device="cpu").fit(z, y, progress=False)
    np.testing.assert_array_equal(a.weight_, c.weight_)
    c = LinearClassifier.from_state_dict(a.state_dict())
    np.testing.assert_array_equal(c.decision_function(z), a.decision_function(z))


def test_classifier_validation():
    z = np.zeros((4, 2))
    with pytest.raises(ValueError, match="loss must be one of"):
        LinearClassifier(loss="hinge")
    with pytest.raises(ValueError, match="lr must be > 0"):
        LinearClassifier(lr=0)
    with pytest.raises(ValueError, match="only 0 \\(sim\\) and 1 \\(real\\)"):
        LinearClassifier().fit(z, [0, 1, 2, 1], progress=False)
    with pytest.raises(ValueError, match="3 labels but z has 4 rows"):
        LinearClassifier().fit(z, [0, 1, 1], progress=False)
    with pytest.raises(ValueError, match="both classes"):
        LinearClassifier().fit(z, [1, 1, 1, 1], progress=False)
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearClassifier().predict(z)


# ---- embeddings and separation ----------------------------------------------------------------

def test_embeddings_shapes_and_pca_variance_order():
    z, y = two_gaussians(n=40, d=6)
    pca = embed_pca(z, 3)
    assert pca.shape == (40, 3)
    var = pca.var(0)
    assert var[0] >= var[1] >= var[2]
    emb = embed_tsne(z, max_iter=250)
    assert emb.shape == (40, 2) and np.all(np.isfinite(emb))
    np.testing.assert_array_equal(emb, embed_tsne(z, max_iter=250))  # random_state=42 by default
    with pytest.warns(UserWarning, match="perplexity=30.0 is too large for 20 points"):
        small = embed_tsne(z[:20], max_iter=250)
    assert small.shape == (20, 2)


def test_domain_separation_separable_vs_identical():
    z, y = two_gaussians(n=200, d=6, shift=8.0)
    sep = domain_separation(z, y)
    assert sep["probe_accuracy"] > 0.98 and sep["silhouette"] > 0.3 and sep["frechet"] > 10
    rng = np.random.default_rng(0)
    same = rng.standard_normal((400, 4))
    y2 = np.repeat([0, 1], 200)
    mix = domain_separation(same, y2)
    assert abs(mix["probe_accuracy"] - 0.5) < 0.1
    assert abs(mix["silhouette"]) < 0.05 and mix["frechet"] < 0.2
