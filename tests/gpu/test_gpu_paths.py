"""The pipeline's GPU code paths against CPU results (``pytest -m gpu``; skipped without CUDA).

CI has no GPU, so the GPU branches (bf16 autocast in diffusion training and in the embedding
actors, learners (batched, from a device table) on the device, checkpoints written from GPU tensors and read on
the CPU, ``resources.compile=auto``) are checked here on a machine that has one. Each test
prints one line of figures (``-s`` shows them; ``benchmarks/gpu.sh`` keeps them in its log):

1. ``diffusion_bf16``: the reference U-Net (dim 32, 1-2-4-8, H 32, 11-dim states) trains under
   bf16 autocast on smooth random-walk windows; the loss falls (first 25 steps against the
   last 25) and stays finite.
2. ``checkpoint_gpu_to_cpu``: that run's checkpoint, written from GPU tensors, reads back on the CPU.
3. ``embedding_bf16``: the EMA encoder embeds on the CPU in fp32 and on the GPU through
   ``embed_batch`` (bf16, what the embedding actors run). bf16 operands give relative errors
   of 1e-3 to 1e-2; the AUC may move by < 0.01 and a min-max-scaled reward by < 0.05.
4. ``resume_*``: stop and resume on the GPU equals the uninterrupted run (DDPM trainer, IQL,
   ReBRAC, BC), within the device's own nondeterminism (two uninterrupted runs' difference).
5. ``learner_*``: 200 updates of two policies on the GPU, finite metrics, their actors act on
   the CPU inside the box; ``batched_*``: a policy in a batch of three agrees with it alone to
   float32 rounding.
6. ``graphed_*`` and ``compiled_*``: ``resources.compile=auto``. The learners' updates are
   captured as one CUDA graph of several updates and replayed; the U-Net compiles with CUDA
   graphs in a thread of a fresh process (as a Ray Train worker) and in a thread of this
   process after the main thread took the graphs (eager, not a crash). Graphs and compiled
   kernels may round differently: the drift from eager may not exceed eager's drift between
   CPU and device. ``compiled_graphed_*``: the compiled update captured instead of the eager one
   (``compiled-cuda-graph``, which bench_rl times), held to the same drift.
7. ``faiss``: the index ``build_index(use_gpu="auto")`` picks finds the exact neighbours.

An H200's figures are in docs/notes/gpu-h200.md.
"""

from __future__ import annotations

import dataclasses
import io
import math
import multiprocessing
import os
import threading
from typing import Any

import numpy as np
import pytest
import torch

from tge_ray.accel import compile_mode, compile_model, learner_compile_mode
from tge_ray.config import BCConfig, DiffusionConfig, EmbeddingConfig, IQLConfig, ReBRACConfig
from tge_ray.diffusion.checkpoint import encoder_from_checkpoint, read_checkpoint, write_checkpoint
from tge_ray.diffusion.ddpm import DiffusionTrainerState, unwrap
from tge_ray.diffusion.embed import embed_batch
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.reward.diagnostics import roc_auc
from tge_ray.reward.kernels import kernel_reward, scale_rewards
from tge_ray.rl.buffer import Transitions
from tge_ray.rl.learner import PolicySpec, Problem
from tge_ray.rl.nets import StackedPolicy
from tge_ray.rl.table import PolicyData, TransitionTable
from tge_ray.rl.train import build_learner

pytestmark = pytest.mark.gpu

OBS, ACT, HORIZON, K = 11, 3, 32, 10
DIFFUSION_STEPS = int(os.environ.get("TGE_GPU_TESTS_DIFFUSION_STEPS", "400"))


def figures(name: str, **values: Any) -> str:
    """One line of a check's figures, printed and returned for assertion messages."""
    shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    line = f"{name:<26} {shown}"
    print(line, flush=True)
    return line


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


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    scale = max(float(v.float().abs().max()) for v in a.values() if v.is_floating_point())
    return max_weight_difference(a, b) / scale


# ----------------------------------------------------------------- diffusion and embeddings


@pytest.fixture(scope="module")
def trained_diffusion(device) -> tuple[dict[str, Any], np.ndarray, bool]:
    """The reference U-Net trained ``DIFFUSION_STEPS`` steps on the device under bf16 autocast:
    (trainer state dict, per-step losses, whether autocast was on)."""
    cfg = DiffusionConfig(ema_start=DIFFUSION_STEPS // 2)
    torch.manual_seed(0)
    # On a GPU the pipeline's own default (bf16=None: autocast on CUDA); on a CPU dry run, forced.
    state = DiffusionTrainerState(TemporalUnet(OBS, HORIZON, cfg).to(device), cfg, seed=0, device=device,
                                  bf16=None if device.type == "cuda" else True)
    data = torch.from_numpy(walk_windows(8192, 0.0, 1)).to(device)
    losses = []
    for _ in range(DIFFUSION_STEPS):
        start = (state.step * cfg.batch_size) % (len(data) - cfg.batch_size)
        losses.append(state.update(data[start:start + cfg.batch_size]))
    return state.state_dict(), torch.stack(losses).float().cpu().numpy(), bool(state.bf16)


def test_diffusion_bf16(trained_diffusion):
    _, losses, bf16 = trained_diffusion
    first, last = float(losses[:25].mean()), float(losses[-25:].mean())
    line = figures("diffusion_bf16", steps=len(losses), autocast_bf16=bf16, loss_first25=first, loss_last25=last)
    assert bf16 and np.all(np.isfinite(losses)) and last < 0.8 * first, line


def test_checkpoint_and_bf16_embeddings(device, trained_diffusion, tmp_path):
    trainer_state = trained_diffusion[0]
    cfg = DiffusionConfig(ema_start=0)
    path = write_checkpoint(tmp_path / "model.pt", obs_dim=OBS, horizon=HORIZON, cfg=cfg,
                            ema_state_dict=trainer_state["ema"], model_state_dict=trainer_state["model"],
                            step=trainer_state["step"], losses=[])
    data = read_checkpoint(path)
    on_cpu = all(t.device.type == "cpu" for t in data["ema_state_dict"].values())
    figures("checkpoint_gpu_to_cpu", tensors_read_on_cpu=on_cpu, step=int(data["step"]))
    assert on_cpu and int(data["step"]) == DIFFUSION_STEPS

    cpu_encoder = encoder_from_checkpoint(data, "cpu", obs_dim=OBS, horizon=HORIZON)
    gpu_encoder = encoder_from_checkpoint(data, device, obs_dim=OBS, horizon=HORIZON)
    offline = np.concatenate([walk_windows(6000, 0.0, 2), walk_windows(2000, 0.05, 3)])
    expert_flags = np.r_[np.zeros(6000, bool), np.ones(2000, bool)]
    demo = walk_windows(500, 0.05, 4)
    embeddings = {}
    for name, encoder in (("cpu_fp32", cpu_encoder), ("gpu_bf16", gpu_encoder)):
        embeddings[name] = {
            part: np.concatenate([embed_batch(encoder, x[i:i + 1024], EmbeddingConfig.pool, EmbeddingConfig.normalize)
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
    overlap = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(neighbours["cpu_fp32"], neighbours["gpu_bf16"])]))
    reward_change = float(np.abs(rewards["gpu_bf16"] - rewards["cpu_fp32"]).max())
    auc_change = abs(aucs["gpu_bf16"] - aucs["cpu_fp32"])
    line = figures("embedding_bf16", dtype=str(got.dtype), relative_error=relative, worst_cosine=cosine,
                   topk_overlap=overlap, max_scaled_reward_change=reward_change,
                   auc_cpu_fp32=float(aucs["cpu_fp32"]), auc_gpu_bf16=float(aucs["gpu_bf16"]))
    assert got.dtype == np.float32 and relative < 2e-2 and auc_change < 0.01 and reward_change < 0.05, line


def test_diffusion_resume(device):
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
    torch.manual_seed(12345)  # the resumed state must not depend on the global RNG or its own seed
    resumed = DiffusionTrainerState(TemporalUnet(OBS, HORIZON, cfg).to(device), cfg, seed=999, device=device)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    run(6, resumed)
    floor = max_weight_difference(straight.state_dict()["model"], again.state_dict()["model"])
    difference = max(max_weight_difference(straight.state_dict()[part], resumed.state_dict()[part])
                     for part in ("model", "ema"))
    line = figures("resume_diffusion", max_difference=difference, two_straight_runs=floor)
    assert resumed.step == 12 and difference <= floor, line


# ----------------------------------------------------------------- learners


@pytest.fixture(scope="module")
def transitions() -> Transitions:
    rng = np.random.default_rng(0)
    n = 20_000
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    return Transitions(obs, rng.uniform(-1, 1, (n, ACT)).astype(np.float32), rng.uniform(size=n).astype(np.float32),
                       np.roll(obs, -1, axis=0), (rng.uniform(size=n) < 0.01).astype(np.float32))


CONFIGS = {"iql": IQLConfig(), "rebrac": ReBRACConfig(), "bc": BCConfig()}


def build(method: str, data: Transitions, device: torch.device | str, seeds=(0, 1), mode: str | None = None,
          matmul: str = "fp32"):
    table = TransitionTable.build(data, {"r": data.rewards}, -np.ones(ACT), np.ones(ACT), str(device))
    config = dataclasses.replace(CONFIGS[method], matmul=matmul)
    specs = [PolicySpec(config, seed, PolicyData("r"), *data.observation_stats()) for seed in seeds]
    return build_learner(method, Problem(OBS, ACT, -np.ones(ACT), np.ones(ACT), 1000), specs, table, mode)


def weights(learner, policy: int | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in learner.params.items():
        per = value.shape[0] // learner.n_policies
        out[key] = value if policy is None else value[policy * per : (policy + 1) * per]
    return {k: v.detach().cpu() for k, v in out.items()}


@pytest.mark.parametrize("method", ["iql", "rebrac", "bc"])
def test_learner_on_device(method, device, transitions):
    learner = build(method, transitions, device)
    learner.run(200)
    values = learner.metrics()
    policy = StackedPolicy(learner.actor_state())  # the evaluation tasks' actors, on the CPU
    actions = policy.act(np.stack([transitions.observations[:64]] * 2))
    line = figures(f"learner_{method}", updates=learner.step, **{k: round(v, 4) for k, v in values[0].items()})
    assert all(math.isfinite(v) for row in values for v in row.values()), line
    assert isinstance(actions, np.ndarray) and actions.shape == (2, 64, ACT) and np.all(np.abs(actions) <= 1)


@pytest.mark.parametrize("method", ["iql", "rebrac", "bc"])
def test_learner_resume_on_device(method, device, transitions):
    def straight_run() -> dict[str, torch.Tensor]:
        learner = build(method, transitions, device)
        learner.run(5)
        return weights(learner)

    straight, again = straight_run(), straight_run()
    first = build(method, transitions, device)
    first.run(3)  # odd: ReBRAC resumes between an actor and a critic-only update
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = build(method, transitions, device)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.run(2)
    floor = max_weight_difference(straight, again)
    difference = max_weight_difference(straight, weights(resumed))
    line = figures(f"resume_{method}", max_difference=difference, two_straight_runs=floor)
    assert resumed.step == 5 and difference <= floor, line


@pytest.mark.parametrize("method", ["iql", "rebrac"])
def test_batched_policy_equals_alone_on_device(method, device, transitions):
    """Batch shapes may pick other kernels on a GPU: the same policy agrees to float32 rounding."""
    alone = build(method, transitions, device, seeds=(5,))
    batch = build(method, transitions, device, seeds=(3, 5, 9))
    alone.run(5)  # rounding differences grow chaotically with training: compare early
    batch.run(5)
    difference = relative_difference(weights(alone, 0), weights(batch, 1))
    line = figures(f"batched_{method}", alone_vs_batched=difference)
    assert difference <= 1e-4, line


# ----------------------------------------------------------------- resources.compile=auto


@pytest.mark.parametrize("method", ["iql", "rebrac", "bc"])
def test_graphed_learner(method, device, transitions):
    """``resources.compile=auto``: the update captured as a CUDA graph, several updates per
    replay, against eager on the device; the drift may not exceed eager's between CPU and device."""
    mode = learner_compile_mode("auto", device)
    eager = build(method, transitions, device)
    graphed = build(method, transitions, device, mode=mode)
    cpu = build(method, transitions, "cpu")
    for learner in (eager, graphed, cpu):
        learner.run(100)
    floor = relative_difference(weights(cpu), weights(eager))
    difference = relative_difference(weights(eager), weights(graphed))
    captured = graphed._graph not in (None, False)
    line = figures(f"graphed_{method}", mode=str(mode), captured=captured, graphed_vs_eager=difference,
                   eager_cpu_vs_device=floor)
    assert difference <= max(floor, 1e-6), line
    assert captured == (mode == "cuda-graph"), line


@pytest.mark.parametrize("method", ["iql", "rebrac"])
def test_bf16_graphed_learner(method, device, transitions):
    """``rl.<learner>.matmul=bf16`` on the device, captured as ``resources.compile=auto`` does: it
    trains, and its drift from eager bf16 is held to eager bf16's between CPU and device."""
    mode = learner_compile_mode("auto", device)
    eager = build(method, transitions, device, matmul="bf16")
    graphed = build(method, transitions, device, mode=mode, matmul="bf16")
    cpu = build(method, transitions, "cpu", matmul="bf16")
    for learner in (eager, graphed, cpu):
        learner.run(100)
    values = graphed.metrics()
    floor = relative_difference(weights(cpu), weights(eager))
    difference = relative_difference(weights(eager), weights(graphed))
    line = figures(f"bf16_graphed_{method}", mode=str(mode), graphed_vs_eager=difference, eager_cpu_vs_device=floor,
                   **{k: round(v, 4) for k, v in values[0].items()})
    assert all(math.isfinite(v) for row in values for v in row.values()), line
    assert difference <= max(floor, 1e-6), line


@pytest.mark.parametrize("method", ["iql", "rebrac", "bc"])
def test_compiled_graphed_learner(method, device, transitions):
    """``compiled-cuda-graph``: the compiled update captured as the CUDA graph (a bench_rl mode, not
    yet what ``resources.compile`` picks); its drift from eager is held as the eager graph's is.
    On the CPU dry run nothing is captured: the compiled update runs as it is, equal to
    ``torch.compile``'s own learner bit for bit."""
    on_gpu = torch.device(device).type == "cuda"
    graphed = build(method, transitions, device, mode="compiled-cuda-graph")
    reference = build(method, transitions, device, mode=None if on_gpu else "default")  # eager; on the CPU compiled
    cpu = build(method, transitions, "cpu")
    for learner in (reference, graphed, cpu):
        learner.run(100)
    floor = relative_difference(weights(cpu), weights(reference)) if on_gpu else 0.0
    difference = relative_difference(weights(reference), weights(graphed))
    captured = graphed._graph not in (None, False)
    line = figures(f"compiled_graphed_{method}", mode=str(graphed.compile), captured=captured,
                   graphed_vs_eager=difference, eager_cpu_vs_device=floor)
    assert difference <= (max(floor, 1e-6) if on_gpu else 0.0), line
    assert graphed.compile == "compiled-cuda-graph", line  # the compile did not fall back
    assert captured == on_gpu, line


def train_unet(device: str, setting: str | bool, steps: int = 60) -> dict[str, Any]:
    """``steps`` training steps of the reference U-Net compiled as ``resources.compile=setting``
    says, in a new thread as Ray Train runs its loop: weights, losses, the mode used, or an error."""
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
            TemporalUnet(OBS, HORIZON, cfg).load_state_dict(state.state_dict()["ema"])  # the bare module's keys
            out.update(losses=losses, weights={k: v.detach().cpu() for k, v in unwrap(state.model).state_dict().items()},
                       mode=str(compile_mode(setting, device)) if unwrap(state.model) is not state.model else "eager")
        except Exception as exc:  # noqa: BLE001 - the test reports it
            out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]

    worker = threading.Thread(target=loop)
    worker.start()
    worker.join()
    return out


@pytest.fixture(scope="module")
def eager_unets(device) -> tuple[dict[str, Any], dict[str, Any]]:
    """The U-Net trained eager on the device and on the CPU (the drift a compiled run may show)."""
    return train_unet(str(device), False), train_unet("cpu", False)


@pytest.mark.parametrize("where", ["fresh_process", "shared_process"])
def test_compiled_diffusion(where, device, eager_unets):
    """``auto`` in a thread of a fresh process (a Ray Train worker: CUDA graphs), and in a thread
    of this process, whose main thread compiled the learners (the graphs belong to it: eager)."""
    eager, cpu = eager_unets
    if where == "fresh_process":
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            run = pool.apply(train_unet, (str(device), "auto"))
    else:
        run = train_unet(str(device), "auto")
    failed = next((r["error"] for r in (eager, cpu, run) if "error" in r), None)
    assert failed is None, failed
    floor = relative_difference(cpu["weights"], eager["weights"])
    difference = relative_difference(eager["weights"], run["weights"])
    loss_gap = abs(run["losses"][-1] - eager["losses"][-1]) / eager["losses"][-1]
    line = figures(f"compiled_diffusion_{where}", mode=run["mode"], compiled_vs_eager=difference,
                   eager_cpu_vs_device=floor, last_loss_eager=eager["losses"][-1], last_loss_run=run["losses"][-1])
    assert difference <= max(floor, 1e-6) and loss_gap < 0.05, line


# ----------------------------------------------------------------- faiss


def test_faiss_index_finds_the_exact_neighbours(device):
    """The index the reward stage gets on this machine (the GPU one where faiss has GPU support
    and its self-test passes) returns the exact k nearest expert rows."""
    faiss = pytest.importorskip("faiss")
    from tge_ray.reward.knn import build_index, faiss_built_with_gpu, faiss_has_gpu

    rng = np.random.default_rng(0)
    expert = rng.normal(size=(2000, 64)).astype(np.float32)
    queries = rng.normal(size=(500, 64)).astype(np.float32)
    index = build_index(expert, use_gpu="auto")
    distances, ids = index.kneighbors(queries, K)  # (500, K) Euclidean, ascending
    exact = np.sqrt(((queries.astype(np.float64)[:, None, :] - expert.astype(np.float64)[None]) ** 2).sum(-1))
    exact_ids = np.argsort(exact, axis=1)[:, :K]
    line = figures("faiss", version=faiss.__version__, built_with_gpu=faiss_built_with_gpu(), index=index.device)
    if faiss_has_gpu():  # a GPU that faiss sees: the self-test must pass and the GPU index be used
        assert index.device == "gpu", line
    np.testing.assert_array_equal(ids, exact_ids, err_msg=line)
    np.testing.assert_allclose(distances, np.take_along_axis(exact, exact_ids, 1), rtol=1e-5, err_msg=line)
