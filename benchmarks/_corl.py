"""CORL's ``algorithms/offline/iql.py``, imported unmodified from a CORL checkout, beside ours.

    git clone https://github.com/corl-team/CORL && (cd CORL && git checkout eeeeef2)
    python benchmarks/bench_rl.py --corl-iql CORL/algorithms/offline/iql.py

The file imports ``d4rl``, ``gym``, ``pyrallis`` and ``wandb`` at the top, for its ``train()``
entry point and its environment wrapper, neither of which a benchmark calls. Where one of them
is not installed, an empty module of that name is put in ``sys.modules`` first (``pyrallis.wrap``
as a decorator that changes nothing), so the file itself is imported as it is; its networks,
replay buffer and ``ImplicitQLearning`` are then the reference's own code.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np


def _placeholder(name: str) -> None:
    try:
        importlib.import_module(name)
        return
    except Exception:  # noqa: BLE001 - not installed, or broken beside numpy 2: the file never calls it
        pass
    module = types.ModuleType(name)
    def any_class(attribute: str) -> type:  # what the file's annotations name (gym.Env) exists
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return type(attribute, (), {})

    module.__getattr__ = any_class  # type: ignore[attr-defined]
    if name == "pyrallis":
        module.wrap = lambda *args, **kwargs: (lambda function: function)  # type: ignore[attr-defined]
    sys.modules[name] = module


def load_corl_iql(path: Path) -> Any:
    """CORL's iql.py as a module."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"bench_rl: error: --corl-iql {path} does not exist: clone CORL and give its "
                         "algorithms/offline/iql.py")
    for name in ("d4rl", "gym", "pyrallis", "wandb"):
        _placeholder(name)
    spec = importlib.util.spec_from_file_location("corl_iql", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def corl_iql_trainer(corl: Any, dataset: dict[str, np.ndarray], *, deterministic: bool, tau: float = 0.005,
                     max_steps: int = 1_000_000, device: str = "cpu", seed: int = 0) -> tuple[Any, Any]:
    """(ImplicitQLearning, ReplayBuffer) built as CORL's ``train()`` builds them (its defaults)."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    state_dim, action_dim = dataset["observations"].shape[1], dataset["actions"].shape[1]
    buffer = corl.ReplayBuffer(state_dim, action_dim, len(dataset["observations"]), device)
    buffer.load_d4rl_dataset(dataset)
    actor_cls = corl.DeterministicPolicy if deterministic else corl.GaussianPolicy
    actor = actor_cls(state_dim, action_dim, 1.0).to(device)
    q_network, v_network = corl.TwinQ(state_dim, action_dim).to(device), corl.ValueFunction(state_dim).to(device)
    trainer = corl.ImplicitQLearning(
        max_action=1.0, actor=actor, actor_optimizer=torch.optim.Adam(actor.parameters(), lr=3e-4),
        q_network=q_network, q_optimizer=torch.optim.Adam(q_network.parameters(), lr=3e-4),
        v_network=v_network, v_optimizer=torch.optim.Adam(v_network.parameters(), lr=3e-4),
        iql_tau=0.7, beta=3.0, max_steps=max_steps, discount=0.99, tau=tau, device=device,
    )
    return trainer, buffer
