"""CORL's unmodified IQL or ReBRAC trained on a run's own D_mu and scaled TGE rewards, scored as the run scores.

    python benchmarks/corl_beside.py RUN_FOLDER --corl-iql CORL/algorithms/offline/iql.py \
        --seeds 0 1 2 --steps 100000 --every 10000 --out corl.json
    pip install -e ".[corl-rebrac]"   # rebrac.py is JAX
    python benchmarks/corl_beside.py REBRAC_RUN_FOLDER --corl-rebrac CORL/algorithms/offline/rebrac.py \
        --seeds 0 1 2 --steps 100000 --every 10000 --out corl-rebrac.json

Issue #21's check of the learner: where TGE-IQL or TGE-ReBRAC stays low, the reference
implementation gets the same data and the same reward column (the run's scaled TGE rewards,
``RunFolder.rewards().scaled``; ``--reward true`` gives the oracle's CORL-scaled true reward
instead). Same scores say the learner is right and the limit is the method; different scores
point at our learner. The run's backbone must be the one given (``rl.backbone``).

What is CORL's and what is ours:
- IQL: CORL's ``ReplayBuffer``, networks and ``ImplicitQLearning`` (``benchmarks/_corl.py``), its
  train loop (sample 256, ``trainer.train``), its state normalisation (``compute_mean_std`` with
  eps 1e-3, ``normalize_states``) and its actor's ``act`` in eval mode. From the run's config: the
  actor's form and the target rate (``rl.iql.actor``, ``rl.iql.tau``); CORL's fixed values
  (expectile 0.7, beta 3, lr 3e-4, discount 0.99) must equal the run's, or the script stops.
- ReBRAC: CORL's ``ReplayBuffer`` (its ``sample_batch``), ``DetActor``, ``EnsembleCritic``, train
  states, ``update_td3`` / ``update_td3_no_targets`` and its epoch of ``jax.lax.fori_loop`` updates
  (1,000 per epoch, or ``--every`` where smaller), wired as its ``train()`` wires them; its state
  normalisation (``normalize_states=True``, as the run normalises). From the run's config
  (``rl.rebrac``): widths, depth, learning rates, batch size, both BC weights, target rate, noise,
  ``policy_freq``, discount, each seed's value where a field holds one per seed. CORL's ReBRAC has
  no adaptive BC weight: with ``rl.rebrac.adaptive_bc=true`` (our default) CORL trains with the
  fixed ``actor_bc_coef``, and the JSON and the first line printed say so.
- The evaluation: the project's ``evaluate_policy`` in the run's Gymnasium environment with its
  reference scores and ``evaluation.num_envs``, seeded as ``tge run`` seeds a policy's evaluation,
  ``--episodes`` episodes every ``--every`` updates; CORL's own evaluation targets the old Gym
  API.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tge_ray.config.learners import policy_section
from tge_ray.errors import ConfigError
from tge_ray.pipeline.policies import eval_environment, oracle_rewards, reference_scores
from tge_ray.pipeline.run_folder import RunFolder
from tge_ray.rl.evaluation import evaluate_policy
from tge_ray.rl.train import evaluation_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corl import ReBRACSettings, corl_iql_trainer, corl_rebrac_epoch, load_corl  # noqa: E402

CORL_FIXED = {"expectile": 0.7, "beta": 3.0, "lr": 3e-4, "discount": 0.99, "batch_size": 256}


def corl_policy(corl_actor: torch.nn.Module, mean: np.ndarray, std: np.ndarray):
    """Raw observations (B, obs_dim) -> actions through CORL's own ``act``, one row at a time."""
    def act(obs: np.ndarray) -> np.ndarray:
        return np.stack([corl_actor.act((row - mean) / std, "cpu") for row in obs])
    return act


Policy = Callable[[np.ndarray], np.ndarray]


def iql_curve(corl: Any, iql: Any, dataset: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray, *, seed: int,
              steps: int, every: int) -> Iterator[tuple[int, Policy]]:
    """(step, policy) at every evaluation of CORL's IQL trained as its ``train()`` trains it, with the
    actor form and target rate of ``iql`` (the run's ``rl.iql`` resolved for ``seed``)."""
    data = {"observations": corl.normalize_states(dataset["observations"], mean, std), "actions": dataset["actions"],
            "rewards": dataset["rewards"],
            "next_observations": corl.normalize_states(dataset["next_observations"], mean, std),
            "terminals": dataset["terminals"]}
    trainer, buffer = corl_iql_trainer(corl, data, deterministic=iql.actor == "deterministic", tau=iql.tau,
                                       max_steps=steps, seed=seed)
    for step in tqdm(range(1, steps + 1), desc=f"CORL IQL seed {seed}", mininterval=5, file=sys.stderr):
        trainer.train([b.to("cpu") for b in buffer.sample(256)])  # CORL's train loop, less wandb.log
        if step % every == 0 or step == steps:
            trainer.actor.eval()
            yield step, corl_policy(trainer.actor, mean, std)
            trainer.actor.train()


def seed_section(cfg: Any, learner: str, seed: int) -> Any:
    """The run's ``rl.<learner>`` as ``tge run`` resolves it for RL seed ``seed``."""
    try:
        return policy_section(getattr(cfg.rl, learner), learner, seed - cfg.seed)
    except ConfigError as e:
        raise SystemExit(f"corl_beside: error: seed {seed} is offset {seed - cfg.seed} from the run's seed "
                         f"{cfg.seed}, and {e}: give --seeds among the run's RL seeds") from None


def rebrac_settings(rebrac: Any) -> ReBRACSettings:
    """CORL's ReBRAC settings from the run's ``rl.rebrac`` resolved for one seed (:func:`seed_section`)."""
    return ReBRACSettings(hidden_dim=rebrac.hidden, n_hiddens=rebrac.n_layers, actor_learning_rate=float(rebrac.actor_lr),
                          critic_learning_rate=float(rebrac.critic_lr), batch_size=rebrac.batch_size,
                          actor_bc_coef=float(rebrac.actor_bc_coef), critic_bc_coef=float(rebrac.critic_bc_coef),
                          gamma=rebrac.discount, tau=float(rebrac.tau), policy_noise=rebrac.policy_noise,
                          noise_clip=rebrac.noise_clip, policy_freq=rebrac.policy_freq)


def rebrac_curve(corl: Any, settings: ReBRACSettings, dataset: dict[str, np.ndarray], mean: np.ndarray,
                 std: np.ndarray, *, seed: int, steps: int, every: int) -> Iterator[tuple[int, Policy]]:
    """(step, policy) at every evaluation of CORL's ReBRAC, run in epochs of ``jax.lax.fori_loop``."""
    import jax
    import jax.numpy as jnp

    per_epoch = math.gcd(every, 1000)
    buffer = {"states": corl.normalize_states(dataset["observations"], mean, std), "actions": dataset["actions"],
              "rewards": dataset["rewards"],
              "next_states": corl.normalize_states(dataset["next_observations"], mean, std),
              "next_actions": dataset["next_actions"], "dones": dataset["terminals"]}
    carry, epoch = corl_rebrac_epoch(corl, buffer, settings, seed=seed, updates_per_epoch=per_epoch)
    act = jax.jit(lambda params, obs: carry["actor"].apply_fn(params, obs))  # CORL's actor_action_fn
    with tqdm(total=steps, desc=f"CORL ReBRAC seed {seed}", mininterval=5, file=sys.stderr) as bar:
        for done in range(per_epoch, steps + 1, per_epoch):
            carry = epoch(carry)
            bar.update(per_epoch)
            if done % every == 0 or done == steps:
                params = carry["actor"].params
                yield done, lambda obs, params=params: np.asarray(act(params, jnp.asarray((obs - mean) / std,
                                                                                        jnp.float32)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `tge run` folder with IQL or ReBRAC as its backbone")
    learner = parser.add_mutually_exclusive_group(required=True)
    learner.add_argument("--corl-iql", type=Path, help="CORL's algorithms/offline/iql.py")
    learner.add_argument("--corl-rebrac", type=Path, help="CORL's algorithms/offline/rebrac.py (JAX)")
    parser.add_argument("--reward", choices=["tge", "true"], default="tge")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="JSON, rewritten after every seed")
    args = parser.parse_args()
    if args.steps < 1 or args.every < 1 or args.episodes < 1:
        parser.error("--steps, --every and --episodes must be at least 1")
    if args.corl_rebrac is not None and args.steps % math.gcd(args.every, 1000):
        parser.error(f"--steps {args.steps} must be a multiple of CORL ReBRAC's epoch, "
                     f"{math.gcd(args.every, 1000)} updates here (gcd of --every and 1000)")
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist; create it first")

    backbone = "iql" if args.corl_iql is not None else "rebrac"
    torch.set_num_threads(args.threads)
    run = RunFolder.open(args.run)
    cfg = run.config
    if cfg.rl.backbone != backbone:
        raise SystemExit(f"corl_beside: error: {args.run} trained {cfg.rl.backbone}, not {backbone}: give a run "
                         f"with rl.backbone={backbone}, or --corl-{cfg.rl.backbone}")
    out: dict = {"run": str(args.run), "learner": backbone, "reward": args.reward, "steps": args.steps,
                 "every": args.every, "episodes": args.episodes, "threads": args.threads}
    # every seed's settings before any work: a bad --seeds stops here
    sections = {seed: seed_section(cfg, backbone, seed) for seed in args.seeds}
    if backbone == "iql":
        iql = cfg.rl.iql
        for seed, section in sections.items():
            ours = {"expectile": section.expectile, "beta": section.beta, "lr": section.lr,
                    "discount": section.discount, "batch_size": section.batch_size}
            if ours != CORL_FIXED:
                raise SystemExit(f"corl_beside: error: the run's IQL settings for seed {seed}, {ours}, differ from "
                                 f"CORL's fixed {CORL_FIXED}: compare on a run with IQL's defaults")
        corl = load_corl(args.corl_iql, "--corl-iql", "corl_beside")
        out.update(actor=iql.actor, tau=iql.tau, corl_iql=str(args.corl_iql))
    else:
        corl = load_corl(args.corl_rebrac, "--corl-rebrac", "corl_beside")
        out.update(corl_rebrac=str(args.corl_rebrac), ours_adaptive_bc=cfg.rl.rebrac.adaptive_bc)
        if cfg.rl.rebrac.adaptive_bc:
            print("note: the run weighs ReBRAC's actor BC term by reward (rl.rebrac.adaptive_bc=true); "
                  "CORL's ReBRAC uses the fixed actor_bc_coef", flush=True)
    task = run.task()
    rewards = run.rewards().scaled if args.reward == "tge" else oracle_rewards(task)
    tr = run.transitions(np.asarray(rewards, np.float32))
    mean, std = corl.compute_mean_std(tr.observations, eps=1e-3)
    mean, std = np.asarray(mean), np.asarray(std)
    dataset = {"observations": tr.observations, "actions": tr.actions, "rewards": tr.rewards,
               "next_observations": tr.next_observations, "terminals": tr.terminals, "next_actions": tr.next_actions}
    env_id, env_kwargs = eval_environment(cfg, task)
    ref_min, ref_max = reference_scores(task)

    out["seeds"] = {}
    if backbone == "rebrac":
        out["settings"] = {str(seed): vars(rebrac_settings(section)).copy() for seed, section in sections.items()}
    started = time.perf_counter()
    for seed in args.seeds:
        if backbone == "iql":
            curve = iql_curve(corl, sections[seed], dataset, mean, std, seed=seed, steps=args.steps, every=args.every)
        else:
            settings = ReBRACSettings(**out["settings"][str(seed)])
            curve = rebrac_curve(corl, settings, dataset, mean, std, seed=seed, steps=args.steps, every=args.every)
        history = []
        for step, policy in curve:
            result = evaluate_policy(policy, env_id, env_kwargs=env_kwargs, episodes=args.episodes,
                                     num_envs=cfg.evaluation.num_envs,
                                     seed=evaluation_seed(seed, cfg.evaluation.num_envs),
                                     ref_min=ref_min, ref_max=ref_max)
            history.append([step, result.score])
            tqdm.write(f"seed {seed}, {step} updates: {result.score:.1f}", file=sys.stderr)  # a stopped run keeps its curve in the log
        out["seeds"][str(seed)] = history
        print(f"seed {seed}: " + " / ".join(f"{s}: {v:.1f}" for s, v in history), flush=True)
        out["seconds"] = round(time.perf_counter() - started, 1)
        out["complete"] = len(out["seeds"]) == len(args.seeds)
        write_json(args.out, out)  # after every seed: an interrupted run keeps its finished seeds
    print(f"wrote {args.out} ({out['seconds']} s)")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


if __name__ == "__main__":
    main()
