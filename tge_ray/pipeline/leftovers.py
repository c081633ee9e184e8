"""The folders of an artifact store that are not artifacts, the per-artifact locks, and the sweep.

    .<artifact>.tmp-<pid>@<host>-*     a build in progress or interrupted (under the artifact's lock)
    .<artifact>.fetch-<pid>@<host>-*   a download from a remote store (no lock)
    .<stage>-scratch-<key>/            a batch's resume state (artifacts.json names its artifacts)
    .<artifact>.corrupt-<UTC time>/    a damaged artifact, moved aside
    .locks/<artifact>.lock             fcntl.flock locks; the files stay
    ../.<run folder>.tmp-<pid>@<host>-*  a run folder being written (beside the store, no lock)

:func:`find_leftovers` says which of them no process can still use, :func:`sweep` removes those
(every store open does) after taking their artifacts' locks without waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tge_ray.pipeline.files import MANIFEST_FILE, SCRATCH_FILE
from tge_ray.pipeline.integrity import last_write, owner_gone, parse_temp

MAX_TEMP_AGE = 24 * 3600.0
"""Seconds without a write after which a build, download or run folder (not a resume folder)
is taken as abandoned."""
CORRUPT = ".corrupt-"  # .<artifact>.corrupt-<UTC time>
LOCKS = ".locks"


@dataclass(frozen=True)
class Leftover:
    """A folder of the store that is not an artifact.

    Attributes:
        path: the folder.
        kind: ``build`` (``.tmp-``), ``download`` (``.fetch-``), ``resume`` (``-scratch-``),
            ``corrupt`` (an artifact moved aside) or ``run folder`` (one being written, beside
            the store).
        artifacts: the artifacts whose locks guard it (none for downloads, moved-aside
            artifacts and resume folders of earlier versions).
        stale: why the sweep on open removes it, or None while it may be in use or resumed.
    """

    path: Path
    kind: str
    artifacts: tuple[str, ...]
    stale: str | None


@contextlib.contextmanager
def artifact_lock(root: Path, name: str, blocking: bool = True) -> Iterator[bool]:
    """The artifact's lock; with ``blocking=False`` it yields False at once when it is held.
    Lock files stay: removing one could let two processes hold "the" lock on two files."""
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    with open(root / LOCKS / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_use(root: Path, name: str) -> bool:
    """Whether a process holds the artifact's lock (it is building or replacing it)."""
    with artifact_lock(root, name, blocking=False) as held:
        return not held


def find_leftovers(root: Path, runs: Path | None = None) -> list[Leftover]:
    """Every folder of the store at ``root`` that is not an artifact, and the run folders being
    written in ``runs`` (the storage folder), with whether the sweep removes it:

    - a build whose process is gone, that an earlier version left (no owner in its name), or
      untouched for :data:`MAX_TEMP_AGE`;
    - a download whose process is gone or untouched that long;
    - a resume folder once every artifact it was for is complete (one that names none, an
      earlier version's, when untouched that long): never by age, however long its run was stopped;
    - a run folder being written whose process is gone or untouched that long (only those that
      name their owner: the storage folder may hold other programs' folders);
    - never a moved-aside artifact (``tge store gc`` removes those).
    """
    if not root.is_dir():
        return []
    found, now, hours = [], time.time(), f"{MAX_TEMP_AGE / 3600:g} h"
    for path in sorted(runs.iterdir()) if runs is not None and runs.is_dir() else ():
        temp = parse_temp(path.name)
        if path.is_dir() and temp is not None and temp.kind == "tmp" and temp.pid is not None:
            why = ("its process is gone" if owner_gone(temp.pid, temp.host) else
                   f"untouched for over {hours}" if now - last_write(path) > MAX_TEMP_AGE else None)
            found.append(Leftover(path, "run folder", (), why))
    for path in sorted(root.iterdir()):
        if not path.is_dir() or not path.name.startswith(".") or path.name == LOCKS:
            continue
        old = now - last_write(path) > MAX_TEMP_AGE
        temp = parse_temp(path.name)
        if temp is not None:
            earlier = temp.pid is None and temp.kind == "tmp"
            why = ("its process is gone" if owner_gone(temp.pid, temp.host) else
                   "an earlier version's build" if earlier else f"untouched for over {hours}" if old else None)
            kind = "build" if temp.kind == "tmp" else "download"
            found.append(Leftover(path, kind, (temp.artifact,) if kind == "build" else (), why))
        elif CORRUPT in path.name:
            found.append(Leftover(path, "corrupt", (), None))
        elif "-scratch-" in path.name:
            names = scratch_artifacts(path)
            done = bool(names) and all((root / name / MANIFEST_FILE).is_file() for name in names)
            # Resume state does not age: a paper-scale run stopped for a weekend continues where it
            # stopped, as its interrupted line promised. Only one that names no artifact (an
            # earlier version's, whose completion cannot be told) goes by age.
            why = ("every artifact it was for is complete" if done else
                   f"untouched for over {hours}" if old and not names else None)
            found.append(Leftover(path, "resume", names, why))
    return found


def sweep(root: Path, runs: Path | None = None, everything: bool = False, dry_run: bool = False) -> list[Leftover]:
    """Remove the stale leftovers (with ``everything``, also moved-aside artifacts and every
    resume folder); one whose artifacts' locks are held is skipped. Returns what was (with
    ``dry_run``: would be) removed."""
    removed = []
    for leftover in find_leftovers(root, runs):
        if leftover.stale is None and not (everything and leftover.kind in ("corrupt", "resume")):
            continue
        with contextlib.ExitStack() as locks:
            if all(locks.enter_context(artifact_lock(root, name, blocking=False)) for name in sorted(leftover.artifacts)):
                if not dry_run:
                    shutil.rmtree(leftover.path, ignore_errors=True)
                removed.append(leftover)
    return removed


def scratch_artifacts(folder: Path) -> tuple[str, ...]:
    """The artifacts a resume folder was made for (none when it does not say)."""
    try:
        return tuple(json.loads((folder / SCRATCH_FILE).read_text())["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()
