"""tge_ray.accel: which device the RL stage takes and when the training loops are compiled."""

from __future__ import annotations

import threading

import pytest
import torch

from tge_ray.accel import (
    CPU_COMPILE_MIN_UPDATES,
    compile_mode,
    compile_model,
    cuda_graphs_usable_here,
    learner_compile_mode,
    local_device,
)


def in_new_thread(fn):
    out = {}
    worker = threading.Thread(target=lambda: out.update(value=fn()))
    worker.start()
    worker.join()
    return out["value"]


def test_compile_setting_on_cpu():
    assert compile_mode(False, "cpu") is None
    assert compile_mode("cpu", "cpu") is None  # the U-Net stays eager on the CPU (1.06x compiled)
    assert compile_mode("auto", "cpu") is None  # auto compiles the U-Net on GPUs only
    assert compile_mode(True, "cpu") == "default"


@pytest.mark.parametrize(("setting", "device", "updates", "expected"), [
    # the CPU: compiled where the compile pays for itself (the default, "cpu", and "auto")
    ("cpu", "cpu", CPU_COMPILE_MIN_UPDATES, "default"),
    ("cpu", "cpu", CPU_COMPILE_MIN_UPDATES - 1, None),
    ("cpu", "cpu", None, None),
    ("auto", "cpu", 1_000_000, "default"),
    ("auto", "cpu", 5_000, None),
    (True, "cpu", 10, "default"),
    (False, "cpu", 1_000_000, None),
    # a GPU: CUDA graphs with auto and true; the default keeps GPUs eager
    ("cpu", "cuda", 1_000_000, None),
    ("auto", "cuda", 10, "cuda-graph"),
    (True, "cuda", 10, "cuda-graph"),
    (False, "cuda", 1_000_000, None),
])
def test_learner_compile_mode(setting, device, updates, expected):
    assert learner_compile_mode(setting, device, updates) == expected


def test_cuda_graphs_belong_to_the_thread_that_took_them_first():
    # The graph trees' state lives in the thread-local storage of the first thread that imports
    # them (here: this one); another thread must not be offered CUDA graphs, or its first
    # compiled call fails an assertion inside torch (seen on an H200, docs/notes/gpu-h200.md).
    assert cuda_graphs_usable_here()
    assert compile_mode("auto", "cuda") == "reduce-overhead"
    assert not in_new_thread(cuda_graphs_usable_here)
    assert in_new_thread(lambda: compile_mode("auto", "cuda")) is None  # eager, not a crash
    assert in_new_thread(lambda: compile_mode(True, "cuda")) == "default"
    assert in_new_thread(lambda: compile_mode(False, "cuda")) is None


def test_compile_model_leaves_ddp_and_eager_alone():
    model = torch.nn.Linear(2, 2)
    assert compile_model(model, False, "cpu") is model
    assert compile_model(model, "auto", "cpu") is model
    assert compile_model(model, True, "cpu", world_size=2) is model
    compiled = compile_model(model, True, "cpu")
    assert compiled is not model and compiled._orig_mod is model


@pytest.mark.parametrize(("use_gpu", "has_gpu", "expected"), [
    ("auto", False, "cpu"), ("auto", True, "cuda"), (True, True, "cuda"), (False, True, "cpu"),
])
def test_rl_stage_device(monkeypatch, use_gpu, has_gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    assert local_device(use_gpu) == expected


@pytest.mark.parametrize(("overrides", "device", "expected"), [
    ([], "cpu", "torch.compile"),  # the default run's 15,000 updates repay the compile
    (["rl.steps=2000"], "cpu", "eager"),
    (["resources.compile=false"], "cpu", "eager"), (["resources.compile=true", "rl.steps=2000"], "cpu", "torch.compile"),
    ([], "cuda", "eager"), (["resources.compile=auto"], "cuda", "one CUDA graph"),
])
def test_policy_stage_line_names_the_update_mode(overrides, device, expected):
    # A compiled learner's first update spends up to minutes compiling with its bar at 0: the
    # stage line says which mode runs, so the wait is expected.
    from tge_ray.config.loading import load_config, resolve_config_path
    from tge_ray.pipeline.policies import _update_mode

    cfg = load_config(resolve_config_path("default"), overrides)  # what `tge run` loads
    assert _update_mode(cfg, device).startswith(expected)
