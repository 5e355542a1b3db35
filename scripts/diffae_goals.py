"""Does a DiffAE's z_sem carry the image? The goals of the stronger-model work, measured with the critics.

    python scripts/diffae_goals.py --ckpt assets/diffae_tiny.pt          # about 3 min on 2 CPU cores
    python scripts/diffae_goals.py --prior gaussian     # random x_T ~ N(0, I), the study's protocol

Prints, for held-out test phantoms of the built-in data set, each goal, its target and the value
(see usdiff.experiments.diffae_goals); --json prints the numbers only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from usdiff.experiments import GoalSettings, diffae_goals
from usdiff.metrics.critics import load_critics, nearest_critic_size
from usdiff.train import load_model

GOALS = [  # key, target text, test
    ("domain_kept_sim", ">= 0.95", lambda v: v >= 0.95),
    ("domain_kept_real", ">= 0.95", lambda v: v >= 0.95),
    ("dice_aorta", ">= 0.6", lambda v: v >= 0.6),
    ("one_aorta_rate", ">= 0.90", lambda v: v >= 0.9),
    ("fd_ratio", "<= 0.20", lambda v: v <= 0.2),
    ("psnr_100", ">= 40 dB", lambda v: v >= 40),
    ("z_swap", "far above 0.005-0.02", lambda v: v >= 0.2),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"), help="checkpoint")
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="built-in data set")
    p.add_argument("--n", type=int, default=400, help="held-out images (half sim, half real-like)")
    p.add_argument("--prior", default="data", choices=["data", "gaussian"],
                   help="random x_T for goal 1: the per-pixel Gaussian x_t has at the first DDIM step "
                        "(DiffAE.random_x_T), or N(0, I) as in the study")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    model = load_model(args.ckpt)
    critics = load_critics(nearest_critic_size(model.config.image_size))
    r = diffae_goals(model, args.data, critics, GoalSettings(n=args.n, prior=args.prior), progress=not args.json)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{args.ckpt}: {r['n']} held-out test images, critics at {critics.size} px, random x_T prior "
          f"'{args.prior}'")
    for key, target, test in GOALS:
        print(f"  {key:18s} {r[key]:8.3f}   goal {target:22s} {'met' if test(r[key]) else 'not met'}")
    print(f"  texture kept (a second judge, no goal): sim codes {r['texture_kept_sim']:.3f}, real-like codes "
          f"{r['texture_kept_real']:.3f} (fine_texture inside the sector vs the midpoint {r['texture_cut']:.4f} "
          "of the held-out medians)")
    print(f"  (aorta Dice of the held-out images themselves: {r['dice_aorta_data']:.3f}; FD-US samples "
          f"{r['fd_samples']:.2f} vs sim-real gap {r['fd_gap']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
