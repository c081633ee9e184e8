"""Stage outputs as artifacts keyed by a hash of everything they depend on.

An artifact is a folder ``<storage>/artifacts/<stage>-<key>/`` whose ``manifest.json`` (written
last) says it is complete and records what it was made from. ``key`` is the first 16 hex digits
of the SHA-256 of the canonical JSON of its dependencies, so a sweep trains one diffusion model
per (data, horizon, diffusion config, seed) and every trial that needs it reuses it.

Writes are atomic: a builder fills a private temporary folder that is renamed into place only
when complete. A lock file (``fcntl.flock``) per artifact makes concurrent trials on one machine
or on a shared POSIX file system wait for the one that builds it instead of building it twice.

Cloud storage (``s3://``, ``gs://``, anything ``pyarrow.fs`` opens): artifacts are built in a
local mirror (``$TGE_CACHE_DIR/artifacts``) and uploaded with the manifest last; a reader that
finds the manifest downloads the folder. Object stores have no locks, so two trials on
different nodes may both build an artifact; each upload is complete and identical in content,
so the result is never corrupt, only built twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tge_ray.data.minari_io import cache_path
from tge_ray.errors import TGEError
from tge_ray.io import replace_folder
from tge_ray.pipeline.files import MANIFEST_FILE as MANIFEST
from tge_ray.pipeline.upgrade import Earlier


def artifact_key(dependencies: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``dependencies``."""
    canonical = json.dumps(dependencies, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


@dataclass(frozen=True)
class Artifact:
    """A complete artifact: its local folder, its name and whether it was reused."""

    path: Path
    name: str
    reused: bool


class ArtifactStore:
    """Get-or-build stage outputs under ``<storage>/artifacts``."""

    def __init__(self, storage: str) -> None:
        self.storage = storage.removeprefix("file://")
        self.remote = is_uri(self.storage)
        if self.remote:
            import pyarrow.fs

            try:
                self._fs, base = pyarrow.fs.FileSystem.from_uri(self.storage)
            except Exception as exc:
                raise TGEError(f"storage={storage!r} cannot be opened: {exc}") from None
            self._remote_root = f"{base.rstrip('/')}/artifacts"
            self.root = cache_path() / "artifacts" / artifact_key({"storage": self.storage})
        else:
            self.root = Path(self.storage).expanduser().resolve() / "artifacts"
        _check_writable(self.root, storage)  # folders are made by the first build, not here

    # ------------------------------------------------------------------ lookup

    def name(self, stage: str, dependencies: dict[str, Any]) -> str:
        return f"{stage}-{artifact_key(dependencies)}"

    def _complete(self, folder: Path) -> bool:
        return (folder / MANIFEST).is_file()

    def _fetch(self, name: str) -> bool:
        """Download a complete remote artifact into the local mirror; False if there is none."""
        import pyarrow.fs

        remote = f"{self._remote_root}/{name}"
        if self._fs.get_file_info(f"{remote}/{MANIFEST}").type != pyarrow.fs.FileType.File:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.fetch-"))
        try:
            pyarrow.fs.copy_files(remote, str(tmp), source_filesystem=self._fs)
            replace_folder(tmp, self.root / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _upload(self, name: str) -> None:
        import pyarrow.fs

        local, remote = self.root / name, f"{self._remote_root}/{name}"
        for path in sorted(local.rglob("*")):  # the manifest goes last: it marks completeness
            if path.is_file() and path.name != MANIFEST:
                pyarrow.fs.copy_files(str(path), f"{remote}/{path.relative_to(local)}", destination_filesystem=self._fs)
        pyarrow.fs.copy_files(str(local / MANIFEST), f"{remote}/{MANIFEST}", destination_filesystem=self._fs)

    def find(self, stage: str, dependencies: dict[str, Any]) -> Path | None:
        """The local folder of a complete artifact, or None."""
        name = self.name(stage, dependencies)
        folder = self.root / name
        if self._complete(folder) or (self.remote and self._fetch(name)):
            return folder
        return None

    # ------------------------------------------------------------------ build

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        with open(self.root / ".locks" / f"{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def earlier(self, stage: str, candidates: Sequence[Earlier], note: Callable[[str], None]) -> Artifact | None:
        """The first artifact an earlier version made under one of ``candidates``' keys, when
        :mod:`tge_ray.pipeline.upgrade` judges it equal to this version's; one ``note`` line
        when the one found is not."""
        for candidate in candidates:
            folder = self.find(stage, candidate.dependencies)
            if folder is None:
                continue
            recorded = json.loads((folder / MANIFEST).read_text()).get("dependencies")
            why = candidate.why if not candidate.equal else (
                "" if artifact_key(recorded) == artifact_key(candidate.dependencies)
                else "its manifest records other dependencies than its name says")
            if not why:
                return Artifact(folder, folder.name, reused=True)
            note(f"{stage}: {folder.name}, made by an earlier version, is not reused: {why}; building it anew")
            return None
        return None

    def get_or_build(
        self, stage: str, dependencies: dict[str, Any], build: Callable[[Path], dict[str, Any] | None],
        earlier: Sequence[Earlier] = (), note: Callable[[str], None] = print,
    ) -> Artifact:
        """Return the artifact, building it with ``build(tmp_folder)`` if it is missing.

        ``build`` writes its files into the folder it is given and may return a dict of facts
        (metrics, sizes) that go into the manifest. Only a finished build becomes visible.
        ``earlier``: the keys an earlier version gave the same work
        (:func:`tge_ray.pipeline.upgrade.earlier_artifacts`), tried when this key is missing.
        """
        name = self.name(stage, dependencies)
        folder = self.root / name
        if self.find(stage, dependencies) is not None:
            return Artifact(folder, name, reused=True)
        if earlier:
            found = self.earlier(stage, earlier, note)
            if found is not None:
                return found
        with self._lock(name):
            if self.find(stage, dependencies) is not None:  # built by another trial meanwhile
                return Artifact(folder, name, reused=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.tmp-"))
            try:
                started = time.time()
                facts = build(tmp) or {}
                manifest = {
                    "stage": stage,
                    "dependencies": dependencies,
                    "facts": facts,
                    "seconds": round(time.time() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
                replace_folder(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if self.remote:
                self._upload(name)
        return Artifact(folder, name, reused=False)

    def manifest(self, artifact: Artifact) -> dict[str, Any]:
        return json.loads((artifact.path / MANIFEST).read_text())


def _check_writable(folder: Path, storage: str) -> None:
    """One line unless ``folder`` could be made and written; nothing is created, so a run that
    fails before its first stage leaves no empty folders behind."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TGEError(f"storage={storage!r} cannot be written ({existing} is a file): choose a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TGEError(f"storage={storage!r} cannot be written ({existing}: permission denied): choose a writable folder")
