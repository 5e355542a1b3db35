"""Fréchet distance, streaming Gaussian statistics, KID, and the feature-level evaluation helpers."""
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from usdiff.data import USImageFolder
from usdiff.metrics import (
    GaussianStats,
    PolynomialKernel,
    distance_report,
    fd_from_features,
    fid_bias_curve,
    frechet_distance,
    kid,
    report_table,
    take_images,
)


def random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, 2 * d)) * scale
    return a @ a.T / (2 * d)


def rotation(rng, d):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def nuclear_norm_reference(x, y):
    """tr((S1 S2)^(1/2)) from the samples: the nuclear norm of Xc Yc^T / sqrt((n1-1)(n2-1))."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((len(x) - 1) * (len(y) - 1))


# --- Fréchet distance -------------------------------------------------------------------------

@pytest.mark.parametrize("m1,s1,m2,s2", [(0.0, 1.0, 0.0, 1.0), (1.5, 2.0, -0.5, 0.25), (3.0, 1e-4, 2.0, 9.0)])
def test_one_dimensional_closed_form(m1, s1, m2, s2):
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * np.sqrt(s1 * s2)
    got = frechet_distance([m1], [[s1]], [m2], [[s2]])
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    d = 48
    q = rotation(rng, d)
    a, b = rng.uniform(0.01, 4.0, d), rng.uniform(0.01, 4.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    # diagonal, then the same pair rotated into a common non-trivial eigenbasis
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("d", [8, 64, 192])
def test_matches_scipy_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.3
    s1, s2 = random_spd(rng, d), random_spd(rng, d, scale=1.7)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_symmetric_and_zero_for_identical_stats():
    rng = np.random.default_rng(1)
    d = 32
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-10)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9 * np.trace(s1))
    assert frechet_distance(mu1, s1, mu2, s2) > 0


def test_rank_deficient_covariances_are_exact_and_finite():
    rng = np.random.default_rng(2)
    d, n = 96, 40  # fewer samples than dimensions: both covariances have rank 39
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    y = 0.5 * rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 1.0
    fd = fd_from_features(x, y)
    expected = (np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(np.cov(x, rowvar=False))
                + np.trace(np.cov(y, rowvar=False)) - 2 * nuclear_norm_reference(x, y))
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(expected, rel=1e-9)
    # identical rank-deficient statistics: zero up to round-off, never negative
    assert 0.0 <= fd_from_features(x, x) <= 1e-9 * np.trace(np.cov(x, rowvar=False))


def test_constant_feature_columns_do_not_break_it():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((200, 10)), rng.standard_normal((200, 10)) + 0.2
    x[:, :3] = 1.0  # zero-variance columns -> exactly singular covariance
    y[:, :3] = 1.0
    fd = fd_from_features(x, y)
    assert np.isfinite(fd) and fd >= 0
    assert fd == pytest.approx(fd_from_features(x[:, 3:], y[:, 3:]), rel=1e-9)


def test_frechet_validation_names_the_argument():
    eye = np.eye(3)
    with pytest.raises(ValueError, match="mu1 and mu2"):
        frechet_distance(np.zeros(3), eye, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="sigma1 contains NaN"):
        frechet_distance(np.zeros(3), np.full((3, 3), np.nan), np.zeros(3), eye)
    with pytest.raises(ValueError, match="features1 needs at least 2"):
        fd_from_features(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="different widths"):
        fd_from_features(np.ones((4, 3)), np.ones((5, 2)))


# --- GaussianStats ----------------------------------------------------------------------------

def test_streaming_stats_equal_batch_statistics():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((257, 12)) * 3.0 + 100.0  # large offset: tests the stable update
    stats = GaussianStats()
    for lo, hi in [(0, 1), (1, 50), (50, 51), (51, 200), (200, 257)]:
        stats.update(x[lo:hi])
    assert stats.n == 257
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_streamed_batches_and_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100, 6))
    merged = GaussianStats.from_features(x[:30]).update(x[30:])
    np.testing.assert_allclose(merged.cov, np.cov(x, rowvar=False), rtol=1e-10)
    path = merged.save(tmp_path / "stats")
    assert path.suffix == ".npz"
    loaded = GaussianStats.load(path)
    assert loaded.n == 100 and loaded.dim == 6
    np.testing.assert_allclose(loaded.mean, merged.mean)
    np.testing.assert_allclose(loaded.cov, merged.cov)
    # the loaded statistics keep streaming correctly
    more = rng.standard_normal((20, 6))
    loaded.update(more)
    np.testing.assert_allclose(loaded.cov, np.cov(np.concatenate([x, more]), rowvar=False), rtol=1e-10)


def test_stats_errors():
    stats = GaussianStats().update(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = stats.cov
    with pytest.raises(ValueError, match="dimensions"):
        stats.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match="features contains NaN"):
        stats.update(np.full((3, 4), np.nan))
    with pytest.raises(FileNotFoundError, match="no statistics file at /nonexistent/stats.npz"):
        GaussianStats.load("/nonexistent/stats.npz")


# --- KID --------------------------------------------------------------------------------------

def brute_force_kid(x, y, num_subsets, subset_size, seed):
    rng = np.random.RandomState(seed)
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    values = []
    for _ in range(num_subsets):
        xs = x[rng.choice(len(x), subset_size, replace=False)]
        ys = y[rng.choice(len(y), subset_size, replace=False)]
        m = subset_size
        xx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        xy = sum(k(xs[i], ys[j]) for i in range(m) for j in range(m)) / (m * m)
        values.append(xx + yy - 2 * xy)
    return np.mean(values), np.std(values)


def test_kid_equals_brute_force_formula():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((11, 4)) + 0.3
    expected = brute_force_kid(x, y, num_subsets=7, subset_size=5, seed=3)
    for max_gram in (10_000, 0):  # pre-computed kernel matrices and per-subset kernels
        got = kid(x, y, num_subsets=7, subset_size=5, seed=3, max_gram=max_gram)
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_kid_kernel_is_the_cubic_polynomial_by_default_and_can_be_chosen():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((11, 4))
    np.testing.assert_allclose(PolynomialKernel()(x, y), (x @ y.T / 4 + 1.0) ** 3)
    np.testing.assert_allclose(PolynomialKernel(degree=1, gamma=2.0, coef0=0.0)(x, y), 2.0 * x @ y.T)
    linear = kid(x, y, num_subsets=3, subset_size=4, kernel=PolynomialKernel(degree=1))
    assert linear != kid(x, y, num_subsets=3, subset_size=4)
    with pytest.raises(ValueError, match="degree must be >= 1"):
        PolynomialKernel(degree=0)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((600, 32)), rng.standard_normal((600, 32))
    mean, std = kid(x, y, num_subsets=50, subset_size=200)
    assert abs(mean) < 3 * std + 1e-3
    mean_shift, std_shift = kid(x, y + 0.5, num_subsets=50, subset_size=200)
    assert mean_shift > 10 * std_shift and mean_shift > 20 * abs(mean)


def test_kid_subset_size_capped_and_validated():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((30, 3)), rng.standard_normal((20, 3))
    # a subset as large as y would be all of y every time (spread 0): half of y is used instead, with a warning
    with pytest.warns(UserWarning, match="using subsets of 10"):
        capped = kid(x, y, num_subsets=3, subset_size=1000)
    assert capped == kid(x, y, num_subsets=3, subset_size=10)
    with pytest.warns(UserWarning):
        assert kid(x, y, num_subsets=5, subset_size=20)[1] > 0
    with pytest.raises(ValueError, match="num_subsets"):
        kid(x, y, num_subsets=0)
    with pytest.raises(ValueError, match="features2 contains NaN"):
        kid(x, np.full((5, 3), np.nan))


# --- evaluation helpers on features and folders -----------------------------------------------

def test_distance_report_on_features_is_json_ready():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((300, 8)), rng.standard_normal((250, 8)) + 0.4
    report = distance_report(a, b, n=200, kid_subsets=10)
    assert report["n_real"] == 200 and report["n_fake"] == 200 and report["dim"] == 8
    assert report["fd"] == pytest.approx(fd_from_features(a[:200], b[:200]))
    assert report["kid_mean"] > 0 and report["kid_subset_size"] == 100   # half of n: subsets must differ
    json.dumps(report)


def test_fid_bias_shrinks_with_n():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    curve = fid_bias_curve(a, b, ns=[50, 100, 200, 400, 1000], repeats=3)
    assert np.all(np.diff(curve["fd_mean"]) < 0)  # same distribution: FD is pure bias ~ 1/n
    assert curve["slope"] > 0
    assert abs(curve["fd_inf"]) < 0.1 * curve["fd_mean"][0]
    with pytest.raises(ValueError, match="ns must lie"):
        fid_bias_curve(a, b, ns=[1, 10])
    # one feature set: disjoint halves of it, so n is limited to N // 2
    same = fid_bias_curve(a, None, ns=[50, 1000], repeats=3)
    assert same["fd_mean"][0] > 5 * same["fd_mean"][1] > 0
    with pytest.raises(ValueError, match="half of features_a"):
        fid_bias_curve(a, None, ns=[1001])


def write_pngs(folder, n, size=16, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(arr, mode="L").save(folder / f"{i:03d}.png")
        arrays.append(arr)
    return np.stack(arrays)


def judged_folder(folder, **kw):
    """A folder read the way the judges read it: [0, 1], each file at its own size unless `size`."""
    return USImageFolder(folder, size=kw.pop("size", None), value_range=(0, 1), **kw).images()


def test_image_folder_for_the_judges(tmp_path):
    arrays = write_pngs(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    x = judged_folder(tmp_path / "imgs")
    assert x.shape == (5, 1, 16, 16) and x.dtype.is_floating_point
    np.testing.assert_allclose(x[:, 0].numpy(), arrays / 255.0, atol=1e-7)
    assert judged_folder(tmp_path / "imgs", n=3).shape == (3, 1, 16, 16)
    assert judged_folder(tmp_path / "imgs", size=8).shape == (5, 1, 8, 8)


def test_image_folder_for_the_judges_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        judged_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        judged_folder(tmp_path / "empty")
    write_pngs(tmp_path / "mixed", 2, size=16)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mixed" / "zzz.png")
    with pytest.raises(ValueError, match="different sizes"):
        judged_folder(tmp_path / "mixed")


def test_take_images_maps_model_range_and_subsets():
    images = torch.linspace(-1, 1, 10).view(10, 1, 1, 1).expand(10, 1, 4, 4)
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(10))
    first = take_images(dataset, 3)
    torch.testing.assert_close(first, (images[:3] + 1) / 2)
    picked = take_images(dataset, 4, seed=0)
    values = picked[:, 0, 0, 0]
    assert len(set(values.tolist())) == 4 and torch.all(values[1:] > values[:-1])  # distinct, index order
    with pytest.raises(ValueError, match=r"n must be in \[1, 10\]"):
        take_images(dataset, 11)


def test_report_table_lists_every_row():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((50, 4)) + 1
    rows = {"same": distance_report(a, a + 0.01, kid_subsets=3), "shifted": distance_report(a, b, kid_subsets=3)}
    text = report_table(rows)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[2].startswith("same") and lines[3].startswith("shifted")
    assert f"{rows['shifted']['fd']:.3f}" in lines[3] and "50/50" in lines[3]


def test_image_folder_names_the_argument_in_its_errors(tmp_path):
    write_pngs(tmp_path / "imgs", 1, size=16)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        USImageFolder(tmp_path / "imgs" / "000.png", what="real_dir")
    (tmp_path / "imgs" / "001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="001.png is not a readable image"):
        USImageFolder(tmp_path / "imgs")
    with pytest.raises(ValueError, match="no images with extensions .* in fake_dir"):
        USImageFolder(_empty(tmp_path), what="fake_dir")


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"
