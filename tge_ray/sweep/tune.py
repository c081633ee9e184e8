"""``tge sweep``: Ray Tune + OptunaSearch over a space file, ASHA on evaluation scores.

Each trial is one configuration run over ``sweep.seeds`` seeds (seed, seed + 1, ...), the TGE
method only: each seed has its own diffusion model and rewards, and all the seeds' policies (and
``rl.seeds`` RL seeds of each) train as one batch. A policy's seed is its run's seed plus its RL
seed's offset, so with both counts above 1 run s's second RL seed and run s + 1's first share a
seed: their batch indices, noise and evaluation environments, not their rewards.

The searcher sees the mean final normalised score (``score``) and the results carry its std; of
a trial ASHA stopped early, Ray's Optuna searcher records the last evaluation's score instead.
While a trial trains, each evaluation of the batch is reported: ``score``, the mean over its
policies, and ``evaluations``, the evaluation's index (its update step over ``evaluation.every``,
rounded up), so a retried or resumed trial, whose stored evaluations are not reported again,
still reports each at its own index; the final report comes at ``max_t``. ASHA compares trials
at equal ``evaluations``, i.e. the same update step, and stops weak ones.

Trials share the artifact store under ``<storage>/artifacts``: one diffusion model per (data,
H, diffusion config, seed) however many trials need it (a lock makes the others wait and reuse
it). ``--resume`` continues a stopped sweep with ``Tuner.restore``: finished trials stay, errored
ones are retried, and the Optuna searcher's state (in the experiment checkpoint) is kept.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.errors import TGEError
from tge_ray.pipeline.artifacts import is_uri
from tge_ray.sweep.results import FINAL
from tge_ray.sweep.space import SearchSpace, load_space
from tge_ray.tracking import tune_callbacks

METRIC = "score"
TIME_ATTR = "evaluations"



def _trial(config: dict[str, Any], space: SearchSpace, storage: str) -> None:
    """One Tune trial: the sampled configuration over every seed, their policies in one batch."""
    import ray.tune

    from tge_ray.pipeline.run import run_experiments

    first = space.config(config)
    trial_dir = Path(ray.tune.get_context().get_trial_dir())
    stages_of_seeds: list[dict[str, Any]] = [{} for _ in range(first.sweep.seeds)]  # filled live

    def usage() -> dict[str, int]:
        artifacts = [a for stages in stages_of_seeds for a in stages.values()]
        return {
            "diffusion_trained": sum(1 for a in artifacts if a.name.startswith("diffusion-") and not a.reused),
            "diffusion_reused": sum(1 for a in artifacts if a.name.startswith("diffusion-") and a.reused),
            "artifacts_reused": sum(1 for a in artifacts if a.reused),
        }

    def report(event: dict[str, Any]) -> None:
        step = int(event["step"])
        ray.tune.report(
            {METRIC: float(event["score"]), TIME_ATTR: evaluation_index(step, first), "step": step, **usage()}
        )

    cfgs = [space.config(config, {"seed": first.seed + offset, "storage": storage, "methods": ["tge"]})
            for offset in range(first.sweep.seeds)]
    results = run_experiments(cfgs, progress=False, report=report, run_root=trial_dir, stages=stages_of_seeds)
    label = f"tge-{first.rl.backbone}"
    scores = [score for result in results for score in _policy_scores(result, label)]
    ray.tune.report(
        {
            METRIC: float(np.mean(scores)),
            "score_std": float(np.std(scores)),
            "seeds": first.sweep.seeds,
            TIME_ATTR: _max_evaluations(first),  # also when stored policies left nothing to report before
            "run_seconds": results[0].seconds,
            FINAL: True,
            **usage(),
        }
    )


def _policy_scores(result: Any, label: str) -> list[float]:
    """Every TGE policy's final score of one run (all its RL seeds and per-policy values)."""
    return [row["score"] for key, rows in result.policies.items() if key.split("[", 1)[0] == label for row in rows]


def fit_concurrency(max_concurrent: int, cpus_per_trial: float, stage_cpus: float, cpus: float) -> tuple[int, str | None]:
    """Trials that can run at once on ``cpus`` CPUs without waiting on each other forever.

    Each running trial may need its own reservation plus one nested stage at a time (a Train
    worker or an actor, ``stage_cpus``, and a window-gathering task, ``GATHER_CPUS``). If every
    concurrent trial holds its share and one cannot get its stage's CPUs, it waits, and so may
    the trial it waits for (a lock on a shared diffusion model): the sweep stalls. Returns the
    count and, when it had to lower it, the note saying so.
    """
    from tge_ray.data.windows import GATHER_CPUS

    per_trial = cpus_per_trial + stage_cpus + GATHER_CPUS
    fits = max(1, int(cpus // per_trial + 1e-9))
    if fits >= max_concurrent:
        return max_concurrent, None
    return fits, (
        f"note: sweep.max_concurrent_trials={max_concurrent} lowered to {fits}: each trial needs up to "
        f"{per_trial:g} CPUs (sweep.cpus_per_trial {cpus_per_trial:g} + resources.stage_cpus {stage_cpus:g} "
        f"+ {GATHER_CPUS:g} for window gathering) and this Ray has {cpus:g}; lower those to run more at once"
    )


def _check_storage(storage: str) -> str:
    if is_uri(storage):
        return storage
    path = Path(storage).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise TGEError(f"--storage {storage!r} cannot be written ({exc.strerror}): choose a writable folder") from None
    return str(path)


def run_sweep(
    space_path: str,
    storage: str | None = None,
    resume: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> Path:
    """Run (or resume) a sweep; returns the sweep folder with its results files."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(space_path, overrides)  # every check happens before Ray starts
    base = space.config(_first_sample(space))
    settings = base.sweep
    callbacks = tune_callbacks(base.tracking)  # a tracker that is not installed: one line, before Ray
    storage = _check_storage(storage or base.storage)
    sweep_path = f"{storage.rstrip('/')}/{space.name}"
    reports = _max_evaluations(base)
    if settings.grace_period > reports:
        raise TGEError(
            f"sweep.grace_period={settings.grace_period} is more evaluations than a trial reports "
            f"({reports}: one per evaluation of its batch, rl.steps / evaluation.every rounded up, and the "
            "final score): lower it"
        )
    if resume and not _has_sweep(sweep_path):
        raise TGEError(f"--resume: no sweep at {sweep_path!r} (start it without --resume first)")

    from tge_ray.pipeline.session import ray_session

    started = time.time()
    max_concurrent = settings.max_concurrent_trials
    with ray_session(base):
        if base.resources.address is None and not os.environ.get("RAY_ADDRESS"):  # a Ray of our own
            import ray

            max_concurrent, note = fit_concurrency(
                max_concurrent, settings.cpus_per_trial, base.resources.stage_cpus, ray.cluster_resources().get("CPU", 1)
            )
            if note:
                print(note, file=sys.stderr)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, space=space, storage=storage),
            {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
        )
        if resume:
            tuner = tune.Tuner.restore(sweep_path, trainable=trainable, resume_errored=True)
        else:
            searcher = OptunaSearch(space=space.sample, metric=METRIC, mode="max", seed=base.seed)
            scheduler = ASHAScheduler(
                time_attr=TIME_ATTR,
                metric=METRIC,
                mode="max",
                max_t=reports,
                grace_period=settings.grace_period,
                reduction_factor=settings.reduction_factor,
            )
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=settings.num_samples,
                    max_concurrent_trials=max_concurrent,
                ),
                run_config=tune.RunConfig(
                    name=space.name,
                    storage_path=storage,
                    verbose=1 if progress else 0,
                    failure_config=tune.FailureConfig(max_failures=1),
                    callbacks=callbacks,
                ),
            )
        grid = tuner.fit()
    from tge_ray.sweep.results import write_results

    return write_results(grid, space, sweep_path, wall_seconds=time.time() - started)


def _first_sample(space: SearchSpace) -> dict[str, Any]:
    """Any valid sample (first option or low bound of each parameter): for sweep-wide settings."""
    sample: dict[str, Any] = {}
    if space.tasks:
        sample["task"] = next(iter(space.tasks))
    for param in space.params:
        sample[param.name] = param.values[0]
    return sample


def evaluation_index(step: int, cfg: Any) -> int:
    """The 1-based index of the evaluation at update ``step`` (every ``evaluation.every`` updates
    and at the last): ASHA's time attribute for it."""
    return math.ceil(step / cfg.evaluation.every)


def _max_evaluations(cfg: Any) -> int:
    """Reports of one trial: one per evaluation of its batch (every seed at once), and the final."""
    return evaluation_index(cfg.rl.steps, cfg) + 1


def _has_sweep(sweep_path: str) -> bool:
    if is_uri(sweep_path):
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(sweep_path)
        return fs.get_file_info(f"{path}/tuner.pkl").type == pyarrow.fs.FileType.File
    return (Path(sweep_path) / "tuner.pkl").is_file()

