"""CORL's unmodified IQL trained on a run's own D_mu and scaled TGE rewards, scored as the run scores.

    python benchmarks/corl_beside.py RUN_FOLDER --corl-iql CORL/algorithms/offline/iql.py \
        --seeds 0 1 2 --steps 100000 --every 10000 --out corl.json

Issue #21's check of the learner: where TGE-IQL stays low, the reference implementation gets the
same data and the same reward column (the run's scaled TGE rewards, ``RunFolder.rewards().scaled``;
``--reward true`` gives the oracle's CORL-scaled true reward instead). Same scores say the learner
is right and the limit is the method; different scores point at our learner.

What is CORL's and what is ours:
- CORL's ``ReplayBuffer``, networks and ``ImplicitQLearning`` (``benchmarks/_corl.py``), its
  train loop (sample 256, ``trainer.train``), its state normalisation (``compute_mean_std`` with
  eps 1e-3, ``normalize_states``) and its actor's ``act`` in eval mode.
- From the run's config: the actor's form and the target rate (``rl.iql.actor``, ``rl.iql.tau``);
  CORL's fixed values (expectile 0.7, beta 3, lr 3e-4, discount 0.99) must equal the run's, or
  the script stops.
- The evaluation: the project's ``evaluate_policy`` in the run's Gymnasium environment with its
  reference scores and ``evaluation.num_envs``, seeded as ``tge run`` seeds a policy's evaluation,
  ``--episodes`` episodes every ``--every`` updates; CORL's own ``eval_actor`` targets the old Gym
  API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tge_ray.pipeline.policies import eval_environment, oracle_rewards, reference_scores
from tge_ray.pipeline.run_folder import RunFolder
from tge_ray.rl.evaluation import evaluate_policy
from tge_ray.rl.train import EVAL_SEED_OFFSET

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corl import corl_iql_trainer, load_corl_iql  # noqa: E402

CORL_FIXED = {"expectile": 0.7, "beta": 3.0, "lr": 3e-4, "discount": 0.99, "batch_size": 256}


def corl_policy(corl_actor: torch.nn.Module, mean: np.ndarray, std: np.ndarray):
    """Raw observations (B, obs_dim) -> actions through CORL's own ``act``, one row at a time."""
    def act(obs: np.ndarray) -> np.ndarray:
        return np.stack([corl_actor.act((row - mean) / std, "cpu") for row in obs])
    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `tge run` folder with IQL as its backbone")
    parser.add_argument("--corl-iql", type=Path, required=True, help="CORL's algorithms/offline/iql.py")
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
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist; create it first")

    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    run = RunFolder.open(args.run)
    cfg = run.config
    iql = cfg.rl.iql
    ours = {"expectile": iql.expectile, "beta": iql.beta, "lr": iql.lr, "discount": iql.discount,
            "batch_size": iql.batch_size}
    if ours != CORL_FIXED:
        raise SystemExit(f"corl_beside: error: the run's IQL settings {ours} differ from CORL's fixed {CORL_FIXED}: "
                         "compare on a run with IQL's defaults")
    corl = load_corl_iql(args.corl_iql)
    task = run.task()
    rewards = run.rewards().scaled if args.reward == "tge" else oracle_rewards(task)
    tr = run.transitions(np.asarray(rewards, np.float32))
    mean, std = corl.compute_mean_std(tr.observations, eps=1e-3)
    dataset = {"observations": corl.normalize_states(tr.observations, mean, std), "actions": tr.actions,
               "rewards": tr.rewards, "next_observations": corl.normalize_states(tr.next_observations, mean, std),
               "terminals": tr.terminals}
    env_id, env_kwargs = eval_environment(cfg, task)
    ref_min, ref_max = reference_scores(task)

    out: dict = {"run": str(args.run), "reward": args.reward, "actor": iql.actor, "tau": iql.tau, "steps": args.steps,
                 "every": args.every, "episodes": args.episodes, "threads": args.threads, "corl_iql": str(args.corl_iql),
                 "seeds": {}}
    started = time.perf_counter()
    for seed in args.seeds:
        trainer, buffer = corl_iql_trainer(corl, dataset, deterministic=iql.actor == "deterministic", tau=iql.tau,
                                           max_steps=args.steps, seed=seed)
        history = []
        for step in tqdm(range(1, args.steps + 1), desc=f"CORL IQL seed {seed}", mininterval=5, file=sys.stderr):
            trainer.train([b.to("cpu") for b in buffer.sample(256)])  # CORL's train loop, less wandb.log
            if step % args.every == 0 or step == args.steps:
                trainer.actor.eval()
                result = evaluate_policy(corl_policy(trainer.actor, mean, std), env_id, env_kwargs=env_kwargs,
                                         episodes=args.episodes, num_envs=cfg.evaluation.num_envs,
                                         seed=seed + EVAL_SEED_OFFSET, ref_min=ref_min, ref_max=ref_max)
                trainer.actor.train()
                history.append([step, result.score])
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
