"""The pipeline's GPU code paths checked against CPU results, on a machine with a CUDA GPU.

CI has no GPU, so the GPU branches of the pipeline (bf16 autocast in diffusion training and in
the embedding actors, learners and samplers on the device, checkpoints written from GPU tensors
and read on CPU) are checked here. Each check prints one line with its figures and PASS/FAIL and
the whole lands in ``--out`` (JSON); the exit code is non-zero when any check fails.

1. ``diffusion_bf16``: the reference U-Net (dim 32, 1-2-4-8, H 32, 11-dim states) trains on the
   GPU under bf16 autocast on smooth random-walk windows; the loss must fall (mean of the first
   25 steps against the last 25) and stay finite.
2. ``checkpoint_gpu_to_cpu``: that run's checkpoint, written with ``write_checkpoint`` from GPU
   tensors, is read back by ``read_checkpoint`` / ``encoder_from_checkpoint`` on the CPU.
3. ``embedding_bf16``: the same EMA encoder embeds windows on the CPU in fp32 and on the GPU
   through ``embed_batch`` (bf16 autocast, what the embedding actors run). Figures: relative
   error ||gpu - cpu|| / ||cpu||, worst cosine, and what it does to the rewards (log kernel,
   k 10, sigma 1, exact k-NN in float64): largest change of a min-max-scaled reward, top-k
   neighbour overlap, and the separation AUC of each. bf16 operands give relative errors of
   1e-3 to 1e-2; the check asks the AUC to move by < 0.01 and the scaled rewards by < 0.05.
4. ``resume_<name>``: stop and resume on the GPU equals the uninterrupted run, for the DDPM
   trainer and the IQL, ReBRAC and BC learners. The figure is the largest weight difference;
   beside it the difference between two uninterrupted runs, the device's own nondeterminism
   (atomics in some backward kernels), which resumption may not exceed.
5. ``learner_<name>``: 200 updates on the GPU, finite metrics, ``act`` returns NumPy actions
   inside the box.
6. ``compiled_<name>``: what ``resources.compile=auto`` does on a GPU (``tge_ray.accel``):
   IQL and ReBRAC with CUDA-graph-compiled losses, 100 updates, in the main thread; the
   reference U-Net, 60 steps, in a thread of a fresh process (as in a Ray Train worker: CUDA
   graphs) and in a thread of this process after the main thread took the graphs (``auto``
   must fall back to eager, not crash); its checkpoint must load into a plain
   ``TemporalUnet``. Compiled kernels round differently and differences grow over training,
   so the figure, the largest weight difference against eager relative to the largest
   weight, may not exceed the same figure between eager runs on the CPU and on the device
   (and the U-Net's last loss must stay within 5% of eager's).
7. ``faiss``: whether faiss is installed, built with GPU support, and which index
   ``build_index(use_gpu="auto")`` picks after its self-test.

    python benchmarks/check_gpu.py --out gpu-check.json      # about a minute on an H100/H200
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tge_ray.accel import compile_mode, compile_model
from tge_ray.config import DiffusionConfig, RLConfig
from tge_ray.diffusion.ddpm import DiffusionTrainerState, unwrap
from tge_ray.diffusion.embed import embed_batch
from tge_ray.diffusion.train import encoder_from_checkpoint, read_checkpoint, write_checkpoint
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.reward.diagnostics import roc_auc
from tge_ray.reward.kernels import kernel_reward, scale_rewards
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import make_learner, metrics_to_floats

OBS, ACT, HORIZON, K = 11, 3, 32, 10
results: list[dict[str, Any]] = []


def record(name: str, passed: bool, **figures: Any) -> None:
    results.append({"check": name, "passed": bool(passed), **figures})
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    print(f"{'PASS' if passed else 'FAIL'}  {name:<24} {shown}", flush=True)


def walk_windows(n: int, drift: float, seed: int) -> np.ndarray:
    """(n, H, obs) smooth random walks: states that change a little from step to step."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=(n, 1, OBS))
    steps = rng.normal(drift, 0.1, size=(n, HORIZON, OBS))
    return (start + np.cumsum(steps, axis=1)).astype(np.float32)


def knn_rewards(queries: np.ndarray, expert: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN in float64: (log-kernel rewards (N,), neighbour indices (N, k))."""
    q, e = queries.astype(np.float64), expert.astype(np.float64)
    squared = (q**2).sum(1)[:, None] - 2 * q @ e.T + (e**2).sum(1)[None]
    index = np.argsort(squared, axis=1)[:, :K]
    distances = np.sqrt(np.maximum(np.take_along_axis(squared, index, 1), 0.0))
    return kernel_reward(distances, "log", 1.0), index


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------- diffusion + embeddings


def check_diffusion(device: torch.device, steps: int) -> dict[str, Any]:
    cfg = DiffusionConfig(ema_start=steps // 2)
    torch.manual_seed(0)
    # On a GPU the pipeline's own default (bf16=None: autocast on CUDA); on a CPU dry run, forced.
    state = DiffusionTrainerState(TemporalUnet(OBS, HORIZON, cfg).to(device), cfg, seed=0, device=device,
                                  bf16=None if device.type == "cuda" else True)
    data = torch.from_numpy(walk_windows(8192, 0.0, 1)).to(device)
    losses = []
    for _ in range(steps):
        start = (state.step * cfg.batch_size) % (len(data) - cfg.batch_size)
        losses.append(state.update(data[start:start + cfg.batch_size]))
    losses = torch.stack(losses).float().cpu().numpy()
    first, last = float(losses[:25].mean()), float(losses[-25:].mean())
    record("diffusion_bf16", state.bf16 and np.all(np.isfinite(losses)) and last < 0.8 * first,
           steps=steps, autocast_bf16=state.bf16, loss_first25=first, loss_last25=last)
    return state.state_dict()


def check_checkpoint_and_embeddings(device: torch.device, trainer_state: dict[str, Any]) -> None:
    cfg = DiffusionConfig(ema_start=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_checkpoint(Path(tmp) / "diffusion.pt", obs_dim=OBS, horizon=HORIZON, cfg=cfg,
                                ema_state_dict=trainer_state["ema"], model_state_dict=trainer_state["model"],
                                step=trainer_state["step"], losses=[])
        data = read_checkpoint(path)
    on_cpu = all(t.device.type == "cpu" for t in data["ema_state_dict"].values())
    cpu_encoder = encoder_from_checkpoint(data, "cpu", obs_dim=OBS, horizon=HORIZON)
    gpu_encoder = encoder_from_checkpoint(data, device, obs_dim=OBS, horizon=HORIZON)
    record("checkpoint_gpu_to_cpu", on_cpu, tensors_read_on_cpu=on_cpu, step=int(data["step"]))

    offline = np.concatenate([walk_windows(6000, 0.0, 2), walk_windows(2000, 0.05, 3)])
    expert_flags = np.r_[np.zeros(6000, bool), np.ones(2000, bool)]
    demo = walk_windows(500, 0.05, 4)
    embeddings = {}
    for name, encoder in (("cpu_fp32", cpu_encoder), ("gpu_bf16", gpu_encoder)):
        embeddings[name] = {
            part: np.concatenate([embed_batch(encoder, x[i:i + 1024], cfg.pool, cfg.normalize)
                                  for i in range(0, len(x), 1024)])
            for part, x in (("offline", offline), ("demo", demo))
        }
    ref, got = embeddings["cpu_fp32"]["offline"], embeddings["gpu_bf16"]["offline"]
    relative = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    cosine = float(((got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)).min())
    rewards, neighbours, aucs = {}, {}, {}
    for name, parts in embeddings.items():
        raw, neighbours[name] = knn_rewards(parts["offline"], parts["demo"])
        rewards[name] = scale_rewards(raw, "minmax")[0]
        aucs[name] = roc_auc(rewards[name], expert_flags)
    overlap = float(np.mean([len(set(a) & set(b)) / K for a, b in
                             zip(neighbours["cpu_fp32"], neighbours["gpu_bf16"])]))
    reward_change = float(np.abs(rewards["gpu_bf16"] - rewards["cpu_fp32"]).max())
    auc_change = abs(aucs["gpu_bf16"] - aucs["cpu_fp32"])
    record("embedding_bf16", got.dtype == np.float32 and relative < 2e-2 and auc_change < 0.01 and reward_change < 0.05,
           dtype=str(got.dtype), relative_error=relative, worst_cosine=cosine, topk_overlap=overlap,
           max_scaled_reward_change=reward_change, auc_cpu_fp32=float(aucs["cpu_fp32"]),
           auc_gpu_bf16=float(aucs["gpu_bf16"]))


def check_diffusion_resume(device: torch.device) -> None:
    cfg = DiffusionConfig(dim=16, ema_start=4)
    data = torch.from_numpy(walk_windows(512, 0.0, 5)).to(device)

    def run(steps: int, state: DiffusionTrainerState | None = None) -> DiffusionTrainerState:
        if state is None:
            torch.manual_seed(1)
            state = DiffusionTrainerState(TemporalUnet(OBS, HORIZON, cfg).to(device), cfg, seed=7, device=device)
        for _ in range(steps):
            state.update(data[(state.step * 64) % 448:][:64])
        return state

    straight, again = run(12), run(12)
    buffer = io.BytesIO()
    torch.save(run(6).state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(12345)
    resumed = DiffusionTrainerState(TemporalUnet(OBS, HORIZON, cfg).to(device), cfg, seed=999, device=device)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    run(6, resumed)
    floor = max_weight_difference(straight.state_dict()["model"], again.state_dict()["model"])
    difference = max(max_weight_difference(straight.state_dict()[part], resumed.state_dict()[part])
                     for part in ("model", "ema"))
    record("resume_diffusion", resumed.step == 12 and difference <= floor,
           max_difference=difference, two_straight_runs=floor)


# ----------------------------------------------------------------- learners


def transitions(n: int = 20_000, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    return Transitions(obs, rng.uniform(-1, 1, (n, ACT)).astype(np.float32), rng.uniform(size=n).astype(np.float32),
                       np.roll(obs, -1, axis=0), (rng.uniform(size=n) < 0.01).astype(np.float32))


def build(method: str, data: Transitions, device: torch.device | str, seed: int = 0, compile: str | bool = False):
    learner = make_learner(method, RLConfig(steps=1000), OBS, ACT, -np.ones(ACT), np.ones(ACT),
                           *data.observation_stats(), device=str(device), seed=seed, compile=compile)
    return learner, learner.make_sampler(data)


def weights(learner) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v for n, m in learner._modules.items() for k, v in m.state_dict().items()}


def check_learner(method: str, device: torch.device, data: Transitions) -> None:
    learner, sampler = build(method, data, device)
    for _ in range(200):
        metrics = learner.train_step(sampler.sample())
    values = metrics_to_floats(metrics)
    actions = learner.act(data.observations[:64])
    ok = (all(math.isfinite(v) for v in values.values()) and isinstance(actions, np.ndarray)
          and actions.shape == (64, ACT) and bool(np.all(np.abs(actions) <= 1)))
    record(f"learner_{method}", ok, updates=learner.step, **{k: round(v, 4) for k, v in values.items()})


def check_learner_resume(method: str, device: torch.device, data: Transitions) -> None:
    def straight_run() -> dict[str, torch.Tensor]:
        learner, sampler = build(method, data, device)
        for _ in range(5):
            learner.update(sampler.sample())
        return weights(learner)

    straight, again = straight_run(), straight_run()
    first, first_sampler = build(method, data, device)
    for _ in range(3):  # odd: ReBRAC resumes between a critic-only and an actor step
        first.update(first_sampler.sample())
    buffer = io.BytesIO()
    torch.save({"learner": first.state_dict(), "sampler": first_sampler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, resumed_sampler = build(method, data, device, seed=123)
    resumed.load_state_dict(saved["learner"])
    resumed_sampler.load_state_dict(saved["sampler"])
    for _ in range(2):
        resumed.update(resumed_sampler.sample())
    floor = max_weight_difference(straight, again)
    difference = max_weight_difference(straight, weights(resumed))
    record(f"resume_{method}", resumed.step == 5 and difference <= floor,
           max_difference=difference, two_straight_runs=floor)


# ----------------------------------------------------------------- resources.compile=auto


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    scale = max(float(v.float().abs().max()) for v in a.values() if v.is_floating_point())
    return max_weight_difference(a, b) / scale


def learner_weights(method: str, data: Transitions, device: str, setting: str | bool) -> dict[str, torch.Tensor]:
    learner, sampler = build(method, data, device, compile=setting)
    for _ in range(100):
        learner.train_step(sampler.sample())
    return {k: v.detach().cpu() for k, v in weights(learner).items()}


def check_compiled_learner(method: str, device: torch.device, data: Transitions) -> None:
    """Compiled against eager on the device, measured against the CPU's eager run: rounding
    differences grow over training, and compiled kernels may not drift further than the CPU does."""
    mode = compile_mode("auto", device)
    eager = learner_weights(method, data, str(device), False)
    compiled = learner_weights(method, data, str(device), mode or False)
    floor = relative_difference(learner_weights(method, data, "cpu", False), eager)
    difference = relative_difference(eager, compiled)
    record(f"compiled_{method}", difference <= max(floor, 1e-6), mode=str(mode),
           compiled_vs_eager=difference, eager_cpu_vs_device=floor)


def train_unet(device: str, setting: str | bool, steps: int = 60) -> dict[str, Any]:
    """``steps`` training steps of the reference U-Net compiled as ``resources.compile=setting``
    says, run in a new thread as Ray Train V2 runs its loop; weights, losses, the mode used."""
    out: dict[str, Any] = {}

    def loop() -> None:
        try:
            cfg = DiffusionConfig(ema_start=0)
            data = torch.from_numpy(walk_windows(4096, 0.0, 6)).to(device)
            torch.manual_seed(0)
            model = compile_model(TemporalUnet(OBS, HORIZON, cfg).to(device), setting, device)
            state = DiffusionTrainerState(model, cfg, seed=0, device=device)
            losses = []
            for _ in range(steps):
                start = (state.step * cfg.batch_size) % (len(data) - cfg.batch_size)
                state.update(data[start:start + cfg.batch_size])
                if state.step % 10 == 0:
                    losses.append(state.mean_loss())
            TemporalUnet(OBS, HORIZON, cfg).load_state_dict(state.state_dict()["ema"])  # the bare module's
            out.update(losses=losses, weights={k: v.detach().cpu() for k, v in unwrap(state.model).state_dict().items()},
                       mode=str(compile_mode(setting, device)) if unwrap(state.model) is not state.model else "eager")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]

    worker = threading.Thread(target=loop)
    worker.start()
    worker.join()
    return out


def check_compiled_diffusion(device: torch.device) -> None:
    """The U-Net under ``resources.compile=auto`` in a thread of a fresh process (a Ray Train
    worker: CUDA graphs) and in a thread of this process, whose main thread compiled the
    learners (the graphs belong to it: eager, not a crash); both against eager."""
    import multiprocessing

    eager = train_unet(str(device), False)
    cpu = train_unet("cpu", False)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        fresh = pool.apply(train_unet, (str(device), "auto"))
    other = train_unet(str(device), "auto")
    for name, run in (("compiled_diffusion_fresh", fresh), ("compiled_diffusion_shared", other)):
        failed = next((r["error"] for r in (eager, cpu, run) if "error" in r), None)
        if failed:
            record(name, False, error=failed)
            continue
        floor = relative_difference(cpu["weights"], eager["weights"])
        difference = relative_difference(eager["weights"], run["weights"])
        loss_gap = abs(run["losses"][-1] - eager["losses"][-1]) / eager["losses"][-1]
        record(name, difference <= max(floor, 1e-6) and loss_gap < 0.05, mode=run["mode"],
               compiled_vs_eager=difference, eager_cpu_vs_device=floor,
               last_loss_eager=eager["losses"][-1], last_loss_run=run["losses"][-1])


# ----------------------------------------------------------------- faiss


def check_faiss() -> None:
    try:
        import faiss
    except ImportError as exc:
        record("faiss", True, installed=False, note=f"not importable here ({exc}); reward stage not checked")
        return
    from tge_ray.reward.knn import build_index, faiss_built_with_gpu

    rng = np.random.default_rng(0)
    expert = rng.normal(size=(2000, 64)).astype(np.float32)
    index = build_index(expert, use_gpu="auto")
    record("faiss", True, installed=True, version=faiss.__version__, built_with_gpu=faiss_built_with_gpu(),
           chosen=type(getattr(index, "index", index)).__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda",
                        help="the GPU to check (cuda, cuda:N); cpu runs the script itself on the CPU (a dry run)")
    parser.add_argument("--diffusion-steps", type=int, default=400, help="bf16 training steps in check 1")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; --device cpu is a dry run")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    started = time.perf_counter()
    print(f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    trainer_state = check_diffusion(device, args.diffusion_steps)
    check_checkpoint_and_embeddings(device, trainer_state)
    check_diffusion_resume(device)
    data = transitions()
    for method in ("iql", "rebrac", "bc"):
        check_learner(method, device, data)
        check_learner_resume(method, device, data)
    for method in ("iql", "rebrac"):
        check_compiled_learner(method, device, data)
    check_compiled_diffusion(device)
    check_faiss()
    failed = [r["check"] for r in results if not r["passed"]]
    report = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version(), "seconds": round(time.perf_counter() - started, 1),
              "passed": not failed, "checks": results,
              "command": " ".join(["benchmarks/check_gpu.py", *sys.argv[1:]])}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(results) - len(failed)}/{len(results)} checks passed in {report['seconds']} s; wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
