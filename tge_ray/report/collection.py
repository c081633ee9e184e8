"""The report of a folder of run folders (``tge run ... storage=DIR``): one table of mean ± std
normalised scores over seeds per experiment and method, and every run. RESULTS.md's suite
table is made this way.

Only seeds are averaged: runs that differ in any other setting that can change a result get
rows of their own, with a column naming what differs (:func:`experiments`). A seed is a final
policy: a run's own seed, and each of its RL seeds (``rl.seeds``) over the same rewards, count
once each (:func:`policy_scores`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, key_part, to_dict
from tge_ray.errors import ReportError
from tge_ray.methods import label_sort_key
from tge_ray.pipeline.files import RESULTS_FILE
from tge_ray.pipeline.run_folder import RunFolder, RunFolderError, RunRecord
from tge_ray.report.document import Block, Heading, Note, Paragraph, Table
from tge_ray.report.values import fixed, is_number


@dataclass
class RunsFolder:
    """A folder of run folders (``tge run ... storage=DIR``), each with its results.json."""

    path: Path
    runs: list[RunFolder]
    damaged: list[str] = field(default_factory=list)


def load_runs(folder: Path) -> RunsFolder:
    runs, damaged = [], []
    for run_dir in RunFolder.inside(folder):
        try:
            runs.append(RunFolder.open(run_dir))
        except RunFolderError:
            damaged.append(run_dir.name)
    if not runs:
        raise ReportError(f"every run folder in {folder} has a damaged {RESULTS_FILE}: rerun them with `tge run`")
    return RunsFolder(folder, runs, damaged)


GROUP_KEYS = ("task.offline", "task.n_expert_trajs", "windows.horizon", "reward.kernel")
"""The collection table's row labels: offline dataset, N expert trajectories, H, kernel."""
NOT_A_SETTING = ("seed", "name", "storage", "methods", "rl.backbone", "rl.seeds", "resources.")
"""Config keys that do not make runs different experiments: seeds are averaged, the backbones
of one cell share BC and oracle, and resources change speed, not results."""


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys -> JSON text of the value."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{dotted}."))
        else:
            flat[dotted] = json.dumps(value, sort_keys=True, default=str)
    return flat


def _uses(key: str, config: dict[str, Any]) -> bool:
    """Whether a setting can change any result of a run with this config."""
    methods = set(config.get("methods") or ())
    backbone = (config.get("rl") or {}).get("backbone")
    if key.startswith("rl.rebrac."):
        return "tge" in methods and backbone == "rebrac"
    if key.startswith("rl.iql."):
        return ("tge" in methods and backbone == "iql") or "oracle" in methods
    if key.startswith("rl.fbc."):
        return "tge" in methods and backbone == "fbc"
    if key == "rl.bc.lr":  # filtered BC has its own, rl.fbc.lr
        return "bc" in methods
    if key.startswith("rl.bc."):
        return "bc" in methods or ("tge" in methods and backbone == "fbc")
    if key.startswith(("windows.", "diffusion.", "embedding.", "reward.")):
        return "tge" in methods
    return True


def _settings(run: RunFolder) -> dict[str, str]:
    """The settings that can change the run's results, as dotted keys. A run's config is read as
    the version it was written in (:mod:`tge_ray.pipeline.upgrade`), so a field newer than the
    run reads as the value the run ran with, and a new field does not split older runs off. Fields
    that change no result (batch sizes; :func:`tge_ray.config.key_part`) are left out, as from
    artifact keys."""
    config = to_dict(run.config)
    settings = flat_config(key_part(run.config))
    # auto as what it resolved to, for the backbone it served: the IQL and the ReBRAC run of one cell
    # (auto: rank and min-max) stay one experiment, while a scale other than auto's for that backbone
    # splits the run off.
    del settings["reward.scale"]
    settings[f"reward.scale[{run.config.rl.backbone}]"] = json.dumps(run.config.reward_scale())
    return {key: value for key, value in settings.items()
            if not key.startswith(NOT_A_SETTING) and key not in GROUP_KEYS and _uses(key, config)}


def run_group(run: RunFolder) -> tuple[str, int, int, str]:
    """What a row of the collection table is labelled by: (offline dataset, N, H, kernel)."""
    config = run.config
    return config.task.offline, config.task.n_expert_trajs, config.windows.horizon, config.reward.kernel


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f} ({len(values)})"


def experiments(runs: list[RunFolder]) -> dict[tuple[tuple[str, int, int, str], str], list[RunFolder]]:
    """Runs grouped into experiments, keyed by (row label, the settings that set it apart).

    Runs are one experiment when they agree on every setting that can change their results
    (not the seed, run name, storage or resources; the settings of a backbone a run does not
    train are ignored, so the IQL and ReBRAC runs of one cell stay together). The label is
    (dataset, N, H, kernel); the second part names the run's settings that differ from the most
    common value among the runs on its dataset (a tie goes to the default), "" when none do.
    """
    settings = {id(run): _settings(run) for run in runs}
    defaults = flat_config(to_dict(ExperimentConfig()))
    common: dict[tuple[str, str], str] = {}
    by_dataset: dict[str, list[dict[str, str]]] = {}
    for run in runs:
        by_dataset.setdefault(run_group(run)[0], []).append(settings[id(run)])
    for dataset, members in by_dataset.items():
        for key in {key for member in members for key in member}:
            values = [member[key] for member in members if key in member]
            common[dataset, key] = max(set(values), key=lambda v: (values.count(v), v == defaults.get(key), v))
    groups: dict[tuple[tuple[str, int, int, str], str], list[RunFolder]] = {}
    for run in runs:
        label, run_settings = run_group(run), settings[id(run)]
        differing = ", ".join(f"{key}={json.loads(value)}" for key, value in sorted(run_settings.items())
                              if value != common[label[0], key])
        groups.setdefault((label, differing), []).append(run)
    return groups


def runs_table(runs: list[RunFolder]) -> Table:
    """Mean ± std (seeds) of the normalised score per experiment (:func:`experiments`) and method.

    Runs that are not comparable are never averaged together: when any row has settings that
    set it apart, an "other settings" column names them.
    """
    groups = experiments(runs)
    present = {m for run in runs for m in run.results.scores}
    methods = sorted(present, key=label_sort_key)
    show_settings = any(differing for _, differing in groups)
    header = ("dataset", "N", "H", "kernel", *(("other settings",) if show_settings else ()), *methods, "AUC",
              "ρ true")
    rows = []
    for ((dataset, n, horizon, kernel), differing), members in sorted(groups.items()):
        # Each method's final policies, keyed so that a policy two runs share counts once (policy_scores).
        per_method: dict[str, dict[tuple[int, int], float]] = {m: {} for m in methods}
        aucs: dict[int, float] = {}
        rhos: dict[int, float] = {}
        for run in members:
            seed = run.config.seed
            for method in run.results.scores:
                per_method[method].update(policy_scores(run, method))
            auc = run.results.separation.get("auc")
            if is_number(auc) and math.isfinite(auc):  # None or NaN where D_mu has no expert data
                aucs[seed] = float(auc)
            rho = _true_rho(run.results)
            if rho is not None:
                rhos[seed] = rho
        rows.append((dataset, str(n), str(horizon), kernel, *((differing or "-",) if show_settings else ()),
                     *(mean_std(list(per_method[m].values())) for m in methods),
                     f"{np.mean(list(aucs.values())):.3f}" if aucs else "-",
                     f"{np.mean(list(rhos.values())):.3f}" if rhos else "-"))
    return Table(header, tuple(rows))


def policy_scores(run: RunFolder, method: str) -> dict[tuple[int, int], float]:
    """Each final policy's normalised score of ``method`` in ``run``, keyed by (the run's seed,
    the policy's seed), so that a method two runs of one seed share (bc and the oracle, reused by
    the IQL and the ReBRAC run of a cell) counts once. A record older than ``rl.seeds`` lists no
    policies: its score counts as the run seed's one policy."""
    seed = run.config.seed
    policies = run.results.policies.get(method) or []
    scores = {(seed, int(policy["seed"])): float(policy["score"]) for policy in policies
              if is_number(policy.get("seed")) and is_number(policy.get("score"))}
    return scores or {(seed, seed): float(run.results.scores[method])}


def _run_score(run: RunFolder, method: str) -> str:
    """One run's score of ``method``: the score, or mean ± std (policies) over its RL seeds."""
    scores = list(policy_scores(run, method).values())
    return mean_std(scores) if len(scores) > 1 else f"{scores[0]:.1f}"


def _true_rho(results: RunRecord) -> float | None:
    """The per-transition rank correlation with D_mu's true reward, where the run recorded one."""
    value = (results.true_reward_correlation or {}).get("transitions")
    return float(value) if is_number(value) and math.isfinite(value) else None


def runs_blocks(collection: RunsFolder) -> tuple[str, list[Block]]:
    runs = collection.runs
    seeds = sorted({run.config.seed for run in runs})
    blocks: list[Block] = [Paragraph(
        f"{len(runs)} runs in {collection.path}, seeds {', '.join(map(str, seeds))}. Cells: normalised score, "
        "mean ± std over seeds (number of seeds; a run's RL seeds, `rl.seeds`, count as seeds); AUC: the separation "
        "diagnostic of the TGE reward "
        "(expert-flagged vs other transitions), mean over seeds; ρ true: Spearman's correlation of the "
        "TGE reward with D_mu's true reward per transition, mean over seeds (\"-\" for runs made before "
        "it was recorded)."
    )]
    if collection.damaged:
        blocks.append(Note(f"{len(collection.damaged)} run folder(s) with a damaged {RESULTS_FILE} are left out: "
                           f"{', '.join(collection.damaged)}"))
    blocks.append(Heading("Normalised scores"))
    blocks.append(runs_table(runs))
    blocks.append(Heading("Every run"))
    header = ("run", "seed", "backbone", "RL steps", "scores", "AUC", "ρ true")
    rows = []
    for run in runs:
        config, results = run.config, run.results
        scores = ", ".join(f"{m} {_run_score(run, m)}" for m in results.scores)
        auc = results.separation.get("auc")
        rows.append((run.path.name, str(config.seed), config.rl.backbone, str(config.rl.steps), scores, fixed(auc),
                     fixed(_true_rho(results))))
    blocks.append(Table(header, tuple(rows)))
    return f"TGE runs in {collection.path.name}", blocks
