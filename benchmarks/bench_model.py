"""Benchmark of the Diffusion Autoencoder on the CPU (default) or a CUDA GPU (``--device cuda``).

1. Training throughput (images/s, median over repeats) of a full step: encoder + UNet forward,
   backward, gradient clipping, Adam, for the ``tiny`` and ``small`` configs at batch 16 (on CUDA
   also ``paper``, each in fp32 and with fp16 autocast + GradScaler, as ``TrainConfig.amp`` trains).
2. Inference throughput of DDIM encode (``encode`` + ``encode_stochastic``) followed by
   ``decode``, at 20 and 100 steps each way, for ``tiny``.
3. The UNet alone, forward + backward, against diffusers' ``UNet2DModel`` built with the same
   widths, depth and attention placement (only when ``diffusers`` is installed: ``pip install
   usdiff[bench]``); the ratio is ours / theirs in images/s.

Run: ``python benchmarks/bench_model.py [--quick] [--threads N] [--device cuda]``; prints Markdown tables.
On CUDA every timed call ends with ``torch.cuda.synchronize()``, so the times are the GPU's.
"""
from __future__ import annotations

import argparse
import statistics

import torch
from timing import machine, median_time

from usdiff.model import DiffAE, count_parameters, get_config
from usdiff.utils import get_device

CPU = torch.device("cpu")


def synced(fn, device: torch.device):
    """`fn` followed by a CUDA synchronisation on a GPU, so that a timer sees the kernels' time."""
    if device.type != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize(device)
    return call


def bench_training(name: str, batch: int, repeats: int, device: torch.device = CPU, amp: bool = False) -> dict:
    cfg, _ = get_config(name)
    torch.manual_seed(0)
    model = DiffAE.from_config(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x = (torch.rand(batch, 1, cfg.image_size, cfg.image_size) * 2 - 1).to(device)

    def step():   # the Trainer's step: autocast forward, scaled backward, unscale + clip, Adam
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            loss = model.training_loss(x)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()

    seconds = median_time(synced(step, device), repeats, warmup=2)
    return {"config": name, "px": cfg.image_size, "params": count_parameters(model), "img_s": batch / seconds}


def bench_ddim(name: str, steps: int, batch: int, repeats: int, device: torch.device = CPU) -> dict:
    cfg, _ = get_config(name)
    model = DiffAE.from_config(cfg).to(device).eval()
    x = (torch.rand(batch, 1, cfg.image_size, cfg.image_size) * 2 - 1).to(device)

    def roundtrip():
        z = model.encode(x)
        model.decode(model.encode_stochastic(x, z, steps=steps), z, steps=steps)

    seconds = median_time(synced(roundtrip, device), repeats, warmup=1 if device.type == "cuda" else 0)
    return {"config": name, "steps": steps, "img_s": batch / seconds, "ms_per_eval": 1000 * seconds / (2 * steps + 1)}


def diffusers_twin(name: str):
    """diffusers' UNet2DModel with our widths, res blocks per level and attention resolutions."""
    from diffusers import UNet2DModel

    cfg, _ = get_config(name)
    widths = tuple(cfg.base_channels * m for m in cfg.channel_mult)
    attn_levels = [cfg.image_size // 2**i in cfg.attn_resolutions for i in range(len(widths))]
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn_levels))
    groups = min(32, widths[0])
    return UNet2DModel(sample_size=cfg.image_size, in_channels=1, out_channels=1, block_out_channels=widths,
                       layers_per_block=cfg.num_res_blocks, down_block_types=down, up_block_types=up,
                       attention_head_dim=None, norm_num_groups=groups, dropout=cfg.dropout)


def bench_unet_vs_diffusers(name: str, batch: int, repeats: int) -> dict | None:
    try:
        theirs = diffusers_twin(name)
    except ImportError:
        return None
    cfg, _ = get_config(name)
    ours = DiffAE.from_config(cfg).unet
    x = torch.rand(batch, 1, cfg.image_size, cfg.image_size) * 2 - 1
    t = torch.randint(0, 1000, (batch,))
    z = torch.randn(batch, cfg.z_dim)

    def ours_step():
        ours(x, t, z).square().mean().backward()

    def theirs_step():
        theirs(x, t).sample.square().mean().backward()

    # alternate the two, so that a busy machine slows both alike
    ours_step(), theirs_step()
    ours_t, theirs_t = [], []
    for _ in range(repeats):
        ours_t.append(median_time(ours_step, 1))
        theirs_t.append(median_time(theirs_step, 1))
    a, b = batch / statistics.median(ours_t), batch / statistics.median(theirs_t)
    return {"config": name, "ours_params": count_parameters(ours), "theirs_params": count_parameters(theirs),
            "ours_img_s": a, "theirs_img_s": b, "ratio": a / b}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, tiny only (CI smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    gpu = device.type == "cuda"
    repeats = 3 if args.quick else (20 if gpu else 7)
    configs = ["tiny"] if args.quick else (["tiny", "small", "paper"] if gpu else ["tiny", "small"])
    where = torch.cuda.get_device_name(device) if gpu else f"{args.threads} threads"
    print(f"torch {torch.__version__}, {machine()}, {where}\n")

    print("## Training step (batch 16, forward + backward + Adam)\n")
    if gpu:
        print("| config | px | params | images/s fp32 | images/s fp16 AMP | AMP / fp32 |\n|---|---|---|---|---|---|")
    else:
        print("| config | px | params | images/s |\n|---|---|---|---|")
    for name in configs:
        r = bench_training(name, 16, repeats, device)
        if gpu:
            a = bench_training(name, 16, repeats, device, amp=True)
            print(f"| {r['config']} | {r['px']} | {r['params'] / 1e6:.2f} M | {r['img_s']:.1f} | {a['img_s']:.1f} | "
                  f"{a['img_s'] / r['img_s']:.2f} |", flush=True)
        else:
            print(f"| {r['config']} | {r['px']} | {r['params'] / 1e6:.2f} M | {r['img_s']:.1f} |", flush=True)

    print("\n## DDIM encode + decode (tiny, batch 8)\n")
    print("| steps each way | images/s | ms per UNet call |\n|---|---|---|")
    for steps in (20, 100):
        r = bench_ddim("tiny", steps, 8, 1 if (args.quick or steps == 100) else 3, device)
        print(f"| {r['steps']} | {r['img_s']:.2f} | {r['ms_per_eval']:.1f} |", flush=True)
    if gpu:   # the DiffAE diffusers comparison below runs on the CPU only
        return

    print("\n## UNet forward + backward vs diffusers UNet2DModel (batch 16)\n")
    rows = [bench_unet_vs_diffusers(name, 16, repeats) for name in configs]
    if rows[0] is None:
        print("diffusers is not installed: comparison skipped (pip install 'usdiff[bench]').")
        return
    print("| config | ours params | diffusers params | ours images/s | diffusers images/s | ours / diffusers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['ours_params'] / 1e6:.2f} M | {r['theirs_params'] / 1e6:.2f} M | "
              f"{r['ours_img_s']:.1f} | {r['theirs_img_s']:.1f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
