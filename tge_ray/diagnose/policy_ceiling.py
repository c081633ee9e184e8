"""What could a perfect reward give? Reference policies on a run's D_mu (a policy-stage diagnostic)

TGE only changes the rewards of D_mu; the policy stage then has to turn them into a policy.
Two references are trained on the run's own D_mu with the project's learners, the run's RL
settings (changed by ``overrides``) and its evaluation environment:

- ``bc-expert``: BC on D_mu's expert-flagged transitions only, the expert's own actions.
  Imitation with actions, which an LfO method does not have.
- ``iql-flag``: IQL on all of D_mu with reward 1 on expert-flagged transitions and 0 elsewhere,
  the reward of a perfect trajectory classifier (separation AUC 1).

Both are evaluated every ``every`` updates, so the curve shows how steady a policy is, not only
where it ends. The run's own policies, and those of ``compare`` runs, stand beside them (their
evaluations as the runs recorded them). Each row: the final score, the mean over the
evaluations of the second half of training, and the share of those at or above ``good``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tge_ray.diagnose.policies import rows_of, train_curve
from tge_ray.errors import ConfigError

REFERENCES = ("bc-expert", "iql-flag")


@dataclass(frozen=True)
class CeilingRow:
    """One policy's evaluations and their summary (``late``: after half of its last step)."""

    name: str
    seed: int
    eval_history: tuple[tuple[int, float], ...]
    final: float
    late_mean: float
    late_good_share: float

    @classmethod
    def of(cls, name: str, seed: int, history: Sequence[tuple[int, float]], good: float) -> CeilingRow:
        last = history[-1][0]
        late = np.array([score for step, score in history if step > last / 2])
        return cls(name, seed, tuple((int(s), float(v)) for s, v in history), float(history[-1][1]),
                   float(late.mean()), float((late >= good).mean()))


@dataclass(frozen=True)
class PolicyCeiling:
    """The references on a run's D_mu, and the run's own (and ``compare``'s) policies beside them."""

    run: str
    n_expert_trajs: int
    steps: int
    every: int
    episodes: int
    good: float
    overrides: tuple[str, ...]
    rows: tuple[CeilingRow, ...]

    def lines(self) -> list[str]:
        out = [f"{self.run}, N = {self.n_expert_trajs}: final score, mean and share >= {self.good:g} of the second "
               "half's evaluations, then every evaluation"]
        for row in self.rows:
            curve = " ".join(f"{score:.0f}" for _, score in row.eval_history)
            out.append(f"  {row.name:28s} s{row.seed}  final {row.final:6.1f}  late mean {row.late_mean:6.1f}  "
                       f"good {row.late_good_share:4.0%}  | {curve}")
        return out


def policy_ceiling(run: Any, *, references: Sequence[str] = REFERENCES, seeds: Sequence[int] = (0, 1, 2),
                   steps: int | None = None, every: int = 250, episodes: int | None = None, good: float = 75.0,
                   overrides: Sequence[str] = (), compare: Sequence[Any] = (), progress: bool = False) -> PolicyCeiling:
    """Train ``references`` on ``run``'s D_mu (a RunFolder whose D_mu holds expert episodes), one per
    seed, for ``steps`` updates (the run's ``rl.steps`` by default), evaluated every ``every`` on
    ``episodes`` episodes (the run's ``evaluation.episodes``); ``overrides`` (``rl.iql.beta=9``)
    change the run's config for them. ``compare``: more RunFolders whose curves join the table."""
    from tge_ray.config import apply_override, config_from_dict, to_dict

    unknown = [name for name in references if name not in REFERENCES]
    if unknown:
        raise ConfigError(f"policy ceiling: unknown reference(s) {', '.join(unknown)}; choose from {', '.join(REFERENCES)}")
    data = to_dict(run.config)
    for override in overrides:
        apply_override(data, override)
    base = config_from_dict(data)
    steps = base.rl.steps if steps is None else steps
    episodes = base.evaluation.episodes if episodes is None else episodes
    if min(steps, every, episodes) < 1:
        raise ConfigError(f"policy ceiling: steps, every and episodes must be >= 1, got {steps}, {every}, {episodes}")
    data["rl"]["steps"], data["evaluation"]["every"], data["evaluation"]["episodes"] = steps, every, episodes
    cfg = config_from_dict(data)
    task = run.task()
    flags = task.expert_flags
    if not flags.any():
        raise ConfigError(f"{run.path.name} has no expert episodes in D_mu (N = 0): the references need N >= 1")
    all_of_d_mu = run.transitions(flags.astype(np.float32))  # reward 1 on the expert's transitions
    rows = []
    for kind in references:
        learner, transitions = ("bc", rows_of(all_of_d_mu, flags)) if kind == "bc-expert" else ("iql", all_of_d_mu)
        for seed in seeds:
            curve = train_curve(learner, cfg, task, transitions, seed=seed, progress=progress)
            rows.append(CeilingRow.of(kind, seed, curve.eval_history, good))
    for other in (run, *compare):
        for method, history in other.results.eval_history.items():
            if history:
                rows.append(CeilingRow.of(f"{other.path.name.split('__')[0]}:{method}", other.config.seed, history, good))
    return PolicyCeiling(run.path.name, int(task.n_expert_trajs), steps, every, episodes, good, tuple(overrides),
                         tuple(rows))
