"""A default `tge run` keeps Ray's warnings and error lines off the terminal; `-v` lets them through."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import copy_store


def test_a_run_prints_its_table_and_nothing_of_ray_s(smoke_run, tiny_datasets, tmp_path):
    # The smoke run's diffusion model and embeddings are reused; the rewards' Ray Data pool (where
    # Ray's lines came from) and the policy stage run.
    copy_store(smoke_run.store, tmp_path, stages=("diffusion", "embeddings"), runs=False)
    command = [sys.executable, "-m", "tge_ray.cli", "run", "-q", "smoke", f"task.offline={tiny_datasets['offline']}",
               f"task.expert={tiny_datasets['expert']}", f"storage={tmp_path}", "methods=[tge]", "rl.steps=2",
               "evaluation.every=2"]
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # -q: no stage lines or bars, so stderr holds whatever else reached the terminal. A Ray that
    # this run starts used to add three lines: token authentication and Ray Data's disabled bars
    # (WARNINGs), and an ERROR from the core worker about Ray Data's actor pools.
    assert done.stderr.strip() == "", done.stderr[-3000:]
    assert "tge-iql" in done.stdout and "run folder:" in done.stdout
