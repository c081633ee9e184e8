"""What makes a stored file trustworthy, and who owns a temporary folder of the artifact store.

An artifact's manifest records the size and SHA-256 of each of its files (:func:`file_records`).
:func:`size_damage` compares sizes (one ``stat`` a file, done at every lookup), :func:`hash_damage`
reads the files and compares their hashes (done when a stage hands the artifact out for use), and
:func:`copy_verified` copies a file while hashing it, so that a run folder never receives bytes
that differ from the recorded ones. Artifacts written before manifests recorded files have only
:func:`zip_damage`: every ``.pt`` and ``.npz`` is a zip archive with a CRC-32 per member, and
every ``.jsonl`` must parse.

Temporary folders of the store carry their owner in their name, ``.<artifact>.tmp-<pid>@<host>-<random>``
(:func:`tge_ray.io.owner_tag`, :func:`parse_temp`), so a later run can tell a folder whose process is gone
(:func:`owner_gone`) from one that is still being written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tge_ray.errors import TGEError
from tge_ray.pipeline.files import MANIFEST_FILE

CHUNK = 1 << 20  # bytes read at a time while hashing
ZIP_SUFFIXES = (".pt", ".npz")  # torch.save and np.savez both write zip archives
TEMP_NAME = re.compile(r"^\.(?P<name>[^/]+?)\.(?P<kind>tmp|fetch)-(?:(?P<pid>\d+)@(?P<host>[^/]+)-)?[a-z0-9_]+$")


@dataclass(frozen=True)
class Damage:
    """What is wrong with one file of an artifact."""

    file: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_records(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Relative path -> ``{"size", "sha256"}`` of every file under ``folder`` but ``skip``."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in skip
    }


def size_damage(folder: Path, records: dict[str, dict[str, Any]]) -> Damage | None:
    """The first recorded file that is missing or of another size, or None."""
    for name, record in records.items():
        path = Path(folder) / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return Damage(name, "missing")
        if size != record["size"]:
            return Damage(name, f"{size} bytes, {record['size']} recorded")
    return None


def hash_damage(folder: Path, records: dict[str, dict[str, Any]]) -> Damage | None:
    """:func:`size_damage`, then the first file whose SHA-256 is not the recorded one, or None."""
    damage = size_damage(folder, records)
    if damage is not None:
        return damage
    for name, record in records.items():
        try:
            if sha256_of(Path(folder) / name) != record["sha256"]:
                return Damage(name, "sha256 differs from the recorded one")
        except FileNotFoundError:  # moved aside by another process meanwhile
            return Damage(name, "missing")
    return None


def zip_damage(folder: Path, skip: tuple[str, ...] = ()) -> Damage | None:
    """For artifacts without recorded files: the first zip archive (``.pt``, ``.npz``) that does
    not read back with its CRCs, or ``.jsonl`` file that does not parse, or None."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in skip:
            damage = readable_damage(path, name)
            if damage is not None:
                return damage
    return None


def readable_damage(path: Path, name: str) -> Damage | None:
    """A zip archive whose members fail their CRCs, or JSON lines that do not parse; else None."""
    try:
        if path.suffix in ZIP_SUFFIXES:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return Damage(name, f"member {bad} fails its CRC check")
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    json.loads(line)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return Damage(name, f"does not read back ({type(exc).__name__}: {reason})")
    return None


def recorded_files(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The files an artifact's manifest records (None for a manifest without them, or none)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("files") if isinstance(manifest, dict) else None


def copy_verified(folder: Path, name: str, target: Path) -> None:
    """Copy an artifact's file ``folder/name`` to ``target``, hashing the bytes as they go; when
    they are not the ones its manifest records (or, without records, the copy fails its zip
    CRCs) the copy is removed and a TGEError names the file."""
    folder = Path(folder)
    records = recorded_files(folder)
    source = folder / name
    digest = hashlib.sha256()
    with open(source, "rb") as read, open(target, "wb") as write:
        while chunk := read.read(CHUNK):
            digest.update(chunk)
            write.write(chunk)
    shutil.copystat(source, target)
    record = (records or {}).get(name)
    if record is not None:
        damage = None if digest.hexdigest() == record["sha256"] else Damage(name, "sha256 differs from the recorded one")
    else:
        damage = readable_damage(target, name)
    if damage is not None:
        target.unlink(missing_ok=True)
        raise TGEError(f"{folder.name} changed after it was verified ({damage}): rerun; the run moves the "
                       "artifact aside and rebuilds it")


# ----------------------------------------------------------------------------- temporary folders


@dataclass(frozen=True)
class Temp:
    """A temporary folder of the store, as its name tells: the artifact it is for, whether it
    is a build (``tmp``, made under the artifact's lock) or a download (``fetch``, no lock), and
    its owner when the name records one."""

    artifact: str
    kind: str
    pid: int | None
    host: str | None


def parse_temp(name: str) -> Temp | None:
    """The :class:`Temp` a folder name describes, or None when it is not a temporary folder."""
    match = TEMP_NAME.match(name)
    if match is None:
        return None
    pid = match.group("pid")
    return Temp(match.group("name"), match.group("kind"), int(pid) if pid else None, match.group("host"))


def owner_gone(pid: int | None, host: str | None) -> bool:
    """True when the owner is recorded, ran on this host and is no longer alive (a process on
    another host cannot be asked)."""
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def last_write(folder: Path) -> float:
    """The newest modification time of ``folder`` and everything in it (seconds since the epoch)."""
    newest = Path(folder).stat().st_mtime
    for path in Path(folder).rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:  # removed while we looked
            continue
    return newest


def utc_stamp() -> str:
    """``20261204T031500Z``: the UTC time in the name of a folder moved aside."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
