"""How much of the reward's ordering does the diffusion embedding keep? (a reward diagnostic)

TGE's reward is a k-NN kernel over embeddings of state windows. This script builds the same
reward over the standardised windows themselves, flattened, with no diffusion model: D_mu's
standardisation, the same kernel, k and sigma, the same expert index rows
(``reward.skip_demo_start`` or ``--skip``) and the same scaling. It prints the Spearman
correlation of each reward with D_mu's true reward, per transition and over episode means,
beside the run's own TGE reward. ``--rl-steps N`` also trains an offline RL learner on the
window reward (the run's backbone, or ``--backbone``, with the run's RL settings, seed and
evaluation; N updates, 5 evaluations) and prints its normalised scores, so a better ordered
reward can be checked against a policy.

    python benchmarks/window_reference.py RUN_DIR                          # H, k, skip of the run
    python benchmarks/window_reference.py RUN_DIR --horizon 4 --skip 50    # another window
    python benchmarks/window_reference.py RUN_DIR --horizon 4 --skip 50 --rl-steps 50000

This is a reference, not TGE: the windows are not embedded. docs/notes/halfcheetah-n0-ordering.md uses it to read
halfcheetah at N = 0. Writes window_reference.json into RUN_DIR (or --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from _run_folder import read_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `tge run` folder with a TGE reward stage")
    parser.add_argument("--horizon", type=int, default=None, help="window length H (default: the run's)")
    parser.add_argument("--skip", type=int, default=None,
                        help="leave each demo's first windows out of the index (default: the run's "
                             "reward.skip_demo_start)")
    parser.add_argument("--k", type=int, default=None, help="nearest expert windows (default: the run's reward.k)")
    parser.add_argument("--rl-steps", type=int, default=0,
                        help="train a learner on the window reward for this many updates (0: no training)")
    parser.add_argument("--backbone", choices=("iql", "rebrac"), default=None,
                        help="the learner for --rl-steps (default: the run's rl.backbone)")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/window_reference.json")
    args = parser.parse_args(argv)
    run = read_run(args.run_dir, "window_reference", rewards=True)
    if run is None:
        return 2
    for name in ("horizon", "skip", "k"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "skip" else 1):
            parser.error(f"--{name} must be >= {0 if name == 'skip' else 1}, got {value}")
    if args.rl_steps < 0:
        parser.error(f"--rl-steps must be >= 0, got {args.rl_steps}")
    backbone = args.backbone or run.config.rl.backbone
    if args.rl_steps and backbone not in ("iql", "rebrac"):
        parser.error(f"the run's backbone is {backbone}: pass --backbone iql or rebrac with --rl-steps")

    from tge_ray.data.windows import Windows
    from tge_ray.pipeline.stages import expert_index_rows
    from tge_ray.reward.diagnostics import true_reward_correlation
    from tge_ray.reward.kernels import scale_rewards
    from tge_ray.reward.label import label_array

    tge_raw = run.rewards().raw  # a run whose reward artifact is gone: one line, exit 2
    cfg = run_cfg = run.config
    horizon = args.horizon or cfg.windows.horizon
    skip = cfg.reward.skip_demo_start if args.skip is None else args.skip
    reward_cfg = dataclasses.replace(cfg.reward, skip_demo_start=skip, k=args.k or cfg.reward.k)
    cfg = dataclasses.replace(cfg, reward=reward_cfg, windows=dataclasses.replace(cfg.windows, horizon=horizon))
    task = run.task()
    mixed = task.mixed

    started = time.perf_counter()
    windows = Windows(task.standardize(mixed.observations), mixed.episode_ids, horizon)
    demo = Windows(task.standardize(task.demo_observations), task.demo_episode_ids, horizon)
    flat_mixed = windows.gather(np.arange(len(windows))).reshape(len(windows), -1)  # (N, H * obs_dim)
    flat_demo = demo.gather(np.arange(len(demo))).reshape(len(demo), -1)[expert_index_rows(cfg, task)]
    raw = label_array(flat_mixed, flat_demo, cfg.reward)
    scaled, _ = scale_rewards(raw, cfg.reward.scale)
    seconds = time.perf_counter() - started
    rows = {
        "TGE reward (the run's)": true_reward_correlation(tge_raw, mixed.rewards, mixed.episode_ids),
        "k-NN on the windows": true_reward_correlation(raw, mixed.rewards, mixed.episode_ids),
    }
    print(f"Spearman correlation with D_mu's true reward, {args.run_dir.name}")
    print(f"  the run: H={run_cfg.windows.horizon}, k={run_cfg.reward.k}, "
          f"skip={run_cfg.reward.skip_demo_start}; the windows: H={horizon}, k={cfg.reward.k}, "
          f"skip={skip} ({len(flat_demo)} demo windows in the index, {seconds:.1f} s)")
    for name, row in rows.items():
        print(f"  {name:24s} per transition {row['transitions']:+.3f}   over episode means {row['episodes']:+.3f}")
    report = {"run": str(args.run_dir), "window": {"horizon": horizon, "k": cfg.reward.k, "skip_demo_start": skip,
                                                    "kernel": cfg.reward.kernel, "sigma": cfg.reward.sigma,
                                                    "scale": cfg.reward.scale},
              "correlation": rows}

    if args.rl_steps:
        import tempfile

        from tge_ray.pipeline.policies import eval_environment
        from tge_ray.rl.train import train_policy

        transitions = run.transitions(scaled.astype(np.float32))
        env_id, env_kwargs = eval_environment(cfg, task)
        rl = dataclasses.replace(cfg.rl, backbone=backbone, steps=args.rl_steps)
        evaluation = dataclasses.replace(cfg.evaluation, every=max(1, args.rl_steps // 5))
        with tempfile.TemporaryDirectory(prefix="window-reference-") as scratch:  # the policy is not kept
            policy = train_policy("tge", rl, evaluation, transitions, env_id=env_id, env_kwargs=env_kwargs,
                                  ref_min=mixed.ref_min_score, ref_max=mixed.ref_max_score, seed=cfg.seed,
                                  out_dir=Path(scratch), progress=True, use_ray=False)
        history = [(int(step), float(score)) for step, score in policy.eval_history]
        print(f"  {backbone} on the window reward, {args.rl_steps} updates, normalised score at each evaluation: "
              + ", ".join(f"{score:.1f} ({step})" for step, score in history))
        report["policy"] = {"backbone": backbone, "steps": args.rl_steps, "eval_history": history,
                            "score": float(policy.score)}
    out = args.out or args.run_dir / "window_reference.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def _main_with_one_line_errors() -> int:
    from tge_ray.errors import TGEError

    try:
        return main()
    except TGEError as exc:  # say, k larger than the demo windows left in the index
        print(f"window_reference: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_main_with_one_line_errors())
