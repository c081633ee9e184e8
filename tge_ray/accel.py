"""Where a stage runs and whether it is compiled: one rule for the diffusion and RL stages."""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def cuda_graphs_usable_here() -> bool:
    """Whether ``torch.compile(mode="reduce-overhead")`` can replay CUDA graphs in this thread.

    torch's CUDA graph trees keep their state in the thread-local storage of the thread that
    first imported ``torch._inductor.cudagraph_trees``; any other thread fails an assertion at
    the first compiled call (seen on an H200 with torch 2.11: ``docs/notes/gpu-h200.md``). Ray
    runs Train loops and Tune trials in threads, so the compiled stages ask this first: the
    import below sets the key when this is the first thread, and the check reads it.
    """
    try:
        import torch._inductor.cudagraph_trees  # noqa: F401

        return bool(torch._C._is_key_in_tls("tree_manager_containers"))
    except Exception:  # noqa: BLE001 - any failure here means: do not use CUDA graphs
        return False


def compile_mode(setting: str | bool, device: torch.device | str) -> str | None:
    """The ``torch.compile`` mode for ``resources.compile`` on ``device``; None means eager.

    ``auto`` compiles only on CUDA and only with CUDA graphs (mode ``reduce-overhead``): a
    training step of these small networks is bound by kernel launches, which graphs remove;
    without them (another thread holds the graph state) compiled steps measured no faster, so
    ``auto`` stays eager there. ``True`` compiles everywhere (``default`` mode where graphs
    are out), ``cpu`` and ``False`` nowhere (on the CPU one U-Net step compiled ran 1.06x
    eager's: ``docs/notes/default-run.md``).
    """
    if setting is False or setting == "cpu":
        return None
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and cuda_graphs_usable_here():
        return "reduce-overhead"
    if setting == "auto":
        if on_gpu:
            logger.info("resources.compile=auto: CUDA graphs belong to another thread here; running eager")
        return None
    return "default"


def local_device(use_gpu: str | bool) -> str:
    """``cuda`` when ``resources.use_gpu`` allows it and this process sees a GPU, else ``cpu``.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for the processes it places (a Tune trial with
    ``sweep.gpus_per_trial`` > 0 sees its GPU, one with 0 sees none), so this is the GPU the
    scheduler gave this process, not a guess about the cluster.
    """
    return "cuda" if use_gpu is not False and torch.cuda.is_available() else "cpu"


def compile_model(model: Any, setting: str | bool, device: torch.device | str, world_size: int = 1) -> Any:
    """``model`` compiled as :func:`compile_mode` says; several (DDP) workers stay eager."""
    mode = compile_mode(setting, device)
    if mode is None or world_size > 1:
        return model
    return torch.compile(model, mode=mode)


# The fewest updates per policy at which ``resources.compile=auto`` (or ``cpu``) compiles a learner
# on the CPU: between where the compiles are repaid, as benchmarks/bench_rl.py prints it (IQL
# after about 7,000 updates, ReBRAC 4,000, BC 12,000; docs/notes/default-run.md).
CPU_COMPILE_MIN_UPDATES = 10_000


def learner_compile_mode(setting: str | bool, device: torch.device | str, updates: int | None = None) -> str | None:
    """How the RL learners run their update under ``resources.compile`` (:mod:`tge_ray.rl.learner`).

    On a GPU, ``auto`` and ``true`` capture several updates as one CUDA graph per replay (the
    update is bound by kernel launches there); ``cpu`` and ``false`` run eager. Unlike
    ``torch.compile``'s graphs, a captured CUDA graph is not tied to the thread that captured it,
    so this holds inside Ray's threads too.

    On the CPU, ``true`` compiles with ``torch.compile``; ``auto`` and ``cpu`` compile only where
    the compile pays for itself, at :data:`CPU_COMPILE_MIN_UPDATES` updates per policy or more
    (``updates``; None: unknown, eager). ``false`` is eager everywhere. A compile that fails (no
    C++ compiler, an untraceable op) falls back to eager with a warning
    (``StackedLearner._first_compiled_call``).
    """
    if setting is False:
        return None
    if torch.device(device).type == "cuda":
        return None if setting == "cpu" else "cuda-graph"
    if setting is True:
        return "default"
    return "default" if updates is not None and updates >= CPU_COMPILE_MIN_UPDATES else None
