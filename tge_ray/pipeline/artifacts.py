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

Verified reuse: the manifest records the size and SHA-256 of each file
(:mod:`tge_ray.pipeline.integrity`). Every lookup compares sizes; a stage that takes an artifact
for use (:meth:`ArtifactStore.get_or_build`, :meth:`~ArtifactStore.get_or_build_many`) also
compares hashes. A damaged artifact is moved aside, under its lock, to
``.<artifact>.corrupt-<UTC time>`` (kept for inspection until ``tge store gc``) and built anew,
with one note line naming the file and what is wrong. An artifact written before manifests
recorded files is trusted once when its zip archives (``.pt``, ``.npz``) pass their CRC checks
and its JSON lines parse: its sizes and hashes are then written into its manifest; when they do
not, it is damaged.

Swept temporary folders: opening a store removes what interrupted runs left, never while a lock
of the artifact it is for is held (:mod:`tge_ray.pipeline.leftovers`):

- ``.<artifact>.tmp-<pid>@<host>-*``, a build: its process is gone, or it was written by an
  earlier version (no owner in its name; every build holds its artifact's lock until its folder
  is gone), or it is untouched for :data:`~tge_ray.pipeline.leftovers.MAX_TEMP_AGE`;
- ``.<artifact>.fetch-<pid>@<host>-*``, a download: its process is gone, or untouched that long;
- ``.<stage>-scratch-<key>``, the resume state of an interrupted diffusion training or policy
  batch: kept, at any age, while it can be resumed; removed once every artifact it was for is
  complete. ``tge store gc`` removes it at once (that build then starts over).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tge_ray.data.minari_io import cache_path
from tge_ray.errors import TGEError
from tge_ray.io import owner_tag, replace_folder, write_text
from tge_ray.pipeline.files import MANIFEST_FILE as MANIFEST
from tge_ray.pipeline.files import SCRATCH_FILE
from tge_ray.pipeline.integrity import (
    Damage,
    file_records,
    hash_damage,
    size_damage,
    utc_stamp,
    zip_damage,
)
from tge_ray.pipeline.leftovers import CORRUPT, Leftover, artifact_lock, find_leftovers, sweep
from tge_ray.pipeline.upgrade import Earlier


def artifact_key(dependencies: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``dependencies``."""
    canonical = json.dumps(dependencies, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def _stderr_note(message: str) -> None:
    print(f"      note: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Artifact:
    """A complete artifact: its local folder, its name and whether it was reused."""

    path: Path
    name: str
    reused: bool


class ArtifactStore:
    """Get-or-build stage outputs under ``<storage>/artifacts``."""

    def __init__(self, storage: str, note: Callable[[str], None] | None = None, sweep: bool = True) -> None:
        """``note`` gets the one-line notes (a damaged artifact, a sweep); ``sweep=False`` leaves
        the temporary folders as they are (``tge store list`` shows them)."""
        self.note = note or _stderr_note
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
        if sweep and self.root.is_dir():
            removed = self.sweep()
            if removed:
                self.note(f"removed {len(removed)} folder(s) that interrupted runs left in {self.root}: "
                          + ", ".join(leftover.path.name for leftover in removed))

    # ------------------------------------------------------------------ lookup

    def name(self, stage: str, dependencies: dict[str, Any]) -> str:
        return f"{stage}-{artifact_key(dependencies)}"

    def _complete(self, folder: Path) -> bool:
        return (folder / MANIFEST).is_file()

    def lookup(self, name: str) -> tuple[Path | None, Damage | None]:
        """A complete artifact's folder (fetched when remote) and what its sizes say is wrong."""
        folder = self.root / name
        if not self._complete(folder) and not (self.remote and self._fetch(name)):
            return None, None
        manifest = _read_manifest(folder)
        if manifest is None:
            return folder, Damage(MANIFEST, "does not parse")
        records = manifest.get("files")
        return folder, (size_damage(folder, records) if records else None)

    def verify(self, folder: Path) -> Damage | None:
        """What is wrong with a complete artifact's files, by their hashes (by their zip CRCs
        when its manifest records no files); None when nothing is."""
        manifest = _read_manifest(folder)
        if manifest is None:
            return Damage(MANIFEST, "missing or does not parse")
        if "files" in manifest:
            return hash_damage(folder, manifest["files"])
        return zip_damage(folder, skip=(MANIFEST,))

    def _usable(self, name: str) -> tuple[Path | None, Damage | None]:
        """:meth:`lookup`, then the hashes; a sound artifact without recorded files gets them."""
        folder, damage = self.lookup(name)
        if folder is None or damage is not None:
            return folder, damage
        damage = self.verify(folder)
        if damage is None and "files" not in (_read_manifest(folder) or {}):
            with self._lock(name, blocking=False) as held:  # held: a builder is replacing it
                manifest = _read_manifest(folder)
                if held and manifest is not None and "files" not in manifest:
                    manifest["files"] = file_records(folder, skip=(MANIFEST,))
                    write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return folder, damage

    def _ready(self, name: str) -> bool:
        folder, damage = self._usable(name)
        return folder is not None and damage is None

    def _settled(self, name: str, note: Callable[[str], None]) -> bool:
        """Under the artifact's lock: True when it is there and sound (built meanwhile); a
        damaged one is moved aside (a remote store's copy is then fetched once more)."""
        for _ in range(2 if self.remote else 1):
            folder, damage = self._usable(name)
            if folder is None:
                return False
            if damage is None:
                return True
            aside = self.root / f".{name}{CORRUPT}{utc_stamp()}"
            while aside.exists():
                aside = aside.with_name(aside.name + "-")
            os.rename(folder, aside)
            then = "fetching it again or building it anew" if self.remote else "building it anew"
            note(f"{name} is damaged ({damage}): moved aside to {aside.name}; {then}")
        return False

    def _fetch(self, name: str) -> bool:
        """Download a complete remote artifact into the local mirror; False if there is none."""
        import pyarrow.fs

        remote = f"{self._remote_root}/{name}"
        if self._fs.get_file_info(f"{remote}/{MANIFEST}").type != pyarrow.fs.FileType.File:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.fetch-{owner_tag()}-"))
        try:
            pyarrow.fs.copy_files(remote, str(tmp), source_filesystem=self._fs)
            replace_folder(tmp, self.root / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _upload(self, name: str) -> None:
        import pyarrow.fs

        local, remote = self.root / name, f"{self._remote_root}/{name}"
        self._fs.create_dir(remote, recursive=True)  # file systems with real folders need them first
        for folder in sorted(p for p in local.rglob("*") if p.is_dir()):
            self._fs.create_dir(f"{remote}/{folder.relative_to(local).as_posix()}", recursive=True)
        for path in sorted(local.rglob("*")):  # the manifest goes last: it marks completeness
            if path.is_file() and path.name != MANIFEST:
                pyarrow.fs.copy_files(str(path), f"{remote}/{path.relative_to(local)}", destination_filesystem=self._fs)
        pyarrow.fs.copy_files(str(local / MANIFEST), f"{remote}/{MANIFEST}", destination_filesystem=self._fs)

    def find(self, stage: str, dependencies: dict[str, Any]) -> Path | None:
        """The local folder of a complete artifact whose files have their recorded sizes, or None."""
        folder, damage = self.lookup(self.name(stage, dependencies))
        return folder if damage is None else None

    # ------------------------------------------------------------------ build

    def _lock(self, name: str, blocking: bool = True) -> contextlib.AbstractContextManager[bool]:
        return artifact_lock(self.root, name, blocking)

    def earlier(self, stage: str, candidates: Sequence[Earlier], note: Callable[[str], None]) -> Artifact | None:
        """The first artifact an earlier version made under one of ``candidates``' keys, when
        :mod:`tge_ray.pipeline.upgrade` judges it equal to this version's; one ``note`` line
        when the one found is not."""
        for candidate in candidates:
            name = self.name(stage, candidate.dependencies)
            folder, damage = self._usable(name)
            if folder is None:
                continue
            if damage is not None:
                with self._lock(name):
                    if not self._settled(name, note):
                        return None
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
        self, stage: str, dependencies: dict[str, Any], build: Callable[..., dict[str, Any] | None],
        earlier: Sequence[Earlier] = (), note: Callable[[str], None] = print, resumable: bool = False,
    ) -> Artifact:
        """Return the artifact, building it with ``build(tmp_folder)`` if it is missing.

        ``build`` writes its files into the folder it is given and may return a dict of facts
        (metrics, sizes) that go into the manifest. Only a finished build becomes visible.
        ``earlier``: the keys an earlier version gave the same work
        (:func:`tge_ray.pipeline.upgrade.earlier_artifacts`), tried when this key is missing.
        ``resumable``: the build is called as ``build(tmp_folder, scratch)``, ``scratch`` a folder
        that outlives an interrupted build, for what a rerun resumes from (as in
        :meth:`get_or_build_many`).
        """
        if earlier and self.find(stage, dependencies) is None:
            found = self.earlier(stage, earlier, note)
            if found is not None:
                return found

        def build_one(missing: list[int], folders: list[Path], scratch: Path | None) -> list[dict[str, Any]]:
            return [(build(folders[0], scratch) if resumable else build(folders[0])) or {}]

        (artifact,) = self.get_or_build_many(stage, [dependencies], build_one, note, scratch=resumable)
        return artifact

    def get_or_build_many(
        self,
        stage: str,
        dependencies: list[dict[str, Any]],
        build: Callable[[list[int], list[Path], Path], list[dict[str, Any]]],
        note: Callable[[str], None] | None = None,
        scratch: bool = True,
    ) -> list[Artifact]:
        """Several artifacts of one stage, the missing ones built together by one call.

        ``build(missing, folders, scratch)`` gets the indices of the missing artifacts, a private
        folder for each, and a scratch folder that outlives an interrupted build (its name is
        a key of the missing set, so a rerun that misses the same artifacts finds it again,
        e.g. a resumable checkpoint; it is removed once they are all in place, or when a build
        that failed left nothing in it). It returns each one's facts. The policy stage builds a batch of policies this way: every policy is
        its own artifact, reused alone, and only the missing ones are trained. Locks are taken in
        name order, so two runs that miss overlapping sets cannot deadlock. ``scratch=False``:
        the build uses no scratch folder (it gets None). Every artifact handed back was checked
        against its recorded hashes; a damaged one is moved aside and built (one ``note`` line).
        """
        note = note or self.note
        names = [self.name(stage, deps) for deps in dependencies]
        first = {name: names.index(name) for name in names}  # one build per distinct artifact
        missing = [i for name, i in first.items() if not self._ready(name)]
        built: set[str] = set()
        if missing:
            with contextlib.ExitStack() as locks:
                for name in sorted(names[i] for i in missing):
                    locks.enter_context(self._lock(name))
                missing = [i for i in missing if not self._settled(names[i], note)]  # built meanwhile?
                if missing:
                    self._build_many(stage, names, dependencies, missing, build, scratch)
                    built = {names[i] for i in missing}
        return [Artifact(self.root / name, name, reused=name not in built) for name in names]

    def _build_many(self, stage: str, names: list[str], dependencies: list[dict[str, Any]], missing: list[int],
                    build: Callable[[list[int], list[Path], Path], list[dict[str, Any]]], with_scratch: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = None
        if with_scratch:
            wanted = sorted(names[i] for i in missing)
            scratch = self.root / f".{stage}-scratch-{artifact_key({'missing': wanted})}"
            scratch.mkdir(exist_ok=True)
            write_text(scratch / SCRATCH_FILE, json.dumps({"artifacts": wanted}))  # what it can resume
        owner = owner_tag()  # in the names, so a later run can tell whether their process is gone
        folders = [Path(tempfile.mkdtemp(dir=self.root, prefix=f".{names[i]}.tmp-{owner}-")) for i in missing]
        try:
            started = time.time()
            facts = build(missing, folders, scratch)  # type: ignore[arg-type]  # None only with scratch=False
            seconds = round(time.time() - started, 3)
            for i, folder, fact in zip(missing, folders, facts):
                manifest = {
                    "stage": stage,
                    "dependencies": dependencies[i],
                    "facts": fact or {},
                    "files": file_records(folder, skip=(MANIFEST,)),
                    "seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
                replace_folder(folder, self.root / names[i])
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        except BaseException:
            if scratch is not None and not _holds_files(scratch, but=SCRATCH_FILE):
                shutil.rmtree(scratch, ignore_errors=True)  # nothing in it to resume from
            raise
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
        if self.remote:
            for i in missing:
                self._upload(names[i])

    def leftovers(self) -> list[Leftover]:
        """Every folder of the store that is not an artifact, and the run folders being written
        beside a local store (:func:`~tge_ray.pipeline.leftovers.find_leftovers`)."""
        return find_leftovers(self.root, None if self.remote else self.root.parent)

    def sweep(self, everything: bool = False, dry_run: bool = False) -> list[Leftover]:
        """Remove the stale leftovers (:func:`~tge_ray.pipeline.leftovers.sweep`)."""
        return sweep(self.root, None if self.remote else self.root.parent, everything, dry_run)

    def manifest(self, artifact: Artifact) -> dict[str, Any]:
        return json.loads((artifact.path / MANIFEST).read_text())

    def manifest_of(self, folder: Path) -> dict[str, Any] | None:
        """A folder's manifest, or None when it is missing or does not parse."""
        return _read_manifest(folder)


def _holds_files(folder: Path, but: str) -> bool:
    """Whether ``folder`` holds a file, at any depth, other than its own file ``but``."""
    return any(path.is_file() and path != folder / but for path in folder.rglob("*"))


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """An artifact's manifest, or None when it does not parse."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


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
