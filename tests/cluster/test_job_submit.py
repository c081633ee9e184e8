"""A real Ray cluster on this machine: `ray start --head`, `ray job submit` of `tge sweep`.

The cluster is separate from the suite's ``ray_session`` (which only built the session's smoke
run, whose diffusion model the job reuses, before the cluster starts): its own
free ports, its own temp dir (so ``ray.init()`` elsewhere on the machine never finds it through
``/tmp/ray/ray_current_cluster``), its own process group, and RAY_ADDRESS / auth variables only in
the environment of the subprocesses.

Auth: Ray 2.60 turns token auth on in ``ray start`` whenever a token is available (e.g. the
``~/.ray/auth_token`` that any local ``ray.init()`` writes) but ``ray job submit`` sends a token
only when RAY_AUTH_MODE=token; unset, the two disagree and the submit gets HTTP 401. Here every
command gets RAY_AUTH_MODE=token and a fresh RAY_AUTH_TOKEN (no file is written; RAY_AUTH_TOKEN_PATH
is removed), and the test checks that the dashboard refuses a request without the token.

Teardown stops only this cluster (SIGTERM to the process group of its ``ray start --block``,
then SIGKILL to whatever of it is left); never ``ray stop``, which would end every Ray on the
machine.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import copy_store

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
START_TIMEOUT_S = 150
JOB_TIMEOUT_S = 420

pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line names ``text`` (this cluster's unique temp dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


class Cluster:
    """One single-node Ray cluster started with the ``ray`` CLI, on 127.0.0.1."""

    def __init__(self, root: Path):
        (self.gcs_port, self.dashboard_port, self.agent_http_port, self.agent_grpc_port,
         self.runtime_env_port, self.metrics_port, self.client_port) = _free_ports(7)
        # Short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="tgec", dir="/tmp")
        self.token = secrets.token_hex(32)
        self.log = root / "ray_start.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=self.token,
            RAY_USAGE_STATS_ENABLED="0",
            RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `tge` for the job driver
        )
        self.env = env
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            RAY, "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={self.agent_http_port}",
            f"--dashboard-agent-grpc-port={self.agent_grpc_port}",
            f"--runtime-env-agent-port={self.runtime_env_port}",
            f"--metrics-export-port={self.metrics_port}",
            f"--ray-client-server-port={self.client_port}",
            "--num-cpus=2", "--num-gpus=0", f"--temp-dir={self.temp_dir}",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if "--block" in self.log.read_text(errors="replace") and self.get("/api/version", check=False)[0] == 200:
                return
            time.sleep(0.5)
        raise RuntimeError(f"ray start did not come up in {START_TIMEOUT_S}s:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str, token: bool = True, check: bool = True) -> tuple[int, str]:
        request = urllib.request.Request(self.dashboard + path)
        if token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            if check:
                raise
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            if check:
                raise
            return 0, ""

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # `ray start --block` stops its node
                self.proc.wait(timeout=3)  # then what is left is killed below
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # Whatever is left of this cluster (GCS, raylet, dashboard, workers) names its temp dir.
        for pid in _pids_mentioning(self.temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    for attempt in (1, 2):  # on a loaded machine the raylet can miss Ray's fixed 30 s to register
        c = Cluster(root)
        try:
            c.start()
            break
        except RuntimeError:
            c.stop()
            if attempt == 2:
                raise
    try:
        yield c
    finally:
        c.stop()


def test_sweep_job_on_a_real_cluster(cluster, smoke_run, tiny_datasets, tmp_path):
    # Token auth is on for this cluster: no token, no answer.
    status, _ = cluster.get("/api/jobs/", token=False, check=False)
    assert status == 401

    # The smoke run's diffusion model and embeddings are reused: the job trains the trial's policy.
    storage = copy_store(smoke_run.store, tmp_path / "storage", stages=("diffusion", "embeddings"), runs=False)
    runtime_env = {
        "env_vars": {
            "MINARI_DATASETS_PATH": os.environ["MINARI_DATASETS_PATH"],
            "TGE_CACHE_DIR": os.environ["TGE_CACHE_DIR"],
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        },
        # Caches and outputs a working copy may hold; keep the upload small.
        "excludes": [".venv/", ".mypy_cache/", ".ruff_cache/", ".pytest_cache/", "runs/", "benchmarks/"],
    }
    submission_id = f"tge-sweep-{secrets.token_hex(4)}"
    entrypoint = [
        "tge", "sweep", "tune_spaces/smoke.yaml", "--storage", str(storage),
        f"task.offline={tiny_datasets['offline']}", f"task.expert={tiny_datasets['expert']}",
        "sweep.num_samples=1",  # the job's path, not the search: test_tune runs a whole sweep
    ]
    submit_args = [
        "job", "submit", "--address", cluster.dashboard, "--submission-id", submission_id,
        "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--no-wait",
        "--", *entrypoint,
    ]
    # The dashboard agent can lag the dashboard by a few seconds ("No available agent").
    for _ in range(6):
        submitted = cluster.ray(*submit_args)
        if submitted.returncode == 0 or "No available agent" not in submitted.stdout + submitted.stderr:
            break
        time.sleep(5)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]

    deadline = time.monotonic() + JOB_TIMEOUT_S
    state = "PENDING"
    while time.monotonic() < deadline:
        code, body = cluster.get(f"/api/jobs/{submission_id}", check=False)  # 0 = no answer yet
        state = json.loads(body)["status"] if code == 200 else state
        if state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(1)
    else:
        cluster.ray("job", "stop", "--address", cluster.dashboard, submission_id)
    logs = json.loads(cluster.get(f"/api/jobs/{submission_id}/logs")[1]).get("logs", "")
    assert state == "SUCCEEDED", f"job {submission_id} ended {state}; last log lines:\n{logs[-6000:]}"

    # The CLI reads the same job with the same environment.
    status_cli = cluster.ray("job", "status", "--address", cluster.dashboard, submission_id)
    assert status_cli.returncode == 0, status_cli.stdout + status_cli.stderr
    assert "succeeded" in (status_cli.stdout + status_cli.stderr).lower()

    results = list(storage.rglob("sweep_results.csv"))
    assert len(results) == 1, f"sweep_results.csv under {storage}: {results}"
    with results[0].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["status"] == "done", rows
    assert (results[0].parent / "best.md").is_file()
    assert f"results: {results[0].parent}" in logs  # the sweep's own closing line
