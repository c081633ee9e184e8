"""A finished sweep's results: sweep_results.csv, best.md and ablation PNGs in the sweep folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tge_ray.io import atomic_path
from tge_ray.pipeline.artifacts import is_uri
from tge_ray.sweep.space import TASK_PARAM, SearchSpace

FINAL = "final"  # set on a trial's last report only (Tune's own "done" means something else)
SWEEP_RESULTS = "sweep_results.csv"  # the sweep folder's table, one row per trial
BEST_FILE = "best.md"  # its summary line and the best configuration per dataset

COLUMNS = [
    "trial_id", "status", "dataset", "n_expert_trajs", "horizon", "sigma", "k", "kernel", "backbone",
    "seeds", "score_mean", "score_std", "time_s", "diffusion_trained", "diffusion_reused", "artifacts_reused",
]


def results_table(grid: Any, space: SearchSpace) -> pd.DataFrame:
    """One row per trial with its resolved configuration and outcome."""
    rows = []
    for result in grid:
        sampled = dict(result.config or {})
        metrics = result.metrics or {}
        if not sampled:
            continue
        cfg = space.config(sampled)
        finished = bool(metrics.get(FINAL))
        rows.append(
            {
                "trial_id": (result.path or "").rstrip("/").split("/")[-1],
                # stopped = ended early by ASHA (its score column stays empty)
                "status": "error" if result.error else ("done" if finished else "stopped"),
                "dataset": sampled.get(TASK_PARAM, cfg.task.offline),
                "n_expert_trajs": cfg.task.n_expert_trajs,
                "horizon": cfg.windows.horizon,
                "sigma": cfg.reward.sigma,
                "k": cfg.reward.k,
                "kernel": cfg.reward.kernel,
                "backbone": cfg.rl.backbone,
                "seeds": cfg.sweep.seeds,
                "score_mean": metrics.get("score") if finished else np.nan,
                "score_std": metrics.get("score_std", np.nan),
                "time_s": metrics.get("time_total_s", np.nan),
                "diffusion_trained": metrics.get("diffusion_trained", 0),
                "diffusion_reused": metrics.get("diffusion_reused", 0),
                "artifacts_reused": metrics.get("artifacts_reused", 0),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


BEST_HEADER = ("dataset", "trial", "score (mean ± std)", "horizon", "sigma", "k", "kernel", "backbone", "seeds")
PARAMS_FILE = "params.json"  # Tune's record, in each trial folder, of every value the trial drew


def best_rows(table: pd.DataFrame) -> list[tuple[str, ...]]:
    """The best finished configuration per dataset, as rows of :data:`BEST_HEADER` cells. The
    columns are the axes every space shares; the trial's :data:`PARAMS_FILE` holds all it drew
    (a backbone's own parameters included)."""
    rows = []
    done = table[table["status"] == "done"].dropna(subset=["score_mean"])
    for dataset, group in done.groupby("dataset", sort=True):
        best = group.loc[group["score_mean"].idxmax()]
        rows.append(
            (str(dataset), str(best.trial_id), f"{best.score_mean:.1f} ± {best.score_std:.1f}", str(best.horizon),
             f"{best.sigma:.3g}", str(best.k), str(best.kernel), str(best.backbone), str(best.seeds))
        )
    return rows


def best_markdown(table: pd.DataFrame) -> str:
    """Markdown table of the best finished configuration per dataset."""
    lines = ["| " + " | ".join(BEST_HEADER) + " |", "|" + "---|" * len(BEST_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in best_rows(table)]
    lines += ["", f"Every value a trial drew, its backbone's own parameters included: `<trial>/{PARAMS_FILE}` in this folder."]
    return "\n".join(lines) + "\n"


def plot_ablations(table: pd.DataFrame, folder: Path) -> list[Path]:
    """score_vs_horizon.png, score_vs_sigma.png (per kernel) and score_by_backbone.png of the
    finished trials, written into ``folder``; returns the paths written (none if none finished)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    done = table[table["status"] == "done"].dropna(subset=["score_mean"])
    written = []
    plots = (
        ("score_vs_horizon.png", "horizon", None, "Score against horizon H", "horizon H (states)"),
        ("score_vs_sigma.png", "sigma", "kernel", "Score against sigma, per kernel", "sigma (kernel temperature)"),
        ("score_by_backbone.png", "backbone", None, "Score per backbone", "backbone"),
    )
    for name, column, group_by, title, xlabel in plots:
        if done.empty:
            break
        figure = Figure(figsize=(6, 4))
        axes = figure.add_subplot()
        groups = done.groupby(group_by) if group_by else [("trials", done)]
        for label, group in groups:
            if column == "backbone":
                positions = {b: i for i, b in enumerate(sorted(done["backbone"].unique()))}
                x = group["backbone"].map(positions)
                axes.set_xticks(list(positions.values()), list(positions))
            else:
                x = group[column]
            axes.errorbar(x, group["score_mean"], yerr=group["score_std"].fillna(0), fmt="o", capsize=3, label=str(label))
        if column == "sigma":
            axes.set_xscale("log")
        if column == "horizon":
            axes.set_xscale("log", base=2)
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("normalised score (mean ± std over seeds)")
        axes.legend(loc="best")
        figure.tight_layout()
        with atomic_path(folder / name) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        written.append(folder / name)
    return written


def write_results(grid: Any, space: SearchSpace, sweep_path: str, wall_seconds: float) -> Path:
    """Write sweep_results.csv, best.md and PNGs; print the summary. Returns the local folder."""
    from tge_ray.data.minari_io import cache_path

    table = results_table(grid, space)
    folder = cache_path() / "sweeps" / space.name if is_uri(sweep_path) else Path(sweep_path)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / SWEEP_RESULTS, index=False)
    trained = int(table["diffusion_trained"].sum())
    reused = int(table["diffusion_reused"].sum())
    summary = (
        f"{len(table)} trials ({int((table['status'] == 'done').sum())} done), "
        f"{wall_seconds:.0f} s wall; diffusion models trained: {trained}, reused: {reused}"
    )
    (folder / BEST_FILE).write_text(f"# Sweep {space.name}\n\n{summary}\n\n" + best_markdown(table))
    plot_ablations(table, folder)
    if is_uri(sweep_path):
        import pyarrow.fs

        fs, base = pyarrow.fs.FileSystem.from_uri(sweep_path)
        for path in folder.iterdir():
            pyarrow.fs.copy_files(str(path), f"{base}/{path.name}", destination_filesystem=fs)
    print(summary)
    print(best_markdown(table), end="")
    print(f"results: {folder}")
    return folder
