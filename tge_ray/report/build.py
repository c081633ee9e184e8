"""``tge report DIR``: a run or sweep folder read back into report.md and a self-contained report.html.

DIR may also be a folder of run folders (``tge run ... storage=DIR`` for several tasks, methods
and seeds): the report is then one table of mean ± std normalised scores over seeds per task
(offline data, expert trajectories N, H, kernel) and method, with the separation AUC, and every
run below it. RESULTS.md's tables are made this way.

    1. read      the run folder (:class:`~tge_ray.pipeline.run_folder.RunFolder`, any version) or
                 the sweep's results table; bad input is one line, exit 2
    2. arrays    raw rewards and embeddings from the artifacts the run records; expert flags
                 from the task summary; episode returns from the (local) datasets
    3. figures   learning curves, reward histogram(s), 2-D embedding projection, sweep ablations
    4. write     everything is made in a private folder inside the output folder, then moved
                 into place: report_figures/, report.md, report.html

Where the artifacts are gone (a cleaned store, a folder copied to another machine), the report
says so in one line and shows the PNGs the run folder itself holds.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.config import ExperimentConfig, to_dict
from tge_ray.errors import ReportError
from tge_ray.pipeline.files import CONFIG_FILE, EMBEDDING_PROJECTION_FILE, RESULTS_FILE, REWARD_HISTOGRAM_FILE
from tge_ray.pipeline.run_folder import RunFolder, RunFolderError, RunRecord
from tge_ray.report.document import (
    Block,
    Code,
    Figure,
    Heading,
    Note,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)

FIGURES = "report_figures"
MAX_CURVES = 10  # learning-curve lines drawn for a sweep (best trials first); more is unreadable
SWEEP_COLUMNS = ("trial_id", "status", "dataset", "horizon", "sigma", "kernel", "backbone", "score_mean", "score_std")


@dataclass(frozen=True)
class ReportPaths:
    """Where ``tge report`` wrote: the two reports and the PNGs report.md links to."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]


# ----------------------------------------------------------------------------- 1. read


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class SweepFolder:
    """A finished sweep: its results table and the run folders of each trial."""

    path: Path
    table: Any  # pandas.DataFrame with (a subset of) tge_ray.sweep.results.COLUMNS
    summary: str | None  # best.md's summary line (trials, wall time, diffusion models reused)
    runs: dict[str, list[RunFolder]] = field(default_factory=dict)  # trial_id -> one per seed
    damaged: list[str] = field(default_factory=list)


def load_sweep(folder: Path) -> SweepFolder:
    """Read ``sweep_results.csv`` and every trial's run folders (damaged ones are listed, not fatal)."""
    import pandas as pd

    from tge_ray.sweep.results import BEST_FILE, COLUMNS, SWEEP_RESULTS

    path = folder / SWEEP_RESULTS
    rewrite = f"rewrite it with `tge sweep SPACE.yaml --storage {folder.parent} --resume`"
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path} cannot be read as CSV ({reason}): {rewrite}") from None
    missing = [column for column in SWEEP_COLUMNS if column not in table.columns]
    if missing:
        raise ReportError(
            f"{path} lacks the column(s) {', '.join(missing)}: it was not written by `tge sweep`; {rewrite}"
        )
    table = table[[column for column in COLUMNS if column in table.columns]]
    summary = None
    best = folder / BEST_FILE
    if best.is_file():  # "# Sweep NAME", the summary line, the table (sweep.results.write_results)
        lines = [line for line in best.read_text().splitlines() if line.strip()]
        if len(lines) > 1 and not lines[1].startswith("|"):
            summary = lines[1]
    sweep = SweepFolder(folder, table, summary)
    for trial_id in table["trial_id"].astype(str):
        runs = []
        for run_dir in RunFolder.inside(folder / trial_id):
            try:
                runs.append(RunFolder.open(run_dir))
            except RunFolderError:
                sweep.damaged.append(str(run_dir / RESULTS_FILE))
        sweep.runs[trial_id] = runs
    return sweep


def classify(folder: Path) -> str:
    """``"run"``, ``"sweep"`` or ``"runs"`` (a folder of run folders); else a :class:`ReportError`."""
    from tge_ray.sweep.results import SWEEP_RESULTS

    what = (
        "give a run folder written by `tge run` (<storage>/<task>__<backbone>__H<h>__s<seed>__<time>) "
        "or a sweep folder written by `tge sweep` (<storage>/<space name>)"
    )
    if not folder.exists():
        raise ReportError(f"{folder} does not exist: {what}")
    if not folder.is_dir():
        raise ReportError(f"{folder} is a file, not a folder: {what}")
    if RunFolder.is_run_folder(folder):
        return "run"
    if (folder / SWEEP_RESULTS).is_file():
        return "sweep"
    if (folder / "tuner.pkl").is_file():
        raise ReportError(
            f"{folder} is a sweep without {SWEEP_RESULTS} (it has not finished): finish it with "
            f"`tge sweep SPACE.yaml --storage {folder.parent} --resume`, then report"
        )
    if RunFolder.inside(folder):
        return "runs"
    inside = sorted(p.parent.name for p in folder.glob(f"*/{SWEEP_RESULTS}"))
    hint = f" (it holds {len(inside)}, e.g. {folder / inside[0]})" if inside else ""
    raise ReportError(
        f"{folder} is neither a run folder (no {RESULTS_FILE}) nor a sweep folder (no {SWEEP_RESULTS}): {what}{hint}"
    )


# ----------------------------------------------------------------------------- 2. arrays


@dataclass
class StageArrays:
    """What the reward diagnostics need, read back from the artifact store."""

    raw_rewards: np.ndarray  # (N,) raw kernel reward per transition of D_mu
    embeddings: np.ndarray  # (N, D) window embeddings of D_mu
    expert_flags: np.ndarray  # (N,) bool
    returns: np.ndarray | None  # (N,) return of each transition's episode, when the data is local
    returns_note: str | None  # why returns is None


def _transition_returns(run: RunFolder, n_rows: int) -> tuple[np.ndarray | None, str | None]:
    """Each D_mu transition's episode return, rebuilt from the datasets (opened, never downloaded)."""
    try:
        rebuilt = run.task()
    except Exception as exc:  # an optional colouring: failing to open the data only drops it
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"episode returns not shown (datasets not opened: {reason})"
    if rebuilt.mixed.n_transitions != n_rows:
        return None, (
            f"episode returns not shown: the datasets now give {rebuilt.mixed.n_transitions} transitions, "
            f"the run had {n_rows} (they changed since the run)"
        )
    return rebuilt.mixed.episode_returns[rebuilt.mixed.episode_ids], None


def _has_arrays(run: RunFolder) -> bool:
    """Whether the run had a reward stage and its rewards and embeddings are still in the store."""
    stages = ("rewards", "embeddings")
    return all(run.has_stage(stage) for stage in stages) and not run.missing(*stages)


def load_stage_arrays(run: RunFolder) -> tuple[StageArrays | None, str | None]:
    """Rewards, embeddings and flags of a run, or None and the one-line reason they are missing."""
    from_folder = "the figures below come from the run folder"
    if not (run.has_stage("rewards") and run.has_stage("embeddings")):
        return None, "this run has no TGE reward stage (methods without tge): no reward diagnostics"
    gone = run.missing("rewards", "embeddings")
    if gone:
        return None, f"the run's artifacts are gone ({', '.join(gone)} not found): {from_folder}"
    try:
        raw, embeddings = run.rewards().raw, run.embeddings().mixed
    except RunFolderError as exc:  # a damaged artifact is reported like a missing one
        return None, f"{exc}: {from_folder}"
    try:
        flags = run.expert_flags()
    except (KeyError, TypeError, ValueError):
        return None, f"{run.path / RESULTS_FILE} has no task summary: {from_folder}"
    if not len(raw) == len(embeddings) == len(flags):
        return None, (
            f"the artifacts hold {len(raw)} rewards and {len(embeddings)} embeddings for {len(flags)} "
            f"transitions: {from_folder}"
        )
    returns, note = _transition_returns(run, len(flags))
    return StageArrays(raw, embeddings, flags, returns, note), None


# ----------------------------------------------------------------------------- 3. figures


def plot_learning_curves(histories: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """Normalised score against RL update steps, one line per method (or trial)."""
    from tge_ray.reward.diagnostics import new_figure, save_figure

    figure = new_figure((7.2, 4.6))
    axes = figure.add_subplot()
    for label, history in histories.items():
        steps = [step for step, _ in history]
        scores = [score for _, score in history]
        axes.plot(steps, scores, marker="o", markersize=4, label=label)
    axes.axhline(0.0, color="tab:gray", linewidth=0.8, linestyle=":")
    axes.set_title(title)
    axes.set_xlabel("RL update steps (gradient updates)")
    axes.set_ylabel("normalised score (0 = random, 100 = expert)")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return save_figure(figure, path)


def _histories(run: RunFolder) -> dict[str, list[tuple[int, float]]]:
    """The run's evaluations: method -> [(step, normalised score), ...], methods without any left out."""
    return {method: points for method, points in run.results.eval_history.items() if points}


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.{digits}g}"
    return "-" if value is None else str(value)


def _reward_detail(config: ExperimentConfig) -> str:
    return f"sigma={_fmt(config.reward.sigma)}, k={_fmt(config.reward.k)}"


def _diagnostic_figures(run: RunFolder, figures: Path, suffix: str, caption_note: str = "",
                        histogram: bool = True, projection: bool = True) -> list[Block]:
    """Reward histogram and/or embedding projection of one run (from artifacts, else its PNGs)."""
    from tge_ray.reward.diagnostics import plot_embedding_projection, plot_reward_histogram

    config = run.config
    kernel = config.reward.kernel
    histogram_path = figures / f"reward_histogram_{suffix}.png"
    projection_path = figures / f"embeddings_2d_{suffix}.png"
    histogram_caption = f"Raw {kernel}-kernel reward of D_mu's transitions, expert-flagged vs other{caption_note}."
    projection_caption = f"2-D PCA of D_mu's window embeddings, by expert flag and by episode return{caption_note}."
    arrays, gone = load_stage_arrays(run)
    blocks: list[Block] = []
    if arrays is not None:
        if histogram:
            plot_reward_histogram(arrays.raw_rewards, arrays.expert_flags, histogram_path, kernel=kernel,
                                  detail=_reward_detail(config))
            blocks.append(Figure(histogram_path, histogram_caption))
        if projection:
            plot_embedding_projection(arrays.embeddings, arrays.expert_flags, projection_path,
                                      returns=arrays.returns, seed=config.seed, split=True)
            if arrays.returns_note:
                blocks.append(Note(arrays.returns_note))
            blocks.append(Figure(projection_path, projection_caption))
        return blocks
    assert gone is not None
    blocks.append(Note(gone))
    wanted = [(REWARD_HISTOGRAM_FILE, histogram_path, histogram_caption)] if histogram else []
    if projection:
        wanted.append((EMBEDDING_PROJECTION_FILE, projection_path, projection_caption))
    for source, target, caption in wanted:
        if (run.path / source).is_file():
            shutil.copy2(run.path / source, target)
            blocks.append(Figure(target, caption.removesuffix(".") + " (the run folder's own PNG)."))
    return blocks


# ----------------------------------------------------------------------------- run report


def _summary_line(config: ExperimentConfig, task: dict[str, Any]) -> str:
    return (
        f"Task: D_mu = {task.get('offline', '?')} + {task.get('n_expert_trajs', '?')} episodes of "
        f"{task.get('expert', '?')} ({task.get('mixed_transitions', '?')} transitions, "
        f"{task.get('expert_transitions_in_mixed', '?')} from the expert); D_E = {task.get('n_demos', '?')} "
        f"demo(s), {task.get('demo_states', '?')} states. Horizon H = {config.windows.horizon}, "
        f"{config.reward.kernel} kernel, k = {config.reward.k}, sigma = {_fmt(config.reward.sigma)}; "
        f"backbone {config.rl.backbone}, {config.rl.steps} RL updates; seed {config.seed}."
    )


def _scaling_line(scaling: dict[str, Any]) -> str:
    shift, divisor = scaling.get("shift"), scaling.get("divisor")
    if _is_number(shift) and _is_number(divisor):
        sign = "-" if shift >= 0 else "+"
        formula = f"scaled = (raw {sign} {abs(shift):.4g}) / {divisor:.4g}"
    else:
        formula = "parameters not recorded"
    degenerate = "; degenerate: every raw reward was equal" if scaling.get("degenerate") else ""
    return f"Reward scaling for the backbone: {scaling.get('mode', '?')}, {formula}{degenerate}."


def run_blocks(run: RunFolder, figures: Path) -> tuple[str, list[Block]]:
    """Title and blocks of a run report; figures are written into ``figures``."""
    results, config = run.results, run.config
    blocks: list[Block] = [Paragraph(_summary_line(config, results.task))]

    blocks.append(Heading("Scores"))
    rows = []
    for method, score in results.scores.items():
        mean, std = results.returns[method]
        rows.append((method, f"{score:.2f}", f"{mean:.1f} ± {std:.1f}"))
    blocks.append(Table(("method", "normalised score", "return (mean ± std)"), tuple(rows)))
    blocks.append(Paragraph(
        "Normalised score = 100 * (return - ref_min) / (ref_max - ref_min) with the dataset's reference "
        "scores; returns over the evaluation episodes."
    ))
    histories = _histories(run)
    if histories:
        title = "Normalised score during offline RL, per method"
        path = plot_learning_curves(histories, figures / "learning_curves.png", title)
        blocks.append(Figure(path, "Learning curves: normalised score at each evaluation against RL update steps."))
    else:
        blocks.append(Note(f"{RESULTS_FILE} records no evaluations (eval_history): no learning curves"))

    blocks.append(Heading("Reward diagnostics"))
    separation = results.separation
    kernel = config.reward.kernel
    if separation:
        header = ("kernel", "ROC AUC (expert vs other)", "mean reward expert", "mean reward other",
                  "expert transitions", "other transitions")
        keys = ("auc", "mean_expert", "mean_other", "n_expert", "n_other")
        cells = (kernel, *(_fmt(separation.get(key)) for key in keys))
        blocks.append(Table(header, (cells,)))
        blocks.append(Paragraph(
            "Raw kernel rewards, before scaling. ROC AUC 1.0: every expert transition outranks every other "
            "one; 0.5: chance."
        ))
        correlation = results.true_reward_correlation
        if isinstance(correlation, dict):
            blocks.append(Table(("rank correlation with D_mu's true reward", "per transition", "over episode means"),
                                (("Spearman", _fmt(correlation.get("transitions")),
                                  _fmt(correlation.get("episodes"))),)))
            blocks.append(Paragraph(
                "How well the TGE reward orders D_mu as the environment's own reward does (1: the same "
                "order; 0: unrelated). A diagnostic only: the true reward never reaches TGE's learners. "
                "It needs no expert-flagged data, so it is defined at N = 0, where the AUC is not."
            ))
        if isinstance(results.reward_scaling, dict):
            blocks.append(Paragraph(_scaling_line(results.reward_scaling)))
        if isinstance(results.filtered_bc, dict):
            from tge_ray.rl.filtered import describe

            prior = config.rl.fbc.prior
            shrunk = f", shrunk towards D_mu's mean by {prior:g} window(s) of H" if prior else ""
            blocks.append(Paragraph(f"TGE-{describe(results.filtered_bc)} (episodes ranked by their mean "
                                    f"scaled TGE reward{shrunk})."))
    if run.has_stage("rewards"):
        blocks += _diagnostic_figures(run, figures, kernel)
    else:
        blocks.append(Note("this run has no TGE reward stage (methods without tge): no reward diagnostics"))

    blocks.append(Heading("Resolved config"))
    blocks.append(Code(run.config_text, "yaml", f"Resolved config ({CONFIG_FILE})"))
    return f"TGE run {run.path.name}", blocks


# ----------------------------------------------------------------------------- sweep report


def _short_trial(trial_id: str) -> str:
    """``_trial_84316ec4_1_reward_k=3,..._2026-...`` -> ``84316ec4_1``."""
    match = re.match(r"_?trial_([0-9a-f]+_\d+)", trial_id)
    return match.group(1) if match else trial_id[:24]


def _first_run(sweep: SweepFolder, trial_ids: list[str], with_artifacts: bool) -> RunFolder | None:
    """The first run folder of the first trial in ``trial_ids`` (whose artifacts exist, if asked)."""
    for trial_id in trial_ids:
        for run in sweep.runs.get(trial_id, []):
            if not with_artifacts or _has_arrays(run):
                return run
    return None


def _best_available(sweep: SweepFolder, trial_ids: list[str]) -> RunFolder | None:
    """Best trial with its artifacts; failing that, the best with a run folder (its PNGs)."""
    return _first_run(sweep, trial_ids, with_artifacts=True) or _first_run(sweep, trial_ids, with_artifacts=False)


def _kernel_sections(sweep: SweepFolder, done: Any, figures: Path) -> list[Block]:
    """One reward histogram per kernel, from that kernel's best trial whose artifacts exist."""
    blocks: list[Block] = []
    for kernel in sorted(str(k) for k in done["kernel"].unique()):
        run = _best_available(sweep, [str(t) for t in done.loc[done["kernel"] == kernel, "trial_id"]])
        if run is None:
            blocks.append(Note(f"no run folder of a {kernel}-kernel trial was found: no reward histogram for it"))
            continue
        trial = run.path.parent.name
        row = done[done["trial_id"] == trial].iloc[0]
        blocks.append(Heading(
            f"{kernel} kernel: trial {_short_trial(trial)} (score {row.score_mean:.1f}, "
            f"{_reward_detail(run.config)}, {row.backbone})", 3,
        ))
        blocks += _diagnostic_figures(run, figures, kernel, f", trial {_short_trial(trial)}", projection=False)
    if done.empty:
        blocks.append(Note("no finished trials: no reward diagnostics"))
    return blocks


def _sweep_curves(sweep: SweepFolder, done: Any, figures: Path) -> list[Block]:
    """Learning curves of the best finished trials (each seed's run a line)."""
    histories: dict[str, list[tuple[int, float]]] = {}
    for row in done.head(MAX_CURVES).itertuples(index=False):
        runs = sweep.runs.get(str(row.trial_id), [])
        for run in runs:
            seed = f", seed {run.config.seed}" if len(runs) > 1 else ""
            for method, history in _histories(run).items():
                label = f"{_short_trial(str(row.trial_id))} {method} {row.kernel} sigma={row.sigma:.3g}{seed}"
                histories[label] = history
    if not histories:
        return [Note("no trial run folder records evaluations: no learning curves")]
    title = "Normalised score during offline RL, per trial"
    path = plot_learning_curves(histories, figures / "learning_curves.png", title)
    shown = "every finished trial"
    if len(done) > MAX_CURVES:
        shown = f"the best {MAX_CURVES} of {len(done)} finished trials"
    return [Figure(path, f"Learning curves of the TGE policy ({shown}): normalised score against RL update steps.")]


def _trials_table(table: Any) -> Table:
    """Every trial, best first; unfinished ones (no score) last."""
    header = ("trial", "status", "dataset", "N", "H", "sigma", "k", "kernel", "backbone", "seeds",
              "score (mean ± std)", "time (s)", "diffusion trained / reused")
    ordered = table.assign(_order=table["score_mean"].fillna(-np.inf)).sort_values("_order", ascending=False)
    rows = []
    for row in ordered.to_dict("records"):
        score, std = row["score_mean"], row["score_std"]
        shown = "-" if math.isnan(score) else f"{score:.1f} ± {0.0 if math.isnan(std) else std:.1f}"
        rows.append((
            _short_trial(str(row["trial_id"])), str(row["status"]), str(row["dataset"]),
            _fmt(row.get("n_expert_trajs")), _fmt(row["horizon"]), _fmt(row["sigma"]), _fmt(row.get("k")),
            str(row["kernel"]), str(row["backbone"]), _fmt(row.get("seeds")), shown, _fmt(row.get("time_s"), 4),
            f"{_fmt(row.get('diffusion_trained'))} / {_fmt(row.get('diffusion_reused'))}",
        ))
    return Table(header, tuple(rows))


def sweep_blocks(sweep: SweepFolder, figures: Path) -> tuple[str, list[Block]]:
    """Title and blocks of a sweep report; figures are written into ``figures``."""
    from tge_ray.sweep.results import BEST_HEADER, SWEEP_RESULTS, best_rows, plot_ablations

    table = sweep.table
    done = table[table["status"] == "done"].dropna(subset=["score_mean"])
    done = done.sort_values("score_mean", ascending=False)
    datasets = f"{table['dataset'].nunique()} dataset(s)"
    if sweep.summary:  # best.md's line also has the wall time and the diffusion models reused
        line = f"{sweep.summary}; {datasets}."
    else:
        status = ", ".join(f"{n} {s}" for s, n in sorted(table["status"].value_counts().to_dict().items()))
        line = f"{len(table)} trials ({status or 'none'}) over {datasets}."
    blocks: list[Block] = [Paragraph(line)]
    if sweep.damaged:
        blocks.append(Note(
            f"{len(sweep.damaged)} trial run folder(s) have a damaged {RESULTS_FILE} and are left out: "
            f"{', '.join(sweep.damaged)}"
        ))

    blocks.append(Heading("Best configuration per dataset"))
    best = best_rows(table)
    blocks.append(Table(BEST_HEADER, tuple(best)) if best else Note("no trial finished: no best configuration"))

    blocks.append(Heading("Ablations"))
    captions = {
        "score_vs_horizon.png": "Normalised score against the window horizon H (mean ± std over seeds).",
        "score_vs_sigma.png": "Normalised score against the kernel temperature sigma, one series per kernel.",
        "score_by_backbone.png": "Normalised score per offline-RL backbone.",
    }
    written = plot_ablations(table, figures)
    blocks += [Figure(path, captions.get(path.name, path.stem)) for path in written]
    if not written:
        blocks.append(Note("no finished trials: no ablation plots"))

    blocks.append(Heading("Reward diagnostics per kernel"))
    blocks += _kernel_sections(sweep, done, figures)

    # The embeddings depend on H and the diffusion model, not on the kernel: one projection.
    trial_ids = [str(t) for t in done["trial_id"]]
    best_run = _best_available(sweep, trial_ids)
    if best_run is not None:
        trial = _short_trial(best_run.path.parent.name)
        horizon = best_run.config.windows.horizon
        blocks.append(Heading(f"Embeddings: trial {trial} (H = {horizon})"))
        blocks += _diagnostic_figures(best_run, figures, "best", f", trial {trial}", histogram=False)

    blocks.append(Heading("Learning curves"))
    blocks += _sweep_curves(sweep, done, figures)

    blocks.append(Heading("All trials"))
    blocks.append(_trials_table(table))
    blocks.append(Paragraph(f"Every column: {sweep.path / SWEEP_RESULTS}."))

    best_run = _first_run(sweep, trial_ids, with_artifacts=False)
    if best_run is not None:
        trial = _short_trial(best_run.path.parent.name)
        blocks.append(Heading("Resolved config of the best trial"))
        blocks.append(Code(best_run.config_text, "yaml", f"Resolved config, trial {trial} ({CONFIG_FILE})"))
    return f"TGE sweep {sweep.path.name}", blocks


# ----------------------------------------------------------------------------- a folder of runs

METHOD_ORDER = ("tge-iql", "tge-rebrac", "tge-fbc", "bc", "oracle-iql")


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
NOT_A_SETTING = ("seed", "name", "storage", "methods", "rl.backbone", "resources.")
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
    if key == "rl.bc_lr":  # filtered BC has its own, rl.fbc.lr
        return "bc" in methods
    if key.startswith("rl.bc_"):
        return "bc" in methods or ("tge" in methods and backbone == "fbc")
    if key.startswith(("windows.", "diffusion.", "reward.")):
        return "tge" in methods
    return True


def _settings(run: RunFolder) -> dict[str, str]:
    """The settings that can change the run's results, as dotted keys. A run's config is read as
    the version it was written in (:mod:`tge_ray.pipeline.upgrade`), so a field newer than the
    run reads as the value the run ran with, and a new field does not split older runs off."""
    config = to_dict(run.config)
    return {key: value for key, value in flat_config(config).items()
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
    methods = [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))
    show_settings = any(differing for _, differing in groups)
    header = ("dataset", "N", "H", "kernel", *(("other settings",) if show_settings else ()), *methods, "AUC",
              "ρ true")
    rows = []
    for ((dataset, n, horizon, kernel), differing), members in sorted(groups.items()):
        # A seed's score per method: runs of one seed with two backbones share bc and oracle
        # (the same artifacts), so a method counts once per seed.
        per_method: dict[str, dict[int, float]] = {m: {} for m in methods}
        aucs: dict[int, float] = {}
        rhos: dict[int, float] = {}
        for run in members:
            seed = run.config.seed
            for method, score in run.results.scores.items():
                per_method[method][seed] = float(score)
            auc = run.results.separation.get("auc")
            if _is_number(auc) and math.isfinite(auc):  # None or NaN where D_mu has no expert data
                aucs[seed] = float(auc)
            rho = _true_rho(run.results)
            if rho is not None:
                rhos[seed] = rho
        rows.append((dataset, str(n), str(horizon), kernel, *((differing or "-",) if show_settings else ()),
                     *(mean_std(list(per_method[m].values())) for m in methods),
                     f"{np.mean(list(aucs.values())):.3f}" if aucs else "-",
                     f"{np.mean(list(rhos.values())):.3f}" if rhos else "-"))
    return Table(header, tuple(rows))


def _true_rho(results: RunRecord) -> float | None:
    """The per-transition rank correlation with D_mu's true reward, where the run recorded one."""
    value = (results.true_reward_correlation or {}).get("transitions")
    return float(value) if _is_number(value) and math.isfinite(value) else None


def runs_blocks(collection: RunsFolder) -> tuple[str, list[Block]]:
    runs = collection.runs
    seeds = sorted({run.config.seed for run in runs})
    blocks: list[Block] = [Paragraph(
        f"{len(runs)} runs in {collection.path}, seeds {', '.join(map(str, seeds))}. Cells: normalised score, "
        "mean ± std over seeds (number of seeds); AUC: the separation diagnostic of the TGE reward "
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
        scores = ", ".join(f"{m} {v:.1f}" for m, v in results.scores.items())
        auc = results.separation.get("auc")
        rows.append((run.path.name, str(config.seed), config.rl.backbone, str(config.rl.steps), scores, _fmt(auc),
                     _fmt(_true_rho(results))))
    blocks.append(Table(header, tuple(rows)))
    return f"TGE runs in {collection.path.name}", blocks


# ----------------------------------------------------------------------------- 4. write


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> ReportPaths:
    """Write report.md, report.html and report_figures/ for a run or sweep folder.

    ``out`` defaults to ``folder``. The input is read and checked before anything is written;
    the report is built in a private folder inside ``out`` and moved into place when complete.
    """
    source = Path(folder).expanduser()
    kind = classify(source)
    loaded: RunFolder | SweepFolder | RunsFolder = (
        RunFolder.open(source) if kind == "run" else load_sweep(source) if kind == "sweep" else load_runs(source)
    )
    target = Path(out).expanduser() if out is not None else source
    if target.exists() and not target.is_dir():
        raise ReportError(f"--out {target} is a file: give a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=".report.tmp-"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ReportError(f"--out {target} cannot be written ({reason}): choose a writable folder") from None
    try:
        figures = tmp / FIGURES
        figures.mkdir()
        if isinstance(loaded, RunFolder):
            title, blocks = run_blocks(loaded, figures)
        elif isinstance(loaded, SweepFolder):
            title, blocks = sweep_blocks(loaded, figures)
        else:
            title, blocks = runs_blocks(loaded)
        (tmp / "report.md").write_text(render_markdown(title, blocks, FIGURES))
        (tmp / "report.html").write_text(render_html(title, blocks))
        names = sorted(p.name for p in figures.iterdir())
        final_figures = target / FIGURES
        if final_figures.exists():  # an older report's figures: set aside, removed with tmp
            os.replace(final_figures, tmp / f"{FIGURES}.old")
        os.replace(figures, final_figures)
        os.replace(tmp / "report.md", target / "report.md")
        os.replace(tmp / "report.html", target / "report.html")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ReportPaths(target / "report.md", target / "report.html", tuple(final_figures / n for n in names))
