"""The independent critics: shipped weights, C2ST, Dice, FD-US floor vs gap, `usdiff evaluate`."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from usdiff.cli import main
from usdiff.data import (
    TISSUES,
    assign_splits,
    count_components,
    item_seed,
    render_item,
    resize_label_maps,
)
from usdiff.data.augment import CRITIC_APPEARANCE, SPECKLE_APPEARANCE, augment_appearance
from usdiff.metrics.anatomy import dice
from usdiff.metrics.c2st import C2STTraining, c2st, wilson_interval
from usdiff.metrics.critic_training import TrainSettings, train_domain_critic, train_segmenter
from usdiff.metrics.critics import anatomy_report, critics_path, dice_per_class, load_critics
from usdiff.metrics.frechet import fd_from_features
from usdiff.metrics.judge import EVALUATE_KEYS, evaluate_images

N_HELD_OUT = 48


def _down(a: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 128, 128) -> float (N, 1, size, size) in [0, 1], resized as the datasets do."""
    x = torch.from_numpy(a).float()[:, None] / 255.0
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)


@pytest.fixture(scope="module")
def held_out():
    """Test-split phantoms of the default built-in data set (never seen in training), 128-px renders."""
    splits = assign_splits(12_000, 0)
    idx = [i for i, s in enumerate(splits) if s == "test"][:N_HELD_OUT]
    items = [render_item(item_seed(0, i), 128) for i in idx]
    sim, real, labels = (np.stack(a) for a in zip(*items))
    lab64 = resize_label_maps(labels, 64)
    return {"sim": _down(sim, 64), "real": _down(real, 64), "labels": lab64,
            "sim128": _down(sim, 128), "real128": _down(real, 128), "labels128": labels}


@pytest.fixture(scope="module")
def critics():
    return load_critics(64)


# ---- hand-computed cases ---------------------------------------------------------------------------

def test_dice_per_class_matches_hand_computation():
    target = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0]]])
    pred = np.array([[[0, 0, 1, 0], [0, 0, 1, 0], [2, 2, 0, 0], [0, 0, 0, 0]]])
    d = dice_per_class(pred, target, num_classes=4)
    assert d[0, 1] == pytest.approx(2 * 2 / (2 + 4))      # class 1: 2 of 4 found, no false positive
    assert d[0, 2] == pytest.approx(2 * 2 / (2 + 4))
    assert d[0, 0] == pytest.approx(2 * 8 / (12 + 8))     # background: 12 predicted, 8 true, 8 shared
    assert np.isnan(d[0, 3])                              # absent from both: does not count
    assert d[0, 1] == dice(pred[0] == 1, target[0] == 1)   # the one Dice, class by class
    assert np.isnan(dice(np.zeros((4, 4)), np.zeros((4, 4))))
    small = pred[:, ::2, ::2]                              # a smaller prediction is resized to the target
    np.testing.assert_array_equal(dice_per_class(small, target), dice_per_class(resize_label_maps(small, 4), target))


def test_anatomy_report_counts_aortas_and_averages_present_classes():
    aorta = TISSUES["aorta"]
    target = np.zeros((2, 16, 16), np.uint8)
    target[:, 4:8, 4:8] = aorta
    pred = target.copy()
    pred[1, 10:14, 10:14] = aorta                          # a second aorta in image 1
    rep = anatomy_report(pred, target)
    assert rep["aorta_count"].tolist() == [1, 2]
    assert rep["one_aorta_rate"] == 0.5
    assert rep["dice"]["aorta"] == pytest.approx((1.0 + 2 * 16 / (32 + 16)) / 2)
    assert set(rep["dice"]) == {"aorta"}                   # only classes that occur are averaged
    assert rep["dice_mean"] == rep["dice_aorta"]
    assert count_components(np.eye(5, dtype=bool)) == 1  # 8-connected: a diagonal is one component
    assert count_components(np.eye(5, dtype=bool), min_area=6) == 0


def test_wilson_interval_matches_closed_form():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        wilson_interval(0, 0)


# ---- C2ST --------------------------------------------------------------------------------------------

def test_c2st_is_chance_on_one_domain_and_separates_sim_from_real(held_out):
    real, sim = held_out["real"], held_out["sim"]
    same = c2st(real[: N_HELD_OUT // 2], real[N_HELD_OUT // 2:], seed=0)
    assert same["ci"][0] <= 0.5 <= same["ci"][1], same
    diff = c2st(sim, real, seed=0)
    assert diff["acc"] >= 0.95 and diff["p_value"] < 1e-3, diff
    assert c2st(sim, real, seed=0) == diff      # deterministic per seed


def test_c2st_rejects_bad_input():
    with pytest.raises(ValueError, match=r"a must be an image batch \(B, 1, H, W\)"):
        c2st(torch.zeros(8, 2, 16, 16), torch.zeros(8, 1, 16, 16))
    with pytest.raises(ValueError, match="at least 4 images"):
        c2st(torch.zeros(2, 1, 16, 16), torch.zeros(8, 1, 16, 16))
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        C2STTraining(epochs=0)


# ---- shipped critics ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 128])
def test_shipped_critics_load_and_separate_held_out_domains(size, held_out):
    critics = load_critics(size)
    assert critics_path(size).stat().st_size <= 3e6
    sim, real = (held_out["sim"], held_out["real"]) if size == 64 else (held_out["sim128"], held_out["real128"])
    p_sim, p_real = critics.p_real(sim), critics.p_real(real)
    assert np.mean(p_sim < 0.5) >= 0.95 and np.mean(p_real > 0.5) >= 0.95
    assert np.array_equal(p_real, critics.p_real(real))  # deterministic
    assert critics.report["domain_accuracy"] >= 0.99      # the training script's held-out report


def test_segmenter_finds_the_anatomy_of_held_out_real_images(critics, held_out):
    rep = critics.anatomy_scores(held_out["real"], held_out["labels"])
    assert rep["dice_aorta"] > 0.75 and rep["dice_mean"] > 0.6, rep["dice"]
    assert rep["one_aorta_rate"] >= 0.8
    # a wrong label map (another phantom's) scores clearly lower: the Dice measures this image's anatomy
    shuffled = critics.anatomy_scores(held_out["real"], np.roll(held_out["labels"], 1, axis=0))
    assert shuffled["dice_aorta"] < rep["dice_aorta"] - 0.2


def test_fd_us_floor_is_far_below_the_gap(critics, held_out):
    h = N_HELD_OUT // 2
    f_real_a = critics.features(held_out["real"][:h])
    f_real_b = critics.features(held_out["real"][h:])
    f_sim = critics.features(held_out["sim"][:h])
    floor, gap = fd_from_features(f_real_a, f_real_b), fd_from_features(f_sim, f_real_b)
    assert floor < 0.2 * gap, (floor, gap)


def test_load_critics_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_critics.py"):
        load_critics(64, path=tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt is not a usdiff critics file"):
        load_critics(64, path=bad)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a usdiff critics file"):
        load_critics(64, path=tmp_path / "other.pt")
    with pytest.raises(ValueError, match="size must be one of"):
        load_critics(32)


# ---- training ----------------------------------------------------------------------------------------

def test_segmenter_training_reduces_its_loss_and_is_seeded(held_out):
    x, y = held_out["real"][:16] * 2 - 1, torch.from_numpy(held_out["labels"][:16])
    model, log = train_segmenter(x, y, 64, TrainSettings(train_steps=40, batch_size=8, width=8, seed=3),
                                 progress=False)
    assert np.mean(log["loss"][-5:]) < 0.8 * np.mean(log["loss"][:5])
    short = TrainSettings(train_steps=2, batch_size=8, width=8, seed=3)
    again, _ = train_segmenter(x, y, 64, short, progress=False)
    other, _ = train_segmenter(x, y, 64, short, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), other.state_dict().values()))
    reseeded, _ = train_segmenter(x, y, 64, TrainSettings(train_steps=2, batch_size=8, width=8, seed=4), progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), reseeded.state_dict().values()))
    with pytest.raises(TypeError, match="unexpected keyword argument.*'stepz'"):
        train_segmenter(x, y, 64, stepz=2)
    with pytest.raises(ValueError, match="labels must be"):
        train_segmenter(x, y[:3], 64, TrainSettings(train_steps=1), progress=False)
    with pytest.raises(ValueError, match="train_steps must be a positive int"):
        TrainSettings(train_steps=0)


def test_domain_critic_training_learns_the_domains(held_out):
    sim, real = held_out["sim"] * 2 - 1, held_out["real"] * 2 - 1
    model, log = train_domain_critic(sim, real, 64, TrainSettings(train_steps=60, batch_size=16, lr=2e-3, width=8),
                                     progress=False)
    assert np.mean(log["loss"][-10:]) < 0.5 * np.mean(log["loss"][:5])


@pytest.mark.parametrize("appearance", [CRITIC_APPEARANCE, SPECKLE_APPEARANCE], ids=["critic", "speckle"])
def test_augment_changes_images_but_keeps_shape_and_range(appearance):
    x = torch.rand(6, 1, 40, 40) * 2 - 1
    y = augment_appearance(x, torch.Generator().manual_seed(0), appearance)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.allclose(x, y)
    assert torch.equal(y, augment_appearance(x, torch.Generator().manual_seed(0), appearance))
    assert not torch.equal(y, augment_appearance(x, torch.Generator().manual_seed(1), appearance))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        augment_appearance(torch.zeros(3, 2, 8, 8), torch.Generator(), appearance)


# ---- evaluate ----------------------------------------------------------------------------------------

def test_evaluate_images_orders_real_over_sim(critics, held_out):
    real_ref, real, sim = held_out["real"][:24], held_out["real"][24:], held_out["sim"][24:]
    good = evaluate_images(real_ref, real, critics, labels=held_out["labels"][24:], n=24)
    bad = evaluate_images(real_ref, sim, critics, labels=held_out["labels"][24:], n=24)
    assert good["fd"] < bad["fd"] and good["p_real_mean"] > bad["p_real_mean"]
    assert good["c2st_acc"] < bad["c2st_acc"]
    assert set(good) == {k for k in EVALUATE_KEYS if not k.startswith("fd_")} | {"n", "fd_n"}


def _write(folder, images, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        name = names[i] if names else f"{i:06d}.png"
        Image.fromarray(np.asarray(img)).save(folder / name)


def test_evaluate_cli_json_keys_and_errors(tmp_path, held_out, capsys):
    to8 = lambda x: (x[:, 0].numpy() * 255).round().astype(np.uint8)  # noqa: E731
    _write(tmp_path / "real", to8(held_out["real"][:16]))
    _write(tmp_path / "fake", to8(held_out["sim"][16:32]))
    _write(tmp_path / "labels", held_out["labels"][16:32])
    code = main(["evaluate", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                 "--labels", str(tmp_path / "labels"), "--data", str(tmp_path / "none"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"fd", "kid", "c2st_acc", "c2st_ci", "p_real_mean", "dice_mean", "dice_aorta",
                           "one_aorta_rate", "warnings", "critics", "fd_n"}
    assert report["warnings"] == [] and report["critics"].endswith("critics_64.pt")   # built-in real-like: known
    assert report["p_real_mean"] < 0.5 and len(report["c2st_ci"]) == 2
    code = main(["evaluate", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "missing"), "--json"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("usdiff evaluate: error:") and "missing" in err
    (tmp_path / "nolabels").mkdir()
    code = main(["evaluate", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                 "--labels", str(tmp_path / "nolabels")])
    err = capsys.readouterr().err
    assert code == 2 and "no label map for 000000.png" in err
