"""Train the independent ultrasound critics and write assets/critics_64.pt and assets/critics_128.pt.

    python scripts/train_critics.py                       # the shipped weights (about 20 min on 2 CPU cores)
    python scripts/train_critics.py --out /tmp/critics --steps-scale 0.1   # a quick trial

Trains on the built-in data set's *train* split (made if missing): one anatomy segmenter on
real-like images at 64 px (shared by both sizes: at 128 px its logits are resized), and one domain
critic per size (64, 128). Then reports, on the held-out *test* split (and *val* for the
reference set): the critic's accuracy, the segmenter's per-class Dice on real-like and simulated
images (the domain gap), and the US-feature Fréchet distance floor (real-like vs real-like) and
gap (sim vs real-like) at n = 1,200. The report is printed and stored inside each weights file
(``load_critics(size).report``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from usdiff.data import ensure_dataset, load_builtin_arrays
from usdiff.metrics.critic_training import (
    CRITIC_TRAINING,
    TrainSettings,
    train_domain_critic,
    train_segmenter,
)
from usdiff.metrics.critics import CRITIC_SIZES, Critics, anatomy_report, load_critics
from usdiff.metrics.frechet import fd_from_features, kid

SEG_SIZE = 64


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="built-in data set (made if missing)")
    p.add_argument("--out", type=Path, default=Path("assets"), help="folder for critics_{64,128}.pt")
    p.add_argument("--overwrite", action="store_true", help="replace existing weights files")
    p.add_argument("--seed", type=int, default=0, help="seed of every training run")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (trial runs)")
    p.add_argument("--n-eval", type=int, default=1200, help="images per set for the FD floor/gap")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = [args.out / f"critics_{s}.pt" for s in CRITIC_SIZES]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        print(f"train_critics: error: {', '.join(existing)} exist; pass --overwrite to replace them", file=sys.stderr)
        return 2
    steps = {"seg": 1500, "critic64": 800, "critic128": 800}
    steps = {k: max(10, int(v * args.steps_scale)) for k, v in steps.items()}
    ensure_dataset(args.data, n=12_000, size=128, seed=0)
    t_start = time.perf_counter()

    data = {s: {split: load_builtin_arrays(args.data, split, s) for split in ("train", "val", "test")}
            for s in CRITIC_SIZES}
    print(f"loaded train/val/test at {CRITIC_SIZES} px in {time.perf_counter() - t_start:.0f} s", flush=True)

    train = data[SEG_SIZE]["train"]
    seg_training = TrainSettings(train_steps=steps["seg"], batch_size=16, width=12, seed=args.seed)
    seg, seg_log = train_segmenter(train["real"], train["labels"], SEG_SIZE, seg_training, desc="anatomy segmenter")
    print(f"segmenter: {steps['seg']} steps in {seg_log['seconds']:.0f} s, final loss "
          f"{np.mean(seg_log['loss'][-50:]):.3f}", flush=True)

    width = {64: 16, 128: 8}
    for size, target in zip(CRITIC_SIZES, targets):
        tr = data[size]["train"]
        training = replace(CRITIC_TRAINING, train_steps=steps[f"critic{size}"], width=width[size], seed=args.seed)
        critic, log = train_domain_critic(tr["sim"], tr["real"], size, training)
        print(f"domain critic {size}px: {log['steps']} steps in {log['seconds']:.0f} s", flush=True)
        critics = Critics(size, critic, seg)
        critics.report = {"train": {"seed": args.seed, "steps": steps, "critic_seconds": round(log["seconds"], 1),
                                    "segmenter_seconds": round(seg_log["seconds"], 1),
                                    "segmenter_size": SEG_SIZE, "critic_width": width[size], "segmenter_width": 12}}
        critics.save(target, overwrite=True)
        critics = load_critics(size, path=target)  # judge with exactly the shipped (fp16-stored) weights
        critics.report.update(held_out_report(critics, data[size], args.n_eval))
        critics.save(target, overwrite=True)
        print(f"== {target} ({target.stat().st_size / 1e6:.2f} MB)")
        print(json.dumps(critics.report, indent=1), flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


def held_out_report(critics: Critics, data: dict, n_eval: int) -> dict:
    test, val = data["test"], data["val"]
    vr = (-1.0, 1.0)
    p_sim, p_real = critics.p_real(test["sim"], vr), critics.p_real(test["real"], vr)
    acc = float(np.mean(np.concatenate([p_sim < 0.5, p_real >= 0.5])))
    real_scores = anatomy_report(critics.segment(test["real"], vr), test["labels"].numpy())
    sim_scores = anatomy_report(critics.segment(test["sim"], vr), test["labels"].numpy())
    n = min(n_eval, len(test["real"]), len(val["real"]))
    f_ref = critics.features(val["real"][:n], vr)
    f_real, f_sim = critics.features(test["real"][:n], vr), critics.features(test["sim"][:n], vr)
    m = min(n, 1000)
    return {
        "held_out": f"test split ({len(test['real'])} phantoms); FD reference: val real-like",
        "domain_accuracy": acc, "p_real_sim_mean": float(p_sim.mean()), "p_real_real_mean": float(p_real.mean()),
        "dice_real": {k: round(v, 4) for k, v in real_scores["dice"].items()},
        "dice_sim": {k: round(v, 4) for k, v in sim_scores["dice"].items()},
        "dice_mean_real": real_scores["dice_mean"], "dice_mean_sim": sim_scores["dice_mean"],
        "one_aorta_rate_real": real_scores["one_aorta_rate"], "one_aorta_rate_sim": sim_scores["one_aorta_rate"],
        "fd_n": n, "fd_floor": fd_from_features(f_real, f_ref), "fd_gap": fd_from_features(f_sim, f_ref),
        "kid_floor": kid(f_real, f_ref, subset_size=m)[0], "kid_gap": kid(f_sim, f_ref, subset_size=m)[0],
    }


if __name__ == "__main__":
    sys.exit(main())
