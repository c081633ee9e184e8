"""The device the ``gpu`` tests check: a CUDA GPU, or none (they skip).

``TGE_GPU_TESTS_DEVICE=cpu`` runs them on the CPU as a dry run of the tests themselves (their
figures then compare the CPU with itself); ``cuda:N`` picks a GPU. ``TGE_GPU_TESTS_REQUIRED=1``
(``benchmarks/gpu.sh`` sets it) fails them instead of skipping where there is no CUDA device.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def device():
    import torch

    wanted = os.environ.get("TGE_GPU_TESTS_DEVICE", "cuda")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        if os.environ.get("TGE_GPU_TESTS_REQUIRED") == "1":
            pytest.fail("TGE_GPU_TESTS_REQUIRED=1 but torch sees no CUDA device")
        pytest.skip("no CUDA device (TGE_GPU_TESTS_DEVICE=cpu runs these as a dry run on the CPU)")
    return torch.device(wanted)
