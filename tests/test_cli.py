"""The `tge` command as a user types it: help, data info/list, one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tge_ray.cli import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "tge_ray.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "sweep", "data", "config"):
        assert command in out.stdout


def test_data_info_prints_the_facts(tiny_datasets, capsys):
    assert main(["data", "info", tiny_datasets["offline"]]) == 0
    out = capsys.readouterr().out
    assert "episodes" in out and "6" in out
    assert "3000.00" in out and "ref_max_score" in out
    assert "Hopper-v5" in out and "Box(" in out


def test_data_list(tiny_datasets, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert tiny_datasets["offline"] in out and "size_MB" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "info", "bad id"], "malformed dataset id"),
        (["data", "info", "tge/hopper/nothing-v0"], "tge data make tge/hopper/nothing-v0"),
        (["config", "reward.sigma=-1"], "reward.sigma=-1"),
        (["config", "no/such/file.yaml"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(minari_root, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tge: error:") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("tge/nope/random-v0", "unknown task 'nope'"),
        ("mujoco/hopper/nope-v0", "task.download=true"),
    ],
)
def test_a_dataset_that_cannot_be_had_is_refused_before_the_data_stage(minari_root, tmp_path, capsys, dataset, message):
    storage, before = tmp_path / "store", sorted(Path(minari_root).rglob("*"))
    assert main(["run", "smoke", f"task.offline={dataset}", f"storage={storage}"]) == 2
    captured = capsys.readouterr()
    # one line: not even the data stage's line (stage lines go to stderr too)
    assert captured.err.startswith("tge: error:") and message in captured.err and captured.err.count("\n") == 1
    assert not storage.exists() and sorted(Path(minari_root).rglob("*")) == before  # no dataset made


def test_config_fields_documents_every_key(capsys):
    assert main(["config", "--fields"]) == 0
    out = capsys.readouterr().out
    assert "reward.sigma" in out and "windows.horizon" in out and "rl.iql.expectile" in out
    assert "kernel temperature" in out  # each key's documentation line
