"""Train the CycleGAN baseline ``assets/diffae_tiny_cyclegan.pt`` on the unpaired built-in train split.

Simulated images of one half of the train phantoms and real-like images of the other half (64 px,
the DiffAE's size), so no phantom is seen in both domains. The learning rate decays linearly over
the second half of ``--steps``; ``--minutes`` stops earlier at that wall time.

    python scripts/train_cyclegan.py --steps 12000 --minutes 50 --threads 1   # about 50 min on one CPU core
"""
from __future__ import annotations

import argparse
import time

import torch

from usdiff.translate import get_method, save_method, unpaired_training_data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="data/builtin", help="built-in data set")
    p.add_argument("--out", default="assets/diffae_tiny_cyclegan.pt", help="fitted method file to write")
    p.add_argument("--steps", type=int, default=12_000, help="training steps (sets the learning-rate decay)")
    p.add_argument("--minutes", type=float, default=None, help="stop at this wall time")
    p.add_argument("--batch-size", type=int, default=4, help="images per domain and step")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    p.add_argument("--overwrite", action="store_true", help="replace --out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = unpaired_training_data(args.data, 64, n=None, progress=True)
    print(f"unpaired training images: {len(data['sim'])} sim, {len(data['real'])} real-like", flush=True)
    method = get_method("cyclegan", train_steps=args.steps, train_batch_size=args.batch_size, minutes=args.minutes)
    t0 = time.perf_counter()
    method.fit(None, data["sim"], data["real"], progress=True, seed=args.seed)
    log = method.log_
    minutes = (time.perf_counter() - t0) / 60
    path = save_method(args.out, method, overwrite=args.overwrite, steps_done=log["steps"],
                       minutes=round(minutes, 1), threads=args.threads,
                       loss_g_last=float(sum(log["loss_g"][-200:]) / len(log["loss_g"][-200:])))
    print(f"trained {log['steps']} steps in {minutes:.1f} min ({args.threads} threads); wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
