"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``)."""
from __future__ import annotations

import os
import platform
import statistics
import time


def median_time(fn, repeats: int, warmup: int = 0) -> float:
    """Median wall-clock seconds of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line on the CPU and its load: timings on a shared machine scale with the load."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}"
