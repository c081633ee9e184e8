"""`tge report` on a real smoke run and a real 2-trial smoke sweep (sharing the run's artifacts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from tests.conftest import copy_store
from tge_ray.cli import main
from tge_ray.pipeline import files

REPO = Path(__file__).resolve().parents[1]


def _task(tiny_datasets):
    return [f"task.offline={tiny_datasets['offline']}", f"task.expert={tiny_datasets['expert']}"]


@pytest.fixture(scope="module")
def store(smoke_run, tmp_path_factory):
    """A copy of the session's smoke store: its run (TGE, BC and oracle; every stage really ran)
    and artifacts, which the sweep below reuses and a test here moves aside."""
    return copy_store(smoke_run.store, tmp_path_factory.mktemp("report") / "store")


@pytest.fixture(scope="module")
def finished_run(store, smoke_run):
    return store / smoke_run.run_dir.name


@pytest.fixture(scope="module")
def finished_sweep(finished_run, tiny_datasets, store):
    """Two smoke-space trials of `tge sweep` in the run's store, so they reuse its diffusion model
    and embeddings. With the space's seed 0, Optuna draws one log- and one gaussian-kernel trial;
    a grace period of all 3 of a trial's reports keeps ASHA from stopping either, since their
    scores on the tiny data would decide that by chance.

    A subprocess with its own local Ray: trial workers must see this session's
    MINARI_DATASETS_PATH, which the shared Ray's workers may have started without.
    """
    command = [sys.executable, "-m", "tge_ray.cli", "sweep", str(REPO / "tune_spaces" / "smoke.yaml"),
               "--storage", str(store), *_task(tiny_datasets), "sweep.num_samples=2",
               "sweep.grace_period=3", "tracking.mlflow=true", f"tracking.mlflow_uri=sqlite:///{store}/mlflow.db",
               "tracking.project=report-sweep"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return store / "smoke"


def _report(capsys, *args):
    code = main(["report", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_outputs(folder: Path, out: str) -> tuple[str, str, set[str]]:
    """Both reports exist and are printed; HTML is self-contained; every PNG is valid and linked."""
    markdown, html = folder / "report.md", folder / "report.html"
    assert out.strip().splitlines()[-2:] == [f"report: {markdown}", f"report: {html}"]
    md_text, html_text = markdown.read_text(), html.read_text()
    pngs = sorted((folder / "report_figures").glob("*.png"))
    assert pngs
    for png in pngs:
        with Image.open(png) as image:
            assert image.format == "PNG"
            image.verify()
        assert f"](report_figures/{png.name})" in md_text
    assert html_text.count('src="data:image/png;base64,') == len(pngs)
    assert 'src="http' not in html_text and "<script" not in html_text and "<link" not in html_text
    assert not [p for p in folder.iterdir() if p.name.startswith(".report.tmp-")], "no leftovers"
    return md_text, html_text, {p.name for p in pngs}


def _fenced_yaml(md_text: str) -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", md_text, flags=re.S)
    return yaml.safe_load(block)


def test_run_report(finished_run, capsys):
    results = json.loads((finished_run / files.RESULTS_FILE).read_text())
    before = {p.name for p in finished_run.iterdir()}
    code, out, err = _report(capsys, finished_run)
    assert code == 0, err
    assert {p.name for p in finished_run.iterdir()} == before | {"report.md", "report.html", "report_figures"}
    md_text, html_text, pngs = _check_outputs(finished_run, out)
    assert pngs == {"learning_curves.png", "reward_histogram_log.png", "embeddings_2d_log.png"}

    # The scores table is results.json's, method by method.
    for method, score in results["scores"].items():
        ret = results["returns"][method]
        row = re.search(rf"^\| {re.escape(method)} \| (\S+) \| (\S+) ± (\S+) \|$", md_text, flags=re.M)
        assert row, method
        assert float(row.group(1)) == pytest.approx(score, abs=0.005)
        assert float(row.group(2)) == pytest.approx(ret["mean"], abs=0.05)
        assert float(row.group(3)) == pytest.approx(ret["std"], abs=0.05)
        assert f"<td>{method}</td><td>{score:.2f}</td>" in html_text
    assert f"| log | {results['separation']['auc']:.3f} |" in md_text
    rho = results["true_reward_correlation"]
    assert f"| Spearman | {rho['transitions']:.3f} | {rho['episodes']:.3f} |" in md_text
    assert _fenced_yaml(md_text) == {"schema_version": results["schema_version"], **results["config"]}
    assert "<details><summary>Resolved config" in html_text
    assert "episode returns not shown" not in md_text  # the datasets are local: both colourings

    # A second report replaces the first whole.
    code, out, err = _report(capsys, finished_run)
    assert code == 0, err
    _check_outputs(finished_run, out)


def test_run_report_when_artifacts_are_gone(finished_run, store, tmp_path, capsys):
    artifacts = store / "artifacts"
    aside = store / "artifacts-aside"
    artifacts.rename(aside)  # the store was cleaned; the run folder remains
    try:
        code, out, err = _report(capsys, finished_run, "--out", tmp_path / "out")
    finally:
        aside.rename(artifacts)
    assert code == 0, err
    md_text, _, pngs = _check_outputs(tmp_path / "out", out)
    assert len([line for line in md_text.splitlines() if "artifacts are gone" in line]) == 1
    assert pngs == {"learning_curves.png", "reward_histogram_log.png", "embeddings_2d_log.png"}
    figures = tmp_path / "out" / "report_figures"
    assert (figures / "reward_histogram_log.png").read_bytes() == (finished_run / files.REWARD_HISTOGRAM_FILE).read_bytes()
    assert (figures / "embeddings_2d_log.png").read_bytes() == (finished_run / files.EMBEDDING_PROJECTION_FILE).read_bytes()


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tge: error: ")
    return lines[0]


def test_missing_folder_is_one_line(tmp_path, capsys):
    code, _, err = _report(capsys, tmp_path / "nowhere")
    assert code == 2
    line = _one_error_line(err)
    assert "nowhere does not exist" in line and "`tge run`" in line and "`tge sweep`" in line
    assert not (tmp_path / "nowhere").exists()


def test_folder_that_is_neither_run_nor_sweep(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    code, _, err = _report(capsys, tmp_path)
    assert code == 2
    assert "is neither a run folder (no results.json) nor a sweep folder" in _one_error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"], "nothing written"


def test_folder_of_runs_is_one_table_over_seeds(finished_run, tmp_path, capsys):
    """The run's storage folder holds run folders: one row per task, one column per method."""
    out = tmp_path / "suite"
    code, _, err = _report(capsys, finished_run.parent, "--out", out)
    assert code == 0, err
    results = json.loads((finished_run / files.RESULTS_FILE).read_text())
    text = (out / "report.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| test/hopper/random-v0 ")]
    for method, score in results["scores"].items():
        assert f"{score:.1f} ± 0.0 (1)" in row, (method, row)
    assert row.endswith(f"| {results['separation']['auc']:.3f} | {results['true_reward_correlation']['transitions']:.3f} |")
    (listed,) = [line for line in text.splitlines() if line.startswith(f"| {finished_run.name} ")]
    assert listed.endswith(f"| {results['separation']['auc']:.3f} | {results['true_reward_correlation']['transitions']:.3f} |")
    assert finished_run.name in text and "data:image" not in (out / "report.html").read_text()


_DROP = object()  # a _copy_run change that removes the key, as in a config.yaml older than it


def _copy_run(run_dir: Path, folder: Path, name: str, changes: dict) -> Path:
    """A copy of a real run folder with some settings (dotted keys) changed in its config
    (results.json's, which the report reads, and config.yaml); ``_DROP`` removes one."""
    copy = folder / name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    results = json.loads((copy / files.RESULTS_FILE).read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = results["config"]
        for parent in parents:
            section = section[parent]
        if value is _DROP:
            del section[key]
        else:
            section[key] = value
    (copy / files.RESULTS_FILE).write_text(json.dumps(results))
    (copy / files.CONFIG_FILE).write_text(yaml.safe_dump(results["config"], sort_keys=False))
    return copy


def test_folder_of_runs_averages_seeds_but_never_other_settings(finished_run, tmp_path, capsys):
    """Seeds of one experiment share a row; a run with another RL budget gets its own row, and
    a setting of a backbone the run does not train (rl.rebrac or rl.fbc for an IQL run) splits
    nothing, while it does split runs of that backbone."""
    runs = tmp_path / "runs"
    runs.mkdir()
    _copy_run(finished_run, runs, "a", {"seed": 0})
    _copy_run(finished_run, runs, "b", {"seed": 1, "rl.rebrac.batch_size": 7})
    _copy_run(finished_run, runs, "c", {"seed": 0, "rl.steps": 9999})
    _copy_run(finished_run, runs, "d", {"seed": 2, "rl.fbc.fraction": 0.5})
    _copy_run(finished_run, runs, "e", {"seed": 0, "rl.backbone": "fbc"})
    _copy_run(finished_run, runs, "f", {"seed": 1, "rl.backbone": "fbc", "rl.fbc.fraction": 0.5})
    code, _, err = _report(capsys, runs, "--out", tmp_path / "out")
    assert code == 0, err
    text = (tmp_path / "out" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| test/hopper/random-v0 ")]
    assert len(rows) == 3, rows
    (averaged,) = [row for row in rows if "rl.steps=9999" not in row and "rl.fbc" not in row]
    (longer,) = [row for row in rows if "rl.steps=9999" in row]
    (fraction,) = [row for row in rows if "rl.fbc.fraction=0.5" in row]
    assert "(3)" in averaged and "(1)" in longer and "(1)" in fraction and "rebrac" not in averaged
    assert "| other settings |" in text


def test_reward_scale_auto_keeps_the_backbones_of_a_cell_together(finished_run, tmp_path, capsys):
    """reward.scale=auto resolves per backbone (IQL rank, ReBRAC min-max): the IQL and ReBRAC runs
    of one cell share a row, while an IQL run with min-max rewards is another experiment."""
    runs = tmp_path / "runs"
    runs.mkdir()
    _copy_run(finished_run, runs, "iql-s0", {"seed": 0, "reward.scale": "auto"})
    _copy_run(finished_run, runs, "iql-s1", {"seed": 1, "reward.scale": "auto"})
    _copy_run(finished_run, runs, "rebrac-s3", {"seed": 3, "reward.scale": "auto", "rl.backbone": "rebrac",
                                                "methods": ["tge"]})
    _copy_run(finished_run, runs, "iql-minmax", {"seed": 2, "reward.scale": "minmax"})
    code, _, err = _report(capsys, runs, "--out", tmp_path / "out")
    assert code == 0, err
    rows = [line for line in (tmp_path / "out" / "report.md").read_text().splitlines()
            if line.startswith("| test/hopper/random-v0 ")]
    assert len(rows) == 2, rows
    (minmax,) = [row for row in rows if "reward.scale[iql]=minmax" in row]
    (auto,) = [row for row in rows if row != minmax]
    # the copies keep the run's score labels: seeds 0, 1 and 3 in the auto row, seed 2 apart
    assert "(3)" in auto and "(2)" not in auto and "(1)" in minmax, rows


@pytest.mark.parametrize(
    ("same", "dropped", "label"),
    [
        ({}, "task.demos", "task.demos=next"),  # without task.demos: the demos after the mixed-in episodes
        ({"rl.backbone": "fbc"}, "rl.fbc.prior", "rl.fbc.prior=0.0"),  # without a prior: plain episode means
        ({"rl.backbone": "fbc"}, "rl.fbc.lr", "rl.fbc.lr=0.0003"),  # without its own rate: rl.bc_lr's
    ],
)
def test_runs_older_than_a_field_are_told_apart(finished_run, tmp_path, capsys, same, dropped, label):
    """A config.yaml older than a field whose default is not how such runs ran (task.demos ran
    as "next", not today's "last"; rl.fbc ranked by the plain mean, prior 0, not one window, and
    trained at rl.bc_lr, not rl.fbc.lr):
    those runs get their own row, labelled with how they ran."""
    runs = tmp_path / "runs"
    runs.mkdir()
    _copy_run(finished_run, runs, "today", {"seed": 0, **same})
    _copy_run(finished_run, runs, "older", {"seed": 1, **same, dropped: _DROP})
    code, _, err = _report(capsys, runs, "--out", tmp_path / "out")
    assert code == 0, err
    rows = [line for line in (tmp_path / "out" / "report.md").read_text().splitlines()
            if line.startswith("| test/hopper/random-v0 ")]
    assert len(rows) == 2, rows
    assert sum(label in row for row in rows) == 1, rows


def test_corrupt_results_json(finished_run, tmp_path, capsys):
    damaged = tmp_path / finished_run.name
    shutil.copytree(finished_run, damaged, ignore=shutil.ignore_patterns("report*"))
    text = (damaged / files.RESULTS_FILE).read_text()
    (damaged / files.RESULTS_FILE).write_text(text[: len(text) // 2])  # a write cut short
    before = sorted(p.name for p in damaged.iterdir())
    code, _, err = _report(capsys, damaged)
    assert code == 2
    line = _one_error_line(err)
    assert "results.json is not valid JSON" in line and f"tge run {damaged / files.CONFIG_FILE}" in line
    assert sorted(p.name for p in damaged.iterdir()) == before, "nothing written"


def test_sweep_report(finished_sweep, tmp_path, capsys):
    table = pd.read_csv(finished_sweep / "sweep_results.csv")
    assert len(table) == 2
    code, out, err = _report(capsys, finished_sweep, "--out", tmp_path / "out")
    assert code == 0, err
    md_text, html_text, pngs = _check_outputs(tmp_path / "out", out)
    done = table[table["status"] == "done"]
    kernels = set(done["kernel"])
    assert kernels == {"log", "gaussian"}  # seed 0 draws both; a histogram for each
    assert {f"reward_histogram_{k}.png" for k in kernels} <= pngs
    assert {"score_vs_horizon.png", "score_vs_sigma.png", "score_by_backbone.png", "learning_curves.png",
            "embeddings_2d_best.png"} <= pngs

    # Best per dataset: the best finished trial's score; the full table: one row per trial.
    best = done.loc[done["score_mean"].idxmax()]
    assert f"| {best.dataset} | {best.trial_id} | {best.score_mean:.1f} ± {best.score_std:.1f} | {best.horizon} |" in md_text
    trial_rows = [line for line in md_text.splitlines() if re.match(r"^\| [0-9a-f]+_\d+ \| ", line)]
    assert len(trial_rows) == len(table)
    assert "artifacts are gone" not in md_text
    assert "<details><summary>Resolved config, trial" in html_text
    assert _fenced_yaml(md_text)["reward"]["kernel"] == best.kernel


def test_sweep_trials_went_to_mlflow(finished_sweep, store):
    """tracking.mlflow=true: Tune's MLflowLoggerCallback logged each trial's config and reports."""
    import mlflow

    table = pd.read_csv(finished_sweep / "sweep_results.csv")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("report-sweep").experiment_id])
    assert len(runs) == len(table) == 2
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "score")) >= 2
        assert run.data.params["reward.kernel"] in ("log", "gaussian")
