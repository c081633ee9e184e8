"""Faults from outside the program as one line each: OS errors, signals, a closed pipe.

- :func:`os_error_line`: an ``OSError`` (no space, permission denied, a read-only file system, a
  path that cannot be created, ...) as the line ``tge: error:`` prints, naming the path and the
  fix. :func:`find_fault` digs it, or a :class:`~tge_ray.errors.TGEError`, out of what Ray
  raised on the driver (a task's ``RayTaskError``, Ray Train's ``WorkerGroupError``, an error
  chained under another).
- :func:`check_writable`: the storage (and the runs folder) can be written, tried before the
  first stage by making and removing a folder there.
- :func:`signals_handled`: SIGINT and SIGTERM raise :class:`Interrupted` in the main thread, so
  every ``finally`` runs (Ray is shut down, locks released, temporary folders removed); the CLI
  exits 130 or 143 with one line. A second signal during that clean-up exits at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tge_ray.errors import TGEError


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which (exit code 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted_line(signum: int, resumable: bool = False) -> str:
    """The one line of an interrupted command (``resumable``: a run or sweep, which a rerun
    continues)."""
    line = f"tge: interrupted ({signal.Signals(signum).name})"
    return line + ": finished stages are kept; rerun the same command to continue" if resumable else line


_state: dict[str, Any] = {"fired": False, "active": False, "signum": None}


def _on_signal(signum: int, frame: Any) -> None:
    if _state["fired"]:  # a second signal while the first one's clean-up runs
        print(interrupted_line(signum), file=sys.stderr, flush=True)
        os._exit(128 + signum)  # skips the clean-up that hangs; the next open of the store sweeps
    _state["fired"], _state["signum"] = True, signum
    raise Interrupted(signum)


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: Ray's ``ray.get`` turns the :class:`Interrupted` it sees
    into a plain ``KeyboardInterrupt``, so the handler's record answers first."""
    if isinstance(exc, Interrupted):
        return exc.signum
    return int(_state["signum"] or signal.SIGINT)


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt behind ``exc``: one :func:`find_fault` digs out of it, or, when a signal has
    fired inside :func:`signals_handled`, that signal's, whatever ``exc`` became on its way up
    (``ray.put`` reports an :class:`Interrupted` raised inside its pickling as a ``TypeError``
    that keeps no link to it)."""
    fault = find_fault(exc)
    if isinstance(fault, KeyboardInterrupt):
        return fault
    if _state["active"] and _state["fired"]:  # the handler sets signum with fired
        return Interrupted(_state["signum"])
    return None


@contextlib.contextmanager
def signals_handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread inside the block; the
    handlers before it come back after it. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    _state.update(fired=False, active=True, signum=None)
    for signum in before:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        _state["active"] = False
        for signum, handler in before.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def reclaim_signals() -> None:
    """Take SIGINT and SIGTERM back after ``ray.init`` inside :func:`signals_handled`.

    Ray's driver sets its own SIGTERM handlers (Python's ``sys.exit``, then its core worker's
    C-level one, which dumps the stack and exits 134).
    """
    if _state["active"] and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _on_signal)


# ----------------------------------------------------------------------------- OS errors

# errno -> (what happened, how to fix it); the line names the path between them.
_FIXES = {
    errno.ENOSPC: ("no space left on the device", "free space on that file system or choose another storage=PATH"),
    errno.EDQUOT: ("disk quota exceeded", "free space within the quota or choose another storage=PATH"),
    errno.EACCES: ("permission denied", "make it writable for this user or choose another storage=PATH"),
    errno.EPERM: ("operation not permitted", "make it writable for this user or choose another storage=PATH"),
    errno.EROFS: ("read-only file system", "choose a storage=PATH on a writable file system"),
    errno.ENOENT: ("cannot be created (no such file or directory)", "choose a storage=PATH whose parent exists and is writable"),
    errno.ENOTDIR: ("cannot be created (a part of the path is a file)", "choose a storage=PATH made of folders"),
    errno.EISDIR: ("is a folder where a file was expected", "remove the folder or choose another storage=PATH"),
    errno.ENAMETOOLONG: ("has a name too long for the file system", "choose a shorter storage=PATH"),
    errno.EMFILE: ("cannot be opened: too many open files", "raise the limit (ulimit -n) and rerun"),
    errno.ENFILE: ("cannot be opened: too many open files on the system", "close other programs' files and rerun"),
    errno.ENOMEM: ("cannot be handled: out of memory", "free memory or shrink the batch sizes and rerun"),
    errno.EIO: ("cannot be read or written (I/O error)", "check the device (dmesg) or choose another storage=PATH"),
}


def os_error_line(exc: OSError, where: str | None = None) -> str | None:
    """``exc`` as one line naming the path and the fix; None for an errno not listed above.

    ``where`` names the path when the error carries none (a write's ENOSPC often does not).
    """
    if exc.errno not in _FIXES:
        return None
    what, fix = _FIXES[exc.errno]
    path = exc.filename or where
    subject = f"{path}: " if path else ""
    if exc.filename2:
        subject = f"{exc.filename} -> {exc.filename2}: "
    return f"{subject}{what}: {fix}"


def _children(exc: BaseException) -> list[BaseException]:
    """What an exception wraps: Ray Train's worker and controller failures, Python's chaining
    (a Ray task's cause is taken in :func:`find_fault`)."""
    found = []
    failures = getattr(exc, "worker_failures", None)  # ray.train.WorkerGroupError
    if isinstance(failures, dict):
        found += [f for f in failures.values() if isinstance(f, BaseException)]
    controller = getattr(exc, "controller_failure", None)  # ray.train.ControllerError
    if isinstance(controller, BaseException):
        found.append(controller)
    found += [e for e in (exc.__cause__, exc.__context__) if e is not None]
    return found


def find_fault(exc: BaseException) -> BaseException | None:
    """The first TGEError, listed OSError or Interrupted in ``exc`` or what it wraps, or None."""
    seen: set[int] = set()
    queue = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):  # Ray's wrapper is an instance of its cause's class too,
            queue.append(cause)  # and its message is the remote traceback: the cause has the line
            continue
        if isinstance(current, (TGEError, Interrupted)):
            return current
        if isinstance(current, OSError) and type(current).__module__ == "builtins" and current.errno in _FIXES:
            return current
        queue += _children(current)
    return None


def fault_line(exc: BaseException, where: str | None = None) -> str | None:
    """The message of a fault :func:`find_fault` finds in ``exc``, or None when it is a bug."""
    fault = find_fault(exc)
    if isinstance(fault, TGEError):
        return str(fault)
    if isinstance(fault, OSError):
        return os_error_line(fault, where)
    return None


# ----------------------------------------------------------------------------- storage


def check_writable(path: str | os.PathLike[str], name: str) -> None:
    """One line unless ``path`` can be made and written; leaves nothing behind.

    A folder is made and removed in the nearest existing ancestor: what ``os.access`` cannot
    see (a read-only mount, ``/proc``, root on a file system that refuses it) fails here, before
    Ray starts, instead of at the first write. ``name`` is the config field (``storage``).
    """
    target = Path(path).expanduser().absolute()
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TGEError(f"{name}={str(path)!r} cannot be created: {existing} is a file; choose a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".tge-probe-"))
    except OSError as exc:
        fix = _FIXES.get(exc.errno, ("", f"choose another {name}=PATH"))[1]
        verb = "written" if existing == target else "created"
        raise TGEError(f"{name}={str(path)!r} cannot be {verb} ({existing}: {exc.strerror}): {fix}") from None
