"""Benchmark of the built-in data generation on the CPU.

1. Per stage, one process: phantoms, clean sim renders, real-like renders, images/s.
2. End to end: `generate_dataset` (phantom + both renders + three PNG writes per item) with
   `--workers` processes, paired items/s, against the target of 12,000 paired 128 x 128 items
   in under 2 minutes (100 items/s).
3. CPU time per paired item in one process (``time.process_time``), which other programs on a
   shared machine disturb less than wall time; ``workers / cpu_time`` bounds what an idle machine
   reaches. The load average is printed so that a contended measurement can be recognised.

Each figure is the median of `--repeats` runs. Run: ``python benchmarks/bench_data.py [--quick]``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from timing import machine, median_time

from usdiff.data import generate_dataset, item_seed, make_phantom, render_real, render_sim
from usdiff.data.generate import FOLDERS, _write_chunk

TARGET_ITEMS = 12_000
TARGET_SECONDS = 120.0


def rate(fn, count: int, repeats: int) -> float:
    """Items/s of `fn()` that handles `count` items, from its median time."""
    return count / median_time(fn, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=600, help="items per end-to-end run")
    parser.add_argument("--stage-n", type=int, default=100, help="images per stage run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="small run (n=200, 3 repeats)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.stage_n, args.repeats = 200, 40, 3

    size, m = args.size, args.stage_n
    phantoms = [make_phantom(i, size) for i in range(m)]
    render_sim(phantoms[0])
    render_real(phantoms[0], 0)   # warm the geometry caches
    stages = {
        "phantom": rate(lambda: [make_phantom(i, size) for i in range(m)], m, args.repeats),
        "sim": rate(lambda: [render_sim(p) for p in phantoms], m, args.repeats),
        "real": rate(lambda: [render_real(p, i) for i, p in enumerate(phantoms)], m, args.repeats),
    }
    with tempfile.TemporaryDirectory() as tmp:
        total = rate(lambda: generate_dataset(tmp, n=args.n, size=size, seed=0, workers=args.workers,
                                              progress=False, overwrite=True), args.n, args.repeats)
        for folder in FOLDERS:
            (Path(tmp) / folder).mkdir(exist_ok=True)
        job = (tmp, size, list(range(m)), [item_seed(0, i) for i in range(m)])
        cpu = []
        for _ in range(args.repeats):
            t0 = time.process_time()
            _write_chunk(job)
            cpu.append((time.process_time() - t0) / m)
        cpu_item = min(cpu)

    print(f"# usdiff data generation, {size} x {size}, {machine()}, median of {args.repeats}")
    print()
    print("| stage | processes | images/s |")
    print("|---|---|---|")
    for name, r in stages.items():
        print(f"| {name} | 1 | {r:.0f} |")
    print(f"| total (paired items incl. 3 PNGs) | {args.workers} | {total:.0f} |")
    print(f"| CPU time per paired item: {1e3 * cpu_item:.1f} ms | bound for {args.workers} idle CPUs | "
          f"{args.workers / cpu_item:.0f} |")
    needed = TARGET_ITEMS / TARGET_SECONDS
    verdict = "met" if total >= needed else "NOT met"
    print()
    print(f"target {TARGET_ITEMS} items in {TARGET_SECONDS:.0f} s = {needed:.0f} items/s: {verdict} "
          f"(estimated {TARGET_ITEMS / total:.0f} s for {TARGET_ITEMS})")


if __name__ == "__main__":
    main()
