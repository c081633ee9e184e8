"""The ``tge`` command: run the pipeline, sweep, and manage datasets.

    tge run [CONFIG] [key.sub=value ...]     the TGE pipeline (default: the embedded local task)
    tge sweep SPACE.yaml [--resume] [...]     Ray Tune + Optuna sweep
    tge data list | info ID | make ID | import FILE | experts | train-expert TASK
    tge config [CONFIG] [key=value ...]       print the resolved config (or --fields)
    tge report DIR [--out FOLDER]             report.md + self-contained report.html of a run or sweep
    tge diagnose NAME RUN_DIR [...]           a diagnostic of a run (tge diagnose --help lists them)
    tge store STORAGE list | verify | gc       the artifact store: list, check every hash, remove what no run uses

Errors caused by input or by the machine (no space, permission denied, a read-only file system)
print one line ``tge: error: ...`` and exit with code 2. SIGINT (Ctrl-C) and SIGTERM stop a
command cleanly with one line, exit 130 and 143; a closed pipe (``tge config --fields | head``)
ends it quietly with exit 141, as ``yes | head`` does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tge_ray import faults
from tge_ray.config import resolve_config_path
from tge_ray.errors import DataError, TGEError


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the one item without '=' is the config file or name."""
    paths = [item for item in items if "=" not in item]
    overrides = [item for item in items if "=" in item]
    if len(paths) > 1:
        raise TGEError(f"expected at most one config file, got {paths}; overrides look like key.sub=value")
    return (paths[0] if paths else None), overrides


def _load(items: list[str]) -> Any:
    from tge_ray.config import load_config

    name, overrides = _split_config_args(items)
    return load_config(resolve_config_path(name or "default"), overrides)


# ----------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.items)
    args.where = cfg.storage  # names the path of an OS error that carries none
    from tge_ray.pipeline.run import run_experiment

    run_experiment(cfg, progress=not args.quiet, verbose=args.verbose)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tge_ray.sweep.tune import run_sweep

    run_sweep(args.space, storage=args.storage, resume=args.resume, overrides=args.overrides)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from tge_ray.config import describe_fields, to_dict

    if args.fields:  # the resolved config's values: the default run's unless CONFIG or overrides say otherwise
        rows = describe_fields(instance=_load(args.items))
        width = max(len(r[0]) for r in rows)
        value_width = max(len(r[1]) for r in rows)
        for key, value, kind, doc in rows:
            print(f"{key:<{width}}  {value:<{value_width}}  {kind}")
            print(f"    {doc.replace('``', '')}")
        return 0
    print(yaml.safe_dump(to_dict(_load(args.items)), sort_keys=False), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tge_ray.report import write_report

    paths = write_report(args.folder, out=args.out)
    print(f"report: {paths.markdown}")
    print(f"report: {paths.html}")
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def cmd_data_list(args: argparse.Namespace) -> int:
    from tge_ray.data.minari_io import datasets_path, list_datasets

    rows = list_datasets()
    if not rows:
        print(f"no datasets in {datasets_path()}; make one with `tge data make tge/hopper/random-v0`")
        return 0
    header = ("id", "episodes", "steps", "ref_min", "ref_max", "size_MB")
    table = [
        (r["id"], _fmt(r["episodes"]), _fmt(r["steps"]), _fmt(r["ref_min_score"]), _fmt(r["ref_max_score"]), f"{r['size_mb']:.1f}")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in (header, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    print(f"({datasets_path()})")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from tge_ray.data.minari_io import open_dataset

    data = open_dataset(args.id, download=args.download)
    returns = data.episode_returns
    lengths = np.diff(data.episode_starts)
    spec = data.eval_env_spec
    lines = [
        ("id", data.dataset_id),
        ("path", str(data.path)),
        ("episodes", data.n_episodes),
        ("steps", data.n_transitions),
        ("episode length", f"mean {lengths.mean():.1f}, min {lengths.min()}, max {lengths.max()}"),
        ("return", f"mean {returns.mean():.2f}, std {returns.std():.2f}, min {returns.min():.2f}, max {returns.max():.2f}"),
        ("observation space", f"{data.observation_space} (flat dim {data.obs_dim})"),
        ("action space", str(data.action_space)),
        ("terminals / timeouts", f"{int(data.terminals.sum())} / {int(data.timeouts.sum())}"),
        ("ref_min_score", _fmt(data.ref_min_score)),
        ("ref_max_score", _fmt(data.ref_max_score)),
        ("eval env", getattr(spec, "id", "-")),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_data_make(args: argparse.Namespace) -> int:
    from tge_ray.data.make import make_dataset

    path = make_dataset(
        args.id,
        env_id=args.env,
        expert_path=args.expert,
        quality=args.quality,
        size=args.size,
        episodes=args.episodes,
        seed=args.seed,
        force=args.force,
        progress=not args.quiet,
        workers=args.workers,
    )
    print(f"dataset ready: {path}")
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from tge_ray.data.d4rl_import import import_dataset

    path, written = import_dataset(args.file, dataset_id=args.id, d4rl_name=args.d4rl_name, env_id=args.env,
                                   ref_min=args.ref_min, ref_max=args.ref_max, force=args.force)
    print(f"dataset ready: {path}" if written else f"dataset kept (it exists; --force replaces it): {path}")
    return 0


def cmd_data_experts(args: argparse.Namespace) -> int:
    from tge_ray.data.experts import EXPERTS_DIR, shipped_experts

    rows = shipped_experts()
    missing = [task for task in args.require if not rows.get(task)]
    if missing:
        raise DataError(f"no expert for {', '.join(missing)} in {EXPERTS_DIR}: train it with "
                        f"`tge data train-expert {missing[0]}` (see README, Data)")
    header = ("task", "env", "expert", "medium", "random", "steps", "algorithm")
    table = [(task, *(row or ("-",) * 6)) for task, row in rows.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for row in (header, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    print(f"({EXPERTS_DIR})")
    return 0


def cmd_data_train_expert(args: argparse.Namespace) -> int:
    from tge_ray.data.expert_training import train_expert

    path = train_expert(
        args.task,
        env_id=args.env,
        algo=args.algo,
        steps=args.steps,
        seed=args.seed,
        out_dir=args.out,
        run_dir=args.run_dir,
        progress=not args.quiet,
        max_seconds=args.max_seconds,
        snapshot_every=args.snapshot_every,
    )
    print(f"expert written: {path}")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tge",
        description="TGE on Ray: offline imitation from observations with trajectory-level generative embeddings.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the TGE pipeline (diffusion -> embeddings -> rewards -> offline RL -> evaluation)",
        description="Run TGE and its baselines on one task. CONFIG is a YAML file or a packaged "
        "config name: default (used when CONFIG is omitted: local hopper task, minutes on 2 cores), "
        "smoke (seconds, nothing learned) or paper (the paper-scale defaults of every field). "
        "key.sub=value items override single fields (see `tge config --fields`).",
    )
    run.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="Ray's warnings and info lines on the terminal too (by default they stay in Ray's log folder)")
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser("sweep", help="Ray Tune + Optuna sweep over a space in tune_spaces/")
    sweep.add_argument("space", help="search-space YAML (e.g. tune_spaces/smoke.yaml)")
    sweep.add_argument("--storage", help="where the sweep lives (local folder or cloud URI)")
    sweep.add_argument("--resume", action="store_true", help="continue a stopped sweep (Tuner.restore)")
    sweep.add_argument("overrides", nargs="*", metavar="key=value")
    sweep.set_defaults(func=cmd_sweep)

    config = sub.add_parser(
        "config",
        help="print the resolved config, or every field with --fields",
        description="Print the resolved config of CONFIG (a YAML file or a packaged name) with the "
        "key.sub=value overrides applied. --fields lists every key with its value there, its type and "
        "what it does.",
    )
    config.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    config.add_argument("--fields", action="store_true",
                        help="list every key with its value in the resolved config, its type and what it does")
    config.set_defaults(func=cmd_config)

    report = sub.add_parser(
        "report",
        help="write report.md and a self-contained report.html for a run or sweep folder",
        description="Read a run folder (written by `tge run`) or a sweep folder (written by `tge sweep`) "
        "and write report.md, report.html (figures embedded, no external files) and the PNGs in "
        "report_figures/: scores, learning curves, reward histograms, embedding projection, sweep "
        "ablations and tables, the resolved config.",
    )
    report.add_argument("folder", metavar="DIR", help="run folder or sweep folder")
    report.add_argument("--out", metavar="FOLDER", help="where to write the report (default: DIR)")
    report.set_defaults(func=cmd_report)

    from tge_ray.diagnose.cli import add_parser as add_diagnose_parser

    add_diagnose_parser(sub)

    from tge_ray.pipeline.store_cli import add_parser as add_store_parser

    add_store_parser(sub)

    data = sub.add_parser("data", help="list, inspect and make Minari datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    data_list = data_sub.add_parser("list", help="local datasets with sizes and reference scores")
    data_list.set_defaults(func=cmd_data_list)
    info = data_sub.add_parser("info", help="episodes, steps, spaces, reference scores and location of a dataset")
    info.add_argument("id", help="Minari dataset id, e.g. tge/hopper/expert-v0")
    info.add_argument("--download", action="store_true", help="download it when not local (needs a reachable host)")
    info.set_defaults(func=cmd_data_info)

    make = data_sub.add_parser(
        "make",
        help="make a D4RL-style Minari dataset offline (tge/<task>/<quality>-v0)",
        description="Tasks: hopper, halfcheetah, walker2d, ant, pointmaze-umaze, pointmaze-medium; "
        "qualities: random, medium, expert. With --env and --expert: any Gymnasium "
        "continuous-control environment and an expert actor file (medium too when it is "
        "`tge data train-expert`'s <name>_expert.pt).",
    )
    make.add_argument("id", nargs="?", help="dataset id, e.g. tge/hopper/random-v0")
    make.add_argument("--env", help="Gymnasium env id for a custom task")
    make.add_argument("--expert", help="expert actor file (.pt) for a custom task")
    make.add_argument("--quality", choices=["random", "medium", "expert"], help="quality for a custom task")
    make.add_argument("--size", type=int, help="environment steps (random/medium)")
    make.add_argument("--episodes", type=int, help="episodes (expert)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--workers", type=int, default=2,
                      help="rollout processes (default 2; with the seed and size it fixes the data)")
    make.add_argument("--force", action="store_true", help="replace an existing dataset")
    make.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=cmd_data_make)

    imports = data_sub.add_parser(
        "import",
        help="turn a D4RL-format HDF5 or .npz file into a Minari dataset",
        description="Read observations, actions, rewards, terminals and timeouts from a D4RL .hdf5 file or a "
        ".npz with the same keys and write a Minari dataset with reference scores and an evaluation env. A D4RL "
        "name (the file's, e.g. hopper-random-v2.hdf5, or --d4rl-name) gives the id d4rl/<env>/<dataset>-vN, "
        "D4RL's reference scores and the Gymnasium v5 env; --id, --env and --ref-min/--ref-max override them.",
    )
    imports.add_argument("file", type=Path, help="a .hdf5/.h5 (D4RL) or .npz file")
    imports.add_argument("--id", help="Minari id to write (default from the D4RL name: d4rl/<env>/<dataset>-vN)")
    imports.add_argument("--d4rl-name", help="the file's D4RL dataset name when its file name is not, e.g. hopper-medium-v2")
    imports.add_argument("--env", help="Gymnasium env id that evaluates policies (default from the D4RL name)")
    imports.add_argument("--ref-min", type=float, help="return of the random policy (default D4RL's)")
    imports.add_argument("--ref-max", type=float, help="return of the expert policy (default D4RL's)")
    imports.add_argument("--force", action="store_true", help="replace an existing dataset")
    imports.set_defaults(func=cmd_data_import)

    shipped = data_sub.add_parser("experts", help="the shipped experts with their returns")
    shipped.add_argument("--require", nargs="*", default=[], metavar="TASK",
                         help="exit 2 with one line unless these tasks have experts")
    shipped.set_defaults(func=cmd_data_experts)

    from tge_ray.data import expert_algos as training  # names and budgets only; no library is imported

    train = data_sub.add_parser(
        "train-expert",
        help="train an expert (and medium policy) for a continuous-control env; reruns resume",
        description="Train an off-policy RL expert for a task (hopper, halfcheetah, walker2d, ant) or any "
        "continuous-control Gymnasium env (--env), and write <name>_expert.pt, <name>_medium.pt and the record "
        "<name>.json into --out. A session stops at --steps or --max-seconds; while the training is unfinished, "
        "the same command resumes it from its last checkpoint in the run folder.",
    )
    train.add_argument("task", nargs="?", help="hopper, halfcheetah, walker2d or ant (or --env)")
    train.add_argument("--env", help="any continuous-control Gymnasium env id, e.g. Swimmer-v5")
    train.add_argument("--algo", choices=sorted(training.ALGOS), default=training.DEFAULT_ALGO,
                       help=f"learner: SB3 SAC, sb3-contrib TQC or their SBX (JAX) ports (default {training.DEFAULT_ALGO})")
    train.add_argument("--steps", type=int, default=training.DEFAULT_STEPS,
                       help="environment steps in all, over every session")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-seconds", type=float, default=training.DEFAULT_MAX_SECONDS,
                       help="wall time of this session ('inf': none); rerun to continue")
    train.add_argument("--snapshot-every", type=int, default=training.SNAPSHOT_EVERY,
                       help="environment steps between snapshots and checkpoints")
    train.add_argument("--out", type=Path, default=None, help="folder for the weights (default: the package's)")
    train.add_argument("--run-dir", type=Path, default=None,
                       help="snapshots and checkpoint (default: $TGE_CACHE_DIR/expert_runs/<name>-<algo>-s<seed>)")
    train.add_argument("-q", "--quiet", action="store_true")
    train.set_defaults(func=cmd_data_train_expert)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value items after an option (tge sweep SPACE --storage S key=value)
        if getattr(args, "command", None) == "sweep" and all("=" in item for item in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with faults.signals_handled():
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
        except TGEError as exc:
            return _error(str(exc))
        except KeyboardInterrupt as exc:
            return _interrupted(exc, args)
        except BrokenPipeError:
            return _closed_pipe()
        except Exception as exc:  # an OS error or a TGEError that Ray wrapped; a bug otherwise
            interrupt = faults.interrupt_behind(exc)
            if interrupt is not None:
                return _interrupted(interrupt, args)
            line = faults.fault_line(exc, where=getattr(args, "where", None))
            if line is None:
                raise
            return _error(line)


def _error(line: str) -> int:
    print(f"tge: error: {line}", file=sys.stderr)
    return 2


def _interrupted(exc: KeyboardInterrupt, args: argparse.Namespace) -> int:
    """Exit 130 (SIGINT, Ctrl-C) or 143 (SIGTERM) with one line."""
    signum = faults.signal_of(exc)
    resumable = getattr(args, "command", None) in ("run", "sweep")
    print(faults.interrupted_line(signum, resumable), file=sys.stderr, flush=True)
    return 128 + signum


def _closed_pipe() -> int:
    """``tge ... | head``: the reader left. Exit 141 (128 + SIGPIPE, what a shell reports for
    ``yes | head``) without a traceback; stdout goes to /dev/null so the exit flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
