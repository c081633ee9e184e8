"""Records of earlier versions, read as this version's: the one place that knows how runs used to run.

A run folder's ``config.yaml`` and ``results.json`` carry ``schema_version``
(:data:`SCHEMA_VERSION`); those written before it was recorded are version 1. Each step below
turns version n into n + 1 and says in a line what changed. The steps work on plain mappings
and spell the values older runs ran with as they were then, never as today's defaults.

Version 1 -> 2 (the record gained ``schema_version``):
    - ``task.demos``: runs before the option took the demos right after the mixed-in episodes
      (``next``), not today's ``last``; the results' task summary likewise.
    - ``rl.fbc.prior``: filtered BC before the option ranked episodes by their plain mean (0).
    - ``rl.fbc.lr``: filtered BC before the option trained at the baseline's ``rl.bc_lr``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tge_ray.errors import ConfigError

SCHEMA_VERSION = 2
"""Version of the run record (config.yaml and results.json) this code writes."""

VERSION_KEY = "schema_version"
DEMOS_BEFORE_THE_OPTION = "next"  # task.demos of a version-1 record
PRIOR_BEFORE_THE_OPTION = 0.0  # rl.fbc.prior of a version-1 record
BC_LR_OF_VERSION_1 = 3e-4  # rl.bc_lr's default when version 1 was written


def version_of(data: dict[str, Any], what: str) -> int:
    """The schema version of a config or results mapping; newer than this code is one line."""
    version = data.get(VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{what} has {VERSION_KEY}={version!r}: expected an integer >= 1")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{what} was written by a newer tge_ray ({VERSION_KEY} {version}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade tge_ray to read it"
        )
    return version


# ----------------------------------------------------------------------------- config steps


def _config_1_to_2(config: dict[str, Any]) -> None:
    task = config.get("task")
    if isinstance(task, dict):
        task.setdefault("demos", DEMOS_BEFORE_THE_OPTION)
    rl = config.get("rl")
    if isinstance(rl, dict) and isinstance(rl.get("fbc"), dict):  # runs before rl.fbc never ran fbc
        rl["fbc"].setdefault("prior", PRIOR_BEFORE_THE_OPTION)
        rl["fbc"].setdefault("lr", rl.get("bc_lr", BC_LR_OF_VERSION_1))


CONFIG_STEPS: dict[int, Callable[[dict[str, Any]], None]] = {1: _config_1_to_2}


def upgrade_config(data: dict[str, Any], what: str = "config") -> dict[str, Any]:
    """A config mapping of any version as this version's, without ``schema_version``."""
    version = version_of(data, what)
    config = copy.deepcopy({key: value for key, value in data.items() if key != VERSION_KEY})
    for step in range(version, SCHEMA_VERSION):
        CONFIG_STEPS[step](config)
    return config


# ----------------------------------------------------------------------------- results steps


def _results_1_to_2(results: dict[str, Any]) -> None:
    task = results.get("task")
    if isinstance(task, dict):
        task.setdefault("demos", DEMOS_BEFORE_THE_OPTION)


RESULTS_STEPS: dict[int, Callable[[dict[str, Any]], None]] = {1: _results_1_to_2}


def upgrade_results(data: dict[str, Any], what: str = "results") -> dict[str, Any]:
    """A results mapping of any version as this version's (its ``config`` upgraded too)."""
    version = version_of(data, what)
    results = copy.deepcopy(data)
    for step in range(version, SCHEMA_VERSION):
        RESULTS_STEPS[step](results)
    if isinstance(results.get("config"), dict):
        results["config"] = upgrade_config({VERSION_KEY: version, **results["config"]}, what)
    results[VERSION_KEY] = SCHEMA_VERSION
    return results
