"""Records and artifacts of earlier versions: the one place that knows how runs used to run.

**Records.** A run folder's ``config.yaml`` and ``results.json`` carry ``schema_version``
(:data:`SCHEMA_VERSION`); those written before it was recorded are version 1. Each step below
turns version n into n + 1. The steps work on plain mappings and spell the values older runs
ran with as they were then, never as today's defaults.

Version 1 -> 2 (the record gained ``schema_version``):
    - ``task.demos``: runs before the option took the demos right after the mixed-in episodes
      (``next``), not today's ``last``; the results' task summary likewise.
    - ``rl.fbc.prior``: filtered BC before the option ranked episodes by their plain mean (0).
    - ``rl.fbc.lr``: filtered BC before the option trained at the baseline's ``rl.bc_lr``.
Version 2 -> 3: ``diffusion.pool`` and ``diffusion.normalize`` became the embedding stage's own
    section, ``embedding.pool`` and ``embedding.normalize``.
Version 3 -> 4 (the batched policy engine):
    - ``rl.bc_hidden``, ``bc_layers``, ``bc_lr``, ``bc_batch_size``, ``bc_lr_schedule`` became the
      ``rl.bc`` section: ``hidden``, ``n_layers``, ``lr``, ``batch_size``, ``lr_schedule``.
    - ``rl.iql.actor``: IQL before the option had CORL's Gaussian actor.
    - ``rl.seeds``: one RL seed per run before the option.
    - results gained ``score_std`` and ``policies`` (per-policy results); a version-3 record's
      ``scores`` are its single policy's.
Version 4 -> 5: ``reward.scale=auto`` resolved to ``rank`` for the fbc backbone, today to
    ``minmax``: a filtered-BC record with ``auto`` is spelled ``rank``.

**Artifacts.** Since records reached version 3, a stage's artifact key is the whole config
section the stage consumes (:func:`tge_ray.config.key_part`). Artifacts made before are keyed
by hand-picked fields; :func:`earlier_artifacts` names, for a stage and a config, the keys an
earlier version gave the same work and whether that artifact equals what this version would
build. An equal one is reused; one that is not is rebuilt, with one line saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tge_ray.errors import ConfigError

SCHEMA_VERSION = 5
"""Version of the run record (config.yaml and results.json) this code writes."""

VERSION_KEY = "schema_version"
DEMOS_BEFORE_THE_OPTION = "next"  # task.demos of a version-1 record
PRIOR_BEFORE_THE_OPTION = 0.0  # rl.fbc.prior of a version-1 record
BC_LR_OF_VERSION_1 = 3e-4  # rl.bc_lr's default when version 1 was written
IQL_ACTOR_BEFORE_THE_OPTION = "gaussian"  # rl.iql.actor of a version-3 record
FBC_AUTO_SCALE_OF_VERSION_4 = "rank"  # what reward.scale=auto gave the fbc backbone up to version 4


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


MOVED_AT = {  # version -> {old dotted key: new dotted key}, moved by the step to that version
    3: {"diffusion.pool": "embedding.pool", "diffusion.normalize": "embedding.normalize"},
    4: {"rl.bc_hidden": "rl.bc.hidden", "rl.bc_layers": "rl.bc.n_layers", "rl.bc_lr": "rl.bc.lr",
        "rl.bc_batch_size": "rl.bc.batch_size", "rl.bc_lr_schedule": "rl.bc.lr_schedule"},
}
MOVED_KEYS = {old: new for moves in MOVED_AT.values() for old, new in moves.items()}


def _move(config: dict[str, Any], version: int) -> None:
    """Move the keys that left their place at ``version``, where a config holds them."""
    for old, new in MOVED_AT[version].items():
        *old_path, old_key = old.split(".")
        *new_path, new_key = new.split(".")
        section: Any = config
        for part in old_path:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or old_key not in section:
            continue
        target = config
        for part in new_path:
            target = target.setdefault(part, {})
        target[new_key] = section.pop(old_key)


def _config_2_to_3(config: dict[str, Any]) -> None:
    _move(config, 3)


def _config_3_to_4(config: dict[str, Any]) -> None:
    _move(config, 4)
    rl = config.get("rl")
    if isinstance(rl, dict):
        if isinstance(rl.get("iql"), dict):
            rl["iql"].setdefault("actor", IQL_ACTOR_BEFORE_THE_OPTION)
        rl.setdefault("seeds", 1)


def _config_4_to_5(config: dict[str, Any]) -> None:
    reward, rl = config.get("reward"), config.get("rl")
    if isinstance(reward, dict) and isinstance(rl, dict) and reward.get("scale") == "auto" and rl.get("backbone") == "fbc":
        reward["scale"] = FBC_AUTO_SCALE_OF_VERSION_4


CONFIG_STEPS: dict[int, Callable[[dict[str, Any]], None]] = {1: _config_1_to_2, 2: _config_2_to_3,
                                                            3: _config_3_to_4, 4: _config_4_to_5}


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


RESULTS_STEPS: dict[int, Callable[[dict[str, Any]], None]] = {
    1: _results_1_to_2,
    2: lambda results: None,
    3: lambda results: None,  # the record only gained keys; its config moves in _config_3_to_4
    4: lambda results: None,  # only its config changes (_config_4_to_5)
}


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


# ----------------------------------------------------------------------------- artifacts

LEGACY_FORMAT = 1  # the artifact format of the hand-picked keys; its files are read unchanged


@dataclass(frozen=True)
class Earlier:
    """The key an earlier version gave a stage's work, and whether its artifact is this version's.

    ``why`` says in a line what differs when it is not equal.
    """

    dependencies: dict[str, Any]
    equal: bool
    why: str = ""


def earlier_artifacts(stage: str, config: dict[str, Any], upstream: str | None = None,
                      data: dict[str, Any] | None = None) -> list[Earlier]:
    """The earlier keys of ``stage``'s artifact for ``config`` (this version's, as a mapping), newest first.

    ``upstream`` is the name of the artifact the stage builds on (the diffusion model for the
    embeddings, the embeddings for the rewards); ``data`` what the earlier keys called the
    data's dependencies (ids, file fingerprints, N and the format).
    """
    if stage == "diffusion":
        assert data is not None
        training = {"data": {**data, "format": LEGACY_FORMAT}, "horizon": config["windows"]["horizon"], "diffusion": dict(config["diffusion"]),
                    "train_workers": config["resources"]["train_workers"], "seed": config["seed"]}
        return [
            Earlier({**training, "window_order": "permuted"}, equal=True),
            Earlier(training, equal=False,
                    why="it was trained on blocks of consecutive windows, before the stage trained on one "
                        "seeded permutation of them (docs/notes/diffusion-training-order.md)"),
        ]
    if stage == "embeddings":
        embedding, task = config["embedding"], config["task"]
        deps = {"diffusion": upstream, "pool": embedding["pool"], "normalize": embedding["normalize"],
                "n_demos": task["n_demos"], "format": LEGACY_FORMAT}
        if task["demos"] != DEMOS_BEFORE_THE_OPTION:  # keyed only when not what runs before the option used
            deps["demos"] = task["demos"]
        return [Earlier(deps, equal=True)]
    if stage == "rewards":
        reward = config["reward"]
        deps = {"embeddings": upstream, "format": LEGACY_FORMAT,
                **{key: reward[key] for key in ("kernel", "k", "sigma", "scale")}}
        if reward["expert_windows"] != "all":  # keyed only when set
            deps["expert_windows"] = reward["expert_windows"]
        if reward["skip_demo_start"]:
            deps["skip_demo_start"] = reward["skip_demo_start"]
        return [Earlier(deps, equal=True)]
    return []  # policies: the batched engine's artifacts are new (POLICY_FORMAT 2); older ones retrain


def checkpoint_diffusion_config(saved: dict[str, Any]) -> dict[str, Any]:
    """The ``diffusion_config`` of a diffusion checkpoint as this version's section: checkpoints
    written before version 3 carry the embedding's ``pool`` and ``normalize`` in it."""
    moved = {old.split(".")[1] for old in MOVED_AT[3]}
    return {key: value for key, value in saved.items() if key not in moved}
