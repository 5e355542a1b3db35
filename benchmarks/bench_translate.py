"""Benchmark of the translation methods: seconds per image, side by side, on the shipped checkpoint.

Each method translates the same batch of simulated 64-px images (median of repeats) with its default
knobs, read from the fitted files beside ``assets/diffae_tiny.pt``; the ratio is to the CycleGAN
baseline (one generator pass). The DiffAE methods cost one UNet pass per DDIM step: the classifier
and transport methods invert and decode (``encode_steps + decode_steps``), SDEdit runs only the steps
below ``t0``, the guided method adds a small segmenter's forward and backward pass per step.

Run: ``python benchmarks/bench_translate.py [--batch 16] [--repeats 3] [--threads N]``; prints a Markdown table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from timing import machine, median_time

from usdiff.train import load_model
from usdiff.translate import METHODS, resolve_method

CKPT = Path(__file__).resolve().parents[1] / "assets" / "diffae_tiny.pt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16, help="images per call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per method (median)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(CKPT, device="cpu")
    x = torch.rand(args.batch, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    labels = np.zeros((args.batch, 64, 64), np.int64)
    rows = {}
    for name in METHODS:
        method = resolve_method(name, CKPT, progress=False)
        extra = {"labels": labels} if name == "guided" else {}
        seconds = median_time(lambda m=method, e=extra: m.translate(model, x, generator=torch.Generator().manual_seed(0),
                                                                    **e), args.repeats, warmup=1)
        rows[name] = (seconds / args.batch, repr(method))
    base = rows["cyclegan"][0]
    print(f"# Translation, seconds per image (batch {args.batch}, median of {args.repeats}; {torch.get_num_threads()} "
          f"threads; {machine()})\n")
    print("| method | s / image | x CycleGAN | knobs |\n|---|---|---|---|")
    for name, (s, knobs) in rows.items():
        print(f"| {name} | {s:.4f} | {s / base:.0f} | `{knobs}` |")


if __name__ == "__main__":
    main()
