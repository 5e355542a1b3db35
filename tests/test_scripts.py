"""Argument checks of the measurement scripts in scripts/."""
import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prior_sweep_settings_parse_and_bad_ones_say_what_is_expected():
    sweep = load("prior_sweep")
    assert sweep.parse_setting("data:20:0.5") == ("data", 20, 0.5)
    assert [sweep.parse_setting(g)[0] for g in sweep.GRID].count("gaussian") == 2
    for bad, fragment in (("data:20", "PRIOR:STEPS:ETA"), ("uniform:20:0", "PRIOR must be data or gaussian"),
                          ("data:0:0", "STEPS >= 1"), ("data:20:2", "0 <= ETA <= 1"), ("data:x:0", "PRIOR:STEPS:ETA")):
        with pytest.raises(argparse.ArgumentTypeError, match=fragment):
            sweep.parse_setting(bad)


def test_prior_sweep_prints_one_row_of_fractions_per_setting(tmp_path, capsys):
    from usdiff.data import generate_dataset

    data = generate_dataset(tmp_path / "data", n=20, size=64, seed=0, workers=1, progress=False)
    sweep = load("prior_sweep")
    assert sweep.main(["--ckpt", str(ROOT / "assets" / "diffae_tiny.pt"), "--data", str(data), "--n", "2",
                       "--grid", "data:2:0", "gaussian:2:1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[:3] for r in rows] == [["data", "2", "0.0"], ["gaussian", "2", "1.0"]]
    for r in rows:                                   # critic sim / real, texture sim / real: shares of 2 images
        assert {r[3], r[5], r[6], r[8]} <= {"0.00", "0.50", "1.00"}, r


def test_train_pretrained_init_copies_weights_across_parameterisations_and_refuses_other_shapes(tmp_path):
    import torch

    from usdiff.model import DiffAE, get_config
    from usdiff.train import save_pretrained

    script = load("train_pretrained")
    cfg, _ = get_config("tiny")
    torch.manual_seed(0)
    source = DiffAE.from_config(cfg)
    path = save_pretrained(source, tmp_path / "eps.pt", half=False)
    for key, value in script.RECIPE_MODEL["vzsnr"].items():
        setattr(cfg, key, value)
    target = DiffAE.from_config(cfg)
    assert not all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    script.init_from(target, str(path))
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name
    assert target.scheduler.prediction == "v" and target.scheduler.alphas_cumprod[-1] == 0
    wider, _ = get_config("tiny")
    wider.base_channels = 32
    with pytest.raises(ValueError, match="base_channels=16 but the model being trained has 32"):
        script.init_from(DiffAE.from_config(wider), str(path))


def test_calibrate_alpha_suggests_the_smallest_visible_step_that_the_critic_calls_real():
    calib = load("calibrate_alpha")
    alphas = [-0.75, 0.0, 0.3, 0.75, 1.0, 1.5]
    change = [0.03, 0.0, 0.02, 0.05, 0.07, 0.10]
    p_real = [0.0, 0.0, 0.0, 0.17, 0.96, 1.00]
    assert calib.suggest(alphas, change, p_real, 0.05) == 1.0          # 0.75 changes enough but is not called real
    assert calib.suggest(alphas, change, p_real, 0.08) == 1.5          # a stricter bar for "visible"
    assert calib.suggest(alphas, change, [0.6] * 6, 0.05) == 0.75      # negative steps never count
    assert calib.suggest(alphas, change, p_real, 0.2) is None


def test_calibrate_alpha_prints_one_row_per_step_with_zero_change_at_alpha_zero(tmp_path, capsys):
    from usdiff.data import generate_dataset

    data = generate_dataset(tmp_path / "data", n=20, size=64, seed=0, workers=1, progress=False)
    calib = load("calibrate_alpha")
    assert calib.main(["--ckpt", str(ROOT / "assets" / "diffae_tiny.pt"), "--data", str(data), "--n", "2",
                       "--alphas", "1.5", "--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {float(r.split()[0]): [float(v) for v in r.split()[1:]] for r in lines[2:4]}
    assert set(rows) == {0.0, 1.5}
    assert rows[0.0][0] == 0.0 and rows[1.5][0] > 0.0                  # mean |delta| against the reconstruction
    assert lines[-1].startswith(("suggested alpha:", "no alpha of the grid"))
    with pytest.raises(SystemExit) as exit_:
        calib.main(["--ckpt", str(tmp_path / "none.pt"), "--data", str(data)])   # no direction file beside it
    assert exit_.value.code == 2
    assert "is missing: fit it with `usdiff direction fit --ckpt" in capsys.readouterr().err
