"""OS-level faults as one line, exit 2: a storage path that cannot be created, a read-only or full
file system, windows that cannot fit in memory, a malformed dataset id; `--fields` and a closed
pipe. Real `tge` subprocesses on the tiny datasets; the checks that fail before Ray starts share
one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.faults.conftest import tge_run_command
from tge_ray.cli import main

REPO = Path(__file__).resolve().parents[2]


def tge_env() -> dict[str, str]:
    """The test session's Minari folder and cache (set by its fixtures), this tree's tge_ray, no
    cluster to join."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}


def run_args(tiny_datasets, storage, *extra) -> list[str]:
    """`tge run -q` of the fault suite's tiny config (conftest.TINY), as main() takes it."""
    return tge_run_command(tiny_datasets, storage, *extra)[3:]


def one_error_line(stderr: str) -> str:
    """The single line a fault prints; fails on a traceback or any other line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tge: error: "), stderr[-3000:]
    return lines[0]


def leftovers(storage: Path) -> list[str]:
    """Temporary folders under the store: none may survive a failed or interrupted build."""
    return sorted(p.name for p in (storage / "artifacts").glob("*.tmp-*")) if (storage / "artifacts").exists() else []


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount a small tmpfs (``mount(size, ro=False)``), unmounted at the end; skipped where the
    machine does not allow mounting."""
    mounted = []

    def mount(size: str, ro: bool = False, name: str = "fs") -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip() or done.returncode})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


# ----------------------------------------------------------------------------- before Ray starts

# Each case runs `tge run` through main() in one fresh process, which reports the exit code, what
# went to stderr and whether Ray was ever started: every one of them must be refused before.
PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from tge_ray.cli import main
    results = {}
    for name, argv in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        results[name] = {"code": code, "stderr": err.getvalue()}
    ray = sys.modules.get("ray")
    results["ray started"] = bool(ray is not None and ray.is_initialized())
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def refused(tiny_datasets, tmp_path_factory):
    """Faults `tge run` refuses before Ray starts, run in one subprocess."""
    root = tmp_path_factory.mktemp("refused")
    (root / "a_file").write_text("not a folder")
    read_only = root / "read-only"
    read_only.mkdir()
    ro = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(read_only)], capture_output=True,
                        text=True)
    cases = {
        "proc": run_args(tiny_datasets, "/proc/nope/runs"),
        "file": run_args(tiny_datasets, root / "a_file" / "runs"),
        "horizon": run_args(tiny_datasets, root / "horizon", f"windows.horizon={2**30}"),
        "seeds": run_args(tiny_datasets, root / "seeds", "rl.seeds=100000", "rl.iql.batch_size=4096"),
        "billion seeds": run_args(tiny_datasets, root / "billion", f"rl.seeds={10**9}"),
        "dataset id": run_args(tiny_datasets, root / "id", "task.expert=no_version_here"),
    }
    if ro.returncode == 0:
        cases["read-only"] = run_args(tiny_datasets, read_only / "runs")
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, json.dumps({k: [str(a) for a in v] for k, v in cases.items()})],
                              capture_output=True, text=True, timeout=600, env=tge_env(), cwd=root)
    finally:
        if ro.returncode == 0:
            subprocess.run(["umount", "-l", str(read_only)], check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    results["root"] = root
    results["read-only skipped"] = None if ro.returncode == 0 else (ro.stderr.strip() or str(ro.returncode))
    return results


def test_nothing_starts_ray(refused):
    assert refused["ray started"] is False


def test_storage_that_cannot_be_created(refused):
    for case, where in (("proc", "(/proc: No such file or directory)"), ("file", "a_file is a file")):
        assert refused[case]["code"] == 2, refused[case]
        line = one_error_line(refused[case]["stderr"])
        assert line.startswith("tge: error: storage=") and where in line and "choose" in line, line
    assert not (refused["root"] / "a_file").is_dir()


def test_read_only_storage(refused):
    if refused["read-only skipped"]:
        pytest.skip(f"cannot mount a read-only tmpfs here: {refused['read-only skipped']}")
    assert refused["read-only"]["code"] == 2
    line = one_error_line(refused["read-only"]["stderr"])
    assert "Read-only file system" in line and "on a writable file system" in line, line


def test_windows_that_cannot_fit_in_memory(refused):
    """H = 2^30 over 14 tiny episodes: the padded rows alone want hundreds of GiB."""
    assert refused["horizon"]["code"] == 2
    line = one_error_line(refused["horizon"]["stderr"])
    assert "the windows stage needs about" in line and "GiB is available: lower windows.horizon" in line, line
    assert "padded rows" in line
    assert not (refused["root"] / "horizon").exists(), "nothing is written for a refused run"


def test_policies_that_cannot_fit_in_memory(refused):
    """100000 seeds of IQL: the stacked parameters and batches cannot fit."""
    assert refused["seeds"]["code"] == 2
    line = one_error_line(refused["seeds"]["stderr"])
    assert "the policies (iql x100000) stage needs about" in line and "lower rl.seeds" in line, line
    assert not (refused["root"] / "seeds").exists()


def test_policies_that_cannot_fit_are_refused_before_their_data_is_made(tmp_path):
    """The smoke config's datasets missing from an empty Minari folder: 100000 seeds of its
    TGE-IQL and oracle-IQL (one batch) are refused from Hopper's sizes before the datasets are
    made, and nothing is written or printed but the error (no -q: the stage lines, on stderr,
    would break the one line)."""
    minari_root, storage = tmp_path / "minari", tmp_path / "runs"
    minari_root.mkdir()
    env = {**tge_env(), "MINARI_DATASETS_PATH": str(minari_root)}
    done = subprocess.run([sys.executable, "-m", "tge_ray.cli", "run", "smoke", "rl.seeds=100000",
                           "rl.iql.batch_size=4096", f"storage={storage}"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    assert "the policies (iql x200000) stage needs about" in line and "lower rl.seeds" in line, line
    assert "transition table" not in line, line  # no data yet: parameters and batches alone refuse it
    assert list(minari_root.iterdir()) == [] and not storage.exists()


def test_a_billion_seeds_are_refused_from_their_count(refused):
    """The check counts the policies instead of planning each one: a request per policy would
    itself take hundreds of GiB before the check could refuse them."""
    assert refused["billion seeds"]["code"] == 2
    line = one_error_line(refused["billion seeds"]["stderr"])
    assert f"x{10**9}) stage needs about" in line and "lower rl.seeds" in line, line
    assert not (refused["root"] / "billion").exists()


def test_malformed_dataset_id(refused):
    assert refused["dataset id"]["code"] == 2
    assert "malformed dataset id 'no_version_here'" in one_error_line(refused["dataset id"]["stderr"])


# ----------------------------------------------------------------------------- a full disk


def test_full_file_system_is_one_line(tiny_datasets, tmpfs, run_env):
    """A 100 KiB tmpfs fills while the diffusion model is trained and written by a Ray Train
    worker: one line naming the path and the fix, no artifact, no build folder and no resume
    folder left. Without retries (resources.train_max_failures=0): each would fail the same way,
    seconds apart, and test_train has a worker group that recovers."""
    storage = tmpfs("100k") / "runs"
    command = tge_run_command(tiny_datasets, storage, "resources.train_max_failures=0")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=run_env)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    assert "no space left on the device: free space on that file system or choose another storage=PATH" in line
    assert str(storage) in line
    assert not list((storage / "artifacts").glob("diffusion-*")) and leftovers(storage) == []
    # The disk filled in the first checkpoint: no resume folder either, as nothing can be resumed.
    assert not list((storage / "artifacts").glob(".*-scratch-*"))


# ----------------------------------------------------------------------------- tge config, pipes


def test_fields_are_aligned_on_one_line_each(capsys):
    from tge_ray.config import describe_fields, load_config, resolve_config_path

    assert main(["config", "--fields"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("    ")]
    rows = describe_fields(instance=load_config(resolve_config_path("default")))
    assert len(lines) == len(rows) > 60  # one line per field besides its documentation line
    for line, (key, default, kind, _) in zip(lines, rows):
        assert line.startswith(key + " ") and line[len(key):].lstrip().startswith(default + " "), line
        assert line.endswith("  " + kind), line
    assert len({len(line) - len(kind) for line, (_, _, kind, _) in zip(lines, rows)}) == 1  # one type column
    assert "one of 'auto', true, false" in "\n".join(lines)  # YAML's booleans, as the user writes them


def test_fields_show_the_resolved_config_s_values(capsys):
    """--fields lists the values of the config `tge run` would use: the default run's without
    CONFIG, the named config's with its overrides; a bad override is one line and exit 2."""

    def values(*items: str) -> dict[str, str]:
        assert main(["config", "--fields", *items]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("    ")]
        return {row[0]: row[1] for row in rows}

    default, paper = values(), values("paper", "rl.steps=7")
    assert (default["task.n_expert_trajs"], default["rl.steps"], default["diffusion.steps"]) == ("200", "15000", "600")
    assert (paper["task.n_expert_trajs"], paper["rl.steps"], paper["diffusion.steps"]) == ("30", "7", "20000")
    assert main(["config", "--fields", "bogus.key=3"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_long_default_stays_on_its_line():
    from dataclasses import dataclass

    from tge_ray.config import describe_fields

    @dataclass
    class Section:
        """A section.

        Attributes:
            text: a long default, which YAML folds at 80 columns unless told not to.
        """

        text: str = "word " * 30

    ((key, default, kind, doc),) = describe_fields(Section)
    assert "\n" not in default and default.strip("'").split() == ["word"] * 30 and kind == "a string"


def test_closed_pipe_is_quiet(tmp_path):
    """`tge config --fields | head`: the reader is gone before tge writes; exit 141, as `yes | head`
    gives, and nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "tge_ray.cli", "config", "--fields"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=tge_env(), cwd=tmp_path)
    proc.stdout.close()  # the reader leaves
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


# ----------------------------------------------------------------------------- what Ray wraps


def test_faults_inside_ray_tasks_are_found(ray_session):
    """A Ray task's OSError or TGEError reaches the driver as a RayTaskError; the CLI's line is
    the one the task's error makes."""
    import errno

    import ray

    from tge_ray.errors import DataError
    from tge_ray.faults import fault_line

    @ray.remote
    def fail(kind: str) -> None:
        if kind == "full":
            raise OSError(errno.ENOSPC, "No space left on device", "/data/artifacts/x.npz")
        if kind == "data":
            raise DataError("dataset 'a/b-v0' not found")
        raise ValueError("a bug")

    lines = {}
    for kind in ("full", "data", "bug"):
        with pytest.raises(Exception) as caught:
            ray.get(fail.remote(kind))
        lines[kind] = fault_line(caught.value, where="/data")
    assert lines["full"] == ("/data/artifacts/x.npz: no space left on the device: free space on that file system "
                             "or choose another storage=PATH")
    assert lines["data"] == "dataset 'a/b-v0' not found"
    assert lines["bug"] is None  # a bug keeps its traceback
    assert fault_line(OSError(errno.EROFS, "Read-only file system"), where="/mnt/ro") == (
        "/mnt/ro: read-only file system: choose a storage=PATH on a writable file system")
