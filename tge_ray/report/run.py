"""The report of one run folder: scores, learning curves, reward diagnostics, resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tge_ray.config import ExperimentConfig
from tge_ray.pipeline.files import CONFIG_FILE, RESULTS_FILE
from tge_ray.pipeline.run_folder import RunFolder
from tge_ray.report.document import Block, Code, Figure, Heading, Note, Paragraph, Table
from tge_ray.report.figures import diagnostic_figures, eval_histories, plot_learning_curves
from tge_ray.report.values import fixed, fmt, is_number


def _summary_line(config: ExperimentConfig, task: dict[str, Any]) -> str:
    return (
        f"Task: D_mu = {task.get('offline', '?')} + {task.get('n_expert_trajs', '?')} episodes of "
        f"{task.get('expert', '?')} ({task.get('mixed_transitions', '?')} transitions, "
        f"{task.get('expert_transitions_in_mixed', '?')} from the expert); D_E = {task.get('n_demos', '?')} "
        f"demo(s), {task.get('demo_states', '?')} states. Horizon H = {config.windows.horizon}, "
        f"{config.reward.kernel} kernel, k = {config.reward.k}, sigma = {fmt(config.reward.sigma)}; "
        f"backbone {config.rl.backbone}, {config.rl.steps} RL updates; seed {config.seed}."
    )


def _scaling_line(scaling: dict[str, Any]) -> str:
    shift, divisor = scaling.get("shift"), scaling.get("divisor")
    if scaling.get("mode") == "rank" and not scaling.get("degenerate"):
        formula = "scaled = the raw reward's quantile among D_mu's"
    elif is_number(shift) and is_number(divisor):
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
        n_seeds = len(results.policies.get(method) or [])
        if n_seeds > 1 and is_number(results.score_std.get(method)):  # rl.seeds: mean ± std over the RL seeds
            score_cell = f"{score:.2f} ± {results.score_std[method]:.2f} ({n_seeds} seeds)"
        else:
            score_cell = f"{score:.2f}"
        rows.append((method, score_cell, f"{mean:.1f} ± {std:.1f}"))
    blocks.append(Table(("method", "normalised score", "return (mean ± std)"), tuple(rows)))
    blocks.append(Paragraph(
        "Normalised score = 100 * (return - ref_min) / (ref_max - ref_min) with the dataset's reference "
        "scores (with several RL seeds, `rl.seeds`: the mean ± std of their final policies' scores); returns "
        "over the evaluation episodes (of every seed)."
    ))
    histories = eval_histories(run)
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
        cells = (kernel, fixed(separation.get("auc")),
                 *(fmt(separation.get(key)) for key in ("mean_expert", "mean_other", "n_expert", "n_other")))
        blocks.append(Table(header, (cells,)))
        blocks.append(Paragraph(
            "Raw kernel rewards, before scaling. ROC AUC 1.0: every expert transition outranks every other "
            "one; 0.5: chance."
        ))
        correlation = results.true_reward_correlation
        if isinstance(correlation, dict):
            blocks.append(Table(("rank correlation with D_mu's true reward", "per transition", "over episode means"),
                                (("Spearman", fixed(correlation.get("transitions")),
                                  fixed(correlation.get("episodes"))),)))
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
        blocks += diagnostic_figures(run, figures, kernel)
    else:
        blocks.append(Note("this run has no TGE reward stage (methods without tge): no reward diagnostics"))

    blocks.append(Heading("Resolved config"))
    blocks.append(Code(run.config_text, "yaml", f"Resolved config ({CONFIG_FILE})"))
    return f"TGE run {run.path.name}", blocks
