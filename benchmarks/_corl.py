"""CORL's ``algorithms/offline/iql.py`` and ``rebrac.py``, imported unmodified from a CORL checkout.

    git clone https://github.com/corl-team/CORL && (cd CORL && git checkout eeeeef2)
    python benchmarks/bench_rl.py --corl-iql CORL/algorithms/offline/iql.py

Both files import ``d4rl``, ``gym``, ``pyrallis`` and ``wandb`` at the top, for their ``train()``
entry points and environment wrappers, none of which a benchmark calls. Where one of them is not
installed, an empty module of that name is put in ``sys.modules`` first (``pyrallis.wrap`` as a
decorator that changes nothing), so the file itself is imported as it is; its networks, replay
buffer and updates are then the reference's own code. ``rebrac.py`` is JAX: it needs the
``corl-rebrac`` extra (``pip install -e ".[corl-rebrac]"``: jax, flax, optax, chex); the
``jax.tree_map`` alias it calls, gone since JAX 0.6, is put back as ``jax.tree.map``.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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


def _jax_tree_map() -> None:
    """``jax.tree_map``, which rebrac.py's replay buffer calls, as the ``jax.tree.map`` it was an
    alias of (JAX 0.6 removed the alias); the file itself stays as CORL wrote it."""
    try:
        import jax
    except ImportError:
        return  # the import of the file names what is missing
    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree.map


def load_corl(path: Path, flag: str, tool: str) -> Any:
    """A CORL ``algorithms/offline/*.py`` file as a module (``tool`` and ``flag`` name it in errors)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{tool}: error: {flag} {path} does not exist: clone CORL and give its "
                         f"algorithms/offline/{flag.removeprefix('--corl-')}.py")
    for name in ("d4rl", "gym", "pyrallis", "wandb"):
        _placeholder(name)
    if "import jax" in path.read_text():
        _jax_tree_map()
    spec = importlib.util.spec_from_file_location(f"corl_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:  # rebrac.py without jax, flax, optax or chex
        raise SystemExit(f"{tool}: error: {path} needs {exc.name}: pip install -e \".[corl-rebrac]\"") from None
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


@dataclass(frozen=True)
class ReBRACSettings:
    """The fields of CORL's ReBRAC ``Config`` that its update reads (CORL's defaults)."""

    hidden_dim: int = 256
    n_hiddens: int = 3
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
    batch_size: int = 1024
    actor_bc_coef: float = 1.0
    critic_bc_coef: float = 1.0
    gamma: float = 0.99
    tau: float = 5e-3
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2


def corl_rebrac_epoch(corl: Any, dataset: dict[str, np.ndarray], settings: ReBRACSettings, *, seed: int,
                      updates_per_epoch: int) -> tuple[dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]:
    """(carry, epoch) as CORL's ``train()`` builds them: ``epoch(carry)`` runs ``updates_per_epoch``
    updates in one ``jax.lax.fori_loop`` (CORL's ``num_updates_on_epoch``), the actor and targets
    updated on every ``policy_freq``-th. ``dataset`` holds CORL's buffer fields (``states``,
    ``actions``, ``rewards``, ``next_states``, ``next_actions``, ``dones``); ``carry["actor"].params``
    are the actor's weights. CORL's actor has no LayerNorm and its critics have it (its defaults)."""
    import jax
    import jax.numpy as jnp
    import optax

    buffer = corl.ReplayBuffer()
    buffer.data = {name: jnp.asarray(value, dtype=jnp.float32) for name, value in dataset.items()}
    key = jax.random.PRNGKey(seed=seed)
    key, actor_key, critic_key = jax.random.split(key, 3)
    init_state = buffer.data["states"][0][None, ...]
    init_action = buffer.data["actions"][0][None, ...]
    actor_module = corl.DetActor(action_dim=init_action.shape[-1], hidden_dim=settings.hidden_dim, layernorm=False,
                                 n_hiddens=settings.n_hiddens)
    actor = corl.ActorTrainState.create(
        apply_fn=actor_module.apply, params=actor_module.init(actor_key, init_state),
        target_params=actor_module.init(actor_key, init_state), tx=optax.adam(learning_rate=settings.actor_learning_rate),
    )
    critic_module = corl.EnsembleCritic(hidden_dim=settings.hidden_dim, num_critics=2, layernorm=True,
                                        n_hiddens=settings.n_hiddens)
    critic = corl.CriticTrainState.create(
        apply_fn=critic_module.apply, params=critic_module.init(critic_key, init_state, init_action),
        target_params=critic_module.init(critic_key, init_state, init_action),
        tx=optax.adam(learning_rate=settings.critic_learning_rate),
    )
    shared = {"gamma": settings.gamma, "actor_bc_coef": settings.actor_bc_coef,
              "critic_bc_coef": settings.critic_bc_coef, "tau": settings.tau, "policy_noise": settings.policy_noise,
              "noise_clip": settings.noise_clip}
    update_td3_partial = partial(corl.update_td3, **shared, normalize_q=True)
    update_td3_no_targets_partial = partial(corl.update_td3_no_targets, **shared)

    def td3_loop_update_step(i: int, carry: dict[str, Any]) -> dict[str, Any]:  # CORL's (schedule in the carry)
        key, batch_key = jax.random.split(carry["key"])
        batch = carry["buffer"].sample_batch(batch_key, batch_size=settings.batch_size)
        full_update = partial(update_td3_partial, key=key, actor=carry["actor"], critic=carry["critic"], batch=batch,
                              metrics=carry["metrics"])
        update = partial(update_td3_no_targets_partial, key=key, actor=carry["actor"], critic=carry["critic"],
                         batch=batch, metrics=carry["metrics"])
        key, new_actor, new_critic, new_metrics = jax.lax.cond(carry["delayed_updates"][i], full_update, update)
        carry.update(key=key, actor=new_actor, critic=new_critic, metrics=new_metrics)
        return carry

    metric_names = ["critic_loss", "q_min", "actor_loss", "batch_entropy", "bc_mse_policy", "bc_mse_random",
                    "action_mse"]
    carry = {"key": key, "actor": actor, "critic": critic, "buffer": buffer,
             "delayed_updates": jnp.equal(jnp.arange(updates_per_epoch) % settings.policy_freq, 0).astype(int)}

    def epoch(carry: dict[str, Any]) -> dict[str, Any]:
        carry["metrics"] = corl.Metrics.create(metric_names)
        return jax.lax.fori_loop(lower=0, upper=updates_per_epoch, body_fun=td3_loop_update_step, init_val=carry)

    return carry, epoch
