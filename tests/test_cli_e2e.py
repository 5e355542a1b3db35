"""Every command run as a user runs it: a subprocess on small folders of real-world-like images."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ENV = {**os.environ, "USDIFF_FAST": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}   # help text unwrapped


def usdiff(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "usdiff", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


def ok(result):
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "weights_only=False" not in err
    for f in fragments:
        assert f in err, err
    return err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny built-in data set, a 2-step run, and a folder of mixed user images."""
    root = tmp_path_factory.mktemp("cli")
    ok(usdiff("data", "generate", "--n", 20, "--size", 32, "--out", root / "data"))   # test split: 2 phantoms
    ok(usdiff("train", "--data", root / "data", "--out", root / "run", "--steps", 2))
    mixed = root / "mixed"
    mixed.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60), dtype=np.uint8)).save(mixed / "a.png")         # wide gray
    Image.fromarray(rng.integers(0, 255, (50, 30, 3), dtype=np.uint8)).save(mixed / "a.jpg")      # tall RGB, same stem
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)).save(mixed / "rgba.png")   # RGBA
    Image.fromarray(rng.integers(0, 65535, (70, 70), dtype=np.uint16)).save(mixed / "deep.png")  # 16-bit
    Image.fromarray(rng.integers(0, 255, (33, 33), dtype=np.uint8)).convert("P").save(mixed / "pal.png")
    return root


def test_version_and_module_entry_point():
    from usdiff import __version__

    assert ok(usdiff("--version")).stdout.strip() == f"usdiff {__version__}"


COMMANDS = (("train",), ("reconstruct",), ("sample",), ("fid",), ("evaluate",), ("direction", "fit"),
            ("translate",), ("downstream",), ("data", "ensure"), ("data", "scanner"), ("critics", "fit"))


def test_help_shows_defaults_without_rst_markup():
    top = ok(usdiff("--help")).stdout                   # the listing %-formats every sub-command's help
    for cmd in COMMANDS:
        assert f"    {cmd[0]}" in top, cmd
    assert "95 % intervals" in top                      # a literal percent sign survives the formatting
    for cmd in COMMANDS:
        out = ok(usdiff(*cmd, "--help")).stdout
        assert "``" not in out and "(default:" in out, cmd
    assert "total step count" in ok(usdiff("train", "--help")).stdout


def test_help_and_version_answer_without_importing_torch():
    code = ("import sys\nfrom usdiff.cli import main\nfor argv in (['--version'], ['--help'], ['train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_data_generate_asks_before_replacing_and_never_writes_into_other_folders(world, tmp_path):
    one_line_error(usdiff("data", "generate", "--n", 20, "--size", 32, "--out", world / "data"), "--overwrite")
    before = {p.name: p.read_bytes() for p in (world / "mixed").iterdir()}
    one_line_error(usdiff("data", "generate", "--n", 2, "--size", 32, "--out", world / "mixed", "--overwrite"),
                   "not a usdiff built-in data set")
    assert {p.name: p.read_bytes() for p in (world / "mixed").iterdir()} == before
    ok(usdiff("data", "generate", "--n", 3, "--size", 32, "--out", tmp_path / "d"))
    ok(usdiff("data", "generate", "--n", 2, "--size", 32, "--out", tmp_path / "d", "--overwrite"))
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["n"] == 2


def test_train_refuses_to_overwrite_a_run_and_resumes_to_a_total(world):
    one_line_error(usdiff("train", "--data", world / "data", "--out", world / "run", "--steps", 2),
                   "exists", "--resume", "--overwrite")
    out = ok(usdiff("train", "--data", world / "data", "--out", world / "run", "--steps", 3, "--resume")).stdout
    assert "trained to step 3" in out


def test_train_on_your_own_sim_and_real_folders(world, tmp_path):
    for d in ("sim", "real"):
        (tmp_path / "own" / d).mkdir(parents=True)
        for i in range(8):                                            # 16 images: one batch of the tiny config
            Image.fromarray(np.full((48, 80), 20 * i + (100 if d == "real" else 0), np.uint8)).save(
                tmp_path / "own" / d / f"{i}.png")
    out = ok(usdiff("train", "--data", tmp_path / "own", "--out", tmp_path / "run", "--steps", 1,
                    "--loss-weighting", "min_snr", "--warmup-steps", 10, "--bf16", "--seed", 3)).stdout
    assert "trained to step 1" in out
    import torch

    cfg = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["train_config"]
    assert (cfg["loss_weighting"], cfg["warmup_steps"], cfg["bf16_cpu"], cfg["seed"]) == ("min_snr", 10, True, 3)
    one_line_error(usdiff("train", "--data", tmp_path / "own" / "sim", "--out", tmp_path / "r2"),
                   "neither a built-in data set", "sim/ and real/")


def test_train_a_v_prediction_zero_terminal_snr_model(world, tmp_path):
    out = ok(usdiff("train", "--data", world / "data", "--out", tmp_path / "run", "--steps", 1, "--prediction", "v",
                    "--zero-terminal-snr", "--timestep-spacing", "trailing")).stdout
    assert "trained to step 1" in out
    from usdiff.train import load_model

    model = load_model(tmp_path / "run" / "ckpt.pt", device="cpu")
    assert (model.config.prediction, model.config.zero_terminal_snr, model.config.timestep_spacing) == \
        ("v", True, "trailing")
    assert model.scheduler.alphas_cumprod[-1] == 0 and model.scheduler.set_timesteps(20)[0] == 999
    one_line_error(usdiff("train", "--data", world / "data", "--out", tmp_path / "r2", "--zero-terminal-snr"),
                   "zero_terminal_snr=True needs prediction='v'")


def test_reconstruct_any_image_unique_names_and_no_overwrite(world, tmp_path):
    ckpt = world / "run" / "ckpt.pt"
    res = ok(usdiff("reconstruct", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "rec",
                    "--encode-steps", 2, "--decode-steps", 2))
    assert "wrote 5 reconstructions" in res.stdout and "4 of 5 images are not 64x64" in res.stderr
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == ["a.jpg.png", "a.png", "deep.png", "pal.png", "rgba.png"]   # a.png and a.jpg both kept
    one_line_error(usdiff("reconstruct", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "rec",
                          "--encode-steps", 2, "--decode-steps", 2), "exist", "--overwrite")
    one_line_error(usdiff("reconstruct", "--ckpt", ckpt, "--images", world / "mixed", "--out", world / "mixed"),
                   "must differ from the input folder")
    ok(usdiff("reconstruct", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "kept",
              "--encode-steps", 2, "--decode-steps", 2, "--keep-size"))
    assert Image.open(tmp_path / "kept" / "a.png").size == (60, 40)
    assert Image.open(tmp_path / "kept" / "a.jpg.png").size == (30, 50)


def test_sample_one_domain_named_after_sources(world, tmp_path):
    ok(usdiff("sample", "--ckpt", world / "run" / "ckpt.pt", "--data", world / "data", "--domain", "real",
              "--n", 2, "--steps", 2, "--out", tmp_path / "s"))
    manifest = json.loads((world / "data" / "manifest.json").read_text())
    test_ids = [it["id"] for it in manifest["items"] if it["split"] == "test"]
    assert sorted(p.stem for p in (tmp_path / "s").iterdir()) == sorted(test_ids[:2])


def test_direction_fit_then_translate_uses_it_by_default(world, tmp_path):
    ckpt = world / "run" / "ckpt.pt"
    ok(usdiff("direction", "fit", "--ckpt", ckpt, "--data", world / "data", "--out", world / "run" / "ckpt_classifier.pt"))
    res = ok(usdiff("translate", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "t",
                    "--method", "classifier", "--encode-steps", 2, "--decode-steps", 2))
    assert "wrote 5 images translated with ClassifierTranslator(loss='bce', alpha=1.0" in res.stdout
    assert len(list((tmp_path / "t").iterdir())) == 5
    # another method, fitted on the data set, saved, then used from the saved file
    fitted = tmp_path / "sdedit.pt"
    res = ok(usdiff("translate", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "s1", "--method",
                    "sdedit", "--t0", 0.3, "--steps", 10, "--data", world / "data", "--save-fitted", fitted))
    assert "SDEditTranslator(t0=0.3, steps=10" in res.stdout and fitted.is_file()
    ok(usdiff("translate", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "s2", "--method",
              "sdedit", "--fitted", fitted, "--seed", 0))
    same = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "s1").iterdir())]
    again = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "s2").iterdir())]
    assert all(np.array_equal(a, b) for a, b in zip(same, again))   # same fit, same knobs, same seed
    one_line_error(usdiff("translate", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "s3",
                          "--method", "transport", "--fitted", fitted), "holds a fitted 'sdedit' method, not 'transport'")
    one_line_error(usdiff("translate", "--ckpt", ckpt, "--images", world / "mixed", "--out", tmp_path / "s4",
                          "--method", "guided"), "no fitted 'guided' method")
    one_line_error(usdiff("direction", "fit", "--ckpt", ckpt, "--data", world / "data",
                          "--out", world / "run" / "ckpt_classifier.pt"), "exists")


def test_broken_files_give_one_clear_line(world, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# not a checkpoint\n")
    one_line_error(usdiff("translate", "--ckpt", readme, "--images", world / "mixed", "--out", tmp_path / "o",
                          "--method", "classifier", "--data", world / "data"), "README.md is not a DiffAE checkpoint")
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes((world / "run" / "ckpt.pt").read_bytes()[:5000])
    one_line_error(usdiff("reconstruct", "--ckpt", truncated, "--images", world / "mixed", "--out", tmp_path / "o"),
                   "trunc.pt is not a DiffAE checkpoint")
    one_line_error(usdiff("sample", "--ckpt", readme, "--images", world / "mixed", "--out", tmp_path / "o"),
                   "not a DiffAE checkpoint")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(bad / f"{i}.png")
    (bad / "fake.png").write_text("not a png")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"\x80\x02truncated")
    one_line_error(usdiff("fid", "--real", world / "mixed", "--fake", world / "mixed", "--weights", weights), "w.pth")
    one_line_error(usdiff("fid", "--real", world / "mixed", "--fake", bad, "--features", "us"),
                   "fake.png is not a readable image")
