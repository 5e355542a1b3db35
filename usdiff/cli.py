"""Command line: usdiff data | train | reconstruct | sample | fid | critics | evaluate | direction | translate | downstream.

Each sub-command is a thin wrapper around one package function; run ``usdiff CMD -h`` for help.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__

DEFAULT_DATA = Path("data/builtin")
FAST_DATA = Path("data/builtin_fast")


def _data_generate(args):
    from .data import generate_dataset

    root = generate_dataset(args.out, n=args.n, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.n} paired images to {root}")


def _data_scanner(args):
    from .data.scanner import ScannerSettings, generate_scanner_folder

    scanner = ScannerSettings(freq_mhz=args.freq_mhz, axial_psf_mm=args.axial_psf_mm, smooth=args.smooth,
                              gain_db=args.gain_db, dynamic_range_db=args.dynamic_range_db,
                              specular_gain=args.specular_gain)
    root = generate_scanner_folder(args.out, n=args.n, frame=parse_frame(args.frame), scanner=scanner,
                                   n_test=args.n_test, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.n} simulated frames with labels, {args.n} unpaired scanner frames and {args.n_test} labelled "
          f"test frames ({args.frame}) to {root}")


def parse_frame(text: str) -> tuple[int, int]:
    """``"96x128"`` -> ``(96, 128)`` (height x width)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--frame must be HEIGHTxWIDTH, e.g. 96x128, got {text!r}") from None
    return h, w


def _data_ensure(args):
    from .data import ensure_dataset
    from .utils import is_fast

    fast = is_fast()
    root = args.out or (FAST_DATA if fast else DEFAULT_DATA)
    n = args.n or (240 if fast else 12_000)
    ensure_dataset(root, n=n, size=args.size, seed=args.seed)
    print(f"built-in data set ready at {root}")


def _train(args):
    import dataclasses

    from .model import get_config
    from .train import train

    overrides = {k: v for k, v in (("loss_weighting", args.loss_weighting), ("warmup_steps", args.warmup_steps),
                                   ("batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    if args.bf16:
        overrides["bf16_cpu"] = True
    model = {k: v for k, v in (("prediction", args.prediction), ("timestep_spacing", args.timestep_spacing))
             if v is not None}
    if args.zero_terminal_snr:
        model["zero_terminal_snr"] = True
    model_cfg, train_cfg = get_config(args.config)
    config = (dataclasses.replace(model_cfg, **model), train_cfg)
    start = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    trainer = train(config, args.data, args.out, start=start, steps=args.steps, device=args.device, fit=args.fit,
                    **overrides)
    if trainer.rank == 0:
        print(f"trained to step {trainer.step}; checkpoint in {args.out}")


def _reconstruct(args):
    from .io import FolderOptions
    from .pipelines import reconstruct_folder

    options = FolderOptions(batch_size=args.batch_size, fit=args.fit, keep_size=args.keep_size,
                            overwrite=args.overwrite, device=args.device)
    paths = reconstruct_folder(args.ckpt, args.images, args.out, encode_steps=args.encode_steps,
                               decode_steps=args.decode_steps, fixed_point_iters=args.fixed_point_iters,
                               options=options)
    print(f"wrote {len(paths)} reconstructions to {args.out}")


def _sample(args):
    from .io import FolderOptions
    from .pipelines import SampleSource, Sampling, sample_folder

    source = SampleSource(data_dir=args.data, images_dir=args.images, domain=args.domain)
    options = FolderOptions(batch_size=args.batch_size, fit=args.fit, overwrite=args.overwrite, device=args.device)
    paths = sample_folder(args.ckpt, args.out, source, n=args.n,
                          sampling=Sampling(steps=args.steps, seed=args.seed, prior=args.prior), options=options)
    print(f"wrote {len(paths)} samples to {args.out}")


def _fid(args):
    if args.features == "us":
        from .metrics.judge import fd_us_folders

        report = fd_us_folders(args.real, args.fake, n=args.n, device=args.device)
    else:
        from .io import FolderOptions
        from .metrics.evaluate import fid_folders

        report = fid_folders(args.real, args.fake, layer=args.layer, weights=args.weights, n=args.n,
                             options=FolderOptions(batch_size=50, fit=args.fit, device=args.device))
    print(json.dumps(report, indent=2, default=float))


def _direction_fit(args):
    from .translate import FitData, fit_direction

    path = fit_direction(args.ckpt, FitData(args.data, n=args.n_fit), args.out, loss=args.loss, seed=args.seed,
                         device=args.device, overwrite=args.overwrite)
    print(f"saved the {args.loss.upper()} realness direction (a fitted classifier method) to {path}")


def _critics_fit(args):
    from .metrics.critic_fitting import CriticsFit, fit_critics, report_lines

    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    names = None
    if args.label_names == "builtin":
        from .metrics.critics import BUILTIN_LABEL_NAMES

        names = BUILTIN_LABEL_NAMES
    elif args.label_names is not None:
        names = tuple(n.strip() for n in args.label_names.split(","))
    settings = CriticsFit(size=args.size, fit=args.fit, critic_steps=args.critic_steps,
                          segmenter_steps=args.segmenter_steps, held_out=args.held_out, label_names=names,
                          seed=args.seed)
    critics = fit_critics(args.data, settings)
    critics.save(args.out, overwrite=args.overwrite)
    print(f"saved critics fitted on {args.data} ({args.size} px) to {args.out} in {critics.report['seconds']:.0f} s")
    print("\n".join(report_lines(critics.report)))


def _evaluate(args):
    from .metrics.judge import JudgedFolders, evaluate_folders
    from .utils import is_fast

    data = args.data
    if data is None and args.critics is None:
        data = FAST_DATA if is_fast() else DEFAULT_DATA
    folders = JudgedFolders(args.real, args.fake, labels=args.labels, sources=args.sources, fit=args.fit)
    report = evaluate_folders(folders, args.critics if args.critics is not None else args.size, n=args.n,
                              data_dir=data, device=args.device, seed=args.seed)
    for warning in report["warnings"]:
        print(f"usdiff evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "n"}, default=float))
        return
    print(format_evaluation(report))


def format_evaluation(report: dict) -> str:
    """The `usdiff evaluate` report as aligned lines with what each number means."""
    n = report.get("n")
    rows = [("fd", f"{report['fd']:.3f}", f"FD-US, fake vs real, n={report.get('fd_n', n)} (lower = closer)")]
    if "fd_floor" in report:
        rows += [("fd_floor", f"{report['fd_floor']:.3f}", "held-out real vs real, same n (what 'no difference' "
                                                           "scores)"),
                 ("fd_gap", f"{report['fd_gap']:.3f}", "held-out simulated vs real, same n (the sim-to-real gap)")]
    lo, hi = report["c2st_ci"]
    rows += [("kid", f"{report['kid']:.5f}", "kernel distance in the same features (0 = same distribution)"),
             ("c2st_acc", f"{report['c2st_acc']:.3f} [{lo:.3f}, {hi:.3f}]",
              "fresh classifier fake vs real, held-out accuracy and 95 % interval (0.5 = indistinguishable)"),
             ("p_real_mean", f"{report['p_real_mean']:.3f}", "domain critic's mean P(real) of the fake images")]
    if "lowpass_corr" in report:
        rows += [("lowpass_corr", f"{report['lowpass_corr']:.3f}", "label-free: low-pass correlation with the "
                                                                   "source (1 = same layout)"),
                 ("edge_f", f"{report['edge_f']:.3f}", "label-free: boundary F-score against the source"),
                 ("nmi", f"{report['nmi']:.3f}", "label-free: normalised mutual information with the source")]
    if "dice_mean" in report:
        rows += [("dice_mean", f"{report['dice_mean']:.3f}", "segmenter on fake vs source label maps, mean over tissues")]
    if "dice_aorta" in report:
        rows += [("dice_aorta", f"{report['dice_aorta']:.3f}", "the same for the aorta"),
                 ("one_aorta_rate", f"{report['one_aorta_rate']:.3f}", "share of fake images with exactly one aorta")]
    return "\n".join(f"{k:<15s} {v:>22s}   {d}" for k, v, d in rows)


def _downstream(args):
    from .downstream import FolderStudy, StudySettings, downstream_table, run_downstream
    from .utils import is_fast

    data = args.data if args.data is not None else (FAST_DATA if is_fast() else DEFAULT_DATA)
    methods = args.methods
    own = args.test_real is not None or args.test_labels is not None or bool(args.translated)
    if (Path(data) / "manifest.json").is_file() or not (own or (Path(data) / "sim").is_dir()):
        if own:
            raise ValueError("--test-real, --test-labels and --translated are for your own folders; a built-in "
                             "data set is tested on its own test split")
        methods = ["classifier", "sdedit", "cyclegan"] if methods is None else methods
        what = "held-out real-like images"
    else:
        data = FolderStudy(data, test_real=args.test_real, test_labels=args.test_labels,
                           translated=tuple(args.translated or ()), fit=args.fit)
        methods = methods or []
        what = f"real images of {args.test_real}"
    steps_each_way = {"encode_steps": args.translate_steps, "decode_steps": args.translate_steps}
    study = StudySettings(n_train=args.n_train, n_test=args.n_test, train_steps=args.steps, seed=args.seed,
                          augmentation=not args.no_augmentation, width=args.width)
    report = run_downstream(data, args.ckpt if methods else None, methods=methods, study=study,
                            settings={"classifier": steps_each_way, "transport": steps_each_way},
                            device=args.device, progress=not args.json)
    if args.json:
        keys = ("dice_mean", "dice_mean_ci", "dice_aorta", "dice_aorta_ci", "ratio_to_real", "dice", "n_train")
        print(json.dumps({name: {k: r[k] for k in keys if k in r} for name, r in report.items()}, default=float))
        return
    print(f"segmenters trained {args.steps} steps on up to {args.n_train} images each, tested on up to {args.n_test} "
          f"{what}")
    print(downstream_table(report))


# The settings of each translation method (its constructor's arguments, fit settings marked *), kept
# here so that `usdiff --help` needs no torch; tests/test_cli.py checks them against the classes.
METHOD_SETTINGS = {
    "cyclegan": ("train_steps*", "train_batch_size*", "width*", "blocks*", "lambda_cyc*", "lambda_id*", "minutes*"),
    "classifier": ("loss*", "alpha", "alpha_unit", "encode_steps", "decode_steps", "fixed_point_iters"),
    "transport": ("strength", "reg*", "encode_steps", "decode_steps"),
    "sdedit": ("t0", "steps", "ilvr", "ilvr_until", "strength", "reg*"),
    "guided": ("scale", "guide_steps*", "guide_width*", "t0", "steps", "ilvr", "ilvr_until", "strength", "reg*"),
}
# one flag per setting name: (type, choices, what it does)
SETTING_FLAGS = {
    "loss": (str, ("bce", "mse"), "loss of the sim-vs-real classifier"),
    "alpha": (float, None, "step along the realness direction"),
    "alpha_unit": (str, ("sqrt_dim", "unit"), "unit of alpha: sqrt(D) per unit, or 1"),
    "encode_steps": (int, None, "DDIM inversion steps"),
    "decode_steps": (int, None, "DDIM decoding steps"),
    "fixed_point_iters": (int, None, "refinements of each inversion step by fixed-point iteration"),
    "strength": (float, None, "0 = own z_sem, 1 = fully transported"),
    "reg": (float, None, "covariance ridge of the Gaussian transport, fraction of the mean variance"),
    "t0": (float, None, "noise level to start from, fraction of T"),
    "steps": (int, None, "DDIM grid over [0, T) (only the steps below t0 run)"),
    "ilvr": (int, None, "ILVR anchor: down-sampling factor N (off when not given)"),
    "ilvr_until": (float, None, "the ILVR anchor acts down to this fraction of T"),
    "scale": (float, None, "guidance step (0 = plain sdedit)"),
    "guide_steps": (int, None, "training steps of the guide segmenter"),
    "guide_width": (int, None, "channels of the guide segmenter's first level"),
    "train_steps": (int, None, "training steps"),
    "train_batch_size": (int, None, "images per training step and domain"),
    "width": (int, None, "channels of the first level of generators and discriminators"),
    "blocks": (int, None, "residual blocks of each generator"),
    "lambda_cyc": (float, None, "weight of the cycle-consistency loss"),
    "lambda_id": (float, None, "weight of the identity loss"),
    "minutes": (float, None, "stop training at this wall time"),
}


def method_settings(method: str) -> tuple[str, ...]:
    """The setting names of a translation method (without the fit-setting mark)."""
    return tuple(k.rstrip("*") for k in METHOD_SETTINGS[method])


def _translate(args):
    from .io import FolderOptions
    from .translate import FitData, resolve_method, save_method, translate_folder

    given = {k: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k) is not None}
    takes = method_settings(args.method)
    wrong = sorted(set(given) - set(takes))
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"{flags} do(es) not apply to --method {args.method} (it takes: "
                         f"{', '.join('--' + k.replace('_', '-') for k in takes)})")
    if args.save_fitted is not None and args.data is None:
        raise ValueError("--save-fitted needs --data (there is nothing new to save otherwise)")
    fit_on = FitData(args.data, n=args.n_fit) if args.data is not None else None
    method = resolve_method(args.method, args.ckpt, fitted=args.fitted, fit_on=fit_on, settings=given,
                            seed=args.seed, device=args.device)
    if args.save_fitted is not None:
        save_method(args.save_fitted, method, overwrite=args.overwrite)
        print(f"saved the fitted {args.method} method to {args.save_fitted}")
    options = FolderOptions(batch_size=args.batch_size, fit=args.fit, keep_size=args.keep_size,
                            overwrite=args.overwrite, device=args.device)
    paths = translate_folder(method, args.ckpt if method.needs_diffae else None, args.images, args.out,
                             labels_dir=args.labels, options=options, seed=args.seed)
    print(f"wrote {len(paths)} images translated with {method!r} to {args.out}")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; options without one (None, flags) are not given a misleading '(default: None)'."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def add(parent, name: str, func, help: str) -> argparse.ArgumentParser:
    """A sub-command `name` of `parent` that runs `func`, with `help` as its listing line and description."""
    # argparse %-formats a sub-command's help in the parent's listing (not its description)
    p = parent.add_parser(name, help=help.replace("%", "%%"), description=help, formatter_class=_Formatter)
    p.set_defaults(func=func)
    return p


def device_arg(p):
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when visible, else CPU)")


def fixed_point_arg(p):
    p.add_argument("--fixed-point-iters", type=int, default=0,
                   help="refinements per DDIM inversion step (0 = plain DDIM inversion, as in the "
                        "study; 5-10 make the inversion exact, at up to that many extra UNet passes)")


def fit_arg(p):
    p.add_argument("--fit", default="pad", choices=["pad", "crop"],
                   help="how images of another size or aspect reach the model's square size: pad = "
                        "zero-pad to a square, then resize (keeps the whole ultrasound fan); crop = resize "
                        "the shorter side and centre-crop (cuts the fan's sides off)")


def overwrite_arg(p, what="existing output files"):
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} (refused otherwise)")


def seed_arg(p, help="random seed"):
    p.add_argument("--seed", type=int, default=0, help=help)


def build_data(sub) -> None:
    """The `usdiff data` command."""
    data = sub.add_parser("data", help="the built-in paired sim/real-like data set", formatter_class=_Formatter)
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    gen = add(data_sub, "generate", _data_generate, "generate the built-in data set into --out")
    gen.add_argument("--n", type=int, default=12_000, help="number of phantoms (each gives a sim and a real image)")
    gen.add_argument("--size", type=int, default=128, help="image side in pixels")
    seed_arg(gen, "data set seed (phantoms, renders, splits)")
    gen.add_argument("--out", type=Path, required=True, help="output folder (sim/, real/, labels/, manifest.json)")
    overwrite_arg(gen, "a built-in data set already in --out (a folder holding anything else is never written into)")
    sc = add(data_sub, "scanner", _data_scanner, "render the phantoms as another scanner would, laid out like your "
                                                 "own data: sim/ + labels/, unpaired real/, labelled test_real/")
    sc.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    sc.add_argument("--n", type=int, default=200, help="simulated frames, and as many scanner frames of other phantoms")
    sc.add_argument("--n-test", type=int, default=100, help="labelled scanner frames of further phantoms (test set)")
    sc.add_argument("--frame", default="96x128", help="frame HEIGHTxWIDTH in pixels")
    sc.add_argument("--freq-mhz", type=float, default=3.5, help="transmit frequency (built-in data: 2.0)")
    sc.add_argument("--axial-psf-mm", type=float, default=0.5, help="axial PSF sigma (built-in: 0.8)")
    sc.add_argument("--smooth", type=float, default=1.0, help="display smoothing sigma in px (built-in: 0.6)")
    sc.add_argument("--gain-db", type=float, default=4.0, help="added to the drawn operator gain (built-in: 0)")
    sc.add_argument("--dynamic-range-db", type=float, default=45.0, help="centre of the drawn dynamic range "
                                                                          "(built-in: 50-62 dB)")
    sc.add_argument("--specular-gain", type=float, default=40.0, help="specular reflection brightness (built-in: 80)")
    seed_arg(sc, "folder seed (phantoms and renders)")
    sc.set_defaults(seed=1)
    overwrite_arg(sc, "a scanner folder already in --out (a folder holding anything else is never written into)")
    ens = add(data_sub, "ensure", _data_ensure, "generate the data set unless an identical one is present")
    ens.add_argument("--n", type=int, default=None, help="number of phantoms (default: 12000; 240 with USDIFF_FAST=1)")
    ens.add_argument("--size", type=int, default=128, help="image side in pixels")
    seed_arg(ens, "data set seed (phantoms, renders, splits)")
    ens.add_argument("--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_DATA}; {FAST_DATA} "
                                                            "with USDIFF_FAST=1)")


def build_train(sub) -> None:
    """The `usdiff train` command."""
    p = add(sub, "train", _train, "train a Diffusion Autoencoder")
    p.add_argument("--config", default="tiny", choices=["tiny", "small", "paper"], help="model and training preset")
    p.add_argument("--data", type=Path, required=True,
                   help="a built-in data set (see 'usdiff data'; its train split is used) or your own folder "
                        "with the subfolders sim/ and real/ (all their images are used)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, samples, loss history")
    p.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/ckpt.pt")
    overwrite_arg(p, "an existing run in --out (its checkpoint)")
    p.add_argument("--steps", type=int, default=None,
                   help="total step count to train to, not a number of extra steps: with --resume a run at "
                        "step 2000 and --steps 3000 trains 1000 more (default: the config's total)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    p.add_argument("--loss-weighting", default=None, choices=["uniform", "min_snr"],
                   help="loss weighting over t (default: the config's, uniform as in the study); min_snr = "
                        "Min-SNR-gamma (Hang et al. 2023)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear learning-rate warm-up steps "
                                                                    "(default: the config's, 0)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast when training on a CPU")
    p.add_argument("--prediction", default=None, choices=["eps", "v"],
                   help="what the UNet predicts (default: the config's, eps as in the study); v = "
                        "sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)")
    p.add_argument("--zero-terminal-snr", action="store_true",
                   help="rescale the schedule so that x_T is pure noise (Lin et al. 2024); needs --prediction v")
    p.add_argument("--timestep-spacing", default=None, choices=["leading", "trailing"],
                   help="DDIM sampling grid (default: the config's, leading); trailing starts at T - 1")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step and process (default: the config's); under torchrun the effective "
                        "batch is this times the number of processes")
    fit_arg(p)
    device_arg(p)


def build_reconstruct(sub) -> None:
    """The `usdiff reconstruct` command."""
    p = add(sub, "reconstruct", _reconstruct, "encode images to (x_T, z_sem) and decode them back")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint (e.g. assets/diffae_tiny.pt)")
    p.add_argument("--images", type=Path, required=True, help="folder of images (any size and mode)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must differ from --images)")
    p.add_argument("--encode-steps", type=int, default=100, help="DDIM steps of the inversion to x_T")
    p.add_argument("--decode-steps", type=int, default=100, help="DDIM steps of the decoding (best: = encode)")
    fixed_point_arg(p)
    fit_arg(p)
    p.add_argument("--keep-size", action="store_true", help="write each output at its input's size")
    overwrite_arg(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    device_arg(p)


def build_sample(sub) -> None:
    """The `usdiff sample` command."""
    p = add(sub, "sample", _sample, "generate images: held-out z_sem + random x_T (the FID protocol); each output "
                               "is named after its source image")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint (e.g. assets/diffae_tiny.pt)")
    p.add_argument("--n", type=int, default=1200, help="number of images (sources are reused when fewer)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="built-in data set (z_sem of its test split) or your own folder "
                                               "with sim/ and real/")
    src.add_argument("--images", type=Path, help="any folder of images to take z_sem from")
    p.add_argument("--domain", default="both", choices=["sim", "real", "both"],
                   help="with --data: take z_sem from this domain's images only")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (the study used 20)")
    p.add_argument("--prior", default="gaussian", choices=["gaussian", "data"],
                   help="random x_T: N(0, I) as in the study, or 'data': the per-pixel Gaussian x_t has at the "
                        "first DDIM step (mean and std of the training images; keeps brightness and domain)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    seed_arg(p, "seed of the random x_T")
    fit_arg(p)
    overwrite_arg(p)
    device_arg(p)


def build_fid(sub) -> None:
    """The `usdiff fid` command."""
    p = add(sub, "fid", _fid, "FID and KID between two image folders (InceptionV3 features from a local file), or "
                         "the offline FD-US with --features us")
    p.add_argument("--real", type=Path, required=True, help="folder of real images")
    p.add_argument("--fake", type=Path, required=True, help="folder of generated images")
    p.add_argument("--features", default="inception", choices=["inception", "us"],
                   help="inception: FID (needs --weights or the file in $TORCH_HOME/hub/checkpoints); us: "
                        "FD-US in the shipped ultrasound critics' features, reported under that name (not FID)")
    p.add_argument("--layer", default="pool2", choices=["pool2", "pool3"],
                   help="Inception layer: pool2 = 192-d second max-pool (the study); pool3 = 2048-d (standard FID)")
    p.add_argument("--weights", type=Path, default=None,
                   help="Inception weights file, e.g. pt_inception-2015-12-05-6726825d.pth (nothing is downloaded)")
    p.add_argument("--n", type=int, default=1200, help="at most this many images per folder")
    fit_arg(p)
    device_arg(p)


def build_critics(sub) -> None:
    """The `usdiff critics` command."""
    critics = sub.add_parser("critics", help="judges fitted to your own data", formatter_class=_Formatter)
    csub = critics.add_subparsers(dest="critics_command", required=True, metavar="ACTION")
    p = add(csub, "fit", _critics_fit, "train a domain critic (and FD-US features) on ROOT/sim vs ROOT/real and, "
                                       "with ROOT/labels, a segmenter on the simulated images; report on held-out images")
    p.add_argument("--data", type=Path, required=True, help="folder with sim/ and real/ (and labels/ for sim/)")
    p.add_argument("--out", type=Path, required=True, help="critics file to write (use with evaluate --critics)")
    p.add_argument("--size", type=int, default=64, help="side the critics work at (frames are brought to it)")
    fit_arg(p)
    p.add_argument("--critic-steps", type=int, default=800, help="training steps of the domain critic")
    p.add_argument("--segmenter-steps", type=int, default=1500, help="training steps of the segmenter")
    p.add_argument("--held-out", type=float, default=0.2, help="share of each folder kept out for the report")
    p.add_argument("--label-names", default=None,
                   help="comma-separated class names, class 0 first, or 'builtin' for the built-in tissues (default: "
                        "the built-in tissue names for a folder written by `usdiff data scanner`, else 'class K')")
    seed_arg(p, "seed of the held-out split and of the trainings")
    overwrite_arg(p, "an existing --out file")


def build_evaluate(sub) -> None:
    """The `usdiff evaluate` command."""
    p = add(sub, "evaluate", _evaluate, "judge a folder of generated/translated images against real ones with "
                                   "the independent critics (FD-US, KID, C2ST, P(real), anatomy Dice)")
    p.add_argument("--real", type=Path, required=True, help="folder of real images (any size/mode)")
    p.add_argument("--fake", type=Path, required=True, help="folder of generated or translated images")
    p.add_argument("--labels", type=Path, default=None,
                   help="folder of label maps named like the fake images' sources (ID.png for ID.png or ID_rK.png)")
    p.add_argument("--sources", type=Path, default=None,
                   help="folder of the fake images' sources (same names): label-free structure measures")
    p.add_argument("--n", type=int, default=1200, help="at most this many images per set")
    judges = p.add_mutually_exclusive_group()
    judges.add_argument("--critics", type=Path, default=None,
                        help="critics file fitted to your data (usdiff critics fit); default: the shipped ones")
    judges.add_argument("--size", type=int, default=None, choices=[64, 128],
                        help="shipped critics to use (default: 64 for fake images up to 64 px, else 128)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"FD floor and gap: a built-in data set (default with the shipped critics: {DEFAULT_DATA}, "
                        "omitted if absent) or the folder fitted critics were fitted on (default: the one they name)")
    p.add_argument("--fit", default=None, choices=["pad", "crop"],
                   help="how frames reach the critics' square size (default: as the critics were fitted; pad for "
                        "the shipped ones): pad = zero-pad to a square, then resize; crop = centre-crop")
    seed_arg(p, "seed of the C2ST split and classifier")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    device_arg(p)


def build_direction(sub) -> None:
    """The `usdiff direction` command."""
    direction = sub.add_parser("direction", help="the sim-vs-real direction in z_sem used by translate",
                               formatter_class=_Formatter)
    dsub = direction.add_subparsers(dest="direction_command", required=True, metavar="ACTION")
    p = add(dsub, "fit", _direction_fit, "fit a checkpoint's realness direction once and save it")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint whose z_sem the direction lives in")
    p.add_argument("--data", type=Path, required=True,
                   help="built-in data set (train split) or your own folder with sim/ and real/")
    p.add_argument("--out", type=Path, required=True,
                   help="output file (a fitted classifier method); NAME_classifier.pt beside NAME.pt is what translate uses by default")
    p.add_argument("--loss", default="bce", choices=["bce", "mse"], help="classifier loss (the study tried both)")
    p.add_argument("--n-fit", type=int, default=4000, help="training images encoded to fit the classifier")
    seed_arg(p, "seed of the subset and the classifier")
    overwrite_arg(p, "an existing --out file")
    device_arg(p)


def build_translate(sub) -> None:
    """The `usdiff translate` command."""
    p = add(sub, "translate", _translate, "translate a folder of simulated images into real-looking PNGs with a "
                                     "chosen method (settings left out keep the method's default or fitted value)")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="DiffAE checkpoint (e.g. assets/diffae_tiny.pt), needed by every method but cyclegan; "
                        "fitted methods are looked up beside it")
    p.add_argument("--images", type=Path, required=True, help="folder of simulated images (any size and mode)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must differ from --images)")
    p.add_argument("--method", default="cyclegan", choices=list(METHOD_SETTINGS),
                   help="cyclegan (default): the GAN baseline, the best of these on notebook 07's held-out judges "
                        "and notebook 08's downstream test; classifier: the study's realness direction; transport: "
                        "optimal transport of z_sem; sdedit: noise to t0, decode with the transported z_sem; "
                        "guided: sdedit steered to the source's label map (needs --labels)")
    p.add_argument("--fitted", "--classifier", type=Path, default=None,
                   help="fitted method file (usdiff direction fit, or --save-fitted); default: NAME_<method>.pt "
                        "beside the checkpoint NAME.pt")
    p.add_argument("--data", type=Path, default=None,
                   help="fit the method here instead: built-in data set (train split, unpaired halves) or your own "
                        "folder with sim/ and real/")
    p.add_argument("--n-fit", type=int, default=4000, help="with --data: training images used to fit")
    p.add_argument("--save-fitted", "--save-classifier", type=Path, default=None,
                   help="with --data: also save the fitted method here")
    p.add_argument("--labels", type=Path, default=None,
                   help="label maps of the inputs, same names (guided uses them)")
    settings = p.add_argument_group("method settings (default: the method's own; * = fit setting, which a fitted "
                                    "file keeps: change it with --data)")
    for name, (kind, choices, what) in SETTING_FLAGS.items():
        users = [m + ("*" if f"{name}*" in METHOD_SETTINGS[m] else "") for m in METHOD_SETTINGS
                 if name in method_settings(m)]
        settings.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices, default=None,
                              help=f"{'/'.join(users)}: {what}")
    fit_arg(p)
    p.add_argument("--keep-size", action="store_true", help="write each output at its input's size")
    overwrite_arg(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    seed_arg(p, "seed of the fit (with --data) and of the noise of sdedit/guided")
    device_arg(p)


def build_downstream(sub) -> None:
    """The `usdiff downstream` command."""
    p = add(sub, "downstream", _downstream, "train the same segmenter on simulated, augmented, translated and real-like "
                                       "images; test each on held-out real-like images (Dice with 95 % intervals)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"built-in data set (default: {DEFAULT_DATA}) or your own folder with sim/ and labels/ "
                        "(then --test-real and --test-labels are needed)")
    p.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"),
                   help="DiffAE checkpoint; its fitted methods are looked up beside it")
    p.add_argument("--methods", nargs="*", default=None, choices=list(METHOD_SETTINGS),
                   help="translation methods whose translated simulation is a training set (default: classifier "
                        "sdedit cyclegan on a built-in data set, none on your own folders)")
    p.add_argument("--translated", nargs="*", type=Path, default=None,
                   help="your own folders: folders of translated sim/ images (same names), one training set each")
    p.add_argument("--test-real", type=Path, default=None, help="your own folders: labelled real test images")
    p.add_argument("--test-labels", type=Path, default=None, help="your own folders: their label maps (same names)")
    fit_arg(p)
    p.add_argument("--n-train", type=int, default=200, help="training phantoms per set")
    p.add_argument("--n-test", type=int, default=300, help="held-out real-like test images")
    p.add_argument("--steps", type=int, default=300, help="training steps of every segmenter (batch 32)")
    p.add_argument("--translate-steps", type=int, default=20,
                   help="DDIM steps each way of the classifier and transport methods (their own default: 100)")
    p.add_argument("--width", type=int, default=8, help="channels of the segmenter's first level")
    p.add_argument("--no-augmentation", action="store_true", help="leave out the sim+aug baseline")
    seed_arg(p, "seed of the segmenters, the augmentation and the translation noise")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys per training set)")
    device_arg(p)


COMMANDS = (build_data, build_train, build_reconstruct, build_sample, build_fid, build_critics, build_evaluate,
            build_direction, build_translate, build_downstream)


def build_parser() -> argparse.ArgumentParser:
    """The `usdiff` parser: one sub-command per builder of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="usdiff", description=__doc__.splitlines()[0].replace("``", ""),
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"usdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for build in COMMANDS:
        build(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, PermissionError, IsADirectoryError,
            NotADirectoryError) as err:
        print(f"usdiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
