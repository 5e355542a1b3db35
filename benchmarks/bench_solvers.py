"""Benchmark of the samplers of ``DiffAE.decode``: DDIM against DPM-Solver++(2M), side by side.

On the shipped checkpoint (``assets/diffae_tiny.pt``) and held-out test images of the quick data set
(``USDIFF_FAST=1 usdiff data ensure`` writes ``data/builtin_fast``):

1. Reconstruction PSNR (dB, peak-to-peak 2: ``10 log10(4 / mse)``, mean over images): every image
   is encoded once (``encode`` and plain DDIM ``encode_stochastic`` at ``--encode-steps``), then
   decoded with each solver at each step count.
2. Samples: random ``x_T ~ N(0, I)`` with the semantic codes of test images, decoded with each
   solver and compared with a ``--ref-steps`` DDIM decoding of the same ``(x_T, z_sem)`` (mean abs
   difference, images in [-1, 1]): how far each is from the converged ODE solution.

Each step count is one network pass per step for either solver (DPM-Solver++(2M) reuses the previous
step's prediction); seconds per image are the median over the timed chunks of ``--chunk`` images
(both parts).

Run: ``python benchmarks/bench_solvers.py [--images 32] [--samples 16] [--steps 10 20 50] [--threads N]``;
prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from timing import machine

from usdiff.data import BuiltinDataset
from usdiff.model.io import load_model

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "assets" / "diffae_tiny.pt"
DATA = ROOT / "data" / "builtin_fast"
SOLVERS = ("ddim", "dpmpp2m")


def test_images(root: Path, n: int, size: int) -> torch.Tensor:
    """`n` test images, half simulated and half real (``domain="both"`` lists all sim, then all real)."""
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: run `USDIFF_FAST=1 python -m usdiff.cli data ensure` first")
    ds = BuiltinDataset(root, split="test", domain="both", size=size)
    per = len(ds.ids)
    if not 2 <= n <= 2 * per:
        raise SystemExit(f"the test split has {per} images per domain: ask for 2 to {2 * per}")
    idx = list(range(n // 2)) + list(range(per, per + n - n // 2))
    return torch.stack([ds[k][0] for k in idx])


def chunked_decode(model, x_T, z, steps, solver, chunk, seconds):
    """Decode in chunks of `chunk` images, appending each chunk's seconds per image to `seconds`."""
    out = []
    for i in range(0, len(x_T), chunk):
        t0 = time.perf_counter()
        out.append(model.decode(x_T[i:i + chunk], z[i:i + chunk], steps=steps, solver=solver))
        seconds.append((time.perf_counter() - t0) / len(out[-1]))
    return torch.cat(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).double().pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(4.0 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=32, help="test images to reconstruct")
    p.add_argument("--samples", type=int, default=16, help="random x_T to decode (with those images' z_sem)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50], help="decoding steps")
    p.add_argument("--encode-steps", type=int, default=100, help="plain DDIM inversion steps")
    p.add_argument("--ref-steps", type=int, default=200, help="DDIM steps of the samples' reference")
    p.add_argument("--chunk", type=int, default=8, help="images per timed decode call")
    p.add_argument("--data", type=Path, default=DATA, help="the quick data set")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(CKPT, device="cpu")
    x = test_images(args.data, args.images, model.config.image_size)
    t_start = time.perf_counter()
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, steps=args.encode_steps)
    g = torch.Generator().manual_seed(0)
    zs = z[torch.arange(args.samples) % len(z)]
    noise = torch.randn((args.samples, *x.shape[1:]), generator=g)
    reference = chunked_decode(model, noise, zs, args.ref_steps, "ddim", args.chunk, [])

    rows = []
    for steps in args.steps:
        for solver in SOLVERS:
            seconds: list[float] = []
            rec = chunked_decode(model, x_T, z, steps, solver, args.chunk, seconds)
            samples = chunked_decode(model, noise, zs, steps, solver, args.chunk, seconds)
            rows.append((steps, solver, psnr(rec, x), float((samples - reference).abs().mean()),
                         statistics.median(seconds)))
    total = time.perf_counter() - t_start

    print(f"# Decoding solvers on `{CKPT.name}` ({model.scheduler}); {args.images} test images of "
          f"{args.data.name}, encoded by plain DDIM inversion at {args.encode_steps} steps; {args.samples} random "
          f"x_T against {args.ref_steps}-step DDIM ({torch.get_num_threads()} threads; {machine()}; {total:.0f} s)\n")
    print("| steps | solver | recon PSNR (dB) | samples: mean abs diff to ref | s / image |\n|---|---|---|---|---|")
    for steps, solver, db, mad, s in rows:
        print(f"| {steps} | {solver} | {db:.2f} | {mad:.4f} | {s:.4f} |")


if __name__ == "__main__":
    main()
