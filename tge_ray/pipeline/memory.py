"""Memory each stage of ``tge run`` needs, estimated before anything is allocated.

The estimates count the large float32 arrays a stage holds at once and nothing else (Python,
the libraries, Ray's own processes are left out), so they give the order of magnitude, meant
to refuse a run that cannot fit (``windows.horizon=100000`` wants tens of GiB)
in one line before Ray starts, not to predict its peak:

- windows: D_mu's and D_E's padded rows, (N + E(H - 1)) x obs_dim, on the driver and once more in
  Ray's object store (:class:`~tge_ray.data.windows.Windows`). They live for the whole run, so
  every later stage is checked with them.
- diffusion: per Ray Train worker, the U-Net's weights x 5 (weights, gradients, Adam's two
  moments, EMA) and its training activations, ``TRAIN_FLOATS`` floats per channel and time step
  of every level, for ``diffusion.batch_size`` windows.
- embeddings: per actor, a batch of ``reward.batch_size`` windows and the encoder's activations
  (``INFER_FLOATS`` per channel and time step); on the driver and in the object store, every
  window's embedding.
- rewards: per actor, the k-NN index (the expert embeddings) and a batch of embeddings; on the
  driver and in the object store, D_mu's embeddings.
- policies, per learner batch (one runs at a time): the transition table, N x (2 obs + 2 act + 1
  + one reward column per reward), the row lists when a policy of the batch samples a subset of
  the rows (filtered BC: up to N int64 per policy), the P policies' parameters x 4 (weights,
  gradients, Adam's two moments) plus their targets, and the activations of a batch, P x batch x
  hidden x layers per network, ``MLP_FLOATS`` floats each. On a GPU they are checked against the
  GPU's free memory. When a ``tge/*`` dataset is still to be made, the parts that do not depend on
  the data are checked first, from the task's environment (``tge_ray.pipeline.run``).

On the CPU, the U-Net's training and encoding estimates came within a factor of two of the peak
resident memory one pass added (H = 32 and 128, batch 256 and 4096).

Available memory is ``psutil.virtual_memory().available`` on the CPU and
``torch.cuda.mem_get_info`` on the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig
from tge_ray.errors import TGEError

FLOAT = 4  # bytes
INDEX = 8  # bytes of a row index (int64)
TRAIN_FLOATS = 32  # per channel and time step of a U-Net level, kept for the backward pass
INFER_FLOATS = 4  # per channel and time step of an encoder level, alive during a forward pass
MLP_FLOATS = 6  # per hidden unit of a learner's batch: forward values, their gradients, Adam's temporaries
GIB = 2**30

# Stacked MLPs per policy of each learner (tge_ray/rl/*.py): (input, output, trained, target copies).
NETWORKS = {
    "iql": (("obs", "act", 1, 0), ("obs+act", "one", 2, 2), ("obs", "one", 1, 0)),  # actor, twin critics, value
    "rebrac": (("obs", "act", 1, 1), ("obs+act", "one", 2, 2)),  # actor, twin critics, with targets
    "bc": (("obs", "act", 1, 0),),  # actor
}


@dataclass(frozen=True)
class Need:
    """What one stage holds at its peak: named parts in bytes, and the fix that shrinks it."""

    stage: str
    parts: tuple[tuple[str, int], ...]
    fix: str
    device: str = "cpu"

    @property
    def total(self) -> int:
        return sum(size for _, size in self.parts)


def gib(size: float) -> str:
    return f"{size / GIB:.1f} GiB" if size >= GIB / 10 else f"{size / 2**20:.0f} MiB"


def padded_rows(episode_ids: np.ndarray, horizon: int) -> int:
    """Rows of :class:`~tge_ray.data.windows.Windows`' padded copy: N + E(H - 1)."""
    episodes = 1 + int(np.count_nonzero(np.diff(episode_ids)))
    return len(episode_ids) + episodes * (horizon - 1)


def windows_need(cfg: ExperimentConfig, mixed_ids: np.ndarray, demo_ids: np.ndarray, obs_dim: int) -> Need:
    horizon = cfg.windows.horizon
    rows = padded_rows(mixed_ids, horizon) + padded_rows(demo_ids, horizon)
    return Need("windows", ((f"{rows:,} padded rows x {obs_dim} x 2 (driver, object store)", 2 * rows * obs_dim * FLOAT),),
                "lower windows.horizon")


def _unet_levels(cfg: ExperimentConfig) -> list[tuple[int, int]]:
    """(channels, time steps) of every U-Net level at ``windows.horizon``."""
    n_down = cfg.diffusion.down_steps_for(cfg.windows.horizon)
    return [(cfg.diffusion.dim * mult, max(1, cfg.windows.horizon // 2 ** min(level, n_down)))
            for level, mult in enumerate(cfg.diffusion.dim_mults)]


def embedding_dim(cfg: ExperimentConfig) -> int:
    channels, steps = _unet_levels(cfg)[-1]
    return channels * steps if cfg.embedding.pool == "flatten" else channels


def unet_parameters(cfg: ExperimentConfig, obs_dim: int) -> int:
    """The U-Net's parameter count, from a CPU build that is dropped at once (0.1 s for 3.96M
    parameters; the meta device imported TorchDynamo, docs/notes/ci-time.md)."""
    import torch

    from tge_ray.diffusion.unet import TemporalUnet

    with torch.no_grad():
        return sum(p.numel() for p in TemporalUnet(obs_dim, cfg.windows.horizon, cfg.diffusion).parameters())


def stage_needs(cfg: ExperimentConfig, n_mixed: int, n_demo: int, n_index: int, obs_dim: int) -> list[Need]:
    """The diffusion, embedding and reward stages' needs (local Ray: every worker on this machine)."""
    levels = sum(channels * steps for channels, steps in _unet_levels(cfg))
    widest = max(channels * steps for channels, steps in _unet_levels(cfg))
    window = cfg.windows.horizon * obs_dim * FLOAT
    dim = embedding_dim(cfg)
    workers, embedders, rewarders = (cfg.resources.train_workers, cfg.resources.embed_actors,
                                     cfg.resources.reward_actors)
    batch, embed_batch = cfg.diffusion.batch_size, cfg.reward.batch_size
    all_embeddings = (n_mixed + n_demo) * dim * FLOAT
    return [
        Need("diffusion", (
            (f"{workers} worker(s) x U-Net weights x 5", workers * 5 * unet_parameters(cfg, obs_dim) * FLOAT),
            (f"{workers} worker(s) x activations of {batch} windows",
             workers * batch * (window + TRAIN_FLOATS * levels * FLOAT)),
        ), "lower diffusion.batch_size, diffusion.dim or windows.horizon"),
        Need("embeddings", (
            (f"{embedders} actor(s) x {embed_batch} windows and activations",
             embedders * embed_batch * (window + INFER_FLOATS * widest * FLOAT)),
            ("every window's embedding x 2 (driver, object store)", 2 * all_embeddings),
        ), "lower reward.batch_size or windows.horizon"),
        Need("rewards", (
            (f"{rewarders} actor(s) x the index of {n_index:,} expert windows", rewarders * n_index * dim * FLOAT),
            (f"{rewarders} actor(s) x {embed_batch} embeddings", rewarders * embed_batch * dim * FLOAT),
            ("D_mu's embeddings x 2 (driver, object store)", 2 * n_mixed * dim * FLOAT),
        ), "lower reward.batch_size"),
    ]


def learner_params(learner: str, hidden: int, layers: int, obs_dim: int, act_dim: int) -> tuple[int, int]:
    """(trained, target) parameter counts of one policy of ``learner``."""
    sizes = {"obs": obs_dim, "act": act_dim, "obs+act": obs_dim + act_dim}
    trained = target = 0
    for fan_in, fan_out, copies, targets in NETWORKS[learner]:
        dims = [sizes[fan_in], *[hidden] * layers, sizes.get(fan_out, 1)]
        count = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
        trained, target = trained + copies * count, target + targets * count
    return trained, target


def policy_needs(batches: Mapping[str, tuple[Any, int, bool]], n_rows: int, n_columns: int, obs_dim: int,
                 act_dim: int, device: str) -> list[Need]:
    """One Need per learner batch: ``batches`` maps a learner to (its first policy's config, the
    number of policies, whether one of them samples a subset of the rows); the policies of a
    batch share their networks' sizes. A batch with a subset lists every policy's rows
    (:class:`~tge_ray.rl.table.TableView`), counted as all N rows per policy."""
    table = n_rows * (2 * obs_dim + 2 * act_dim + 1 + n_columns) * FLOAT
    needs = []
    for learner, (first, policies, subset) in batches.items():
        if not policies:
            continue
        batch, hidden, layers = first.batch_size, first.hidden, first.n_layers
        trained, target = learner_params(learner, hidden, layers, obs_dim, act_dim)
        networks = sum(copies + targets for _, _, copies, targets in NETWORKS[learner])
        listed = ((f"{policies} x row lists of up to {n_rows:,} rows", policies * n_rows * INDEX),) if subset else ()
        needs.append(Need(f"policies ({learner} x{policies})", (
            (f"transition table of {n_rows:,} rows, {n_columns} reward column(s)", table),
            *listed,
            (f"{policies} x parameters and Adam state", policies * (4 * trained + target) * FLOAT),
            (f"{policies} x activations of {batch} transitions",
             policies * batch * (hidden * layers * networks * MLP_FLOATS + 2 * obs_dim + 2 * act_dim) * FLOAT),
        ), "lower rl.seeds, the learner's batch_size or hidden, or run fewer methods", device))
    return needs


def available(device: str = "cpu") -> int:
    """Bytes free for a new allocation on ``device``."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(resident: Need, needs: Sequence[Need]) -> None:
    """One line naming the numbers when ``resident`` (alive for the whole run, on the CPU) plus
    any stage's need exceeds the free memory of its device."""
    free = {device: available(device) for device in {"cpu", *(need.device for need in needs)}}
    for need in [resident, *needs]:
        held = resident.total if need is not resident and need.device == "cpu" else 0
        total = held + need.total
        if total <= free[need.device]:
            continue
        parts = "; ".join(f"{what}: {gib(size)}" for what, size in need.parts if size >= 2**20)
        on = "" if need.device == "cpu" else f" on {need.device}"
        besides = f", besides the windows' {gib(held)}" if held else ""
        raise TGEError(
            f"the {need.stage} stage needs about {gib(need.total)} of memory{on}{besides} "
            f"({parts}), but {gib(free[need.device])} is available: {need.fix}"
        )
