"""Fit the DiffAE translation methods of a checkpoint once and keep them beside it.

Writes ``NAME_transport.pt``, ``NAME_sdedit.pt`` and ``NAME_guided.pt`` next to ``NAME.pt`` (what
``usdiff translate --method ...`` and ``usdiff downstream`` look up), fitted on the unpaired train
split of the built-in data set (sim codes of one half of the phantoms, real-like codes of the other;
the guided method's guide segmenter on the sim half and its labels). The classifier method's
``NAME_classifier.pt`` comes from ``usdiff direction fit``; the CycleGAN from ``scripts/train_cyclegan.py``.

    python scripts/fit_methods.py --ckpt assets/diffae_tiny.pt      # about 55 min on 2 CPU cores

The guide segmenter works on pixels and does not depend on the DiffAE: after retraining a checkpoint,
``--guide-from OLD_guided.pt`` keeps an already trained guide and refits only the code transport
(a few minutes instead of about 50).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from usdiff.latent import encode_images
from usdiff.train import load_model
from usdiff.translate import (
    GuidedTranslator,
    default_method_path,
    get_method,
    load_method,
    save_method,
    unpaired_training_data,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=Path("assets/diffae_tiny.pt"), help="DiffAE checkpoint")
    p.add_argument("--data", type=Path, default=Path("data/builtin"), help="built-in data set")
    p.add_argument("--n-fit", type=int, default=4000, help="training images (half per domain)")
    p.add_argument("--methods", nargs="*", default=["transport", "sdedit", "guided"], help="methods to fit")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--guide-from", type=Path, default=None,
                   help="take the guided method's guide segmenter from this saved guided method instead of training one")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    guide = None
    if args.guide_from is not None:   # read it first: the file may be one that this run overwrites
        donor = load_method(args.guide_from)
        if not isinstance(donor, GuidedTranslator):
            p.error(f"--guide-from {args.guide_from} holds the {donor.name!r} method, not 'guided'")
        guide = donor.guide_
    t0 = time.perf_counter()
    model = load_model(args.ckpt, device="cpu")
    data = unpaired_training_data(args.data, model.config.image_size, n=args.n_fit, progress=True)
    z_sim = encode_images(model, data["sim"], progress=True)
    z_real = encode_images(model, data["real"], progress=True)
    for name in args.methods:
        method = get_method(name).fit_codes(z_sim, z_real, fingerprint=model.fingerprint())
        if name == "guided" and guide is not None:
            if guide.size != model.config.image_size:
                p.error(f"the guide of --guide-from works at {guide.size} px, the model at {model.config.image_size} px")
            method.guide_ = guide
        elif name == "guided":
            method.fit_guide(data["sim"], data["sim_labels"], progress=True)
        out = save_method(default_method_path(args.ckpt, name), method, overwrite=args.overwrite,
                          checkpoint_name=args.ckpt.name, n_sim=len(z_sim), n_real=len(z_real))
        print(f"{name}: wrote {out}", flush=True)
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
