"""Updates per second of the offline RL learners (IQL and BC batch 256, ReBRAC batch 1024, Hopper dims).

    .venv/bin/python benchmarks/bench_rl.py                 # full run, writes benchmarks/rl.json
    .venv/bin/python benchmarks/bench_rl.py --smoke-test    # seconds, writes nothing
    python benchmarks/bench_rl.py --device cuda --compile --out rl-gpu.json   # on a GPU

Beside ours it times, in the same process and under the same load, a CORL-style eager IQL
(two MLP critics, three Adam steps, ``.item()`` every step) so the comparison with the
reference figures does not depend on what else the machine is running; and a 256x256x256
matmul, whose GFLOP/s bound what any implementation can reach here. Each measurement is the
best of ``--repeats`` timed windows. With ``--device cuda`` everything (baseline, learners,
batches, matmul) runs on the GPU and each window ends with a device synchronisation. The learners
run in fp32 there (no TF32, no autocast): at 256-wide layers and batch 256-1024 a step is bound by
kernel launches, not arithmetic, which ``--compile reduce-overhead`` (CUDA graphs) addresses; the
default compile mode gained little there (``docs/notes/gpu-h200.md``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tge_ray.config import RLConfig
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import make_learner, metrics_to_floats

OBS, ACT = 11, 3
REFERENCE = {  # updates/s on a 2-core machine, from the brief
    "iql": {"reference": "single-file eager PyTorch IQL (CORL-style)", "updates_per_s": 172.0, "target": 500.0},
    "rebrac": {"reference": "JAX ReBRAC (CORL)", "updates_per_s": 47.5, "target": 70.0},
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def random_transitions(n: int = 100_000, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    return Transitions(obs, rng.uniform(-1, 1, (n, ACT)), rng.uniform(size=n),
                       np.roll(obs, -1, axis=0), (rng.uniform(size=n) < 0.001).astype(np.float32))


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(step: Callable[[], None], warmup: int, updates: int, repeats: int, device: str = "cpu") -> float:
    """Best wall-clock updates/s over ``repeats`` windows (the least disturbed by other load)."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(updates):
            step()
        sync(device)
        rates.append(updates / (time.perf_counter() - start))
    return max(rates)


def matmul_gflops(repeats: int, device: str = "cpu") -> float:
    a, b = torch.randn(256, 256, device=device), torch.randn(256, 256, device=device)
    rate = best_rate(lambda: torch.mm(a, b), 50, 500, repeats, device)
    return rate * 2 * 256**3 / 1e9


# ----------------------------------------------------------------- CORL-style eager IQL baseline


def corl_mlp(dims: list[int], tanh: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.ReLU()]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def corl_iql_step_fn(transitions: Transitions, batch_size: int = 256, device: str = "cpu") -> Callable[[], None]:
    """CORL's iql.py update structure: separate Q1/Q2/V/actor, three optimisers, .item() each step."""
    torch.manual_seed(0)
    q1, q2 = corl_mlp([OBS + ACT, 256, 256, 1]).to(device), corl_mlp([OBS + ACT, 256, 256, 1]).to(device)
    q1_t, q2_t = copy.deepcopy(q1).requires_grad_(False), copy.deepcopy(q2).requires_grad_(False)
    v = corl_mlp([OBS, 256, 256, 1]).to(device)
    actor = corl_mlp([OBS, 256, 256, ACT], tanh=True).to(device)
    log_std = nn.Parameter(torch.zeros(ACT, device=device))
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    v_opt = torch.optim.Adam(v.parameters(), lr=3e-4)
    a_opt = torch.optim.Adam([*actor.parameters(), log_std], lr=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(a_opt, 1_000_000)
    data = [torch.as_tensor(x, dtype=torch.float32, device=device)
            for x in (transitions.observations, transitions.actions, transitions.rewards,
                      transitions.next_observations, transitions.terminals)]
    rng = np.random.default_rng(0)

    def step() -> None:
        idx = torch.as_tensor(rng.integers(0, len(transitions), batch_size), device=device)
        s, a, r, s2, d = (x[idx] for x in data)
        with torch.no_grad():
            next_v = v(s2).squeeze(-1)
            sa = torch.cat([s, a], 1)
            target_q = torch.min(q1_t(sa), q2_t(sa)).squeeze(-1)
        adv = target_q - v(s).squeeze(-1)
        v_loss = torch.mean(torch.abs(0.7 - (adv < 0).float()) * adv**2)
        v_loss.item()
        v_opt.zero_grad()
        v_loss.backward()
        v_opt.step()
        targets = r + (1 - d) * 0.99 * next_v
        q_loss = sum(nn.functional.mse_loss(q(sa).squeeze(-1), targets) for q in (q1, q2)) / 2
        q_loss.item()
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        with torch.no_grad():
            for t, o in zip([*q1_t.parameters(), *q2_t.parameters()], [*q1.parameters(), *q2.parameters()]):
                t.mul_(0.995).add_(o, alpha=0.005)
        w = torch.exp(3.0 * adv.detach()).clamp(max=100.0)
        dist = torch.distributions.Normal(actor(s), log_std.clamp(-20, 2).exp())
        a_loss = torch.mean(w * -dist.log_prob(a).sum(-1))
        a_loss.item()
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        sched.step()

    return step


# ----------------------------------------------------------------- ours


def learner_step_fn(method: str, transitions: Transitions, sync_every: int, compile_step: bool | str,
                    device: str = "cpu") -> Callable[[], None]:
    learner = make_learner(method, RLConfig(steps=1_000_000), OBS, ACT, -np.ones(ACT), np.ones(ACT),
                           *transitions.observation_stats(), seed=0, compile=compile_step, device=device)
    sampler = learner.make_sampler(transitions)
    counter = [0]

    def step() -> None:
        metrics = learner.train_step(sampler.sample())
        counter[0] += 1
        if counter[0] % sync_every == 0:
            metrics_to_floats(metrics)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        help="also time learners with compiled losses (torch.compile MODE: default, "
                             "reduce-overhead = CUDA graphs on a GPU, ...)")
    parser.add_argument("--iql-updates", type=int, default=600, help="timed IQL updates per window")
    parser.add_argument("--rebrac-updates", type=int, default=120, help="timed ReBRAC updates per window")
    parser.add_argument("--smoke-test", action="store_true", help="tiny run, no JSON")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:N)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rl.json"))
    args = parser.parse_args()
    device = args.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(args.threads)
    smoke = args.smoke_test
    iql_n, rebrac_n, warmup = (20, 4, 3) if smoke else (args.iql_updates, args.rebrac_updates, 30)
    repeats = 1 if smoke else args.repeats
    transitions = random_transitions(5_000 if smoke else 100_000)
    load_before = os.getloadavg()

    rows: list[dict] = []

    def record(name: str, algo: str, rate: float, note: str) -> None:
        rows.append({"name": name, "algo": algo, "updates_per_s": round(rate, 1), "note": note})
        print(f"  {name:<34} {rate:8.1f} updates/s", flush=True)

    gflops = matmul_gflops(repeats, device)
    print(f"256^3 matmul: {gflops:.0f} GFLOP/s on {device}" + (f" with {args.threads} threads" if device == "cpu" else ""))
    record("corl-style eager IQL (same run)", "iql", best_rate(corl_iql_step_fn(transitions, device=device), warmup, iql_n, repeats, device),
           "CORL iql.py structure re-timed here")
    record("tge_ray IQL, sync every step", "iql",
           best_rate(learner_step_fn("iql", transitions, 1, False, device), warmup, iql_n, repeats, device), "update() semantics")
    record("tge_ray IQL, sync every 100", "iql",
           best_rate(learner_step_fn("iql", transitions, 100, False, device), warmup, iql_n, repeats, device), "train loop semantics")
    record("tge_ray ReBRAC, sync every 100", "rebrac",
           best_rate(learner_step_fn("rebrac", transitions, 100, False, device), warmup // 3, rebrac_n, repeats, device), "")
    record("tge_ray BC, sync every 100", "bc",
           best_rate(learner_step_fn("bc", transitions, 100, False, device), warmup, iql_n, repeats, device),
           "the baseline's and TGE-fBC's learner")
    if args.compile:  # warm-up includes the compilation (tens of seconds), which is not timed
        mode = True if args.compile == "default" else args.compile
        suffix = "compile=True" if mode is True else f"compile mode={mode}"
        record(f"tge_ray IQL, {suffix}", "iql",
               best_rate(learner_step_fn("iql", transitions, 100, mode, device), warmup, iql_n, repeats, device), "")
        record(f"tge_ray ReBRAC, {suffix}", "rebrac",
               best_rate(learner_step_fn("rebrac", transitions, 100, mode, device), max(4, warmup // 3), rebrac_n,
                         repeats, device), "")

    # IQL: ~0.53 GFLOP per update (4 MLPs forward+backward, 3 forward-only); ReBRAC ~3.35; BC
    # ~0.11 (one MLP forward+backward). The bound uses the 256^3 matmul speed, the size these
    # layers run at.
    bounds = {"iql": gflops / 0.53, "rebrac": gflops / 3.35, "bc": gflops / 0.106}
    print(f"\n{'algo':<7} {'ours (best)':>12} {'reference':>10} {'target':>8} {'fp32 bound here':>16}")
    for algo, ref in REFERENCE.items():
        ours = max(r["updates_per_s"] for r in rows if r["algo"] == algo and r["name"].startswith("tge_ray"))
        print(f"{algo:<7} {ours:12.1f} {ref['updates_per_s']:10.1f} {ref['target']:8.1f} {bounds[algo]:16.0f}")
    bc = max(r["updates_per_s"] for r in rows if r["algo"] == "bc")
    print(f"{'bc':<7} {bc:12.1f} {'-':>10} {'-':>8} {bounds['bc']:16.0f}")
    if smoke:
        return
    report = {
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "cuda_device": torch.cuda.get_device_name(device) if device != "cpu" else None},
        "device": device,
        "precision": "fp32",
        "torch": torch.__version__,
        "threads": args.threads,
        "note": "best of --repeats windows; the machine was shared with other jobs (see load averages)",
        "matmul_256_gflops": round(gflops, 1),
        "flop_bound_updates_per_s": {k: round(v, 1) for k, v in bounds.items()},
        "results": rows,
        "reference": REFERENCE,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
