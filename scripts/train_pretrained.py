"""Train the shipped checkpoint ``assets/diffae_tiny.pt`` (the `tiny` preset with the `vzsnr` recipe).

The `tiny` preset (64 px, 1.55 M parameters, batch 16, EMA 0.999) is trained on the *train split* of
the default built-in data set (``seed=0``, 12,000 phantoms, sim + real-like twins), so that the val/test
splits the notebooks use stay held out. The images are rendered in memory at 128 px, as ``usdiff data
generate`` writes them, and resized to 64 px. At the end the EMA weights are exported in fp16 and the
held-out reconstruction error is printed (``--eval-only`` prints just that, for an existing ``--export``).

    python scripts/train_pretrained.py --overwrite      # the shipped checkpoint: vzsnr recipe, 6,000 steps

The `vzsnr` recipe predicts v on a schedule rescaled to zero terminal SNR and samples from t = T - 1
(Lin et al. 2024); 6,000 steps take 84 min on 2 idle CPU cores (0.84 s per step, benchmarks/README.md);
add ``--minutes 150`` to stop at 2.5 h on a slower machine. The earlier eps checkpoint
``assets/diffae_tiny_eps.pt`` (kept for notebook 03's signal-leak section) is the `fast` recipe:

    python scripts/train_pretrained.py --recipe fast --steps 8800 --export assets/diffae_tiny_eps.pt --overwrite

The recipes train in fp32 and draw t and the noise from one CPU generator on every device, so a GPU
runs the same recipe, only sooner (the loss curves agree, benchmarks/README.md); ``--resume``
continues a run exactly, on any device.

Recipes are compared at equal *wall time*: ``--minutes M`` trains until M minutes have passed (``--steps``
is then only an upper bound) and ``--snapshot-minutes 15 30 60`` writes the EMA weights at those marks to
``OUT/ema_015min.pt`` ... so that one long run also gives its short-run points:

    python scripts/train_pretrained.py --recipe study --minutes 15 --snapshot-minutes 15 --threads 1 \
        --out runs/study15 --export runs/study15/diffae_tiny_study.pt

``--init CKPT`` starts from a checkpoint's weights instead of random ones (fine-tuning, as the
equal-time comparison of the recipes in benchmarks/README.md does).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from usdiff.data.generate import assign_splits, item_seed, render_item
from usdiff.experiments import reconstruction_error
from usdiff.model import DiffAE, DiffAEConfig, get_config
from usdiff.model.config import SCHEDULE_CHOICES
from usdiff.train import Trainer, available_cpus, cpu_has_fast_bf16, load_model, save_pretrained
from usdiff.utils import get_device

# The named recipes of benchmarks/README.md ("Training recipes at equal wall time").
#   study: the tiny preset as the study would train it (fp32, uniform eps loss, lr 2e-4);
#   fast:  bf16 autocast on the CPU (where it is native: emulated bf16 is ~17x slower), Min-SNR-5 weighting (Hang et al. 2023), lr 1e-3 after a 200-step
#          linear warm-up; the weighting moves the loss towards the noisy steps, where only z_sem can
#          tell the decoder what the image is.
#   Both train in fp32 on every device (amp=False), so that a run on a GPU is the CPU recipe, only
#   sooner: t and the noise are drawn by the same CPU generator on both.
#   vzsnr: the fast recipe's optimisation with the model's output and schedule changed as Lin et al.
#          ("Common Diffusion Noise Schedules and Sample Steps are Flawed", WACV 2024) prescribe:
#          v-prediction (Salimans & Ho 2022) with its plain loss, zero terminal SNR and "trailing"
#          sampling steps, so that sampling starts from pure noise at t = T - 1 and no trace of the
#          image in x_T can tell the decoder what to draw: z_sem has to.
RECIPES = {
    "study": dict(lr=2e-4, loss_weighting="uniform", warmup_steps=0, bf16_cpu=False, amp=False),
    "fast": dict(lr=1e-3, loss_weighting="min_snr", warmup_steps=200, bf16_cpu=cpu_has_fast_bf16(), amp=False),
    "vzsnr": dict(lr=1e-3, loss_weighting="uniform", warmup_steps=200, bf16_cpu=cpu_has_fast_bf16(), amp=False),
}
# model settings a recipe changes (DiffAEConfig fields)
RECIPE_MODEL = {"vzsnr": dict(prediction="v", zero_terminal_snr=True, timestep_spacing="trailing")}
# DiffAEConfig fields of the diffusion process, not of the weights: --init may change them
PROCESS_FIELDS = ("schedule", "T", "prediction", "zero_terminal_snr", "timestep_spacing", "dropout")


def init_from(model: DiffAE, path: str) -> DiffAE:
    """Copy the weights of the checkpoint or pretrained file at `path` into `model` (same architecture;
    the output parameterisation and schedule may differ: fine-tuning, as Lin et al. 2024 did)."""
    source = load_model(path, device="cpu")
    for field in (f.name for f in dataclasses.fields(DiffAEConfig)):
        if field in PROCESS_FIELDS:
            continue
        if getattr(source.config, field) != getattr(model.config, field):
            raise ValueError(f"--init {path} has {field}={getattr(source.config, field)!r} but the model being "
                             f"trained has {getattr(model.config, field)!r}: choose a matching --config")
    model.load_state_dict(source.state_dict())
    return model


def render_workers() -> int:
    """Processes that render the phantoms: all CPUs up to 16 (the result does not depend on it)."""
    return min(16, available_cpus())


def render_split(split: str, n: int, seed: int, size: int, image_size: int, limit: int | None = None):
    """``(x, domain)``: images ``(2N, 1, image_size, image_size)`` in [-1, 1] (all sim, then all real)."""
    names = assign_splits(n, seed)
    seeds = [item_seed(seed, i) for i, s in enumerate(names) if s == split][:limit]
    with ProcessPoolExecutor(render_workers()) as pool:
        items = list(pool.map(render_item, seeds, [size] * len(seeds), chunksize=64))
    sim = np.stack([it[0] for it in items])
    real = np.stack([it[1] for it in items])
    x = torch.from_numpy(np.concatenate([sim, real])).float()[:, None] / 255.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    domain = torch.cat([torch.zeros(len(seeds)), torch.ones(len(seeds))]).long()
    return x * 2 - 1, domain


def fit_for_minutes(trainer: Trainer, max_steps: int, minutes: float, snapshots: list[float], t0: float,
                    chunk: int = 25, report_every: int = 100) -> None:
    """Train in chunks of `chunk` steps until `minutes` have passed since `t0` (or `max_steps` are done),
    writing the EMA weights at each snapshot mark (so a mark is missed by at most one chunk)."""
    pending = sorted(snapshots)
    while trainer.step < max_steps:
        elapsed = (time.perf_counter() - t0) / 60
        while pending and elapsed >= pending[0]:
            path = save_pretrained(trainer, trainer.out_dir / f"ema_{math.floor(pending.pop(0)):03d}min.pt")
            print(f"{elapsed:.1f} min, step {trainer.step}: wrote {path}", flush=True)
        if elapsed >= minutes:
            break
        trainer.fit(min(chunk, max_steps - trainer.step))
        if trainer.step % report_every == 0:
            recent = trainer.history[-report_every:]
            print(f"{(time.perf_counter() - t0) / 60:.1f} min, step {trainer.step}, loss {sum(recent) / len(recent):.4f}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000,
                        help="optimizer steps in all (default: 6000, the shipped checkpoint's: 84 min on 2 CPU cores)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="vzsnr",
                        help="training recipe (see RECIPES; default: vzsnr, the shipped checkpoint's)")
    parser.add_argument("--config", choices=("tiny", "small"), default="tiny",
                        help="model preset (small: 25.8 M parameters, for a GPU; too large for assets/)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this wall time (training only); --steps is then an upper bound")
    parser.add_argument("--snapshot-minutes", type=float, nargs="*", default=[],
                        help="write the EMA weights to OUT/ema_MMMmin.pt when these minutes have passed")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    parser.add_argument("--n", type=int, default=12_000, help="phantoms of the built-in data set (train split used)")
    parser.add_argument("--schedule", choices=SCHEDULE_CHOICES, default="cosine", help="noise schedule")
    parser.add_argument("--seed", type=int, default=0, help="seed of the built-in data set")
    parser.add_argument("--out", default="runs/pretrained", help="run folder (ckpt.pt, samples/)")
    parser.add_argument("--export", default="assets/diffae_tiny.pt", help="fp16 EMA checkpoint to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --export file (refused otherwise)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--eval-n", type=int, default=64, help="held-out test phantoms for the error report (0: no report)")
    parser.add_argument("--eval-steps", type=int, default=100, help="DDIM steps each way for the error report")
    parser.add_argument("--eval-fixed-point-iters", type=int, default=0,
                        help="also report reconstructions with this fixed-point refinement of the inversion")
    parser.add_argument("--eval-only", action="store_true", help="skip training; report the error of --export")
    parser.add_argument("--init", default=None,
                        help="start from the weights of this checkpoint (same architecture), e.g. to fine-tune "
                             "assets/diffae_tiny.pt with another recipe; the optimizer starts afresh")
    parser.add_argument("--resume", action="store_true",
                        help="continue OUT/ckpt.pt exactly (--steps stays the total), e.g. to bring two runs to equal steps")
    args = parser.parse_args()
    if not args.eval_only and Path(args.export).exists() and not args.overwrite:
        parser.error(f"--export {args.export} exists: pass --overwrite to replace it, or another --export")
    torch.set_num_threads(args.threads)
    device = get_device()

    model_cfg, train_cfg = get_config(args.config)
    model_cfg.schedule = args.schedule
    train_cfg.total_steps = args.steps
    for key, value in RECIPES[args.recipe].items():
        setattr(train_cfg, key, value)
    model_cfg = dataclasses.replace(model_cfg, **RECIPE_MODEL.get(args.recipe, {}))
    if args.init is not None and args.resume:
        parser.error("--init starts a new run from given weights; --resume continues OUT/ckpt.pt: pass one")
    if args.lr is not None:
        train_cfg.lr = args.lr
    if not args.eval_only:
        t0 = time.perf_counter()
        x, domain = render_split("train", args.n, args.seed, 128, model_cfg.image_size)
        print(f"rendered {len(x)} training images in {time.perf_counter() - t0:.0f} s", flush=True)

        torch.manual_seed(train_cfg.seed)
        model = DiffAE.from_config(model_cfg)
        if args.init is not None:
            init_from(model, args.init)
        trainer = Trainer(model, torch.utils.data.TensorDataset(x, domain), train_cfg, args.out, device=device,
                          progress=args.minutes is None)
        if args.resume:
            trainer.resume()
        t0 = time.perf_counter()
        if args.minutes is None:
            trainer.fit(max(0, args.steps - trainer.step))
        else:
            fit_for_minutes(trainer, args.steps, args.minutes, args.snapshot_minutes, t0)
        trainer.save()
        minutes = (time.perf_counter() - t0) / 60
        path = save_pretrained(trainer, args.export)
        print(f"recipe {args.recipe} ({args.config}, lr {train_cfg.lr:g}): trained {trainer.step} steps in {minutes:.1f} min on {device} "
              f"({torch.get_num_threads()} threads); wrote {path}", flush=True)

    if args.eval_n == 0:
        return
    shipped = load_model(args.export, device=device).float().eval()
    test, test_domain = render_split("test", args.n, args.seed, 128, model_cfg.image_size, limit=args.eval_n)
    for d, name in ((0, "sim"), (1, "real-like")):
        for iters in sorted({0, args.eval_fixed_point_iters}):
            err = reconstruction_error(shipped, test[test_domain == d], steps=args.eval_steps, fixed_point_iters=iters,
                                       progress=True)
            print(f"held-out {name}: MSE {err['mse'].mean():.5f}, PSNR {err['psnr'].mean():.1f} dB "
                  f"({args.eval_steps} DDIM steps each way, fixed_point_iters={iters}, "
                  f"{err['unet_calls']:.0f} UNet passes per batch)", flush=True)


if __name__ == "__main__":
    main()
