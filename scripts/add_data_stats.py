"""Give a checkpoint written before data statistics were saved the per-pixel mean and std of its
training images, for ``DiffAE.random_x_T(prior="data")`` (what the Trainer now stores itself).

    python scripts/add_data_stats.py assets/diffae_tiny_eps.pt --data data/builtin --in-place

The images are those the Trainer reads (usdiff.train.training_dataset: the train split of a built-in
data set, both domains), 2,048 of them evenly spaced, as the Trainer takes them. Without
--in-place the result goes to --out; an existing file is never replaced silently.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from usdiff.model import DiffAE, DiffAEConfig
from usdiff.train import dataset_images, training_dataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt", type=Path, help="training checkpoint or pretrained file")
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="the data set it was trained on")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="write the result here (must not exist)")
    out.add_argument("--in-place", action="store_true", help="add the statistics to CKPT itself")
    args = p.parse_args(argv)
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    if "config" not in ckpt:
        p.error(f"{args.ckpt} is not a usdiff checkpoint (no 'config')")
    if ckpt.get("data_stats") is not None:
        p.error(f"{args.ckpt} already has data statistics; nothing to do")
    dest = args.ckpt if args.in_place else args.out
    if not args.in_place and dest.exists():
        p.error(f"{dest} exists; choose another --out")
    config = DiffAEConfig.from_dict(ckpt["config"])
    model = DiffAE.from_config(config).set_data_stats(dataset_images(training_dataset(args.data, config.image_size)))
    ckpt["data_stats"] = model.data_stats()
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(dest)
    s = ckpt["data_stats"]
    print(f"wrote {dest}: per-pixel mean {s['mean'].mean():.3f} (range {s['mean'].min():.3f}..{s['mean'].max():.3f}), "
          f"std {s['std'].mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
