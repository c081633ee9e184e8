"""A run's task and stored rewards, read together for the diagnostics and checked to match."""

from __future__ import annotations

from typing import Any

from tge_ray.errors import DataError


def task_and_rewards(run: Any) -> tuple[Any, Any]:
    """``run``'s LfO task, rebuilt from its datasets, and its reward artifact's arrays; one line
    (DataError) when the datasets no longer give the run's transitions."""
    rewards = run.rewards()  # first: a run without a reward stage stops here, before the datasets open
    task = run.task()
    if task.mixed.n_transitions != len(rewards.raw):
        raise DataError(f"the datasets now give {task.mixed.n_transitions} transitions of D_mu, {run.path} had "
                        f"{len(rewards.raw)}: they changed since the run; rerun it with `tge run`")
    return task, rewards
