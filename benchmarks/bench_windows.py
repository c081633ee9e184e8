"""Window building: windows/s and peak memory for 1M transitions, H = 32, 17-dim states.

    python benchmarks/bench_windows.py [--transitions 1000000] [--horizon 32] [--obs-dim 17]

Measures, over hopper-like episode lengths (uniform 20..1000 steps):
- build: padding the episodes (the one copy of the observations the windows are cut from);
- stream (reused buffer): every window materialised, batch by batch, into one reused array;
- stream (fresh arrays): every window materialised into a new array per batch;
- gather (random order): windows of shuffled transitions, as a training sampler takes them.
Peak memory is the process's peak RSS above its level before the observations were made, so it
counts the observations, the padded copy and one batch. Prints a table and writes
benchmarks/windows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from tge_ray.data.windows import Windows


def peak_rss_mb() -> float:
    """Peak RSS of this process image. VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss
    across execve, so a benchmark started by a big parent (benchmarks/run.py) would inherit its peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # elsewhere: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("windows.json"))
    args = parser.parse_args()

    baseline = peak_rss_mb()
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 1001, size=args.transitions // 20)
    lengths = lengths[np.cumsum(lengths) <= args.transitions]
    lengths = np.append(lengths, args.transitions - lengths.sum())
    lengths = lengths[lengths > 0]
    episode_ids = np.repeat(np.arange(len(lengths)), lengths)
    observations = rng.standard_normal((args.transitions, args.obs_dim), dtype=np.float32)

    started = time.perf_counter()
    windows = Windows(observations, episode_ids, args.horizon)
    build_s = time.perf_counter() - started

    def best_rate(run) -> float:
        rates = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            count = run()
            rates.append(count / (time.perf_counter() - started))
        return max(rates)

    def stream(reuse: bool) -> int:
        count = 0
        for index, _batch in windows.iter_batches(args.batch_size, reuse_buffer=reuse):
            count += len(index)
        return count

    order = rng.permutation(args.transitions)

    def gather_random() -> int:
        for first in range(0, args.transitions, args.batch_size):
            windows.gather(order[first : first + args.batch_size])
        return args.transitions

    figures = {
        "build_seconds": build_s,
        "stream_reused_windows_per_s": best_rate(lambda: stream(True)),
        "stream_fresh_windows_per_s": best_rate(lambda: stream(False)),
        "gather_random_windows_per_s": best_rate(gather_random),
        "peak_memory_mb": peak_rss_mb() - baseline,
        "observations_mb": observations.nbytes / 2**20,
        "padded_mb": windows.padded.nbytes / 2**20,
        "all_windows_would_be_mb": args.transitions * args.horizon * args.obs_dim * 4 / 2**20,
    }
    report = {
        "benchmark": "windows",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
        "settings": vars(args) | {"out": str(args.out), "episodes": int(len(lengths))},
        "targets": {"stream_windows_per_s": 5_000_000, "peak_memory_mb": 1024},
        "figures": figures,
    }
    print(f"windows: {args.transitions} transitions, H={args.horizon}, obs_dim={args.obs_dim}, {len(lengths)} episodes")
    for key, value in figures.items():
        print(f"  {key:<30} {value:>14,.2f}")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
