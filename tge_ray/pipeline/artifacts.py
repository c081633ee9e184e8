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
        if earlier and self.find(stage, dependencies) is None:
            found = self.earlier(stage, earlier, note)
            if found is not None:
                return found
        (artifact,) = self.get_or_build_many(
            stage, [dependencies], lambda missing, folders, scratch: [build(folders[0]) or {}]
        )
        return artifact

    def get_or_build_many(
        self,
        stage: str,
        dependencies: list[dict[str, Any]],
        build: Callable[[list[int], list[Path], Path], list[dict[str, Any]]],
    ) -> list[Artifact]:
        """Several artifacts of one stage, the missing ones built together by one call.

        ``build(missing, folders, scratch)`` gets the indices of the missing artifacts, a private
        folder for each, and a scratch folder that outlives an interrupted build (its name is
        a key of the missing set, so a rerun that misses the same artifacts finds it again,
        e.g. a resumable checkpoint; it is removed once they are all in place). It returns
        each one's facts. The policy stage builds a batch of policies this way: every policy is
        its own artifact, reused alone, and only the missing ones are trained. Locks are taken in
        name order, so two runs that miss overlapping sets cannot deadlock.
        """
        names = [self.name(stage, deps) for deps in dependencies]
        first = {name: names.index(name) for name in names}  # one build per distinct artifact
        missing = [i for name, i in first.items() if self.find(stage, dependencies[i]) is None]
        built: set[str] = set()
        if missing:
            with contextlib.ExitStack() as locks:
                for name in sorted(names[i] for i in missing):
                    locks.enter_context(self._lock(name))
                missing = [i for i in missing if self.find(stage, dependencies[i]) is None]  # built meanwhile?
                if missing:
                    self._build_many(stage, names, dependencies, missing, build)
                    built = {names[i] for i in missing}
        return [Artifact(self.root / name, name, reused=name not in built) for name in names]

    def _build_many(self, stage: str, names: list[str], dependencies: list[dict[str, Any]], missing: list[int],
                    build: Callable[[list[int], list[Path], Path], list[dict[str, Any]]]) -> None:
        scratch = self.root / f".{stage}-scratch-{artifact_key({'missing': sorted(names[i] for i in missing)})}"
        scratch.mkdir(parents=True, exist_ok=True)
        folders = [Path(tempfile.mkdtemp(dir=self.root, prefix=f".{names[i]}.tmp-")) for i in missing]
        try:
            started = time.time()
            facts = build(missing, folders, scratch)
            seconds = round(time.time() - started, 3)
            for i, folder, fact in zip(missing, folders, facts):
                manifest = {
                    "stage": stage,
                    "dependencies": dependencies[i],
                    "facts": fact or {},
                    "seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
                replace_folder(folder, self.root / names[i])
            shutil.rmtree(scratch, ignore_errors=True)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
        if self.remote:
            for i in missing:
                self._upload(names[i])

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
