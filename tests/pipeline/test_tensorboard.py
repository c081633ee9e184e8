"""The run folder's TensorBoard event files, read back record by record with tensorboardX's Event proto."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tge_ray.config import load_config, to_dict
from tge_ray.pipeline import files
from tge_ray.pipeline.run_folder import RunRecord
from tge_ray.pipeline.tensorboard import write_events


def read_events(folder: Path) -> dict[str, list]:
    """tag -> [(step, value)] for scalars, [(step, summary value)] for the rest, from every event
    file in ``folder`` (TFRecord framing: length, its CRC, the Event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    events: dict[str, list] = defaultdict(list)
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalar = value.simple_value if value.WhichOneof("value") == "simple_value" else value
                events[value.tag].append((event.step, scalar))
    return dict(events)


class _Artifact:
    def __init__(self, path: Path) -> None:
        self.path = path


def _artifacts(tmp_path: Path) -> dict[str, _Artifact]:
    """Three artifacts as the stages store them: the diffusion loss rows, a learner's metrics rows, rewards."""
    out = {}
    for stage, rows in (("diffusion", [{"step": 10, "loss": 0.9}, {"step": 20, "loss": 0.5}]),
                        ("policy-tge-iql", [{"step": 100, "actor_loss": 1.5, "value_loss": 0.2}]),
                        ("rewards", [])):
        folder = tmp_path / "artifacts" / stage
        folder.mkdir(parents=True)
        files.write_stage_metrics(folder, rows)
        out[stage] = _Artifact(folder)
    raw = np.linspace(-3.0, 0.0, 10).astype(np.float32)
    files.write_rewards(out["rewards"].path, raw, (raw + 3.0) / 3.0)
    return out


def test_event_files_hold_losses_evaluations_rewards_and_the_projection(tmp_path):
    from PIL import Image

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(run_dir / files.EMBEDDING_PROJECTION_FILE)
    record = RunRecord(scores={"tge-iql": 55.0, "bc": 12.0}, returns={"tge-iql": (1.0, 0.0), "bc": (1.0, 0.0)},
                       separation={"auc": 0.875}, task={}, config=to_dict(load_config(None)),
                       eval_history={"tge-iql": [(50, 20.0), (100, 55.0)], "bc": [(100, 12.0)]},
                       true_reward_correlation={"transitions": 0.25, "episodes": 0.5})
    flags = np.arange(10) >= 6
    folder = write_events(run_dir, _artifacts(tmp_path), record, flags, "seed: 0\n")
    events = read_events(folder)

    assert events["loss/diffusion"] == [(10, pytest.approx(0.9)), (20, pytest.approx(0.5))]
    assert events["train/tge-iql/actor_loss"] == [(100, 1.5)] and events["train/tge-iql/value_loss"][0][0] == 100
    assert events["eval/tge-iql/normalised_score"] == [(50, 20.0), (100, 55.0)]
    assert events["score/bc"] == [(0, 12.0)] and events["reward/separation_auc"] == [(0, 0.875)]
    assert events["reward/true_reward_spearman"] == [(0, 0.25)]
    (_, expert), = events["reward/raw/expert"]
    (_, other), = events["reward/raw/other"]
    assert (expert.histo.num, expert.histo.min, expert.histo.max) == (4, pytest.approx(-1.0), 0.0)
    assert (other.histo.num, other.histo.min) == (6, -3.0)
    (_, image), = events["embedding/projection"]
    assert (image.image.width, image.image.height) == (40, 30)
    assert "reward/histogram" not in events  # no such PNG in this folder
    (_, text), = events["config/text_summary"]
    assert "seed: 0" in text.tensor.string_val[0].decode()


def test_a_run_without_rewards_writes_its_learners_only(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    artifacts = {"policy-bc": _artifacts(tmp_path)["policy-tge-iql"]}
    record = RunRecord(scores={"bc": 3.0}, returns={"bc": (1.0, 0.0)}, separation={}, task={}, config={},
                       eval_history={"bc": [(100, 3.0)]})
    events = read_events(write_events(run_dir, artifacts, record, None, ""))
    assert not [tag for tag in events if tag.startswith(("reward/", "loss/", "embedding/"))]
    assert events["train/bc/actor_loss"] == [(100, 1.5)] and events["score/bc"] == [(0, 3.0)]
