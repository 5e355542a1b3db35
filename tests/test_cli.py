import pytest

from usdiff.cli import build_parser, main


def test_parser_knows_every_command():
    parser = build_parser()
    args = parser.parse_args(["train", "--config", "paper", "--data", "d", "--out", "r", "--resume"])
    assert (args.config, args.resume) == ("paper", True)
    args = parser.parse_args(["translate", "--ckpt", "c", "--images", "i", "--out", "o", "--loss", "mse"])
    assert (args.method, args.loss, args.alpha) == ("cyclegan", "mse", None)   # None: the method's own default
    assert (args.encode_steps, args.decode_steps, args.fixed_point_iters) == (None, None, None)
    args = parser.parse_args(["translate", "--ckpt", "c", "--images", "i", "--out", "o", "--method", "sdedit",
                              "--t0", "0.4", "--ilvr", "8"])
    assert (args.method, args.t0, args.ilvr) == ("sdedit", 0.4, 8)
    args = parser.parse_args(["reconstruct", "--ckpt", "c", "--images", "i", "--out", "o", "--fixed-point-iters", "5"])
    assert args.fixed_point_iters == 5
    args = parser.parse_args(["fid", "--real", "a", "--fake", "b"])
    assert (args.layer, args.n) == ("pool2", 1200)


def test_parser_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["train", "--config", "huge", "--data", "d", "--out", "r"])
    assert exit_.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_sample_needs_a_source_of_z_sem(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["sample", "--ckpt", "c", "--out", "o"])
    assert exit_.value.code == 2
    assert "one of the arguments --data --images is required" in capsys.readouterr().err


def test_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    code = main(["reconstruct", "--ckpt", str(tmp_path / "nope.pt"), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("usdiff reconstruct: error:") and "nope.pt" in err


def test_translate_names_the_method_choices_and_refuses_foreign_knobs(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["translate", "--ckpt", "c", "--images", "i", "--out", "o", "--method", "pix2pix"])
    assert exit_.value.code == 2
    assert "invalid choice: 'pix2pix'" in capsys.readouterr().err
    rc = main(["translate", "--ckpt", "c", "--images", "i", "--out", "o", "--method", "transport", "--t0", "0.5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--t0 do(es) not apply to --method transport (it takes: --strength, --reg, --encode-steps, --decode-steps)" in err
