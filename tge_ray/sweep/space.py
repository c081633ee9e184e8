"""Search spaces as YAML files (tune_spaces/), read into a define-by-run Optuna space.

A space file::

    name: kernel                  # the sweep's folder under --storage
    base: smoke                   # packaged config name or YAML path the trials start from
    fixed:                        # dotted overrides every trial gets (sweep.* included)
      rl.steps: 2000
      sweep.num_samples: 16
    tasks:                        # datasets as a dimension: name -> overrides (optional)
      hopper-random-30: {task.offline: tge/hopper/random-v0, task.n_expert_trajs: 30}
    space:                        # searched parameters, by dotted config key
      windows.horizon: {choice: [1, 4, 8, 16, 32, 64]}
      reward.sigma: {loguniform: [0.1, 5.0]}
      reward.k: {int: [1, 10]}
      reward.kernel: {choice: [log, gaussian]}
      rl.backbone:                # a choice whose options carry their own parameters:
        choice:                   # rl.iql.* is drawn only when iql is drawn (conditional)
          iql: {rl.iql.expectile: {uniform: [0.6, 0.9]}}
          rebrac: {rl.rebrac.actor_bc_coef: {loguniform: [0.001, 0.1]}}

Distributions: ``choice`` (a list, or a mapping option -> conditional parameters), ``uniform``,
``loguniform`` ([low, high] floats), ``int`` and ``logint`` ([low, high] integers). Everything
is checked when the file is read, before any trial starts: an unknown key, an empty choice or a
low bound above its high bound is one line naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tge_ray.config import (
    ExperimentConfig,
    apply_override,
    config_from_dict,
    load_config,
    read_yaml,
    resolve_config_path,
    to_dict,
)
from tge_ray.errors import ConfigError

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")
TASK_PARAM = "task"


@dataclass(frozen=True)
class Param:
    """One searched parameter; ``conditional`` maps a choice option to parameters drawn with it."""

    name: str
    kind: str
    values: tuple[Any, ...]
    conditional: dict[Any, tuple[Param, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file."""

    name: str
    base: str
    fixed: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    params: tuple[Param, ...]
    path: Path

    def sample(self, trial: Any) -> None:
        """Define-by-run: draw every parameter on an Optuna trial (conditionals included)."""
        if self.tasks:
            trial.suggest_categorical(TASK_PARAM, list(self.tasks))
        for param in self.params:
            _suggest(trial, param)

    def overrides(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Dotted overrides of one trial: fixed values, then its task, then what was drawn."""
        values = dict(self.fixed)
        if self.tasks:
            values.update(self.tasks[sampled[TASK_PARAM]])
        values.update({k: v for k, v in sampled.items() if k != TASK_PARAM})
        return values

    def config(self, sampled: dict[str, Any], extra: dict[str, Any] | None = None) -> ExperimentConfig:
        """The :class:`ExperimentConfig` of one trial."""
        base = load_config(resolve_config_path(self.base))
        data = to_dict(base)
        for key, value in {**self.overrides(sampled), **(extra or {})}.items():
            _set(data, key, value)
        return config_from_dict(data)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _suggest(trial: Any, param: Param) -> None:
    if param.kind == "choice":
        chosen = trial.suggest_categorical(param.name, list(param.values))
        for child in param.conditional.get(chosen, ()):
            _suggest(trial, child)
    elif param.kind == "uniform":
        trial.suggest_float(param.name, *param.values)
    elif param.kind == "loguniform":
        trial.suggest_float(param.name, *param.values, log=True)
    elif param.kind == "int":
        trial.suggest_int(param.name, *param.values)
    else:  # logint
        trial.suggest_int(param.name, *param.values, log=True)


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ConfigError(
            f"{where}: parameter {name!r} must be one mapping {{distribution: values}} with a "
            f"distribution in {', '.join(DISTRIBUTIONS)}; got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if isinstance(values, dict):
            if not values:
                raise ConfigError(f"{where}: parameter {name!r} has an empty choice list")
            conditional = {
                option: tuple(_parse_param(n, s, where) for n, s in (children or {}).items())
                for option, children in values.items()
            }
            return Param(name, kind, tuple(values), conditional)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: parameter {name!r} has an empty choice list")
        return Param(name, kind, tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise ConfigError(f"{where}: parameter {name!r} needs [low, high] for {kind}, got {values!r}")
    low, high = values
    numeric = (int,) if kind in ("int", "logint") else (int, float)
    if not all(isinstance(v, numeric) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}: parameter {name!r} bounds {values!r} must be numbers for {kind}")
    if low > high:
        raise ConfigError(f"{where}: parameter {name!r} has low bound {low} above its high bound {high}")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: parameter {name!r} needs a low bound > 0 for {kind}, got {low}")
    return Param(name, kind, (float(low), float(high)) if kind in ("uniform", "loguniform") else (low, high))


def _all_params(params: tuple[Param, ...]) -> list[Param]:
    out = []
    for param in params:
        out.append(param)
        for children in param.conditional.values():
            out.extend(_all_params(children))
    return out


def _extreme_values(param: Param) -> list[Any]:
    return list(param.values) if param.kind == "choice" else [param.values[0], param.values[1]]


def load_space(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SearchSpace:
    """Read and check a space file; ``overrides`` (key=value) extend its ``fixed`` section."""
    path = Path(path)
    where = f"space file {str(path)!r}"
    raw = read_yaml(path, "space file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must hold a mapping with name, base, fixed, tasks and space")
    unknown = set(raw) - {"name", "base", "fixed", "tasks", "space"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; allowed: name, base, fixed, tasks, space")
    fixed = dict(raw.get("fixed") or {})
    for override in overrides:
        holder: dict[str, Any] = {}
        apply_override(holder, override)
        key = override.split("=", 1)[0].strip()
        node: Any = holder
        for part in key.split("."):
            node = node[part]
        fixed[key] = node
    tasks = {str(k): dict(v or {}) for k, v in (raw.get("tasks") or {}).items()}
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict) or not (space_raw or tasks):
        raise ConfigError(f"{where}: the space section must map parameter names to distributions")
    params = tuple(_parse_param(name, spec, where) for name, spec in space_raw.items())
    space = SearchSpace(
        name=str(raw.get("name") or path.stem),
        base=str(raw.get("base") or "default"),
        fixed=fixed,
        tasks=tasks,
        params=params,
        path=path,
    )
    _check_keys(space, where)
    return space


def _check_keys(space: SearchSpace, where: str) -> None:
    """Every parameter and value must make a valid config: try each bound once, up front."""
    base = to_dict(load_config(resolve_config_path(space.base)))

    def attempt(values: dict[str, Any], what: str) -> None:
        data = yaml.safe_load(yaml.safe_dump(base))
        for key, value in values.items():
            _set(data, key, value)
        try:
            config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {what}: {exc}") from None

    attempt(space.fixed, "fixed values")
    for name, values in space.tasks.items():
        attempt({**space.fixed, **values}, f"task {name!r}")
    for param in _all_params(space.params):
        for value in _extreme_values(param):
            # Horizons are checked with the U-Net, so each is tried with the fixed values.
            attempt({**space.fixed, param.name: value}, f"parameter {param.name!r}")
