"""Does ``torch.compile`` pay on a GPU when the training loop runs in a thread (as Ray runs it)?

Times, on ``cuda``, each inside a new thread: the reference U-Net's training step (batch 256,
bf16 autocast) eager, with ``mode="reduce-overhead"`` (CUDA graphs) and with the default mode;
IQL and ReBRAC updates with compiled losses in both modes. Then the drift between eager runs on
the CPU and on the GPU after 100 updates, the yardstick ``check_gpu.py`` holds compiled runs to.
Its output on an H200 is ``docs/notes/gpu-h200/compile-in-threads.log``: CUDA graphs ran in the
first thread that compiled and failed (an assertion in torch's graph-tree thread-local state) in
later threads, which is what ``tge_ray.accel.cuda_graphs_usable_here`` checks.

    PYTHONPATH=. python benchmarks/probe_compile_threads.py
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import torch
from check_gpu import HORIZON, OBS, build, relative_difference, transitions, walk_windows, weights

from tge_ray.config import DiffusionConfig
from tge_ray.diffusion.ddpm import DiffusionTrainerState
from tge_ray.diffusion.unet import TemporalUnet
from tge_ray.rl.learner import metrics_to_floats

CUDA = torch.device("cuda")


def in_thread(fn) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["v"] = fn()
        except Exception:  # noqa: BLE001 - printed
            out["err"] = traceback.format_exc()[-1500:]

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return out


def unet(mode: str | None, data: torch.Tensor):
    def fn() -> int:
        torch.manual_seed(0)
        cfg = DiffusionConfig()
        model = TemporalUnet(OBS, HORIZON, cfg).to(CUDA)
        if mode:
            model = torch.compile(model, mode=None if mode == "default" else mode)
        state = DiffusionTrainerState(model, cfg, seed=0, device=CUDA)
        for _ in range(5):
            state.update(data[:256])
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(40):
            state.update(data[(i * 256) % 3840:][:256])
        torch.cuda.synchronize()
        return round(40 * 256 / (time.perf_counter() - start))

    return fn


def learner(method: str, mode: str | None, device: str = "cuda", steps: int = 300, return_weights: bool = False):
    data = transitions()

    def fn():
        agent, sampler = build(method, data, device, compile=mode or False)
        for _ in range(10):
            agent.train_step(sampler.sample())
        if return_weights:
            for _ in range(90):
                agent.train_step(sampler.sample())
            return weights(agent)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            metrics = agent.train_step(sampler.sample())
        metrics_to_floats(metrics)
        return round(steps / (time.perf_counter() - start), 1)

    return fn


def main() -> None:
    data = torch.from_numpy(walk_windows(4096, 0.0, 6)).to(CUDA)
    print("unet eager thread", in_thread(unet(None, data)), flush=True)
    result = in_thread(unet("reduce-overhead", data))
    print("unet RO thread", result.get("v"), (result.get("err") or "")[-1200:], flush=True)
    print("unet default thread", in_thread(unet("default", data)), flush=True)
    for method in ("iql", "rebrac"):
        result = in_thread(learner(method, "reduce-overhead"))
        print(method, "RO thread", result.get("v"), (result.get("err") or "")[-600:], flush=True)
        print(method, "default thread", in_thread(learner(method, "default")), flush=True)
        torch.set_num_threads(16)
        on_cpu = {k: v.cpu() for k, v in learner(method, None, "cpu", return_weights=True)().items()}
        on_gpu = {k: v.cpu() for k, v in learner(method, None, "cuda", return_weights=True)().items()}
        print(method, "eager cpu vs eager gpu rel diff after 100", relative_difference(on_cpu, on_gpu), flush=True)


if __name__ == "__main__":
    main()
