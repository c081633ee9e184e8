"""Atomic folders: moved into place whole, never over another process's folder."""

from __future__ import annotations

import os
import socket

from tge_ray.io import folder_beside, place_folder


def test_place_folder_never_moves_over_another_folder(tmp_path):
    target = tmp_path / "run__20261204-000000"
    placed = []
    for content in ("first", "second", "third"):
        with folder_beside(target) as folder:
            assert folder.name.startswith(f".{target.name}.tmp-{os.getpid()}@{socket.gethostname()}-")
            (folder / "results.json").write_text(content)
            placed.append(place_folder(folder, target))
    assert [p.name for p in placed] == [target.name, f"{target.name}-2", f"{target.name}-3"]
    assert [(p / "results.json").read_text() for p in placed] == ["first", "second", "third"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in placed), "no temporary folder left"
