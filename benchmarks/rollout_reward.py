"""What does a run's TGE reward pay for a given behaviour? (a reward diagnostic)

Rolls policies out in the run's evaluation environment, cuts the visited states into windows
exactly as the run did (D_mu's standardisation, the run's H), embeds them with the run's
diffusion checkpoint, and labels them with the run's kernel, k, sigma and reward scaling
against the run's expert index (its demo windows, ``reward.expert_windows``). Prints the mean scaled TGE reward per step of each rollout
beside D_mu's expert-flagged and other transitions, and the environment's return.

    python benchmarks/rollout_reward.py RUN_DIR                      # zero, random, and the run's policies
    python benchmarks/rollout_reward.py RUN_DIR --steps 1000 --episodes 3

A behaviour that the reward pays about as well as D_mu's expert transitions, but that the
environment does not, is one the backbone can settle on. docs/notes/halfcheetah-rest-pose.md uses this to read the
halfcheetah runs. Writes rollout_reward.json into RUN_DIR (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from _run_folder import read_run


def _policies(run: Any, act_dim: int, seed: int) -> dict:
    import torch

    from tge_ray.rl.nets import TanhPolicy

    rng = np.random.default_rng(seed)
    policies = {
        "zero action": lambda obs: np.zeros((len(obs), act_dim)),
        "uniform random action": lambda obs: rng.uniform(-1.0, 1.0, (len(obs), act_dim)),
    }
    for label, path in run.policy_checkpoints().items():
        state = torch.load(path, map_location="cpu", weights_only=False)
        policies[label] = TanhPolicy.from_state(state["actor_state"]).act
    return policies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `tge run` folder with a TGE reward stage")
    parser.add_argument("--steps", type=int, default=1000, help="environment steps per episode, at most")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/rollout_reward.json")
    args = parser.parse_args(argv)
    run = read_run(args.run_dir, "rollout_reward", rewards=True)
    if run is None:
        return 2
    if args.steps < 1 or args.episodes < 1:
        parser.error("--steps and --episodes must be >= 1")

    import gymnasium
    import torch

    from tge_ray.data.windows import Windows
    from tge_ray.diffusion.checkpoint import load_encoder
    from tge_ray.diffusion.embed import embed_array
    from tge_ray.pipeline.policies import eval_environment
    from tge_ray.pipeline.stages import expert_index_rows
    from tge_ray.reward.kernels import RewardScaling
    from tge_ray.reward.label import label_array

    torch.set_num_threads(1)
    cfg = run.config
    task = run.task()
    encoder = load_encoder(run.diffusion_checkpoint())
    expert_embeddings = run.embeddings().demos[expert_index_rows(cfg, task)]
    d_mu = run.rewards().scaled
    scaling = RewardScaling(**run.results.reward_scaling)

    def tge_rewards(observations: np.ndarray) -> np.ndarray:
        windows = Windows(task.standardize(observations), np.zeros(len(observations), np.int64), cfg.windows.horizon)
        embeddings = embed_array(windows.gather(np.arange(len(observations))), encoder, cfg)
        return scaling.apply(label_array(embeddings, expert_embeddings, cfg.reward))

    env_id, env_kwargs = eval_environment(cfg, task)
    env = gymnasium.make(env_id, **env_kwargs)
    low, high = env.action_space.low, env.action_space.high
    rows = {}
    for name, policy in _policies(run, task.mixed.act_dim, args.seed).items():
        per_step, returns = [], []
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=args.seed + episode)
            visited, total = [obs], 0.0
            for step in range(args.steps):  # visited: the states an action was taken in
                action = np.clip(np.asarray(policy(obs[None].astype(np.float32)))[0], low, high)
                obs, reward, terminated, truncated, _ = env.step(action.astype(env.action_space.dtype))
                total += float(reward)
                if terminated or truncated or step == args.steps - 1:
                    break
                visited.append(obs)
            per_step.append(tge_rewards(np.asarray(visited, dtype=np.float32)))
            returns.append(total)
        steps = np.concatenate(per_step)
        rows[name] = {"tge_reward_mean": float(steps.mean()), "steps": int(len(steps)),
                      "env_return_mean": float(np.mean(returns))}
    env.close()
    flags = task.expert_flags
    reference = {"d_mu_expert_mean": float(d_mu[flags].mean()) if flags.any() else None,
                 "d_mu_other_mean": float(d_mu[~flags].mean())}

    print(f"TGE reward per step (scaled as the run's backbone saw it), {args.run_dir.name}")
    print(f"  D_mu expert-flagged: {reference['d_mu_expert_mean'] if flags.any() else float('nan'):.3f}   "
          f"D_mu other: {reference['d_mu_other_mean']:.3f}")
    for name, row in rows.items():
        print(f"  {name:24s} {row['tge_reward_mean']:.3f}   env return {row['env_return_mean']:9.1f}"
              f"   ({row['steps']} steps)")
    out = args.out or args.run_dir / "rollout_reward.json"
    out.write_text(json.dumps({"run": str(args.run_dir), "args": {"steps": args.steps, "episodes": args.episodes,
                                                                  "seed": args.seed},
                               "reference": reference, "rollouts": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
