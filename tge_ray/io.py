"""Atomic writes: a file or a folder is either complete at its path or not there at all.

Everything is written beside its target first (same file system, so the final ``os.replace``
is atomic) and moved over it only when the write finished; a write that fails or is
interrupted removes what it left.

    with atomic_path(path) as tmp:          # any writer that takes a path
        figure.savefig(tmp, format="png")
    write_text(path, text)
    torch_save(state, path)
    with atomic_folder(target) as folder:   # a whole folder, moved into place at the end
        ...
    with folder_beside(target) as folder:   # the same, never over another folder:
        ...
        final = place_folder(folder, target)  # target, or target-2, ... when it is taken
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file beside ``path``; it replaces ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a write's ENOSPC names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically.

    The file is written through a Python file object, so a failed write (no space left) raises
    the ``OSError`` with its errno and this path, where ``torch.save(obj, path)`` raises a bare
    ``RuntimeError`` from its C++ stream.
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            try:
                torch.save(obj, handle)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from exc
                raise
    return Path(path)


def replace_folder(source: Path, target: Path) -> None:
    """Move a finished folder into place; what stood at ``target`` is removed first."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)


def owner_tag() -> str:
    """``<pid>@<host>`` of this process: temporary folders carry it in their names, so a later
    process can tell one whose writer is gone (a ``kill -9``) from one still being written."""
    return f"{os.getpid()}@{socket.gethostname()}"


@contextlib.contextmanager
def folder_beside(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A private folder beside ``target`` (``.<name>.tmp-<pid>@<host>-*``), removed when the
    block ends unless the block moved it away (:func:`replace_folder`, :func:`place_folder`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-{owner_tag()}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A private folder beside ``target``, moved into place (replacing what stood there) when
    the block ends without error; removed if the block fails or is interrupted."""
    with folder_beside(target) as tmp:
        yield tmp
        replace_folder(tmp, Path(target))


def place_folder(source: Path, target: Path) -> Path:
    """Move a finished folder to ``target``, or to ``target-2``, ``target-3``, ... when another
    process took that name; never over another folder (a rename onto a non-empty folder fails).
    Returns where it went."""
    candidate, number = Path(target), 1
    while True:
        try:
            os.rename(source, candidate)
            return candidate
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        number += 1
        candidate = Path(target).with_name(f"{Path(target).name}-{number}")
