"""Reward-stage throughput: raw faiss, and Ray Data labelling against raw faiss on the same data.

(a) faiss flat index: 1M x 64 database, 10k queries, k=10 -> queries/s
    (reference on a 2-core machine: 725 queries/s).
(b) labelling 1M transition embeddings (dim 256) against Z_E of 1000 expert windows (one demo),
    k=5, log kernel: rows/s of
      raw faiss       IndexFlatL2.search over the whole array + sqrt + kernel, all threads;
      in-process      tge_ray.reward.label.label_array (the actors' code, one process);
      Ray Data        tge_ray.reward.label.label_rewards, one reward actor per core;
    and the ratio Ray Data / raw faiss (target >= 0.8).

With ``--device cuda`` both parts use faiss' GPU flat index (one reward actor per GPU, as
``resources.use_gpu`` gives it); that needs a faiss with GPU support (the ``gpu`` extra) and
fails with one line otherwise. (b) then also labels on the CPU and records whether the GPU's
rewards equal the CPU's.

Every timing is taken ``--repeats`` times (default 2, the paths of (b) interleaved) and the best
is kept: the machine may be shared (load averages at start and end are recorded). Prints a table and writes benchmarks/reward.json (machine, versions, threads, sizes).

    .venv/bin/python benchmarks/bench_reward.py            # full sizes
    .venv/bin/python benchmarks/bench_reward.py --smoke    # seconds, for a quick check
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np


@dataclass
class Args:
    """Benchmark sizes (``--smoke`` shrinks them)."""

    database: int = 1_000_000  # (a) rows of the flat index
    database_dim: int = 64
    queries: int = 10_000
    knn_k: int = 10
    transitions: int = 1_000_000  # (b) embeddings to label
    embedding_dim: int = 256
    expert_windows: int = 1000
    reward_k: int = 5
    batch_size: int = 16384
    threads: int = 0  # 0: every CPU of the machine
    device: str = "cpu"  # or cuda: faiss' GPU index
    repeats: int = 2
    output: str = str(Path(__file__).with_name("reward.json"))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def machine_info(threads: int) -> dict:
    import ray
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options(),
        "ray": ray.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "faiss_omp_threads": threads,
    }


def bench_flat_index(args: Args) -> dict:
    """(a) queries/s of an exact flat L2 index."""
    rng = np.random.default_rng(0)
    database = rng.standard_normal((args.database, args.database_dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.database_dim), dtype=np.float32)
    index, _resources = flat_index(args.database_dim, args.device)  # the resources outlive the searches
    index.add(database)
    del database
    runs = [timed(lambda: index.search(queries, args.knn_k)) for _ in range(args.repeats)]  # one big batch
    best = min(wall for wall, _ in runs)
    return {"database": args.database, "dim": args.database_dim, "queries": args.queries,
            "k": args.knn_k, "seconds": [w for w, _ in runs], "cpu_seconds": [c for _, c in runs],
            "queries_per_s": args.queries / best,
            "queries_per_cpu_s": args.queries / min(c for _, c in runs),
            "device": args.device, "reference_queries_per_s_2_cores": 725.0}


def flat_index(dim: int, device: str) -> tuple:
    """(index, GPU resources or None): an empty exact L2 index, faiss' own or its GPU twin."""
    if device == "cpu":
        return faiss.IndexFlatL2(dim), None
    from tge_ray.reward.knn import faiss_has_gpu, gpu_flat_index

    if not faiss_has_gpu():
        raise SystemExit("error: --device cuda needs a faiss with GPU support that sees a GPU "
                         f"(this faiss {faiss.__version__} does not): install the project's 'gpu' extra")
    return gpu_flat_index(dim)


def _make_embeddings(batch: dict, dim: int) -> dict:
    """Deterministic L2-normalised stand-ins for U-Net embeddings, seeded by the first row."""
    ids = batch["id"].astype(np.int64)
    rng = np.random.default_rng(int(ids[0]) if len(ids) else 0)
    embedding = rng.standard_normal((len(ids), dim), dtype=np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    return {"index": ids, "embedding": embedding}


def bench_labelling(args: Args, cores: int) -> dict:
    """(b) rows/s of raw faiss, in-process labelling and Ray Data labelling on the same data."""
    import ray

    from tge_ray.config import ResourcesConfig, RewardConfig
    from tge_ray.reward.kernels import euclidean_from_squared, kernel_reward
    from tge_ray.reward.label import label_array, label_rewards

    rng = np.random.default_rng(1)
    experts = rng.standard_normal((args.expert_windows, args.embedding_dim), dtype=np.float32)
    experts /= np.linalg.norm(experts, axis=1, keepdims=True)

    # The embeddings as the embedding stage leaves them: a materialised Ray Dataset.
    n_blocks = max(cores * 4, args.transitions // 65536)
    dataset = (ray.data.range(args.transitions, override_num_blocks=n_blocks)
               .map_batches(_make_embeddings, fn_kwargs={"dim": args.embedding_dim}, batch_size=None)
               .materialize())
    parts = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    order = np.argsort(np.concatenate([p["index"] for p in parts]))
    embeddings = np.ascontiguousarray(np.concatenate([p["embedding"] for p in parts])[order])
    del parts, order

    cfg = RewardConfig(k=args.reward_k, sigma=1.0, kernel="log", batch_size=args.batch_size)
    gpu = args.device != "cpu"
    actors = max(1, int(ray.cluster_resources().get("GPU", 0))) if gpu else cores
    resources = ResourcesConfig(reward_actors=actors, use_gpu=gpu)

    faiss.omp_set_num_threads(cores)
    index, _resources = flat_index(args.embedding_dim, args.device)
    index.add(experts)
    results = {}

    def raw():
        squared, _ = index.search(embeddings, cfg.k)  # whole array: faiss blocks it itself
        results["raw"] = kernel_reward(euclidean_from_squared(squared), cfg.kernel, cfg.sigma)

    def in_process():
        results["in_process"] = label_array(embeddings, experts, cfg, use_gpu=gpu)

    def through_ray():
        results["ray"] = label_rewards(dataset, experts, cfg, resources)

    paths = {"raw faiss": raw, "in-process label_array": in_process, "Ray Data label_rewards": through_ray}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits all paths
        for name, fn in paths.items():
            wall, cpu = timed(fn)
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)  # the driver's only: the Ray actors' CPU is elsewhere
    rows = {name: {"seconds": seconds[name], "driver_cpu_seconds": cpu_seconds[name],
                   "rows_per_s": args.transitions / min(seconds[name])} for name in paths}
    same = bool(np.array_equal(results["ray"], results["in_process"]))
    max_vs_raw = float(np.abs(results["ray"] - results["raw"]).max())
    ratio = rows["Ray Data label_rewards"]["rows_per_s"] / rows["raw faiss"]["rows_per_s"]
    on_device = {}
    if gpu:  # the same rewards from the CPU index: the GPU index must change nothing
        from tge_ray.reward.knn import build_index

        on_device["in_process_index"] = build_index(experts[:16], use_gpu=True).device
        cpu_rewards = label_array(embeddings, experts, cfg, use_gpu=False)
        on_device["gpu_equals_cpu"] = bool(np.array_equal(results["ray"], cpu_rewards))
        on_device["max_abs_diff_gpu_vs_cpu"] = float(np.abs(results["ray"] - cpu_rewards).max())
    return {"transitions": args.transitions, "dim": args.embedding_dim, "device": args.device, **on_device,
            "expert_windows": args.expert_windows, "k": cfg.k, "kernel": cfg.kernel,
            "batch_size": cfg.batch_size, "reward_actors": resources.reward_actors,
            "dataset_blocks": n_blocks, "rows": rows, "ray_over_raw": ratio,
            "ray_equals_in_process": same, "max_abs_diff_ray_vs_raw": max_vs_raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, runs in seconds")
    parser.add_argument("--only", choices=("flat", "label"), help="run one part only")
    for name, default in vars(Args()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None)
    ns = parser.parse_args()
    args = Args()
    if ns.smoke:
        args = Args(database=50_000, queries=1000, transitions=40_000, batch_size=4096, repeats=1)
    for name in vars(Args()):
        if getattr(ns, name) is not None:
            setattr(args, name, getattr(ns, name))
    if args.device not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}")
    cores = args.threads or os.cpu_count() or 1

    import ray

    faiss.omp_set_num_threads(cores)
    report = {"args": vars(args), "machine": machine_info(cores)}
    if ns.only in (None, "flat"):
        report["flat_index"] = bench_flat_index(args)
    if ns.only in (None, "label"):
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            report["labelling"] = bench_labelling(args, cores)
        finally:
            ray.shutdown()

    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    print(f"\nreward benchmarks on {report['machine']['cpu']} ({cores} threads), best of {args.repeats}")
    if "flat_index" in report:
        flat = report["flat_index"]
        print(f"(a) flat L2 ({flat['device']}), {flat['database']:,} x {flat['dim']}, {flat['queries']:,} queries, k={flat['k']}: "
              f"{flat['queries_per_s']:,.0f} queries/s (reference 725 on 2 cores); "
              f"{flat['queries_per_cpu_s']:,.0f} queries per CPU-second")
    if "labelling" in report:
        lab = report["labelling"]
        print(f"(b) labelling {lab['transitions']:,} x {lab['dim']} against {lab['expert_windows']} expert "
              f"windows, k={lab['k']}, batch {lab['batch_size']}, {lab['reward_actors']} actors")
        print(f"    {'path':<26}{'rows/s':>12}{'vs raw':>9}")
        raw = lab["rows"]["raw faiss"]["rows_per_s"]
        for name, row in lab["rows"].items():
            print(f"    {name:<26}{row['rows_per_s']:>12,.0f}{row['rows_per_s'] / raw:>8.2f}x")
        print(f"    Ray Data == in-process bit for bit: {lab['ray_equals_in_process']}; "
              f"max |Ray - raw| = {lab['max_abs_diff_ray_vs_raw']:.2g}")
        if "gpu_equals_cpu" in lab:
            print(f"    index in process: {lab['in_process_index']}; GPU rewards == CPU rewards bit for bit: "
                  f"{lab['gpu_equals_cpu']} (max |GPU - CPU| = {lab['max_abs_diff_gpu_vs_cpu']:.2g})")
    output = Path(args.output)
    from tge_ray.io import write_text

    write_text(output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
