"""Policy-updates per second of the batched learners (Hopper dims), beside CORL's own IQL and the matmul bound.

    python benchmarks/bench_rl.py --corl-iql CORL/algorithms/offline/iql.py     # writes benchmarks/rl.json
    python benchmarks/bench_rl.py --smoke-test                                   # seconds, writes nothing
    python benchmarks/bench_rl.py --device cuda --out rl-gpu.json               # on a GPU
    python benchmarks/bench_rl.py --matmul fp32,bf16 --out rl-bf16.json         # bf16 rows beside fp32

Rows: CORL's ``algorithms/offline/iql.py`` imported unmodified (``--corl-iql``; see
``benchmarks/_corl.py``) and timed in this process with its own replay buffer and update; our
IQL (batch 256) with P = 1 and P = 8 policies, ReBRAC (batch 1024) and BC (256) with P = 1, each
eager and in every update mode that applies (``torch.compile`` on a CPU, CUDA graphs on a GPU);
on a GPU also IQL with P = 64 and the batches of ``tge run paper`` at 3 RL seeds (IQL x6, BC x3).
A policy-update is one update of one policy; a batch of P does P per step. ``--matmul fp32,bf16``
adds every row again with the hidden layers' products in bf16 (``rl.<learner>.matmul``) and a bf16
256-cube matmul for their bound; the targets are read on the fp32 rows.

The bound: every learner's update is a fixed number of matmul FLOPs (IQL ~0.53 GFLOP at batch
256: 4 MLPs forward and backward, 3 forward only; ReBRAC ~3.35 at 1024; BC ~0.106), so a
256x256x256 matmul's GFLOP/s on the same threads bounds the policy-updates/s any implementation
reaches here. Every runner is built first; then ``--repeats`` rounds each time one window of every
row in turn (the matmul, CORL and ours), and each figure is its row's best window. Interleaved,
a slow stretch of a shared machine slows all rows of a round alike, so the ratios hold.

A row's ``first_call_s`` is its build's first updates, compile or capture included. The compile
caches go to a fresh folder (removed at the end), so it is a cold compile, as a user's first run
sees it; ``--warm-cache`` keeps the usual cache instead. A compiled row's
``compile_repaid_after_updates`` is where its compile is repaid: the first call's extra seconds
over eager's, divided by the seconds each update saves (``resources.compile=cpu`` compiles a CPU
learner at ``tge_ray.accel.CPU_COMPILE_MIN_UPDATES`` updates or more).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tge_ray.accel import CPU_COMPILE_MIN_UPDATES
from tge_ray.config import BCConfig, IQLConfig, ReBRACConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner

OBS, ACT = 11, 3
MATMUL_GFLOP = 2 * 256**3 / 1e9  # one 256^3 matmul
GFLOP_PER_UPDATE = {"iql": 0.53, "rebrac": 3.35, "bc": 0.106}
CONFIGS = {"iql": IQLConfig(), "rebrac": ReBRACConfig(), "bc": BCConfig()}
TARGETS = {  # issue targets: (what, value)
    "cpu": {"iql_p1_vs_corl": 2.0, "iql_p8_bound_share": 0.85, "rebrac_p1_bound_share": 0.75},
    "cuda": {"iql_p1_updates_per_s": 2000.0, "iql_p64_policy_updates_per_s": 50_000.0, "paper_9_policies_minutes": 15.0},
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def random_transitions(n: int, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, OBS)).astype(np.float32)
    return Transitions(obs[:-1], rng.uniform(-1, 1, (n, ACT)), rng.uniform(size=n), obs[1:],
                       (rng.uniform(size=n) < 0.001).astype(np.float32))


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(run: Callable[[int], None], chunk: int, repeats: int, device: str) -> float:
    """Best steps/s over ``repeats`` windows of ``chunk`` steps (after one warm-up window)."""
    run(chunk)
    sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(chunk)
        sync(device)
        rates.append(chunk / (time.perf_counter() - start))
    return max(rates)


def interleaved_best(runners: list[tuple[Callable[[int], None], int]], repeats: int, device: str) -> list[float]:
    """Best steps/s of each (run, chunk) over ``repeats`` rounds, after one warm-up window each.

    A round times one window of every runner in turn, so each row sees the same stretches of a
    shared machine: a slow minute lowers all rows of a round, not the ratio between two of them."""
    for run, chunk in runners:
        run(chunk)
    sync(device)
    best = [0.0] * len(runners)
    for _ in range(repeats):
        for i, (run, chunk) in enumerate(runners):
            start = time.perf_counter()
            run(chunk)
            sync(device)
            best[i] = max(best[i], chunk / (time.perf_counter() - start))
    return best


def matmul_runner(device: str, dtype: torch.dtype = torch.float32) -> Callable[[int], None]:
    a, b = (torch.randn(256, 256, device=device).to(dtype) for _ in range(2))

    def run(n: int) -> None:
        for _ in range(n):
            torch.mm(a, b)

    return run


def matmul_gflops(repeats: int, device: str) -> float:
    return best_rate(matmul_runner(device), 500, repeats, device) * MATMUL_GFLOP


def learner_runner(name: str, policies: int, table: TransitionTable, stats: tuple, mode: str | None,
                   matmul: str = "fp32") -> Callable[[int], None]:
    cfg = dataclasses.replace(CONFIGS[name], matmul=matmul)
    specs = [PolicySpec(cfg, seed, PolicyData("r"), *stats) for seed in range(policies)]
    learner = build_learner(name, Problem(OBS, ACT, -np.ones(ACT), np.ones(ACT), 10**7), specs, table, mode)
    started = time.perf_counter()
    learner.run(4)  # compiles or captures here, outside the timing
    sync(str(table.device))
    run_first_call_s = time.perf_counter() - started

    def run(n: int) -> None:
        learner.run(n)
        learner.metrics()  # the training loop reads metrics every log_every updates: once per window here

    run.first_call_s = run_first_call_s  # type: ignore[attr-defined]  # compile or capture included
    run.matmul = matmul  # type: ignore[attr-defined]
    return run


def corl_runner(path: Path, transitions: Transitions, device: str) -> Callable[[int], None]:
    from _corl import corl_iql_trainer, load_corl

    corl = load_corl(path, "--corl-iql", "bench_rl")
    dataset = {"observations": transitions.observations, "actions": transitions.actions,
               "rewards": transitions.rewards, "next_observations": transitions.next_observations,
               "terminals": transitions.terminals}
    trainer, buffer = corl_iql_trainer(corl, dataset, deterministic=CONFIGS["iql"].actor == "deterministic",
                                       device=device)

    def run(n: int) -> None:
        for _ in range(n):  # CORL's train loop, less wandb.log
            batch = [b.to(device) for b in buffer.sample(256)]
            trainer.train(batch)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:N)")
    parser.add_argument("--corl-iql", type=Path, default=None, help="CORL's algorithms/offline/iql.py")
    parser.add_argument("--modes", default=None,
                        help="comma-separated update modes to time (eager, default = torch.compile, cuda-graph, "
                             "compiled-cuda-graph); default: eager and default on a CPU, eager and cuda-graph on a GPU")
    parser.add_argument("--matmul", default="fp32",
                        help="comma-separated precisions of the learners' hidden-layer products (fp32, bf16: "
                             "rl.<learner>.matmul); the targets are read on the fp32 rows")
    parser.add_argument("--seconds", type=float, default=4.0, help="about how long each timed window runs")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run, no JSON")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rl.json"))
    parser.add_argument("--warm-cache", action="store_true",
                        help="use Inductor's usual compile cache (first-call times then leave out what it holds)")
    args = parser.parse_args()
    if args.warm_cache:
        run_bench(args, parser, cache="warm")
        return
    cache_dir = tempfile.mkdtemp(prefix="bench-rl-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir  # read at each compile
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache_dir, "triton")
    try:
        run_bench(args, parser, cache="cold")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser, cache: str) -> None:
    device = args.device
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(args.threads)
    # Every learner's update is one code object to Dynamo, which compiles it at most recompile_limit
    # (8) times a process; this process compiles one program per row (up to 16 with --matmul fp32,bf16).
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    smoke = args.smoke_test
    repeats = 1 if smoke else args.repeats
    modes = (args.modes.split(",") if args.modes else (["eager", "cuda-graph"] if on_gpu else ["eager", "default"]))
    if smoke:
        modes = ["eager"]
    precisions = args.matmul.split(",")
    if "fp32" not in precisions or not set(precisions) <= {"fp32", "bf16"}:
        parser.error(f"--matmul {args.matmul}: give fp32, or fp32,bf16 (the targets are read on fp32 rows)")
    transitions = random_transitions(5_000 if smoke else 200_000)
    table = TransitionTable.build(transitions, {"r": transitions.rewards}, -np.ones(ACT), np.ones(ACT), device)
    stats = transitions.observation_stats()
    load_before = os.getloadavg()
    gflops = matmul_gflops(1, device)  # a first figure, to size the windows; the table's comes below
    rows: list[dict] = []

    def chunk_for(algo: str, policies: int, guess: float) -> int:
        return 3 if smoke else max(5, int(args.seconds * guess / policies / GFLOP_PER_UPDATE[algo]))

    guess = gflops * (0.05 if on_gpu else 0.5)  # policy-GFLOP/s a learner may reach: sizes the windows
    # (name, algo, policies, mode, run, chunk): every runner is built (compiled, captured) first,
    # then all are timed in interleaved rounds, the matmul that sets the bound among them
    entries: list[tuple[str, str, int, str, Callable[[int], None], int]] = [
        ("256^3 matmul", "", 0, "", matmul_runner(device), 3 if smoke else max(50, int(args.seconds * gflops / MATMUL_GFLOP)))]
    if "bf16" in precisions:  # the bound of the bf16 rows
        entries.append(("256^3 matmul, bf16", "", 0, "", matmul_runner(device, torch.bfloat16), entries[0][-1] * 2))
    if args.corl_iql is not None:
        entries.append(("CORL iql.py (imported unmodified)", "iql", 1, "eager",
                        corl_runner(args.corl_iql, transitions, device), chunk_for("iql", 1, guess / 2)))
    shapes = [("iql", 1), ("iql", 8), ("rebrac", 1), ("bc", 1)]
    if on_gpu:
        shapes += [("iql", 64), ("iql", 6), ("bc", 3)]
    for precision in precisions:
        for algo, policies in shapes:
            for mode in modes:
                name = f"tge_ray {algo} x{policies} ({mode}{', bf16' if precision == 'bf16' else ''})"
                print(f"  building {name}", flush=True)
                runner = learner_runner(algo, policies, table, stats, None if mode == "eager" else mode, precision)
                entries.append((name, algo, policies, mode, runner, chunk_for(algo, policies, guess)))
    print(f"timing {len(entries)} rows in {repeats} interleaved rounds", flush=True)
    rates = interleaved_best([(run, chunk) for *_, run, chunk in entries], repeats, device)
    gflops = rates[0] * MATMUL_GFLOP
    print(f"256^3 matmul: {gflops:.0f} GFLOP/s on {device}" + ("" if on_gpu else f" with {args.threads} threads"))
    gflops_bf16 = None
    if "bf16" in precisions:
        gflops_bf16 = rates[1] * MATMUL_GFLOP
        print(f"256^3 matmul, bf16: {gflops_bf16:.0f} GFLOP/s")
    for (name, algo, policies, mode, run, _), rate in zip(entries[1:], rates[1:]):
        if not algo:
            continue  # the bf16 matmul, printed above
        first_call_s = getattr(run, "first_call_s", None)
        rows.append({"name": name, "algo": algo, "policies": policies, "mode": mode,
                     "matmul": getattr(run, "matmul", "fp32"),
                     "updates_per_s": round(rate, 1), "policy_updates_per_s": round(rate * policies, 1),
                     "first_call_s": None if first_call_s is None else round(first_call_s, 1)})
        first = "" if first_call_s is None else f"  first call {first_call_s:6.1f} s"
        print(f"  {name:<44} {rate:9.1f} updates/s  {rate * policies:10.1f} policy-updates/s{first}", flush=True)

    # Where compiling pays: the updates (per policy) after which a compiled learner's first call,
    # the compile, is repaid by its faster updates. resources.compile=cpu compiles at
    # CPU_COMPILE_MIN_UPDATES or more.
    for row in rows:
        eager = next((r for r in rows if r["name"].startswith("tge_ray") and r["algo"] == row["algo"]
                      and r["policies"] == row["policies"] and r["mode"] == "eager" and r["matmul"] == row["matmul"]),
                     None)
        if row["mode"] in ("eager", "") or eager is None or row["first_call_s"] is None:
            continue
        saved_per_update = 1 / eager["updates_per_s"] - 1 / row["updates_per_s"]
        extra = row["first_call_s"] - eager["first_call_s"]
        row["compile_repaid_after_updates"] = round(extra / saved_per_update) if saved_per_update > 0 else None
        print(f"  {row['name']:<44} compile repaid after {row['compile_repaid_after_updates']} updates"
              + ("" if on_gpu else f" (resources.compile=cpu compiles at {CPU_COMPILE_MIN_UPDATES} or more)"))

    bounds = {algo: gflops / flop for algo, flop in GFLOP_PER_UPDATE.items()}

    def best(algo: str, policies: int, matmul: str = "fp32") -> dict:
        mine = [r for r in rows if r["algo"] == algo and r["policies"] == policies and r["name"].startswith("tge_ray")
                and r["matmul"] == matmul]
        return max(mine, key=lambda r: r["policy_updates_per_s"])

    verdict: dict[str, dict] = {}
    corl = [r for r in rows if r["name"].startswith("CORL")]
    if not on_gpu:
        if corl:
            ratio = best("iql", 1)["updates_per_s"] / corl[0]["updates_per_s"]
            verdict["iql_p1_vs_corl"] = {"value": round(ratio, 2), "target": TARGETS["cpu"]["iql_p1_vs_corl"]}
        verdict["iql_p8_bound_share"] = {"value": round(best("iql", 8)["policy_updates_per_s"] / bounds["iql"], 3),
                                         "target": TARGETS["cpu"]["iql_p8_bound_share"]}
        verdict["rebrac_p1_bound_share"] = {"value": round(best("rebrac", 1)["updates_per_s"] / bounds["rebrac"], 3),
                                            "target": TARGETS["cpu"]["rebrac_p1_bound_share"]}
    else:
        verdict["iql_p1_updates_per_s"] = {"value": best("iql", 1)["updates_per_s"],
                                           "target": TARGETS["cuda"]["iql_p1_updates_per_s"]}
        verdict["iql_p64_policy_updates_per_s"] = {"value": best("iql", 64)["policy_updates_per_s"],
                                                   "target": TARGETS["cuda"]["iql_p64_policy_updates_per_s"]}
        minutes = (1e6 / best("iql", 6)["updates_per_s"] + 1e6 / best("bc", 3)["updates_per_s"]) / 60
        verdict["paper_9_policies_minutes"] = {"value": round(minutes, 1), "target": TARGETS["cuda"]["paper_9_policies_minutes"],
                                               "note": "1M updates of TGE-IQL and oracle-IQL x3 seeds (one IQL batch of 6) "
                                                       "and BC x3 (one BC batch of 3), updates only"}
    print(f"\nbounds (policy-updates/s at {gflops:.0f} GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in bounds.items()))
    for key, item in verdict.items():
        met = item["value"] <= item["target"] if key.endswith("minutes") else item["value"] >= item["target"]
        item["met"] = bool(met)
        print(f"  {key:<32} {item['value']:>10}  target {item['target']:<8} {'met' if met else 'MISSED'}")
    bf16_rows: dict[str, dict] = {}
    if gflops_bf16 is not None:  # beside the targets, not in them: the targets are fp32's
        print(f"bf16 products (bound at the bf16 matmul's {gflops_bf16:.0f} GFLOP/s), fastest mode:")
        for algo, policies in shapes:
            fast, slow = best(algo, policies, "bf16"), best(algo, policies)
            item = {"policy_updates_per_s": fast["policy_updates_per_s"],
                    "vs_fp32": round(fast["policy_updates_per_s"] / slow["policy_updates_per_s"], 2),
                    "fp32_bound_share": round(fast["policy_updates_per_s"] / bounds[algo], 3),
                    "bf16_bound_share": round(fast["policy_updates_per_s"] * GFLOP_PER_UPDATE[algo] / gflops_bf16, 3)}
            if corl and (algo, policies) == ("iql", 1):
                item["vs_corl"] = round(fast["updates_per_s"] / corl[0]["updates_per_s"], 2)
            bf16_rows[f"{algo}_p{policies}"] = item
            print(f"  {algo} x{policies:<3} " + "  ".join(f"{k} {v}" for k, v in item.items()))
    if smoke:
        return
    report = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "cuda_device": torch.cuda.get_device_name(device) if on_gpu else None},
        "device": device, "matmul": precisions, "torch": torch.__version__, "threads": args.threads,
        "batch_sizes": {algo: cfg.batch_size for algo, cfg in CONFIGS.items()},
        "note": "best of --repeats interleaved rounds; compare rows within one file (the machine may be shared)",
        "compile_cache": cache,
        "matmul_256_gflops": round(gflops, 1),
        "matmul_256_gflops_bf16": None if gflops_bf16 is None else round(gflops_bf16, 1),
        "flop_bound_policy_updates_per_s": {k: round(v, 1) for k, v in bounds.items()},
        "results": rows,
        "targets": verdict,
        "bf16": bf16_rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
