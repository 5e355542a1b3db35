"""Benchmark of the offline FID pieces on the CPU.

1. InceptionV3 feature extraction, images/s for pool2 (192-d, the stem only) and pool3 (2048-d),
   random weights (the speed does not depend on the values), 128 x 128 grayscale inputs.
2. Fréchet distance from covariances: usdiff's eigenvalue route vs the classic
   ``scipy.linalg.sqrtm(S1 @ S2)`` (pytorch-fid's method) for 192-d and 2048-d features, with
   full-rank (n = 5000) and rank-deficient (n = 1200 < 2048, the study's sample size) covariances.
   Accuracy is checked against an independent reference: the nuclear norm of ``Xc Yc^T``.
3. KID (100 subsets of 1000) at n = 1200.

Run: ``python benchmarks/bench_fid.py [--quick] [--threads N]``; prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.linalg
import torch
from timing import machine, median_time

from usdiff.metrics import InceptionFeatures, kid, trace_sqrt_product


def bench_extraction(batch: int, repeats: int) -> list[tuple[str, float]]:
    x = torch.rand(batch, 1, 128, 128)
    rows = []
    for layer in ("pool2", "pool3"):
        ext = InceptionFeatures(layer, weights="random", device="cpu")
        ext(x[:1])  # warm-up
        seconds = median_time(lambda ext=ext: ext(x), repeats)
        rows.append((layer, batch / seconds))
    return rows


def features(rng, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, non-negative features (like post-ReLU pooled activations)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.abs(rng.standard_normal((n, d))) @ mix + shift


def nuclear_reference(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((len(x) - 1) * (len(y) - 1))


def bench_frechet(dims, ns, repeats: int, scipy_repeats: int):
    rng = np.random.default_rng(0)
    rows = []
    for d in dims:
        for n in ns:
            x, y = features(rng, n, d), features(rng, n, d, shift=0.1)
            s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
            ref = nuclear_reference(x, y)
            ours = trace_sqrt_product(s1, s2)
            t_ours = median_time(lambda s1=s1, s2=s2: trace_sqrt_product(s1, s2), repeats)
            # the reference takes tens of seconds at 2048-d: time it once there
            times = []
            for _ in range(scipy_repeats if d < 1024 else 1):
                t0 = time.perf_counter()
                covmean = scipy.linalg.sqrtm(s1 @ s2)
                times.append(time.perf_counter() - t0)
            t_scipy, ref_scipy = statistics.median(times), float(np.trace(covmean).real)
            rows.append((d, n, t_ours, t_scipy, abs(ours - ref) / ref, abs(ref_scipy - ref) / ref))
    return rows


def bench_kid(dims, n: int, repeats: int):
    rng = np.random.default_rng(1)
    rows = []
    for d in dims:
        x, y = features(rng, n, d), features(rng, n, d, shift=0.1)
        rows.append((d, median_time(lambda x=x, y=y: kid(x, y, num_subsets=100, subset_size=1000), repeats)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 2048-d scipy reference")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    print(f"{machine()}; torch threads: {torch.get_num_threads()}, numpy {np.__version__}, "
          f"torch {torch.__version__}\n")

    print("## Inception feature extraction (CPU, random weights, 128 px -> 299 px)\n")
    print("| layer | images/s |\n|---|---|")
    for layer, ips in bench_extraction(batch=8 if args.quick else 16, repeats=repeats):
        print(f"| {layer} | {ips:.1f} |")

    print("\n## Fréchet distance: tr((S1 S2)^1/2) from two covariances\n")
    print("| dim | n (rank) | usdiff (s) | scipy sqrtm (s) | speed-up | rel. error usdiff | rel. error scipy |")
    print("|---|---|---|---|---|---|---|")
    dims = (192,) if args.quick else (192, 2048)
    for d, n, t_ours, t_scipy, e_ours, e_scipy in bench_frechet(dims, (5000, 1200), repeats,
                                                                 scipy_repeats=1 if args.quick else 3):
        rank = f"{n} (full)" if n > d else f"{n} ({n - 1})"
        print(f"| {d} | {rank} | {t_ours:.3f} | {t_scipy:.3f} | {t_scipy / t_ours:.0f}x | {e_ours:.1e} | {e_scipy:.1e} |")

    print("\n## KID (100 subsets of 1000, n = 1200 per side)\n")
    print("| dim | seconds |\n|---|---|")
    for d, seconds in bench_kid(dims, 1200, repeats):
        print(f"| {d} | {seconds:.2f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
