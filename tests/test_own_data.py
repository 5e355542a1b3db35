"""Your own data: a scanner-like folder, label-free structure measures, critics fitted to a folder,
evaluate with them (and the warning about the shipped ones), downstream on folders."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from usdiff.data import read_image
from usdiff.data.datasets import fit_label_map, read_label_map
from usdiff.data.scanner import (
    OTHER_SCANNER,
    SCANNER_FILE,
    ScannerSettings,
    crop_to_frame,
    generate_scanner_folder,
)
from usdiff.metrics.critic_fitting import CriticsFit, fit_critics, label_names_for, split_held_out
from usdiff.metrics.critics import (
    BUILTIN_LABEL_NAMES,
    Critics,
    DomainCritic,
    anatomy_report,
    load_critics,
)
from usdiff.metrics.judge import JudgedFolders, evaluate_folders
from usdiff.metrics.structure import (
    edge_f_score,
    image_regions,
    lowpass_correlation,
    normalized_mutual_information,
    structure_scores,
)

FRAME = (40, 56)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return generate_scanner_folder(tmp_path_factory.mktemp("own") / "scan", n=30, frame=FRAME, n_test=10,
                                   progress=False)


@pytest.fixture(scope="module")
def fitted(folder):
    return fit_critics(folder, CriticsFit(critic_steps=60, segmenter_steps=40, seed=3), progress=False)


# ---- the scanner folder ------------------------------------------------------------------------

def test_scanner_folder_layout_sizes_and_record(folder):
    names = {d: sorted(p.name for p in (folder / d).iterdir()) for d in ("sim", "labels", "real", "test_real",
                                                                        "test_labels")}
    assert len(names["sim"]) == len(names["real"]) == 30 and len(names["test_real"]) == 10
    assert names["labels"] == names["sim"] and names["test_labels"] == names["test_real"]
    with Image.open(folder / "real" / names["real"][0]) as img:
        assert img.size == (FRAME[1], FRAME[0]) and img.mode == "L"
    record = json.loads((folder / SCANNER_FILE).read_text())
    assert record["complete"] and record["frame"] == list(FRAME) and record["scanner"]["freq_mhz"] == 3.5


def test_scanner_folder_is_deterministic_and_its_sets_show_other_phantoms(folder, tmp_path):
    again = generate_scanner_folder(tmp_path / "again", n=30, frame=FRAME, n_test=10, progress=False)
    for d in ("sim", "real", "test_labels"):
        for f in sorted((folder / d).iterdir())[:3]:
            assert f.read_bytes() == (again / d / f.name).read_bytes()
    sim_labels = np.stack([np.asarray(Image.open(f)) for f in sorted((folder / "labels").iterdir())])
    test_labels = np.stack([np.asarray(Image.open(f)) for f in sorted((folder / "test_labels").iterdir())])
    # no test phantom is one of the training phantoms
    assert min(np.mean(t != s) for t in test_labels for s in sim_labels) > 0.01


def test_scanner_settings_change_the_frames(tmp_path):
    a = generate_scanner_folder(tmp_path / "a", n=2, frame=(32, 32), n_test=1, progress=False)
    b = generate_scanner_folder(tmp_path / "b", n=2, frame=(32, 32), n_test=1, progress=False,
                                scanner=ScannerSettings())
    ra, rb = (np.asarray(Image.open(r / "real" / "real_000000.png"), float) for r in (a, b))
    assert np.abs(ra - rb).mean() > 5          # built-in settings vs OTHER_SCANNER: same phantom, other look
    assert OTHER_SCANNER.operator(7).dynamic_range_db != ScannerSettings().operator(7).dynamic_range_db


def test_scanner_folder_never_writes_into_other_folders(folder, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_scanner_folder(folder, n=2, frame=FRAME, progress=False)
    mine = tmp_path / "mine"
    (mine / "sim").mkdir(parents=True)
    (mine / "sim" / "sim_000000.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not written by generate_scanner_folder"):
        generate_scanner_folder(mine, n=2, frame=FRAME, progress=False, overwrite=True)
    assert (mine / "sim" / "sim_000000.png").read_bytes() == b"precious"
    with pytest.raises(ValueError, match="frame"):
        generate_scanner_folder(tmp_path / "x", n=2, frame=(8, 64), progress=False)
    with pytest.raises(ValueError, match="freq_mhz"):
        ScannerSettings(freq_mhz=0)


def test_crop_to_frame_keeps_the_top_rows_or_the_central_columns():
    sq = np.arange(36).reshape(6, 6)
    assert np.array_equal(crop_to_frame(sq, (4, 6)), sq[:4])
    assert np.array_equal(crop_to_frame(sq, (6, 2)), sq[:, 2:4])
    with pytest.raises(ValueError, match="render"):
        crop_to_frame(sq, (4, 5))
    with pytest.raises(ValueError, match="fit must be"):
        fit_label_map(np.zeros((4, 4)), 4, "stretch")
    with pytest.raises(ValueError, match="0..255"):
        fit_label_map(np.full((4, 6), 300), 4)


# ---- label maps follow their images -------------------------------------------------------------

def test_find_source_matches_outputs_to_sources_by_name(tmp_path):
    from usdiff.data.datasets import find_source, read_label_maps

    for name in ("sim_000001.png", "a.jpg", "000002.png"):
        (tmp_path / name).write_bytes(b"x")
    assert find_source(tmp_path, "sim_000001_r0.png") == tmp_path / "sim_000001.png"   # a repeat of a sample
    assert find_source(tmp_path, "a.png") == tmp_path / "a.jpg"                       # translated outputs are PNG
    assert find_source(tmp_path, "real_000002_r3.png") == tmp_path / "000002.png"
    assert find_source(tmp_path, "b.png") is None
    with pytest.raises(FileNotFoundError, match="no label map for b.png"):
        read_label_maps(tmp_path, ["b.png"], 16)


def test_fit_label_map_pads_and_crops_as_read_image_does(tmp_path):
    labels = np.zeros((40, 60), np.uint8)
    labels[5:15, 20:30] = 3
    padded = fit_label_map(labels, 60, "pad")
    assert np.array_equal(padded, np.pad(labels, ((10, 10), (0, 0))))
    cropped = fit_label_map(labels, 40, "crop")
    assert np.array_equal(cropped, labels[:, 10:50])
    # the image of the same map, read with the same fit, is bright exactly where the label is
    Image.fromarray(labels * 80).save(tmp_path / "a.png")
    Image.fromarray(labels).save(tmp_path / "a_labels.png")
    for fit, side in (("pad", 30), ("crop", 20)):
        image = read_image(tmp_path / "a.png", side, fit)[0].numpy()
        lab = read_label_map(tmp_path / "a_labels.png", side, fit)
        assert image[lab == 3].mean() > 0.5 and image[lab == 0].mean() < 0.2, fit


# ---- label-free structure measures --------------------------------------------------------------

def _blobs(seed, n=4, side=48):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    out = np.full((n, 1, side, side), 0.5)
    for i in range(n):
        for _ in range(3):
            cy, cx, r = rng.uniform(10, side - 10, 2).tolist() + [rng.uniform(4, 8)]
            out[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1)
    return torch.from_numpy(out).float()


def test_structure_measures_are_one_for_the_same_layout_under_gain_and_monotone_changes():
    a = _blobs(0)
    for b in (a, 0.5 * a + 0.1):
        s = structure_scores(a, b)
        assert all(np.allclose(v, 1.0) for v in s.values()), s
    assert np.allclose(normalized_mutual_information(a, a ** 2, sigma=0), 1.0)   # monotone: same bins
    assert np.all(lowpass_correlation(a, a ** 2) > 0.9)


def test_structure_measures_drop_for_other_anatomy_and_for_independent_noise():
    a, b = _blobs(0), _blobs(1)
    noise = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    same, other = structure_scores(a, a), structure_scores(a, b)
    for m in same:
        assert np.all(other[m] < same[m] - 0.2), m
    assert np.all(normalized_mutual_information(a, noise, sigma=0) < 0.15)
    assert np.all(np.abs(lowpass_correlation(a, noise, sigma=0)) < 0.2)


def test_edge_f_score_counts_edges_within_the_tolerance_only():
    def step(col):
        x = torch.linspace(0.2, 0.3, 48).view(1, 1, 48, 1).repeat(1, 1, 1, 48)   # no flat background
        x[..., col:] += 0.5
        return x

    a = step(24)
    assert edge_f_score(a, step(25), sigma=0.5, tolerance=1.5)[0] > 0.9
    assert edge_f_score(a, step(30), sigma=0.5, tolerance=1.5)[0] < 0.2


def test_structure_measures_ignore_the_black_surround_and_handle_constants():
    a = _blobs(2, n=1)
    a[..., :, :8] = 0.0                       # a black border, like the outside of a fan
    region = image_regions(a)
    assert not region[0, :, :8].any() and region.sum() > 0.4 * region.size
    flat = torch.full((1, 1, 48, 48), 0.3)
    assert np.isnan(lowpass_correlation(flat, flat)[0]) and np.isnan(normalized_mutual_information(flat, a)[0])
    with pytest.raises(ValueError, match="same shape"):
        structure_scores(a, torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="bins"):
        normalized_mutual_information(a, a, bins=1)


def test_real_like_twins_keep_more_structure_than_other_phantoms(tmp_path):
    from usdiff.data import generate_dataset, load_builtin_arrays

    root = generate_dataset(tmp_path / "b", n=12, size=64, progress=False)
    d = {s: load_builtin_arrays(root, s, 64, progress=False) for s in ("train",)}["train"]
    twins, others = structure_scores(d["sim"], d["real"]), structure_scores(d["sim"], d["real"].roll(1, 0))
    for m, margin in (("lowpass_corr", 0.1), ("edge_f", 0.05), ("nmi", 0.01)):
        assert np.nanmean(twins[m]) > np.nanmean(others[m]) + margin, m


# ---- critics with other classes, or without a segmenter ------------------------------------------

def test_anatomy_report_names_classes_and_has_aorta_entries_only_for_an_aorta():
    pred = np.array([[[0, 1], [2, 2]]])
    report = anatomy_report(pred, pred, names=("bg", "cyst", "duct"))
    assert report["dice"] == {"cyst": 1.0, "duct": 1.0} and np.isnan(report["dice_aorta"])
    assert np.isnan(report["one_aorta_rate"])
    with pytest.raises(ValueError, match="only 2 classes"):
        anatomy_report(pred, pred, names=("bg", "cyst"))
    assert label_names_for(np.array([0, 3]), None, builtin=True) == BUILTIN_LABEL_NAMES
    assert label_names_for(np.array([0, 3]), None) == ("class 0", "class 1", "class 2", "class 3")  # a user's own
    assert label_names_for(np.array([0, 30]), None, builtin=True)[30] == "class 30"
    with pytest.raises(ValueError, match="names only 2"):
        label_names_for(np.array([0, 3]), ("a", "b"))


def test_critics_without_a_segmenter_save_load_and_judge_with_domain_features(tmp_path):
    critics = Critics(64, DomainCritic(64, 8).eval(), None)
    path = critics.save(tmp_path / "c.pt")
    loaded = load_critics(path=path)
    x = torch.rand(3, 1, 64, 64)
    assert loaded.anatomy is None and loaded.features(x).shape == (3, loaded.domain.feature_dim)
    assert not loaded.shipped and load_critics(64).shipped
    with pytest.raises(ValueError, match="no anatomy segmenter"):
        loaded.segment(x)


# ---- critics fitted to a folder -----------------------------------------------------------------

def test_split_held_out_is_seeded_disjoint_and_complete():
    tr, ho = split_held_out(50, 0.2, 0)
    assert len(ho) == 10 and not set(tr) & set(ho) and sorted([*tr, *ho]) == list(range(50))
    assert not np.array_equal(split_held_out(50, 0.2, 1)[1], ho)


def test_fit_critics_reports_on_held_out_files_it_did_not_train_on(fitted, folder):
    r = fitted.report
    assert r["train_counts"] == {"sim": 22, "real": 22} and len(r["held_out_files"]["real"]) == 8
    assert set(r["held_out_files"]["sim"]) <= {p.name for p in (folder / "sim").iterdir()}
    assert r["domain_accuracy"] >= 0.9 and r["fd_gap"] > r["fd_floor"] and r["fd_n"] == 4   # 8 real held out
    held = {d: set(r["held_out_files"][d]) for d in ("sim", "real")}
    assert len(held["sim"]) == 8 and r["train_counts"]["sim"] + 8 == 30 and Path(r["fitted_on"]).is_absolute()
    assert set(r["dice_sim"]) <= set(BUILTIN_LABEL_NAMES) and "segmenter trained on simulated" in r["dice_meaning"]
    assert fitted.anatomy is not None and fitted.label_names == BUILTIN_LABEL_NAMES


def test_fit_critics_refuses_small_folders_and_missing_label_maps(folder, tmp_path):
    small = generate_scanner_folder(tmp_path / "small", n=10, frame=FRAME, n_test=1, progress=False)
    with pytest.raises(ValueError, match="at least 20"):
        fit_critics(small, progress=False)
    (folder / "labels" / "sim_000004.png").rename(tmp_path / "moved.png")
    try:
        with pytest.raises(FileNotFoundError, match="sim_000004.png"):
            fit_critics(folder, CriticsFit(critic_steps=1, segmenter_steps=1), progress=False)
    finally:
        (tmp_path / "moved.png").rename(folder / "labels" / "sim_000004.png")
    with pytest.raises(ValueError, match="held_out"):
        CriticsFit(held_out=0.9)


def test_evaluate_with_fitted_critics_floors_on_their_held_out_images_and_does_not_warn(fitted, folder, tmp_path):
    fitted.save(tmp_path / "c.pt")
    folders = JudgedFolders(folder / "test_real", folder / "sim", labels=folder / "labels", sources=folder / "sim")
    report = evaluate_folders(folders, tmp_path / "c.pt", n=10)
    assert report["warnings"] == [] and report["fd_floor"] < report["fd_gap"]
    assert report["fd_n"] == 4 and report["n"] == 10      # FD-US at the floor's n (4 held-out real per half)
    assert report["lowpass_corr"] == pytest.approx(1.0) and report["p_real_mean"] < 0.5
    assert 0 <= report["dice_mean"] <= 1


def test_evaluate_refuses_another_fit_and_says_when_the_held_out_images_are_gone(fitted, folder, tmp_path):
    from dataclasses import replace

    folders = JudgedFolders(folder / "test_real", folder / "sim", fit="crop")
    with pytest.raises(ValueError, match="fitted with fit='pad'"):
        evaluate_folders(folders, fitted, n=10)
    moved = replace(fitted, report={**fitted.report, "fitted_on": str(tmp_path / "gone")})
    report = evaluate_folders(replace(folders, fit=None), moved, n=10)
    assert "fd_floor" not in report and "not in" in report["warnings"][0]
    with pytest.raises(TypeError, match="JudgedFolders"):
        evaluate_folders(folder / "test_real", fitted)


def test_evaluate_warns_when_the_shipped_critics_do_not_know_the_real_folder(tmp_path):
    from usdiff.data import generate_dataset

    builtin = generate_dataset(tmp_path / "b", n=200, size=64, progress=False)        # 20 val, 20 test
    other = generate_scanner_folder(tmp_path / "s", n=20, frame=(64, 64), n_test=20, progress=False)
    report = evaluate_folders(JudgedFolders(other / "test_real", other / "real"), None, n=20, data_dir=builtin)
    assert len(report["warnings"]) == 1 and "usdiff critics fit" in report["warnings"][0]
    assert "fresh classifier tells them" in report["warnings"][0]    # the critics alone would not have noticed
    known = evaluate_folders(JudgedFolders(builtin / "real", builtin / "sim"), None, n=20, data_dir=builtin)
    assert known["warnings"] == []


# ---- the whole path on a foreign folder, as a user runs it ---------------------------------------

def test_own_data_end_to_end_from_the_command_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "USDIFF_FAST": "1", "PYTHONWARNINGS": "ignore"}

    def usdiff(*args):
        out = subprocess.run([sys.executable, "-m", "usdiff", *map(str, args)], capture_output=True, text=True,
                             env=env, timeout=600)
        return out

    def ok(*args):
        out = usdiff(*args)
        assert out.returncode == 0, (args, out.stderr[-2000:])
        return out

    from usdiff.data import generate_dataset

    builtin = generate_dataset(tmp_path / "builtin", n=200, size=64, progress=False)
    root = tmp_path / "scan"
    ok("data", "scanner", "--out", root, "--n", 60, "--n-test", 30, "--frame", "48x72", "--freq-mhz", 5,
       "--dynamic-range-db", 40, "--smooth", 1.2)
    ok("train", "--data", root, "--out", tmp_path / "run", "--steps", 2)
    ok("translate", "--method", "cyclegan", "--data", root, "--images", root / "sim", "--out", tmp_path / "cyclegan",
       "--train-steps", 20, "--keep-size", "--save-fitted", tmp_path / "cyclegan.pt")
    ok("translate", "--method", "sdedit", "--ckpt", tmp_path / "run" / "ckpt.pt", "--data", root, "--images",
       root / "sim", "--out", tmp_path / "sdedit", "--steps", 4, "--t0", 0.5)
    fit = ok("critics", "fit", "--data", root, "--out", tmp_path / "critics.pt", "--critic-steps", 150,
             "--segmenter-steps", 60)
    assert "C2ST real vs real" in fit.stdout and "held out: 12 sim, 12 real" in fit.stdout
    assert usdiff("critics", "fit", "--data", root, "--out", tmp_path / "critics.pt").returncode == 2   # no overwrite

    def evaluate(real, fake, *extra):
        out = ok("evaluate", "--real", real, "--fake", fake, "--json", *extra)
        return json.loads(out.stdout), out.stderr

    fitted = ("--critics", tmp_path / "critics.pt")
    sim_vs_real, err = evaluate(root / "test_real", root / "sim", *fitted)
    assert sim_vs_real["c2st_acc"] >= 0.95 and "warning" not in err
    assert sim_vs_real["fd_gap"] > sim_vs_real["fd_floor"]
    real_vs_real, err = evaluate(root / "test_real", root / "real", *fitted)
    assert real_vs_real["c2st_ci"][0] <= 0.5 and "warning" not in err
    _, err = evaluate(root / "test_real", root / "real", "--data", builtin)           # the shipped critics
    assert err.count("usdiff evaluate: warning:") == 1 and "usdiff critics fit" in err
    translated, _ = evaluate(root / "test_real", tmp_path / "cyclegan", *fitted, "--sources", root / "sim",
                             "--labels", root / "labels")
    assert {"lowpass_corr", "edge_f", "nmi", "dice_mean"} <= set(translated)
    down = ok("downstream", "--data", root, "--test-real", root / "test_real", "--test-labels", root / "test_labels",
              "--translated", tmp_path / "cyclegan", tmp_path / "sdedit", "--steps", 20, "--n-train", 40, "--json")
    report = json.loads(down.stdout)
    assert set(report) == {"sim", "sim+aug", "translated (cyclegan)", "translated (sdedit)"}
    assert all(0 <= r["dice_mean"] <= 1 and r["n_train"] == 40 for r in report.values())
    missing = usdiff("downstream", "--data", root)
    assert missing.returncode == 2 and "--test-real" in missing.stderr and "cannot be measured" in missing.stderr
