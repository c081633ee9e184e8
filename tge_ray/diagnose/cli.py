"""``tge diagnose NAME RUN_DIR [options]``: one subcommand per diagnostic, printing its result.

Each takes a run folder (expert-share: a run folder, or a config with overrides as ``tge run``
takes them), prints the result's lines, and with ``--json FILE`` also writes it as JSON. Nothing
is written into the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from tge_ray.diagnose import DIAGNOSTICS
from tge_ray.io import write_text


def _open(path: Path) -> Any:
    from tge_ray.pipeline.run_folder import RunFolder

    return RunFolder.open(path)


def _window_reference(args: argparse.Namespace) -> Any:
    from tge_ray.diagnose.window_reference import window_reference

    return window_reference(_open(args.run_dir), horizon=args.horizon, skip=args.skip, k=args.k,
                            rl_steps=args.rl_steps, learner=args.learner, progress=not args.quiet)


def _rollout_reward(args: argparse.Namespace) -> Any:
    from tge_ray.diagnose.rollout_reward import rollout_reward

    return rollout_reward(_open(args.run_dir), steps=args.steps, episodes=args.episodes, seed=args.seed)


def _reward_profile(args: argparse.Namespace) -> Any:
    from tge_ray.diagnose.reward_profile import reward_profile

    runs = [_open(path) for path in args.run_dirs]  # every folder checked before any is read
    return [reward_profile(run, from_start=args.from_start, to_end=args.to_end) for run in runs]


def _policy_ceiling(args: argparse.Namespace) -> Any:
    from tge_ray.diagnose.policy_ceiling import policy_ceiling

    run, compare = _open(args.run_dir), [_open(path) for path in args.compare]
    return policy_ceiling(run, references=args.references, seeds=args.seeds, steps=args.steps, every=args.every,
                          episodes=args.episodes, good=args.good, overrides=args.overrides, compare=compare,
                          progress=not args.quiet)


def _expert_share(args: argparse.Namespace) -> Any:
    from tge_ray.diagnose.expert_share import expert_share, task_of_config
    from tge_ray.errors import TGEError

    targets = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if len(targets) > 1:
        raise TGEError(f"expert-share takes one RUN_DIR or CONFIG, got {targets}; overrides look like key.sub=value")
    target = targets[0] if targets else None
    from tge_ray.pipeline.run_folder import RunFolder

    if target is not None and RunFolder.is_run_folder(Path(target)) and not overrides:
        task = _open(Path(target)).task()
    else:
        from tge_ray.config import load_config, resolve_config_path

        task = task_of_config(load_config(resolve_config_path(target or "default"), overrides), progress=not args.quiet)
    return expert_share(task, steps=args.steps, neighbours=args.neighbours)


def _write_json(result: Any, path: Path) -> None:
    """The result as JSON, written aside and moved into place."""
    data = [dataclasses.asdict(item) for item in result] if isinstance(result, list) else dataclasses.asdict(result)
    path = path.expanduser()
    write_text(path, json.dumps(data, indent=1))


def cmd_diagnose(args: argparse.Namespace) -> int:
    result = args.diagnostic(args)
    for item in result if isinstance(result, list) else [result]:
        print("\n".join(item.lines()))
    if args.json is not None:
        _write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def add_parser(sub: Any) -> None:
    """``tge diagnose`` and its subcommands, under the ``tge`` parser's ``sub``."""
    diagnose = sub.add_parser(
        "diagnose",
        help="diagnostics of a run's data, reward and policy stage (tge diagnose --help lists them)",
        description="Diagnostics of a finished `tge run` folder, each printed (NAME below); `tge diagnose NAME "
        "--help` gives its options. docs/notes/ says what each one found.",
    )
    names = diagnose.add_subparsers(dest="diagnostic_name", required=True, metavar="NAME")

    def add(name: str, handler: Any) -> argparse.ArgumentParser:
        parser = names.add_parser(name, help=DIAGNOSTICS[name], description=DIAGNOSTICS[name] + ".")
        parser.set_defaults(func=cmd_diagnose, diagnostic=handler)
        return parser

    def json_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON to FILE")

    run_dir = "a `tge run` folder with a TGE reward stage"

    window = add("window-reference", _window_reference)
    window.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=run_dir)
    window.add_argument("--horizon", type=int, help="window length H (default: the run's)")
    window.add_argument("--skip", type=int, help="leave each demo's first windows out of the index "
                        "(default: the run's reward.skip_demo_start)")
    window.add_argument("--k", type=int, help="nearest expert windows (default: the run's reward.k)")
    window.add_argument("--rl-steps", type=int, default=0, help="train a learner on the window reward for this many "
                        "updates, evaluated 5 times (default 0: no training)")
    window.add_argument("--learner", choices=("iql", "rebrac"), help="the learner for --rl-steps (default: the run's "
                        "backbone)")
    window.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    json_option(window)

    rollout = add("rollout-reward", _rollout_reward)
    rollout.add_argument("run_dir", type=Path, metavar="RUN_DIR", help=run_dir)
    rollout.add_argument("--steps", type=int, default=1000, help="environment steps per episode, at most (default 1000)")
    rollout.add_argument("--episodes", type=int, default=2, help="episodes per behaviour (default 2)")
    rollout.add_argument("--seed", type=int, default=0, help="first episode's reset seed, and the random actions' seed")
    json_option(rollout)

    profile = add("reward-profile", _reward_profile)
    profile.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help=f"{run_dir} (one or more)")
    profile.add_argument("--from-start", type=int, nargs="+", default=[0, 5, 10, 20], metavar="T",
                         help="steps after the episode's start (default 0 5 10 20)")
    profile.add_argument("--to-end", type=int, nargs="+", default=[0, 2, 5, 10, 20, 40], metavar="D",
                         help="steps before the episode's end, 0 the last (default 0 2 5 10 20 40)")
    json_option(profile)

    ceiling = add("policy-ceiling", _policy_ceiling)
    ceiling.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                         help="a `tge run` folder whose D_mu holds expert episodes (N >= 1)")
    ceiling.add_argument("--compare", type=Path, nargs="+", default=[], metavar="RUN_DIR",
                         help="more run folders whose evaluations join the table")
    ceiling.add_argument("--references", nargs="+", default=["bc-expert", "iql-flag"],
                         choices=["bc-expert", "iql-flag"], help="which references to train (default both)")
    ceiling.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one reference per seed (default 0 1 2)")
    ceiling.add_argument("--steps", type=int, help="updates per reference (default: the run's rl.steps)")
    ceiling.add_argument("--every", type=int, default=250, help="updates between evaluations (default 250)")
    ceiling.add_argument("--episodes", type=int, help="episodes per evaluation (default: the run's evaluation.episodes)")
    ceiling.add_argument("--good", type=float, default=75.0, help="score counted as good (default 75)")
    ceiling.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                         help="change the run's config for the references, as `tge run` takes it (rl.iql.beta=9)")
    ceiling.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    json_option(ceiling)

    share = add("expert-share", _expert_share)
    share.add_argument("items", nargs="*", metavar="[RUN_DIR | CONFIG] [key=value]",
                       help="a run folder (its task), or a config and overrides as `tge run` takes them "
                            "(default: the embedded default's task)")
    share.add_argument("--steps", type=int, nargs="+", default=[0, 5, 10, 20, 40], metavar="T",
                       help="steps of the expert trajectories (default 0 5 10 20 40)")
    share.add_argument("--neighbours", type=int, default=100, help="nearest D_mu states per expert state (default 100)")
    share.add_argument("-q", "--quiet", action="store_true", help="no progress bars while datasets are made")
    json_option(share)
