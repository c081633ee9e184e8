"""`tge sweep` on a real local Ray: a smoke sweep whose driver is killed part way, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import copy_store

REPO = Path(__file__).resolve().parents[2]


def _finished_trials(sweep: Path) -> set[str]:
    done = set()
    for result in sweep.glob("_trial_*/result.json"):
        for line in result.read_text().splitlines():
            if json.loads(line).get("final") is True:  # the trial's last report
                done.add(result.parent.name)
    return done


@pytest.mark.slow
def test_sweep_killed_then_resumed(smoke_run, tiny_datasets, tmp_path):
    # The store holds the smoke run's diffusion model and embeddings: every trial, before and
    # after the kill, takes them from there (a trial process shares the store, as a run does).
    storage = copy_store(smoke_run.store, tmp_path / "sweeps", stages=("diffusion", "embeddings"), runs=False)
    command = [
        sys.executable, "-m", "tge_ray.cli", "sweep", str(REPO / "tune_spaces" / "smoke.yaml"),
        "--storage", str(storage),
        f"task.offline={tiny_datasets['offline']}", f"task.expert={tiny_datasets['expert']}",
        "sweep.num_samples=2",  # one trial finishes before the kill, the other after the resume
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    sweep = storage / "smoke"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and not _finished_trials(sweep) and first.poll() is None:
            time.sleep(0.5)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the driver dies part way, with its local Ray
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the sweep ended before it could be killed part way"
    finished_before = _finished_trials(sweep)
    assert finished_before, (tmp_path / "first.log").read_text()[-3000:]
    lines_before = {name: (sweep / name / "result.json").read_text() for name in finished_before}

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert len(table) == 2, table  # num_samples: no trial drawn twice, none lost
    assert set(table["status"]) <= {"done", "stopped"} and (table["status"] == "done").any()
    assert table.loc[table["status"] == "done", "score_mean"].notna().all()
    # The trial finished before the kill was not run again: its result file was not rewritten.
    for name in finished_before:
        assert (sweep / name / "result.json").read_text() == lines_before[name]
        assert name in set(table["trial_id"])
    # The store's diffusion model for both trials: none trained one.
    assert table["diffusion_trained"].sum() == 0
    assert table["diffusion_reused"].sum() == 2
    assert "diffusion models trained: 0, reused: 2" in resumed.stdout
    for name in ("best.md", "score_vs_sigma.png", "score_by_backbone.png"):
        assert (sweep / name).is_file()
    # best.md names each best row's trial, whose params.json holds every value it drew
    best_trials = [line.split("|")[2].strip() for line in (sweep / "best.md").read_text().splitlines()
                   if line.startswith("| ") and not line.startswith("| dataset")]
    assert best_trials and all(json.loads((sweep / t / "params.json").read_text()) for t in best_trials)


def _smoke_sweep_cli(storage: Path, *extra: str) -> subprocess.CompletedProcess:
    """`tge sweep` on the smoke space in a subprocess (for errors raised before Ray starts)."""
    return subprocess.run(
        [sys.executable, "-m", "tge_ray.cli", "sweep", str(REPO / "tune_spaces" / "smoke.yaml"),
         "--storage", str(storage), *extra],
        capture_output=True, text=True, timeout=120,
    )


def test_resume_without_a_sweep_is_one_line(tmp_path):
    done = _smoke_sweep_cli(tmp_path, "--resume")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("tge: error: --resume: no sweep at")


def test_grace_period_beyond_the_last_report_is_one_line(tmp_path):
    # smoke: 200 RL steps, an evaluation every 100 (the seeds' policies as one batch): 2 + the final report
    done = _smoke_sweep_cli(tmp_path, "sweep.grace_period=4")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "tge: error: sweep.grace_period=4 is more evaluations than a trial reports "
        "(3: one per evaluation of its batch, rl.steps / evaluation.every rounded up, and the final score): lower it"
    )
    assert list(tmp_path.iterdir()) == []


def test_concurrency_is_lowered_to_what_the_cpus_hold():
    from tge_ray.sweep.tune import fit_concurrency

    # 2 CPUs: two trials of 0.5 + a 1-CPU Train worker + 0.25 gathering would stall (3.5 > 2)
    count, note = fit_concurrency(2, 0.5, 1.0, 2)
    assert count == 1 and "max_concurrent_trials=2 lowered to 1" in note and "needs up to 1.75 CPUs" in note
    assert fit_concurrency(2, 0.25, 0.5, 2) == (2, None)  # benchmarks/sweep_speed.yaml's settings
    assert fit_concurrency(8, 0.5, 1.0, 64) == (8, None)
    assert fit_concurrency(4, 4.0, 1.0, 2)[0] == 1  # never below one trial


@pytest.mark.parametrize(("steps", "every"), [(15000, 5000), (12000, 5000), (10, 3), (7, 7)])
def test_each_evaluation_reports_at_its_own_index_and_the_final_at_max_t(steps, every):
    """A retried or resumed trial does not report its stored evaluations again, and one whose
    policies are all stored reports only its final: ASHA's index of an evaluation comes from its
    update step (evaluations every `every` updates and at the last), the final's is max_t."""
    from tge_ray.config import load_config, resolve_config_path
    from tge_ray.sweep.tune import _max_evaluations, evaluation_index

    cfg = load_config(resolve_config_path("smoke"), [f"rl.steps={steps}", f"evaluation.every={every}"])
    eval_steps = [s for s in range(1, steps + 1) if (s % every == 0 and s < steps) or s == steps]
    assert [evaluation_index(s, cfg) for s in eval_steps] == list(range(1, len(eval_steps) + 1))
    assert _max_evaluations(cfg) == len(eval_steps) + 1
