"""How far must the study's classifier method move z_sem before a checkpoint's images change?

    python scripts/calibrate_alpha.py --ckpt assets/diffae_tiny.pt      # about 4 min on 2 CPU cores

Encodes held-out *simulated* test images of the built-in data set once (DDIM inversion), moves
their z_sem along the realness direction saved beside the checkpoint (``NAME_classifier.pt``) by each
alpha and decodes with the same x_T. For every alpha it prints, judged by the independent critics:
the mean pixel change against the reconstruction (alpha = 0; mean |delta| on [-1, 1], what a
slider shows), the domain critic's P(real) of the decoded images, the segmenter's aorta Dice against
the source label map and the share with exactly one segmented aorta.

The suggested default is the smallest alpha of the grid at which the images visibly change (mean
|delta| >= --min-change) and the critic calls most of them real (mean P(real) >= 0.5): the rule
behind ``usdiff translate --alpha`` and the manipulation slider's range.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from usdiff.data import BuiltinDataset
from usdiff.experiments import DDIMSteps, manipulation_sweep, sweep_metrics
from usdiff.metrics.critics import load_critics, nearest_critic_size
from usdiff.train import load_model
from usdiff.translate import default_method_path, resolve_method

GRID = (-0.75, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


def suggest(alphas, change, p_real, min_change: float) -> float | None:
    """The smallest positive alpha with ``change >= min_change`` and ``p_real >= 0.5`` (None if none)."""
    ok = [a for a, c, p in zip(alphas, change, p_real) if a > 0 and c >= min_change and p >= 0.5]
    return min(ok) if ok else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"), help="DiffAE checkpoint")
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="built-in data set")
    p.add_argument("--n", type=int, default=48, help="held-out simulated test images")
    p.add_argument("--alphas", type=float, nargs="+", default=list(GRID), help="steps to try (0 is added)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps each way")
    p.add_argument("--min-change", type=float, default=0.05, help="mean |delta| that counts as visible")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be at least 1, got {args.n}")
    direction_file = default_method_path(args.ckpt, "classifier")
    if not direction_file.exists():
        p.error(f"{direction_file} is missing: fit it with `usdiff direction fit --ckpt {args.ckpt} "
                f"--data {args.data} --out {direction_file}`")
    model = load_model(args.ckpt)
    critics = load_critics(nearest_critic_size(model.config.image_size))
    direction = resolve_method("classifier", args.ckpt, progress=False).classifier_
    size = model.config.image_size
    sims = BuiltinDataset(args.data, split="test", domain="sim", size=size)
    n = min(args.n, len(sims))
    x = torch.stack([sims[i][0] for i in range(n)])
    labels = np.stack([sims.label_map(i) for i in range(n)])
    alphas = sorted({0.0, *args.alphas})
    sweep = manipulation_sweep(model, x, {"bce": direction}, alphas, DDIMSteps(args.steps, args.steps))
    ims = sweep["images"]["bce"]
    recon = ims[alphas.index(0.0)]
    change = [float((im - recon).abs().mean()) for im in ims]
    m = sweep_metrics(model, sweep, direction, labels, critics=critics)["bce"]
    p_real = [float(v) for v in m["p_critic"]]
    print(f"{args.ckpt}: {n} held-out simulated test images, {args.steps} DDIM steps each way, "
          f"direction {direction_file.name}, critics at {critics.size} px")
    print(f"{'alpha':>6s} {'mean |delta|':>12s} {'critic P(real)':>14s} {'aorta Dice':>10s} {'one aorta':>9s}")
    for k, a in enumerate(alphas):
        print(f"{a:6.2f} {change[k]:12.3f} {p_real[k]:14.2f} {m['seg_dice_aorta'][k]:10.2f} {m['seg_one_aorta'][k]:9.2f}")
    best = suggest(alphas, change, p_real, args.min_change)
    print(f"suggested alpha: {best}" if best is not None else
          f"no alpha of the grid changes the images by >= {args.min_change} and is called real by the critic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
