"""The downstream segmentation study: Dice and bootstrap intervals by hand, training, determinism, CLI JSON."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from usdiff.cli import main
from usdiff.data.augment import SPECKLE_APPEARANCE, augment_appearance
from usdiff.data.phantom import AORTA, LIVER
from usdiff.downstream import (
    STUDY_TRAINING,
    TEST_TRAINING,
    StudySettings,
    bootstrap_ci,
    downstream_study,
    image_scores,
    train_and_test,
)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    assert bootstrap_ci([0.4] * 10) == (0.4, 0.4)
    rng = np.random.default_rng(0)
    small, large = rng.uniform(0, 1, 20), rng.uniform(0, 1, 2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 4          # the width falls like 1 / sqrt(n)
    assert bootstrap_ci([np.nan, 1.0, 1.0]) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([np.nan])))
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_image_scores_against_a_hand_computed_case():
    target = np.zeros((1, 4, 4), np.uint8)
    target[0, :2, :2] = LIVER          # 4 px
    target[0, 3, 3] = AORTA            # 1 px
    pred = np.zeros_like(target)
    pred[0, :2, :1] = LIVER            # 2 px, all inside the liver
    s = image_scores(pred, target)
    assert s["dice"][0, LIVER] == pytest.approx(2 * 2 / (2 + 4))
    assert s["aorta"][0] == 0.0        # missed entirely
    assert s["mean"][0] == pytest.approx((2 / 3 + 0.0) / 2)   # mean over the foreground tissues present
    assert np.isnan(s["dice"][0, 2])   # a tissue in neither map does not count


def test_speckle_augmentation_is_seeded_and_stays_in_range():
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    a = augment_appearance(x, torch.Generator().manual_seed(0), SPECKLE_APPEARANCE)
    b = augment_appearance(x, torch.Generator().manual_seed(0), SPECKLE_APPEARANCE)
    c = augment_appearance(x, torch.Generator().manual_seed(1), SPECKLE_APPEARANCE)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().mean() > 1e-3 and (a - x).abs().mean() > 1e-3
    assert a.min() >= -1 and a.max() <= 1 and a.shape == x.shape
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        augment_appearance(torch.zeros(3, 3, 64, 64), torch.Generator(), SPECKLE_APPEARANCE)


def test_study_settings_name_the_training_steps():
    study = StudySettings(n_train=5, train_steps=7, seed=2, width=4)
    assert study.training == replace(STUDY_TRAINING, train_steps=7, seed=2, width=4)
    with pytest.raises(TypeError, match="steps"):
        StudySettings(steps=7)
    with pytest.raises(ValueError, match="train_steps must be a positive int"):
        StudySettings(train_steps=0)


def blobs(n, seed):
    """Images with a bright square whose label is LIVER: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1, 32, 32), -0.8)
    y = np.zeros((n, 32, 32), np.uint8)
    for i in range(n):
        r, c = torch.randint(2, 18, (2,), generator=g).tolist()
        x[i, 0, r:r + 12, c:c + 12] = 0.8
        y[i, r:r + 12, c:c + 12] = LIVER
    return x + 0.05 * torch.randn(x.shape, generator=g), y


def test_segmenter_training_lowers_its_loss_and_is_deterministic():
    x, y = blobs(24, 0)
    xt, yt = blobs(8, 1)
    training = replace(TEST_TRAINING, train_steps=100, batch_size=8, width=8)
    a = train_and_test(x, y, xt, yt, training)
    b = train_and_test(x, y, xt, yt, training)
    untrained = train_and_test(x, y, xt, yt, replace(training, train_steps=1))
    loss = a["log"]["loss"]
    assert np.mean(loss[-10:]) < 0.7 * np.mean(loss[:10])
    np.testing.assert_array_equal(a["pred"], b["pred"])
    # on held-out images it finds the squares better than before training
    assert np.nanmean(a["scores"]["mean"]) > np.nanmean(untrained["scores"]["mean"]) + 0.1


def test_downstream_study_reports_ratios_to_the_reference():
    x, y = blobs(16, 0)
    xt, yt = blobs(6, 1)
    report = downstream_study({"noise": (torch.rand_like(x) * 2 - 1, y), "real": (x, y)}, xt, yt,
                              replace(STUDY_TRAINING, train_steps=40), progress=False)
    assert report["real"]["ratio_to_real"] == 1.0
    assert report["noise"]["ratio_to_real"] == pytest.approx(report["noise"]["dice_mean"] / report["real"]["dice_mean"])
    assert report["noise"]["dice_mean"] < report["real"]["dice_mean"]
    with pytest.raises(ValueError, match="must be a non-empty \\(images, labels\\) pair"):
        downstream_study({"bad": (x, y[:3])}, xt, yt)


def test_cli_json_has_the_keys_per_training_set(tmp_path, capsys):
    from usdiff.data import generate_dataset

    data = generate_dataset(tmp_path / "data", n=24, size=64, seed=0, workers=1, progress=False)
    rc = main(["downstream", "--data", str(data), "--methods", "--n-train", "6", "--n-test", "3", "--steps", "3",
               "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["sim", "sim+aug", "real"]
    for r in report.values():
        assert {"dice_mean", "dice_mean_ci", "dice_aorta", "dice_aorta_ci", "ratio_to_real", "dice"} <= set(r)
        assert len(r["dice_mean_ci"]) == 2
    assert main(["downstream", "--data", str(data), "--methods", "--n-train", "0"]) == 2
    assert "n_train must be a positive int" in capsys.readouterr().err
