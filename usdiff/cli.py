"""Command line: ``usdiff data | train | reconstruct | sample | fid | translate``.

Each sub-command is a thin wrapper around one package function; run ``usdiff CMD -h`` for help.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .utils import is_fast

DEFAULT_DATA = Path("data/builtin")
FAST_DATA = Path("data/builtin_fast")


def _data_generate(args):
    from .data import generate_dataset

    root = generate_dataset(args.out, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.n} paired images to {root}")


def _data_ensure(args):
    from .data import ensure_dataset

    fast = is_fast()
    root = args.out or (FAST_DATA if fast else DEFAULT_DATA)
    n = args.n or (240 if fast else 12_000)
    ensure_dataset(root, n=n, size=args.size, seed=args.seed)
    print(f"built-in data set ready at {root}")


def _train(args):
    from .train import train

    trainer = train(config=args.config, data_dir=args.data, out_dir=args.out, resume=args.resume,
                    device=args.device, steps=args.steps)
    print(f"trained to step {trainer.step}; checkpoint in {args.out}")


def _reconstruct(args):
    from .pipelines import reconstruct_folder

    paths = reconstruct_folder(args.ckpt, args.images, args.out, encode_steps=args.encode_steps,
                               decode_steps=args.decode_steps, batch_size=args.batch_size, device=args.device,
                               fixed_point_iters=args.fixed_point_iters)
    print(f"wrote {len(paths)} reconstructions to {args.out}")


def _sample(args):
    from .pipelines import sample_folder

    paths = sample_folder(args.ckpt, args.out, n=args.n, data_dir=args.data, images_dir=args.images,
                          steps=args.steps, batch_size=args.batch_size, seed=args.seed, device=args.device)
    print(f"wrote {len(paths)} samples to {args.out}")


def _fid(args):
    from .metrics.evaluate import fid_folders

    report = fid_folders(args.real, args.fake, layer=args.layer, weights=args.weights, n=args.n,
                         device=args.device)
    print(json.dumps(report, indent=2, default=float))


def _translate(args):
    from .translate import translate_folder

    paths = translate_folder(args.ckpt, args.images, args.out, method=args.method, loss=args.loss,
                             alpha=args.alpha, classifier=args.classifier, data_dir=args.data,
                             encode_steps=args.encode_steps, decode_steps=args.decode_steps,
                             batch_size=args.batch_size, device=args.device,
                             fixed_point_iters=args.fixed_point_iters)
    print(f"wrote {len(paths)} translated images to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usdiff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def device_arg(p):
        p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when visible)")

    def fixed_point_arg(p):
        p.add_argument("--fixed-point-iters", type=int, default=0,
                       help="refinements per DDIM inversion step (0 = plain DDIM inversion, as in the "
                            "study; 5-10 make the inversion exact, at up to that many extra UNet passes)")

    data = sub.add_parser("data", help="the built-in paired sim/real-like data set")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser("generate", help="generate the built-in data set into --out")
    gen.set_defaults(func=_data_generate)
    gen.add_argument("--n", type=int, default=12_000, help="number of phantoms (each gives a sim and a real image)")
    gen.add_argument("--size", type=int, default=128, help="image side in pixels")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", type=Path, required=True)
    ens = data_sub.add_parser("ensure", help="generate the data set unless an identical one is present")
    ens.set_defaults(func=_data_ensure)
    ens.add_argument("--n", type=int, default=None, help="default: 12000 (240 with USDIFF_FAST=1)")
    ens.add_argument("--size", type=int, default=128)
    ens.add_argument("--seed", type=int, default=0)
    ens.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_DATA} ({FAST_DATA} when fast)")

    p = add("train", _train, "train a Diffusion Autoencoder")
    p.add_argument("--config", default="tiny", choices=["tiny", "small", "paper"])
    p.add_argument("--data", type=Path, required=True, help="built-in data set folder (see `usdiff data`)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, samples, loss history")
    p.add_argument("--resume", action="store_true", help="continue exactly from RUN_DIR/ckpt.pt")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the config)")
    device_arg(p)

    p = add("reconstruct", _reconstruct, "encode images to (x_T, z_sem) and decode them back")
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--encode-steps", type=int, default=100)
    p.add_argument("--decode-steps", type=int, default=100)
    fixed_point_arg(p)
    p.add_argument("--batch-size", type=int, default=16)
    device_arg(p)

    p = add("sample", _sample, "generate images: held-out z_sem + random x_T (the FID protocol)")
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--n", type=int, default=1200)
    p.add_argument("--out", type=Path, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="built-in data set: z_sem of its test split")
    src.add_argument("--images", type=Path, help="any folder of images to take z_sem from")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (the study used 20)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)

    p = add("fid", _fid, "FID and KID between two image folders (InceptionV3 features, local weights)")
    p.add_argument("--real", type=Path, required=True)
    p.add_argument("--fake", type=Path, required=True)
    p.add_argument("--layer", default="pool2", choices=["pool2", "pool3"],
                   help="pool2: 192-d second max-pool (the study); pool3: 2048-d (standard FID)")
    p.add_argument("--weights", type=Path, default=None, help="Inception weights file (no download)")
    p.add_argument("--n", type=int, default=1200)
    device_arg(p)

    p = add("translate", _translate, "translate a folder of simulated images into real-styled PNGs")
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--method", default="classifier", choices=["classifier"])
    p.add_argument("--loss", default="bce", choices=["bce", "mse"])
    p.add_argument("--alpha", type=float, default=0.3, help="manipulation strength (positive = towards real)")
    p.add_argument("--classifier", type=Path, default=None, help="saved direction; default: fit on --data")
    p.add_argument("--data", type=Path, default=None, help="built-in data set to fit the direction on")
    p.add_argument("--encode-steps", type=int, default=100, help="DDIM steps of the inversion to x_T")
    p.add_argument("--decode-steps", type=int, default=100, help="DDIM steps of the decoding (best: = encode)")
    fixed_point_arg(p)
    p.add_argument("--batch-size", type=int, default=16)
    device_arg(p)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, PermissionError) as err:
        print(f"usdiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
