"""Every benchmark in one run: a table of figures beside their references and targets.

Runs, each in its own process so that one's threads and memory do not colour the next:

    bench_rl.py       IQL, ReBRAC and BC updates/s (2x256 / 3x256 / 2x256 MLPs, batch 256 / 1024 / 256)
    bench_unet.py     U-Net training and encoding windows/s, reference size and tge run's default
    bench_reward.py   Ray Data reward labelling rows/s against raw faiss; the flat index alone
    bench_windows.py  window building (streamed windows/s, peak memory)
    bench_datagen.py  dataset generation env steps/s (random and expert rollouts)
    tge run           the embedded default, wall time (datasets made beforehand, not timed)
    bench_sweep.py    with --sweep: the 16-trial sweep, wall time against its RL stages

each script's JSON also lands in its usual file (``benchmarks/rl.json`` ...; not with
``--smoke-test``, and not ``unet.json``, whose full table has more sizes and variants), then it
prints one table and writes ``benchmarks/results-<machine>.json`` (machine, versions, thread
counts, every script's own JSON under ``details``; a ``--smoke-test`` writes only to an explicit
``--out``). The machine name defaults to the CPU count and model (``cpu2-intel-xeon-processor``).

With a CUDA GPU (``--device auto``, the default, or ``--device cuda``) the learners, the U-Net
(fp32 and bf16 autocast) and the reward stage run on the GPU: the learners eager and with CUDA
graphs (what ``resources.compile=auto`` picks), the reward stage
with faiss' GPU index (which needs the ``gpu`` extra), ``tge run`` as it is (it uses the GPU by
itself); the file is then ``results-gpu<count>-<model>.json``. Only the CPU-bound figures
(windows, dataset generation) and the Ray Data / raw faiss ratio keep their targets there; the
others show their 2-core reference without its target. ``benchmarks/gpu.sh`` has the fuller GPU
tables and ``pytest -m gpu`` the GPU checks (an H200's in ``docs/notes/gpu-h200.md``).

    .venv/bin/python benchmarks/run.py                  # about 20 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --sweep          # + the sweep benchmark (about 10 more)
    .venv/bin/python benchmarks/run.py --smoke-test     # every script at tiny sizes (a minute or two)
    python benchmarks/run.py --skip datagen             # on a GPU machine (datagen is CPU-bound)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent


def machine_info() -> dict[str, Any]:
    import faiss
    import numpy
    import ray
    import torch
    from bench_rl import cpu_model  # benchmarks/ is on sys.path when this file runs as a script

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ray": ray.__version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_device_count": torch.cuda.device_count(),
    }
    return info


def machine_slug(info: dict[str, Any], device: str = "cpu") -> str:
    if device == "cuda":
        model = re.sub(r"[^a-z0-9]+", "-", info["cuda_device"].lower()).strip("-")
        return f"gpu{info['cuda_device_count']}-{model}"
    model = re.sub(r"\(r\)|\(tm\)|cpu|@.*", "", info["cpu"].lower())
    model = re.sub(r"[^a-z0-9]+", "-", model).strip("-")
    return f"cpu{info['logical_cpus']}-{model}"


def run_script(name: str, args: list[str], out: Path, out_flag: str = "--out") -> dict[str, Any]:
    """Run one benchmark script; its JSON, or the error it stopped with."""
    command = [sys.executable, str(HERE / name), *args, out_flag, str(out)]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=False)
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0 or not out.is_file():
        return {"error": f"{name} exited with {done.returncode}", "seconds": seconds}
    return {**json.loads(out.read_text()), "seconds": seconds}


def time_default_run(smoke: bool) -> dict[str, Any]:
    """``tge run`` (default or smoke config) into a scratch storage; datasets made first, untimed."""
    config = "smoke" if smoke else "default"
    from tge_ray.config import load_config, resolve_config_path
    from tge_ray.data.make import make_dataset

    cfg = load_config(resolve_config_path(config))
    for dataset_id in (cfg.task.offline, cfg.task.expert):
        if dataset_id.startswith("tge/"):
            make_dataset(dataset_id, progress=False)  # kept if present
    with tempfile.TemporaryDirectory(prefix="tge-bench-run-") as storage:
        command = ["tge", "run", config, f"storage={storage}"]
        print(f"\n$ {' '.join(command)}", flush=True)
        started = time.perf_counter()
        # `python -m tge_ray.cli` is `tge`, also where the project is on PYTHONPATH but not installed
        done = subprocess.run([sys.executable, "-m", "tge_ray.cli", *command[1:]], cwd=ROOT, check=False)
        wall = round(time.perf_counter() - started, 1)
        from tge_ray.pipeline.run_folder import RunFolder

        run_dirs = RunFolder.inside(storage)
        scores = RunFolder.open(run_dirs[0]).results.scores if run_dirs else None
    if done.returncode != 0:
        return {"error": f"tge run exited with {done.returncode}", "seconds": wall}
    return {"config": config, "wall_seconds": wall, "scores": scores, "target_seconds": 600}


def _get(data: dict[str, Any], *keys: Any) -> Any:
    for key in keys:
        if not isinstance(data, dict | list):
            return None
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def summary_rows(details: dict[str, Any], device: str = "cpu") -> list[dict[str, Any]]:
    """(figure, ours, reference, target, goal direction) rows from the scripts' JSON.

    On a GPU the 2-core references stay beside the figures, but their targets (set for the same
    2-core machine) and the CPU FLOP bounds are left out.
    """
    rows: list[dict[str, Any]] = []
    gpu = device == "cuda"

    def add(name: str, ours: Any, unit: str, reference: Any = None, target: Any = None, higher: bool = True,
            cpu_only: bool = False):
        if gpu and cpu_only:
            target = None
        met = None if ours is None or target is None else (ours >= target if higher else ours <= target)
        rows.append({"figure": name, "ours": ours, "unit": unit, "reference": reference, "target": target, "met": met})

    rl = details.get("rl", {})
    corl = next((r["updates_per_s"] for r in rl.get("results", []) if r["name"].startswith("CORL")), None)
    for algo, policies, label in (("iql", 1, "IQL updates"), ("iql", 8, "IQL x8 policy-updates"),
                                  ("rebrac", 1, "ReBRAC updates"), ("bc", 1, "BC updates")):
        ours = max((r["policy_updates_per_s"] for r in rl.get("results", []) if r["algo"] == algo
                    and r["policies"] == policies and r["name"].startswith("tge_ray")
                    and r.get("matmul", "fp32") == "fp32"), default=None)  # the targets are fp32's
        add(label, ours, "1/s", corl if (algo, policies) == ("iql", 1) else None)
        if not gpu:
            add(f"{label}, fp32 FLOP bound", _get(rl, "flop_bound_policy_updates_per_s", algo), "1/s")
    for key, item in rl.get("targets", {}).items():
        add(f"bench_rl target {key}", item.get("value"), "", None, item.get("target"),
            higher=not key.endswith("minutes"))
    unet = details.get("unet", {})
    for prefix, label in (("reference", "U-Net reference size"), ("tge run default", "U-Net tge run default")):
        is_ref = prefix == "reference"
        for precision in ("fp32", "bf16"):
            row = next((r for r in unet.get("rows", []) if r["size"].startswith(prefix) and r["variant"] == "fast"
                        and r.get("precision", "fp32") == precision), None)
            if row is None and precision == "bf16":
                continue  # bf16 rows only on a GPU
            name = label + (", bf16" if precision == "bf16" else "")
            add(f"{name}: training", row and row["train_windows_per_s"], "windows/s",
                _get(unet, "reference", "train_windows_per_s") if is_ref else None,
                _get(unet, "target", "train_windows_per_s") if is_ref else None, cpu_only=True)
            add(f"{name}: encoding", row and row["encode_windows_per_s"], "windows/s",
                _get(unet, "reference", "encode_windows_per_s") if is_ref else None,
                _get(unet, "target", "encode_windows_per_s") if is_ref else None, cpu_only=True)
            if is_ref and not gpu:
                add(f"{label}: training, fp32 FLOP bound", row and row.get("train_flop_bound_windows_per_s"), "windows/s")
                add(f"{label}: encoding, fp32 FLOP bound", row and row.get("encode_flop_bound_windows_per_s"), "windows/s")
    reward = details.get("reward", {})
    add("Reward labelling, Ray Data", _get(reward, "labelling", "rows", "Ray Data label_rewards", "rows_per_s"), "rows/s")
    add("Reward labelling, raw faiss", _get(reward, "labelling", "rows", "raw faiss", "rows_per_s"), "rows/s")
    add("Ray Data / raw faiss", _get(reward, "labelling", "ray_over_raw"), "x", None, 0.8)
    add("faiss flat index 1M x 64, k 10", _get(reward, "flat_index", "queries_per_s"), "queries/s",
        _get(reward, "flat_index", "reference_queries_per_s_2_cores"))
    windows = details.get("windows", {})
    add("Windows streamed", _get(windows, "figures", "stream_reused_windows_per_s"), "windows/s", None, 5e6)
    add("Windows peak memory", _get(windows, "figures", "peak_memory_mb"), "MB", None, 1024, higher=False)
    datagen = details.get("datagen", {})
    workers = datagen.get("workers", 2)
    add(f"Random rollouts ({workers} workers)", datagen.get(f"random_collect_{workers}_workers_steps_per_s"),
        "steps/s", None, 5000)
    add(f"Expert rollouts ({workers} workers)", datagen.get(f"expert_collect_{workers}_workers_steps_per_s"),
        "steps/s", None, 2000)
    add(f"Random dataset incl. Minari write ({workers} workers)",
        datagen.get(f"random_make_dataset_{workers}_workers_steps_per_s"), "steps/s")
    run = details.get("tge_run", {})
    add(f"tge run {run.get('config', 'default')} wall", run.get("wall_seconds"), "s", None,
        run.get("target_seconds"), higher=False, cpu_only=True)
    sweep = details.get("sweep")
    if sweep:
        add("Sweep wall / sum of RL stages", sweep.get("wall_over_rl"), "x", None, 1.3, higher=False)
        add("Sweep diffusion models trained", sweep.get("diffusion_models_trained"), "", None, 1, higher=False)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ("figure", "ours", "unit", "reference", "target", "met")
    cells = [header] + [
        (r["figure"], _fmt(r["ours"]), r["unit"], _fmt(r["reference"]), _fmt(r["target"]),
         "-" if r["met"] is None else ("yes" if r["met"] else "no"))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for number, row in enumerate(cells):
        print("  ".join(cell.ljust(w) if i in (0, 2) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if number == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", help="name in results-<machine>.json (default: CPU count and model)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the RL and U-Net figures")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the learners, the U-Net and the reward stage run (auto: cuda when torch sees a GPU)")
    parser.add_argument("--corl-iql", type=Path, default=None,
                        help="CORL's algorithms/offline/iql.py, timed beside the learners (bench_rl.py)")
    parser.add_argument("--sweep", action="store_true", help="also run the 16-trial sweep benchmark")
    parser.add_argument("--skip", default="", help="comma list of rl,unet,reward,windows,datagen,run to leave out")
    parser.add_argument("--merge", action="store_true",
                        help="keep the output file's other figures, replace only those run now (e.g. --skip ... --sweep)")
    parser.add_argument("--reuse", default="", help="comma list of rl,reward,windows,datagen,sweep: take the figures "
                        "from that script's own JSON in benchmarks/ (a run of it on this machine) instead of running it")
    parser.add_argument("--smoke-test", action="store_true", help="every script at tiny sizes")
    parser.add_argument("--out", type=Path, default=None, help="output JSON (default benchmarks/results-<machine>.json)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    smoke = args.smoke_test

    info = {**machine_info(), "torch_threads": args.threads, "load_avg_1min_start": os.getloadavg()[0]}
    device = args.device
    if device == "auto":
        device = "cuda" if info["cuda_device"] else "cpu"
    elif device == "cuda" and not info["cuda_device"]:
        parser.error("--device cuda, but torch sees no CUDA GPU: use --device cpu")
    info["device"] = device
    on_gpu = ["--device", "cuda"] if device == "cuda" else []
    machine = args.machine or machine_slug(info, device)
    # A smoke run's tiny figures never replace a machine's table: it writes only to an explicit --out.
    out = args.out or (None if smoke else HERE / f"results-{machine}.json")
    started = time.perf_counter()
    details: dict[str, Any] = {}
    if args.merge and out is not None and out.is_file():
        details = json.loads(out.read_text()).get("details", {})
    for name in filter(None, args.reuse.split(",")):
        details[name] = {**json.loads((HERE / f"{name}.json").read_text()), "reused_from": f"benchmarks/{name}.json"}
        skip.add(name)
    with tempfile.TemporaryDirectory(prefix="tge-bench-") as scratch:
        # the scripts' own JSON files, refreshed together (CPU figures only: a GPU run keeps them in `details`)
        tmp = Path(scratch) if smoke or device == "cuda" else HERE
        threads = ["--threads", str(args.threads)]
        if "rl" not in skip:
            corl = ["--corl-iql", str(args.corl_iql)] if args.corl_iql else []
            details["rl"] = run_script("bench_rl.py", [*threads, "--repeats", "2", *on_gpu, *corl]
                                       + (["--seconds", "0.5", "--repeats", "1", "--modes", "eager"] if smoke else []),
                                       tmp / "rl.json")
        if "unet" not in skip:
            unet_args = ["--sizes", "reference,default", "--variants", "fast", "--repeats", "2", *threads, *on_gpu]
            if on_gpu:
                unet_args += ["--precisions", "fp32,bf16"]
            if smoke:
                unet_args += ["--train-steps", "1", "--encode-steps", "1", "--repeats", "1"]
            # two of unet.json's sizes and one variant: its own file keeps the full comparison
            details["unet"] = run_script("bench_unet.py", unet_args, Path(scratch) / "unet.json")
        if "reward" not in skip:
            details["reward"] = run_script("bench_reward.py", (["--smoke"] if smoke else []) + on_gpu,
                                           tmp / "reward.json", "--output")
        if "windows" not in skip:
            details["windows"] = run_script("bench_windows.py", ["--transitions", "50000", "--repeats", "1"] if smoke else [], tmp / "windows.json")
        if "datagen" not in skip:
            details["datagen"] = run_script("bench_datagen.py", ["--smoke-test"] if smoke else [], tmp / "datagen.json")
        if "run" not in skip:
            details["tge_run"] = time_default_run(smoke)
        if args.sweep and "sweep" not in skip:
            details["sweep"] = run_script("bench_sweep.py", ["--smoke-test"] if smoke else [], tmp / "sweep.json")
    info["load_avg_1min_end"] = os.getloadavg()[0]
    rows = summary_rows(details, device)
    where = f"{info['cuda_device']} and " if device == "cuda" else ""
    print(f"\nbenchmarks on {where}{info['cpu']} ({info['logical_cpus']} logical CPUs, {args.threads} torch threads), "
          f"{time.perf_counter() - started:.0f} s; load average {info['load_avg_1min_start']:.1f} -> "
          f"{info['load_avg_1min_end']:.1f}")
    print_table(rows)
    errors = {name: d["error"] for name, d in details.items() if "error" in d}
    for name, error in errors.items():
        print(f"error: {name}: {error}", file=sys.stderr)
    report = {"machine": machine, "machine_info": info, "smoke_test": smoke,
              "command": " ".join(["benchmarks/run.py", *sys.argv[1:]]),
              "summary": rows, "details": details}
    from tge_ray.io import write_text

    if out is None:
        print("smoke test: nothing written (--out FILE keeps its JSON)")
    else:
        write_text(out, json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
