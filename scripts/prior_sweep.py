"""Does z_sem keep its domain when random x_T is decoded with other samplers? Goal 1 of the
stronger-model work under each (x_T prior, DDIM steps, eta), judged by the domain critic and by
fine_texture (benchmarks/README.md, "the fix holds at the goal's 20 steps only").

    python scripts/prior_sweep.py --ckpt assets/diffae_tiny_eps.pt     # the table's rows (n = 100), about 35 min on 2 CPU cores
    python scripts/prior_sweep.py --n 50 --grid data:100:0 gaussian:100:0

For the first `n` held-out phantoms of each domain: their z_sem decoded from random x_T (seed 0),
then the fraction the critic puts in the source's domain and the fraction whose fine texture lies on
the source's side of the midpoint between the held-out sim and real-like medians.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from usdiff.data import BuiltinDataset
from usdiff.experiments import fine_texture
from usdiff.metrics.critics import load_critics, nearest_critic_size
from usdiff.train import load_model

GRID = ["data:20:0", "data:20:0.5", "data:20:1", "data:50:0", "gaussian:50:0", "data:100:0", "gaussian:100:0"]


def parse_setting(text: str) -> tuple[str, int, float]:
    try:
        prior, steps, eta = text.split(":")
        setting = prior, int(steps), float(eta)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PRIOR:STEPS:ETA such as data:20:0, got {text!r}") from None
    if prior not in ("data", "gaussian") or setting[1] < 1 or not 0 <= setting[2] <= 1:
        raise argparse.ArgumentTypeError(f"PRIOR must be data or gaussian, STEPS >= 1, 0 <= ETA <= 1: {text!r}")
    return setting


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"), help="checkpoint")
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="built-in data set")
    p.add_argument("--n", type=int, default=100, help="held-out images per domain")
    p.add_argument("--grid", nargs="+", type=parse_setting, default=[parse_setting(g) for g in GRID],
                   metavar="PRIOR:STEPS:ETA", help="samplers to compare")
    args = p.parse_args(argv)
    model = load_model(args.ckpt)
    critics = load_critics(nearest_critic_size(model.config.image_size))
    size = model.config.image_size
    sims, reals = (BuiltinDataset(args.data, split="test", domain=d, size=size) for d in ("sim", "real"))
    n = min(args.n, len(sims))
    x = torch.stack([sims[i][0] for i in range(n)] + [reals[i][0] for i in range(n)])
    sector = (x.mean(0)[0] > -0.9).numpy()
    tex_data = fine_texture(x, sector)
    cut = (np.median(tex_data[:n]) + np.median(tex_data[n:])) / 2
    print(f"{args.ckpt}: {n} held-out images per domain; fine_texture medians sim {np.median(tex_data[:n]):.4f}, "
          f"real-like {np.median(tex_data[n:]):.4f}, midpoint {cut:.4f}")
    print(f"{'prior':9s} {'steps':>5s} {'eta':>4s}   critic kept sim / real   texture kept sim / real   "
          "median texture of real-like-code samples")
    with torch.no_grad():
        z = model.encode(x.to(model.device))
        for prior, steps, eta in args.grid:
            x_T = model.random_x_T(2 * n, steps=steps, prior=prior, generator=torch.Generator().manual_seed(0))
            out = model.decode(x_T.to(model.device), z, steps=steps, eta=eta,
                               generator=torch.Generator().manual_seed(1)).cpu()
            tex = fine_texture(out, sector)
            p_real = critics.p_real(((out + 1) / 2).clamp(0, 1))
            print(f"{prior:9s} {steps:5d} {eta:4.1f}   {np.mean(p_real[:n] < 0.5):10.2f} / {np.mean(p_real[n:] > 0.5):.2f}"
                  f"   {np.mean(tex[:n] < cut):11.2f} / {np.mean(tex[n:] > cut):.2f}"
                  f"   {np.median(tex[n:]):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
