"""The report of a sweep folder: best configuration per dataset, ablation plots, reward
diagnostics per kernel, learning curves of the best trials, every trial."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tge_ray.errors import ReportError
from tge_ray.pipeline.files import CONFIG_FILE, RESULTS_FILE
from tge_ray.pipeline.run_folder import RunFolder, RunFolderError
from tge_ray.report.document import Block, Code, Figure, Heading, Note, Paragraph, Table
from tge_ray.report.figures import (
    diagnostic_figures,
    eval_histories,
    has_arrays,
    plot_learning_curves,
    reward_detail,
)
from tge_ray.report.values import fmt

MAX_CURVES = 10  # learning-curve lines drawn for a sweep (best trials first); more is unreadable
SWEEP_COLUMNS = ("trial_id", "status", "dataset", "horizon", "sigma", "kernel", "backbone", "score_mean", "score_std")


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


def _short_trial(trial_id: str) -> str:
    """``_trial_84316ec4_1_reward_k=3,..._2026-...`` -> ``84316ec4_1``."""
    match = re.match(r"_?trial_([0-9a-f]+_\d+)", trial_id)
    return match.group(1) if match else trial_id[:24]


def _first_run(sweep: SweepFolder, trial_ids: list[str], with_artifacts: bool) -> RunFolder | None:
    """The first run folder of the first trial in ``trial_ids`` (whose artifacts exist, if asked)."""
    for trial_id in trial_ids:
        for run in sweep.runs.get(trial_id, []):
            if not with_artifacts or has_arrays(run):
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
            f"{reward_detail(run.config)}, {row.backbone})", 3,
        ))
        blocks += diagnostic_figures(run, figures, kernel, f", trial {_short_trial(trial)}", projection=False)
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
            for method, history in eval_histories(run).items():
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
            fmt(row.get("n_expert_trajs")), fmt(row["horizon"]), fmt(row["sigma"]), fmt(row.get("k")),
            str(row["kernel"]), str(row["backbone"]), fmt(row.get("seeds")), shown, fmt(row.get("time_s"), 4),
            f"{fmt(row.get('diffusion_trained'))} / {fmt(row.get('diffusion_reused'))}",
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
        blocks += diagnostic_figures(best_run, figures, "best", f", trial {trial}", histogram=False)

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
